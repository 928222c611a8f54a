"""fomm animate --model monkeynet|x2face: the baselines' own transfer, streamed, and wrong-model checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import fomm
from fomm.animate import MonkeyNetAnimator, make_animator
from fomm.cli.main import main
from fomm.errors import CheckpointError
from fomm.io.image import image_to_tensor, read_image
from fomm.io.reading import iter_frames
from fomm.io.writing import VideoWriter
from fomm.models.monkeynet import transfer_one


def _video(path: Path, frames: int = 6, size: int = 96) -> Path:
    rng = np.random.default_rng(3)
    base = (rng.random((size // 8, size // 8, 3)) * 255).astype(np.uint8)
    base = np.kron(base, np.ones((8, 8, 1), np.uint8))  # blocky, so H.264 keeps it close
    with VideoWriter(path, fps=10) as w:
        for t in range(frames):
            w.write(np.roll(base, 4 * t, axis=1))
    return path


def _png_frames(folder: Path) -> list[np.ndarray]:
    return [read_image(p) for p in sorted(folder.glob("*.png"))]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("anim")
    rng = np.random.default_rng(0)
    src = np.kron((rng.random((12, 12, 3)) * 255).astype(np.uint8), np.ones((8, 8, 1), np.uint8))
    from PIL import Image

    Image.fromarray(src).save(root / "source.png")
    return root / "source.png", _video(root / "driving.mp4")


def test_monkeynet_cli_matches_original_relative_transfer(golden_dir, inputs, tmp_path):
    source, driving = inputs
    cfg, ckpt = golden_dir / "mnet_small.yaml", golden_dir / "mnet_small_cpk.pth.tar"
    out = tmp_path / "frames"
    assert main(["animate", "--model", "monkeynet", "--config", str(cfg), "--checkpoint", str(ckpt),
                 "--source", str(source), "--driving", str(driving), "-o", f"{out}/", "-q"]) == 0
    got = _png_frames(out)
    assert len(got) == 6 and got[0].shape == (128, 128, 3)  # the config's image_shape
    # the same transfer, done at once by the parity-tested transfer_one (move_location + movement_mult)
    model = fomm.load_model(cfg, ckpt, model="monkeynet")
    src = image_to_tensor(read_image(source), (128, 128)).unsqueeze(2)
    drv = torch.stack([image_to_tensor(f, (128, 128))[0] for f in iter_frames(driving)], dim=1)[None]
    ref = transfer_one(model.generator, model.kp_detector, src, drv,
                       {"move_location": True, "movement_mult": True})["video_prediction"][0]
    ref = (ref.permute(1, 2, 3, 0).clamp(0, 1) * 255).round().numpy()
    diff = np.abs(np.stack(got).astype(np.float64) - ref)
    assert diff.max() <= 2, diff.max()


def test_monkeynet_absolute_uses_driving_keypoints(golden_dir):
    model = fomm.load_model(golden_dir / "mnet_small.yaml", golden_dir / "mnet_small_cpk.pth.tar", model="monkeynet")
    g = torch.Generator().manual_seed(5)
    src, drv = torch.rand(1, 3, 128, 128, generator=g), torch.rand(3, 3, 128, 128, generator=g)
    anim = make_animator(model, relative=False, batch_size=2)
    assert isinstance(anim, MonkeyNetAnimator)
    anim.set_source(src)
    pred = anim.animate_batch(drv)
    ref = transfer_one(model.generator, model.kp_detector, src.unsqueeze(2), drv.permute(1, 0, 2, 3)[None])
    assert pred.shape == (3, 3, 128, 128)
    assert torch.allclose(pred, ref["video_prediction"][0].permute(1, 0, 2, 3), atol=1e-5)


def test_monkeynet_bundled_config_random_weights(inputs, tmp_path):
    source, driving = inputs
    out = tmp_path / "out.mp4"
    assert main(["animate", "--model", "monkeynet", "--config", "actions-64", "--random-weights",
                 "--source", str(source), "--driving", str(driving), "-o", str(out), "--size", "96", "-q"]) == 0
    frames = list(iter_frames(out))
    assert len(frames) == 6 and frames[0].shape == (96, 96, 3)


def test_x2face_cli_animates_at_any_size(golden_dir, inputs, tmp_path):
    source, driving = inputs
    ckpt = golden_dir / "x2face_small_model.pth"
    out = tmp_path / "frames"
    assert main(["animate", "--model", "x2face", "--checkpoint", str(ckpt), "--source", str(source),
                 "--driving", str(driving), "-o", f"{out}/", "--size", "64", "--absolute", "-q"]) == 0
    got = _png_frames(out)
    assert len(got) == 6 and got[0].shape == (64, 64, 3)
    # frame 2 = X2Face.animate_frame(source, driving frame 2) at the model's 256x256, resized to 64
    model = fomm.load_model(None, ckpt, model="x2face")
    src = image_to_tensor(read_image(source), (256, 256))
    drv = image_to_tensor(list(iter_frames(driving))[2], (256, 256))
    ref = model.generator.animate_frame(src, drv)
    ref = torch.nn.functional.interpolate(ref, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
    ref = (ref[0].permute(1, 2, 0) * 255).numpy()
    assert np.abs(got[2].astype(np.float64) - ref).mean() < 3


@pytest.mark.parametrize(("model", "ckpt", "config", "looks_like"), [
    ("monkeynet", "fomm_small_main_cpk.pth.tar", "mnet_small.yaml", "fomm"),
    ("monkeynet", "x2face_small_model.pth", "mnet_small.yaml", "x2face"),
    ("x2face", "mnet_small_cpk.pth.tar", None, "monkeynet"),
    ("x2face", "fomm_small_main_cpk.pth.tar", None, "fomm"),
    ("fomm", "mnet_small_cpk.pth.tar", "fomm_small_main.yaml", "monkeynet"),
    ("fomm", "x2face_small_model.pth", "fomm_small_main.yaml", "x2face"),
])
def test_wrong_checkpoint_names_the_model_it_looks_like(golden_dir, inputs, tmp_path, capsys, model, ckpt, config,
                                                        looks_like):
    with pytest.raises(CheckpointError, match=f"looks like a {looks_like} checkpoint.*--model {looks_like}"):
        fomm.load_model(None if config is None else golden_dir / config, golden_dir / ckpt, model=model)
    source, driving = inputs
    args = ["animate", "--model", model, "--checkpoint", str(golden_dir / ckpt), "--source", str(source),
            "--driving", str(driving), "-o", str(tmp_path / "o.mp4"), "-q"]
    if config is not None:
        args += ["--config", str(golden_dir / config)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--model {looks_like}" in err and "Traceback" not in err
    assert not (tmp_path / "o.mp4").exists()


def test_monkeynet_needs_a_config(inputs, tmp_path, capsys):
    source, driving = inputs
    assert main(["animate", "--model", "monkeynet", "--random-weights", "--source", str(source), "--driving",
                 str(driving), "-o", str(tmp_path / "o.mp4")]) == 2
    assert "needs --config" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["monkeynet", "x2face"])
def test_reduced_precision_is_refused_for_baselines(inputs, tmp_path, capsys, model):
    """--precision bf16 used to run a baseline in fp32 without a word; it must say so and write nothing."""
    source, driving = inputs
    out = tmp_path / "o.mp4"
    assert main(["animate", "--model", model, "--config", "actions-64", "--random-weights", "--source", str(source),
                 "--driving", str(driving), "--precision", "bf16", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "precision 'bf16'" in err and f"{model} models" in err and "Traceback" not in err
    assert not out.exists()


def test_make_animator_passes_fomm_speed_options():
    model = fomm.load_model("actions-64")
    animator = make_animator(model, precision="bf16", channels_last=True)
    assert type(animator).__name__ == "Animator"
    assert animator.precision == "bf16" and animator.channels_last


def test_make_animator_refuses_reduced_precision_on_onnx():
    from types import SimpleNamespace

    from fomm.errors import InputError

    with pytest.raises(InputError, match="the ONNX backend run in fp32"):
        make_animator(SimpleNamespace(backend="onnx", model="fomm"), precision="fp16")
