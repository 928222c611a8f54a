"""fomm train --model monkeynet|x2face: the papers' losses, checkpoints that load through fomm.load_model, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import make_strips, tiny_x2face
from helpers import train_opts as _opts

import fomm
from fomm.checkpoint import load_container
from fomm.cli.main import main as cli
from fomm.config import resolve_model_config
from fomm.errors import ConfigError
from fomm.models.monkeynet import MonkeyNetConfig, build_monkeynet
from fomm.models.x2face import X2Face, load_x2face
from fomm.models.x2face.config import X2FaceRunConfig
from fomm.train.baselines import MonkeyNetObjective, X2FaceObjective, feature_matching_reconstruction
from fomm.train.trainer import list_checkpoints, train


def tiny_monkeynet(tmp_path: Path, size: int = 32, **train_overrides) -> Path:
    cfg = MonkeyNetConfig.load("actions-64").to_dict()
    mp = cfg["model_params"]
    mp["common_params"]["num_kp"] = 3
    mp["kp_detector_params"].update(block_expansion=8, max_features=16, num_blocks=2)
    mp["generator_params"].update(block_expansion=8, max_features=16, num_blocks=2, num_refinement_blocks=1)
    mp["generator_params"]["dense_motion_params"].update(block_expansion=8, max_features=16, num_blocks=2)
    mp["discriminator_params"].update(block_expansion=8, max_features=16, num_blocks=2)
    cfg["dataset_params"]["image_shape"] = [size, size, 3]
    tp = cfg["train_params"]
    tp.update(num_epochs=2, num_repeats=4, batch_size=2, checkpoint_freq=1, epoch_milestones=[1])
    tp["loss_weights"]["reconstruction"] = [10, 10, 1]
    tp.update(train_overrides)
    path = tmp_path / "mnet-tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture()
def data(tmp_path):
    return make_strips(tmp_path / "data")


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def test_bundled_configs_size_and_resolution():
    mnet = fomm.load_model("actions-64", model="monkeynet")
    assert mnet.image_size == (64, 64)
    n = sum(p.numel() for m in (mnet.kp_detector, mnet.generator) for p in m.parameters())
    assert 4e6 < n < 7.5e6  # < 30 MB of float32 in the inference checkpoint
    x2 = fomm.load_model("actions-64", model="x2face")
    assert x2.image_size == (64, 64) and x2.generator.config.ngf == 16
    assert 3e6 < sum(p.numel() for p in x2.generator.parameters()) < 7.5e6
    with pytest.raises(ConfigError, match="bundled monkeynet config"):
        resolve_model_config("monkeynet", "no-such-config")
    # the folder-qualified form the README and the shipped-model registry use
    for model in ("monkeynet", "x2face"):
        assert resolve_model_config(model, f"{model}/actions-64") == resolve_model_config(model, "actions-64")
    # the FOMM config list stays FOMM-only (the baselines' files sit in their own folders)
    assert "monkeynet" not in fomm.config.bundled_configs()


def test_monkeynet_cli_trains_checkpoints_load_and_resume(tmp_path, data):
    cfg = tiny_monkeynet(tmp_path)
    out = tmp_path / "run"
    assert cli(["train", "--model", "monkeynet", "--config", str(cfg), "--data", str(data), "--out", str(out),
                "--workers", "0", "--epochs", "1", "-q"]) == 0
    assert [e for e, _ in list_checkpoints(out)] == [0]
    first = load_container(list_checkpoints(out)[0][1])
    # the original Monkey-Net container: generator, kp_detector, discriminator + their optimizers, one lr
    for key in ("generator", "kp_detector", "discriminator", "optimizer_generator", "optimizer_discriminator"):
        assert key in first
    assert first["fomm_train"]["model"] == "monkeynet"
    recs = _records(out)
    assert len(recs) == 3 * 4 // 2
    assert {"reconstruction", "gen_gan", "disc_gan"} <= set(recs[0])
    assert all(np.isfinite(r["total"]) and np.isfinite(r["disc_gan"]) for r in recs)
    assert recs[0]["lr_generator"] == pytest.approx(2e-4) and recs[0]["lr_discriminator"] == pytest.approx(2e-4)
    assert (out / "visualizations" / "epoch_0000.png").is_file()
    # resume for the second epoch
    assert cli(["train", "--model", "monkeynet", "--config", str(cfg), "--data", str(data), "--out", str(out),
                "--workers", "0", "--resume", "-q"]) == 0
    assert [e for e, _ in list_checkpoints(out)] == [0, 1]
    last = load_container(list_checkpoints(out)[-1][1])
    changed = [k for k, v in last["generator"].items() if v.is_floating_point()
               and not torch.equal(v, first["generator"][k])]
    assert changed, "generator weights did not change in the resumed epoch"
    assert len(_records(out)) == 2 * len(recs)
    # loads through the public API with the saved config, with the discriminator too
    model = fomm.load_model(str(out / "config.yaml"), list_checkpoints(out)[-1][1], model="monkeynet",
                            with_discriminator=True)
    assert model.epoch == 1 and model.discriminator is not None
    for k, v in model.generator.state_dict().items():
        assert torch.equal(v, last["generator"][k])


def test_monkeynet_resume_is_exact(tmp_path, data):
    cfg = tiny_monkeynet(tmp_path)
    full = train(_opts(cfg, data, tmp_path / "full", model="monkeynet"))
    train(_opts(cfg, data, tmp_path / "part", epochs=1, model="monkeynet"))
    resumed = train(_opts(cfg, data, tmp_path / "part", resume=True, model="monkeynet"))
    a, b = load_container(full.last_checkpoint), load_container(resumed.last_checkpoint)
    for net in ("generator", "kp_detector", "discriminator"):
        for k, v in a[net].items():
            assert torch.equal(v, b[net][k]), f"{net}.{k} differs after resume"


def test_monkeynet_losses_follow_the_paper():
    raw = MonkeyNetConfig.load("actions-64").to_dict()
    raw["model_params"]["common_params"]["num_kp"] = 3
    for key in ("kp_detector_params", "generator_params", "discriminator_params"):
        raw["model_params"][key].update(block_expansion=8, max_features=16, num_blocks=2)
    raw["model_params"]["generator_params"]["dense_motion_params"].update(block_expansion=8, max_features=16,
                                                                         num_blocks=2)
    raw["dataset_params"]["image_shape"] = [32, 32, 3]
    cfg = MonkeyNetConfig.from_dict(raw)
    torch.manual_seed(0)
    kp, gen, disc = build_monkeynet(cfg)
    tp = {"loss_weights": {"reconstruction": [10, 10, 1], "generator_gan": 1, "discriminator_gan": 1,
                           "reconstruction_deformed": 2}}
    obj = MonkeyNetObjective(kp, gen, disc, tp)
    g = torch.Generator().manual_seed(1)
    batch = {"source": torch.rand(2, 3, 32, 32, generator=g), "driving": torch.rand(2, 3, 32, 32, generator=g)}
    losses, generated = obj.generator_losses(batch)
    assert set(losses) == {"reconstruction", "gen_gan", "reconstruction_deformed"}
    # recompute: feature matching over the discriminator maps of the real and generated frames
    kps = {k: v[:, :1] for k, v in generated["kp_joined"].items()}
    kpd = {k: v[:, 1:] for k, v in generated["kp_joined"].items()}
    real = disc(batch["driving"].unsqueeze(2), kp_driving=kpd, kp_source=kps)
    fake = disc(generated["video_prediction"], kp_driving=kpd, kp_source=kps)
    expected = sum(w * (r - f).abs().mean() for w, r, f in zip([10, 10, 1], real[:-1], fake[:-1], strict=True))
    assert torch.allclose(losses["reconstruction"], expected)
    assert torch.allclose(losses["gen_gan"], ((1 - fake[-1]) ** 2).mean())
    assert torch.allclose(losses["reconstruction_deformed"],
                          2 * (batch["driving"] - generated["deformed"]).abs().mean())
    d = obj.discriminator_losses(batch, generated)
    assert torch.allclose(d["disc_gan"], ((1 - real[-1]) ** 2 + fake[-1] ** 2).mean())
    # gradients of the generator losses reach the generator and the keypoint detector
    sum(losses.values()).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in kp.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gen.parameters())
    with pytest.raises(ConfigError, match="one weight per map"):
        MonkeyNetObjective(kp, gen, disc, {"loss_weights": {"reconstruction": [1, 1]}})
    with pytest.raises(ConfigError, match="detach_kp_discriminator"):
        MonkeyNetObjective(kp, gen, disc, {"loss_weights": {"reconstruction": [1, 1, 1]},
                                           "detach_kp_discriminator": False})
    with pytest.raises(ConfigError, match="one weight per map"):
        feature_matching_reconstruction(real, fake, [1.0])


def test_x2face_cli_trains_lowers_l1_checkpoint_is_original_container(tmp_path, data):
    cfg = tiny_x2face(tmp_path, num_repeats=8)
    out = tmp_path / "run"
    assert cli(["train", "--model", "x2face", "--config", str(cfg), "--data", str(data), "--out", str(out),
                "--workers", "0", "-q"]) == 0
    recs = _records(out)
    assert len(recs) == 2 * (3 * 8 // 2)
    assert all(np.isfinite(r["photometric"]) for r in recs)
    epoch0 = np.mean([r["photometric"] for r in recs if r["epoch"] == 0])
    epoch1 = np.mean([r["photometric"] for r in recs if r["epoch"] == 1])
    assert epoch1 < epoch0, (epoch0, epoch1)
    ckpt = list_checkpoints(out)[-1][1]
    container = load_container(ckpt)
    assert "state_dict" in container and "generator" not in container  # what the authors' notebooks read
    net = load_x2face(ckpt)  # the original-format loader reads it as is
    assert net.config.ngf == 2 and net.config.inner_nc == 8
    model = fomm.load_model(str(out / "config.yaml"), ckpt, model="x2face")
    assert model.epoch == 1 and model.image_size == (32, 32)
    for k, v in model.generator.state_dict().items():
        assert torch.equal(v, container["state_dict"][k])


def test_x2face_resume_and_weight_free_option(tmp_path, data):
    cfg = tiny_x2face(tmp_path, perceptual_backend="pyramid_l1", scales=[1, 0.5], ssim_weight=1.0,
                      loss_weights={"photometric": 1, "perceptual": [1, 1]})
    full = train(_opts(cfg, data, tmp_path / "full", model="x2face"))
    assert {"photometric", "perceptual"} <= set(full.last_losses)
    train(_opts(cfg, data, tmp_path / "part", epochs=1, model="x2face"))
    resumed = train(_opts(cfg, data, tmp_path / "part", resume=True, model="x2face"))
    a, b = load_container(full.last_checkpoint), load_container(resumed.last_checkpoint)
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k


def test_x2face_objective_is_photometric_l1():
    torch.manual_seed(0)
    net = X2Face(X2FaceRunConfig.from_dict({"model_params": {"ngf": 2, "inner_nc": 8}}).model)
    obj = X2FaceObjective(net, {"loss_weights": {"photometric": 3}})
    g = torch.Generator().manual_seed(2)
    batch = {"source": torch.rand(2, 3, 32, 32, generator=g), "driving": torch.rand(2, 3, 32, 32, generator=g)}
    losses, generated = obj.generator_losses(batch)
    assert set(losses) == {"photometric"}
    assert generated["prediction"].shape == (2, 3, 32, 32)
    assert torch.allclose(losses["photometric"], 3 * (generated["prediction"] - batch["driving"]).abs().mean())
    # same as X2Face's own any-size inference path (eval mode: BatchNorm statistics fixed)
    obj.eval()
    with torch.no_grad():
        _, gen_eval = obj.generator_losses(batch)
        assert torch.allclose(gen_eval["prediction"].clamp(0, 1), net.animate_frame(batch["source"],
                                                                                    batch["driving"]), atol=1e-6)
    with pytest.raises(ConfigError, match="photometric"):
        X2FaceObjective(net, {"loss_weights": {"photometric": 0}})
