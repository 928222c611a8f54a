"""fomm train: the loop, logs, checkpoints, exact resume, GAN path, bad input, DDP with 2 CPU processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import make_strips, tiny_config
from helpers import train_opts as _opts
from PIL import Image

from fomm.checkpoint import load_container
from fomm.cli.main import main as cli
from fomm.config import load_config
from fomm.errors import ConfigError, InputError, OutputError
from fomm.train.trainer import TrainingError, list_checkpoints, strip_checkpoint, train


@pytest.fixture()
def data(tmp_path):
    return make_strips(tmp_path / "data")


def test_cli_train_writes_logs_checkpoints_and_grids(tmp_path, data):
    cfg = tiny_config(tmp_path)
    out = tmp_path / "run"
    assert cli(["train", "--config", str(cfg), "--data", str(data), "--out", str(out), "--workers", "0",
                "-q"]) == 0
    ckpts = list_checkpoints(out)
    assert [e for e, _ in ckpts] == [0, 1]
    container = load_container(ckpts[-1][1])
    # the original container (what the authors' demo reads), plus optimizer/scheduler state for resuming
    for key in ("generator", "kp_detector", "discriminator", "optimizer_generator", "optimizer_kp_detector",
                "scheduler_generator", "epoch"):
        assert key in container
    assert container["epoch"] == 1
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert len(records) == 2 * (3 * 4 // 2)  # epochs x (videos x repeats / batch)
    assert {"perceptual", "equivariance_value", "equivariance_jacobian", "total"} <= set(records[0])
    assert all(np.isfinite(r["total"]) for r in records)
    # the learning rate drops by 10x at the milestone (epoch 1)
    assert records[0]["lr_generator"] == pytest.approx(2e-4) and records[-1]["lr_generator"] == pytest.approx(2e-5)
    csv_lines = (out / "log.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,iteration,step,perceptual") and len(csv_lines) == len(records) + 1
    grid = np.asarray(Image.open(out / "visualizations" / "epoch_0001.png"))
    assert grid.shape[1] == 5 * 128 and grid.shape[0] == 2 * 128  # 5 columns, 2 rows (batch), upscaled to 128
    # the checkpoint loads through the public API
    import fomm

    model = fomm.load_model(str(out / "config.yaml"), ckpts[-1][1])
    assert model.epoch == 1


def test_resume_continues_exactly(tmp_path, data):
    cfg = tiny_config(tmp_path)
    full = train(_opts(cfg, data, tmp_path / "full"))
    part = train(_opts(cfg, data, tmp_path / "part", epochs=1))
    assert part.epochs_completed == 1
    resumed = train(_opts(cfg, data, tmp_path / "part", resume=True))
    assert resumed.steps == full.steps
    a = load_container(full.last_checkpoint)
    b = load_container(resumed.last_checkpoint)
    for net in ("generator", "kp_detector"):
        for k, v in a[net].items():
            assert torch.equal(v, b[net][k]), f"{net}.{k} differs after resume"
    for k in ("optimizer_generator", "scheduler_generator"):
        assert str(a[k]["state"] if "state" in a[k] else a[k]) == str(b[k]["state"] if "state" in b[k] else b[k])
    log_full = (tmp_path / "full" / "log.jsonl").read_text().splitlines()
    log_part = (tmp_path / "part" / "log.jsonl").read_text().splitlines()
    strip = [{k: v for k, v in json.loads(line).items() if k != "time"} for line in log_full]
    assert strip == [{k: v for k, v in json.loads(line).items() if k != "time"} for line in log_part]


def test_resume_takes_epochs_and_milestones_from_the_config(tmp_path, data):
    """Lengthening a run on resume: num_epochs and epoch_milestones of the (edited) config win over the
    checkpoint's schedule, and the learning rate follows the new schedule from the resume epoch on."""
    cfg = tiny_config(tmp_path)  # milestones [1]: lr drops after epoch 0
    train(_opts(cfg, data, tmp_path / "run", epochs=1))
    longer = yaml.safe_load(cfg.read_text())
    longer["train_params"].update(num_epochs=4, epoch_milestones=[3])
    cfg2 = tmp_path / "longer.yaml"
    cfg2.write_text(yaml.safe_dump(longer))
    messages: list[str] = []
    res = train(_opts(cfg2, data, tmp_path / "run", resume=True, log=messages.append))
    assert res.epochs_completed == 4
    assert sum("epoch_milestones [3]" in m for m in messages) == 1  # once, not once per scheduler
    lr = {}
    for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines():
        row = json.loads(line)
        lr[row["epoch"]] = row["lr_generator"]
    base = lr[0]
    assert lr[1] == pytest.approx(base) and lr[2] == pytest.approx(base)  # the old drop at 1 is gone
    assert lr[3] == pytest.approx(base * 0.1)


def test_refuses_to_overwrite_a_run_and_resume_needs_checkpoints(tmp_path, data):
    cfg = tiny_config(tmp_path)
    with pytest.raises(InputError, match="no checkpoints"):
        train(_opts(cfg, data, tmp_path / "empty", resume=True))
    train(_opts(cfg, data, tmp_path / "run", epochs=1))
    with pytest.raises(OutputError, match="--resume"):
        train(_opts(cfg, data, tmp_path / "run", epochs=1))


def test_adversarial_config_trains_the_discriminator(tmp_path, data):
    cfg = tiny_config(tmp_path, adversarial=True)
    res = train(_opts(cfg, data, tmp_path / "adv", epochs=1))
    assert {"gen_gan", "feature_matching", "disc_gan"} <= set(res.last_losses)
    c = load_container(res.last_checkpoint)
    assert "optimizer_discriminator" in c
    torch.manual_seed(0)
    from fomm.models.fomm import build_discriminator
    from fomm.train.trainer import _seed_for

    torch.manual_seed(_seed_for(0, 0xC0DE))
    from fomm.train.objectives import build_fomm_objective

    fresh = build_fomm_objective(load_config(str(cfg)), torch.device("cpu")).discriminator
    changed = [k for k, v in fresh.state_dict().items() if not torch.equal(v, c["discriminator"][k])]
    assert changed, "the discriminator was not updated"
    assert build_discriminator  # imported for the config check above


def test_amp_bf16_on_cpu_runs(tmp_path, data):
    cfg = tiny_config(tmp_path)
    res = train(_opts(cfg, data, tmp_path / "amp", epochs=1, amp=True, max_steps_per_epoch=2))
    assert res.steps == 2 and all(np.isfinite(v) for v in res.last_losses.values())


def test_non_finite_losses_stop_with_a_clear_error_and_keep_checkpoints(tmp_path, data, monkeypatch):
    cfg = tiny_config(tmp_path)
    out = tmp_path / "nan"
    train(_opts(cfg, data, out, epochs=1))
    from fomm.train import objectives

    original = objectives.FommObjective.generator_losses

    def poisoned(self, batch, generator=None):
        losses, gen = original(self, batch, generator)
        losses["perceptual"] = losses["perceptual"] * float("nan")
        return losses, gen

    monkeypatch.setattr(objectives.FommObjective, "generator_losses", poisoned)
    monkeypatch.setattr("fomm.train.trainer.MAX_BAD_STEPS", 3)
    with pytest.warns(UserWarning, match="non-finite"), pytest.raises(TrainingError, match="Last good checkpoint"):
        train(_opts(cfg, data, out, resume=True, epochs=3))
    assert [e for e, _ in list_checkpoints(out)] == [0]


def test_bad_datasets_give_clear_errors(tmp_path):
    cfg = tiny_config(tmp_path)
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    with pytest.raises(InputError, match="no videos found"):
        train(_opts(cfg, empty, tmp_path / "r1"))
    with pytest.raises(InputError, match="does not exist"):
        train(_opts(cfg, tmp_path / "missing", tmp_path / "r2"))
    # unreadable, too short and too small videos are skipped and counted; if nothing is left, say why
    bad = tmp_path / "bad" / "train"
    bad.mkdir(parents=True)
    (bad / "broken.mp4").write_bytes(b"not a video")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(bad / "one_frame.png")
    Image.fromarray(np.zeros((16, 48, 3), np.uint8)).save(bad / "tiny.png")
    with pytest.warns(UserWarning, match="skipping"), pytest.raises(InputError, match="none of the 3 videos"):
        train(_opts(cfg, tmp_path / "bad", tmp_path / "r3"))
    # a config whose frames do not fit the model's down-sampling
    odd = tiny_config(tmp_path, size=30)
    make_strips(tmp_path / "d30", size=30)
    with pytest.raises(ConfigError, match="dense-motion hourglass: it sees 15x15, which is not divisible by 4"):
        train(_opts(odd, tmp_path / "d30", tmp_path / "r4"))
    two_down = yaml.safe_load(odd.read_text())
    two_down["model_params"]["generator_params"]["num_down_blocks"] = 2
    two_down["model_params"]["generator_params"]["dense_motion_params"]["scale_factor"] = 1
    (tmp_path / "two_down.yaml").write_text(yaml.safe_dump(two_down))
    with pytest.raises(ConfigError, match="generator: it sees 30x30, which is not divisible by 4"):
        train(_opts(tmp_path / "two_down.yaml", tmp_path / "d30", tmp_path / "r4b"))
    # an epoch smaller than one batch
    good = make_strips(tmp_path / "good")
    with pytest.raises(ConfigError, match="fewer than one batch"):
        train(_opts(cfg, good, tmp_path / "r5", batch_size=64))
    # none of these runs left a (half-made) run folder behind
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("r")]


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    assert cli(["train", "--config", str(cfg), "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fomm: error:") and "does not exist" in err and "Traceback" not in err


def test_unreadable_video_mid_epoch_is_replaced_not_fatal(tmp_path, data):
    from fomm.datasets.frames import FramesDataset

    ds = FramesDataset(data, (32, 32, 3), is_train=True)
    victim = ds.videos[0]
    (ds.folder / victim).write_bytes(b"garbage now")  # corrupted after probing
    with pytest.warns(UserWarning, match="drawing another video"):
        items = [ds.get(0, draw=d) for d in range(3)]
    assert all(item["name"] != victim for item in items)
    assert ds.read_failures[victim] >= 1


def test_strip_checkpoint_makes_a_small_inference_file(tmp_path, data):
    cfg = tiny_config(tmp_path)
    res = train(_opts(cfg, data, tmp_path / "run", epochs=1))
    small = strip_checkpoint(res.last_checkpoint, tmp_path / "small.pth.tar")
    c = load_container(small)
    assert set(c) == {"generator", "kp_detector", "epoch", "fomm_train"}
    assert small.stat().st_size < res.last_checkpoint.stat().st_size / 2
    import fomm

    fomm.load_model(str(cfg), small)


def test_average_checkpoints_is_the_mean_of_the_weights(tmp_path, data, capsys):
    import fomm
    from fomm.train.trainer import average_checkpoints

    cfg = tiny_config(tmp_path)  # 2 epochs, a checkpoint after each
    res = train(_opts(cfg, data, tmp_path / "run"))
    paths = [p for _, p in list_checkpoints(res.run_dir)]
    assert len(paths) == 2
    a, b = (load_container(p) for p in paths)
    out = tmp_path / "mean.pth.tar"
    assert cli(["average-checkpoints", *map(str, paths), "-o", str(out)]) == 0
    assert "the mean of 2 checkpoint(s)" in capsys.readouterr().out
    mean = load_container(out)
    assert set(mean) == {"generator", "kp_detector", "epoch", "fomm_train"}
    assert mean["epoch"] == b["epoch"] == 1 and mean["fomm_train"]["averaged_epochs"] == [0, 1]
    assert "rng" not in mean["fomm_train"]
    differs = 0
    for part in ("generator", "kp_detector"):
        assert set(mean[part]) == set(a[part])
        for key, value in mean[part].items():
            if value.is_floating_point():
                torch.testing.assert_close(value, (a[part][key] + b[part][key]) / 2, rtol=0, atol=1e-7)
                differs += not torch.equal(a[part][key], b[part][key])
            else:  # num_batches_tracked
                assert torch.equal(value, b[part][key])
    assert differs > 10  # the run's two checkpoints really differ
    model = fomm.load_model(str(cfg), out)
    assert model.generator is not None

    # One checkpoint: the stripped checkpoint's weights.
    one = load_container(average_checkpoints(paths[:1], tmp_path / "one.pth.tar"))
    stripped = load_container(strip_checkpoint(paths[0], tmp_path / "stripped.pth.tar"))
    for part in ("generator", "kp_detector"):
        assert all(torch.equal(one[part][k], v) for k, v in stripped[part].items())

    # Checkpoints of different configs, or a missing one: one line, nothing written.
    other = tmp_path / "other.yaml"
    raw = yaml.safe_load(cfg.read_text())
    raw["model_params"]["common_params"]["num_kp"] = 4
    other.write_text(yaml.safe_dump(raw))
    foreign = train(_opts(other, data, tmp_path / "other", epochs=1)).last_checkpoint
    for bad, why in (([paths[0], foreign], "does not match"), ([paths[0], tmp_path / "nope.pth.tar"], "not found")):
        capsys.readouterr()
        assert cli(["average-checkpoints", *map(str, bad), "-o", str(tmp_path / "bad.pth.tar")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("fomm: error:") and why in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "bad.pth.tar").exists()


def test_fine_tuning_at_another_input_scale_keeps_every_learned_weight(tmp_path, data):
    """--init-checkpoint into a config whose dense motion runs at full resolution (the checkpoint's at half) and
    whose keypoint detector runs at half (the checkpoint's at full): the anti-alias kernels follow the config."""
    import fomm
    from fomm.train.trainer import _rescaled_kernels

    base_path = tiny_config(tmp_path)
    cfg = yaml.safe_load(base_path.read_text())
    mp = cfg["model_params"]
    assert mp["generator_params"]["dense_motion_params"]["scale_factor"] == 0.5
    assert mp["kp_detector_params"]["scale_factor"] == 1
    mp["generator_params"]["dense_motion_params"]["scale_factor"] = 1.0
    mp["kp_detector_params"]["scale_factor"] = 0.5
    cfg["train_params"]["num_epochs"] = 1
    rescaled_path = tmp_path / "rescaled.yaml"
    rescaled_path.write_text(yaml.safe_dump(cfg))

    base = train(_opts(base_path, data, tmp_path / "base", epochs=1))
    said: list[str] = []
    tuned = train(_opts(rescaled_path, data, tmp_path / "tuned", init_checkpoint=str(base.last_checkpoint),
                        log=said.append))
    assert any("'generator'" in m and "'dense_motion_network'" in m and "anti-alias" in m for m in said), said
    assert any("'kp_detector'" in m and "anti-alias" in m for m in said), said
    fomm.load_model(str(rescaled_path), tuned.last_checkpoint)

    # What the fine-tune starts from: the checkpoint's learned tensors, bit for bit; only kernels differ.
    old = load_container(base.last_checkpoint)
    new = fomm.load_model(str(rescaled_path))
    for name, net in (("generator", new.generator), ("kp_detector", new.kp_detector)):
        state, _ = _rescaled_kernels(net, old[name])
        net.load_state_dict(state)
        kernels = {k for k in set(state) | set(old[name]) if k.endswith("down.weight")}
        assert kernels, name
        for key, value in net.state_dict().items():
            if key not in kernels:
                assert torch.equal(value, old[name][key]), key
        assert not (set(old[name]) - set(state)) - kernels

    # Same scales: nothing is rescaled, nothing is said.
    said.clear()
    train(_opts(base_path, data, tmp_path / "same", init_checkpoint=str(base.last_checkpoint), epochs=1,
                log=said.append))
    assert not any("anti-alias" in m for m in said), said


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes_agree_on_weights_and_split_the_data(tmp_path, data):
    cfg = tiny_config(tmp_path)
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "fomm", "train", "--config", str(cfg), "--data", str(data), "--out", str(out),
           "--device", "cpu", "--workers", "0", "--epochs", "1", "--batch-size", "4", "-q"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((out / "ranks" / "rank0.json").read_text())
    r1 = json.loads((out / "ranks" / "rank1.json").read_text())
    assert r0["world_size"] == r1["world_size"] == 2
    assert r0["digests"] == r1["digests"], "ranks ended with different weights"
    assert set(r0["last_epoch_indices"]).isdisjoint(r1["last_epoch_indices"]), "ranks saw the same samples"
    assert len(r0["last_epoch_indices"]) == len(r1["last_epoch_indices"]) == 3 * 4 // 2
    # and the weights did move away from the initial ones
    c = load_container(list_checkpoints(out)[-1][1])
    assert c["fomm_train"]["world_size"] == 2


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one(tmp_path, data):
    """Kill the trainer process (SIGKILL, no chance to clean up) after its first checkpoint, resume, and compare
    with a run that was never interrupted."""
    import signal
    import time

    cfg = tiny_config(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    args = ["--config", str(cfg), "--data", str(data), "--workers", "0", "--epochs", "6", "--num-repeats", "2", "-q"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "fomm", "train", "--out", str(killed), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list_checkpoints(killed) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = [e for e, _ in list_checkpoints(killed)]
    assert done_at_kill and done_at_kill[-1] < 5, "the run finished before it could be killed"
    # Same process set-up (thread count) for every phase: results must not depend on it, only on the resume.
    for extra in (["--out", str(killed), "--resume"], ["--out", str(tmp_path / "straight")]):
        done = subprocess.run([sys.executable, "-m", "fomm", "train", *extra, *args], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    a = load_container(list_checkpoints(tmp_path / "straight")[-1][1])
    b = load_container(list_checkpoints(killed)[-1][1])
    assert a["epoch"] == b["epoch"] == 5
    for net in ("generator", "kp_detector"):
        for k, v in a[net].items():
            assert torch.equal(v, b[net][k]), f"{net}.{k} differs after kill + resume"
