"""fomm eval --model monkeynet|x2face (both command forms) on a tiny synthetic test set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import make_strips, tiny_x2face

import fomm
from fomm.cli.main import main
from fomm.eval.protocol import read_generated
from fomm.io.clips import read_clip
from fomm.models.monkeynet import transfer_one


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_strips(tmp_path_factory.mktemp("evaldata") / "ds", n=2, frames=4, size=32, seed=3)


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _summary(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _l1_mean(out: Path) -> float:
    return float(_summary(out)["metrics"]["l1"]["value"])


def test_eval_monkeynet_is_absolute_reconstruction_from_frame_0(golden_dir, data, tmp_path, capsys):
    cfg, ckpt = golden_dir / "mnet_small.yaml", golden_dir / "mnet_small_cpk.pth.tar"
    out = tmp_path / "mnet"
    assert main(["eval", "--model", "monkeynet", "--config", str(cfg), "--checkpoint", str(ckpt),
                 "--data", str(data), "--out", str(out)]) == 0
    assert "L1" in capsys.readouterr().out
    model = fomm.load_model(cfg, ckpt, model="monkeynet")
    for video in sorted((data / "test").iterdir()):
        real = read_clip(video)  # uint8 [T, 32, 32, 3]
        frames = torch.from_numpy(real.astype(np.float32) / 255).permute(0, 3, 1, 2)
        big = _resize(frames, (128, 128))
        ref = transfer_one(model.generator, model.kp_detector, big[:1].unsqueeze(2),
                           big.permute(1, 0, 2, 3)[None])["video_prediction"][0].permute(1, 0, 2, 3)
        ref = (_resize(ref, (32, 32)).clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255)
        got = read_generated(out, video.stem).astype(np.float64)
        assert got.shape == real.shape
        assert np.abs(got - ref).max() <= 1.5
    copy = tmp_path / "copy"
    assert main(["eval", "reconstruction", "--data", str(data), "--out", str(copy)]) == 0
    assert _l1_mean(out) != _l1_mean(copy)


def test_eval_x2face_both_forms_agree(golden_dir, data, tmp_path):
    ckpt = golden_dir / "x2face_small_model.pth"
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["eval", "--model", "x2face", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(a)]) == 0
    assert main(["eval", "reconstruction", str(data), "--out", str(b), "--model", "x2face", "--checkpoint",
                 str(ckpt), "--batch-size", "3"]) == 0
    assert _l1_mean(a) == pytest.approx(_l1_mean(b), abs=1e-6)
    model = fomm.load_model(None, ckpt, model="x2face")
    video = sorted((data / "test").iterdir())[1]
    real = read_clip(video)
    frames = torch.from_numpy(real.astype(np.float32) / 255).permute(0, 3, 1, 2)
    big = _resize(frames, (256, 256))
    ref = model.generator.animate_frame(big[:1].expand(len(big), -1, -1, -1), big)
    ref = _resize(ref, (32, 32)).clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255
    got = read_generated(a, video.stem).astype(np.float64)
    assert got.shape == real.shape and np.abs(got - ref).max() <= 1.5
    assert _summary(a)["model"] == "x2face"


def test_eval_with_a_trained_tiny_x2face_checkpoint(data, tmp_path):
    cfg = tiny_x2face(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--model", "x2face", "--config", str(cfg), "--data", str(data), "--out", str(run),
                 "--workers", "0", "--epochs", "1", "-q"]) == 0
    ckpt = next((run / "checkpoints").glob("*-checkpoint.pth.tar"))
    out = tmp_path / "eval"
    assert main(["eval", "--model", "x2face", "--config", str(run / "config.yaml"), "--checkpoint", str(ckpt),
                 "--data", str(data), "--out", str(out)]) == 0
    assert read_generated(out, "0000").shape == (4, 32, 32, 3)


@pytest.mark.parametrize(("args", "message"), [
    (["eval", "--model", "monkeynet", "--checkpoint", "x.pth"], "--data ROOT"),
    (["eval", "--model", "monkeynet", "--checkpoint", "x.pth", "--data", "{data}", "--out", "{out}"], "--config"),
    (["eval", "--model", "x2face", "--data", "{data}", "--out", "{out}"], "--checkpoint"),
    (["eval", "--model", "nope", "--data", "{data}", "--out", "{out}"], "unknown model"),
    (["eval", "--data", "{data}"], "--out DIR"),
    (["eval", "reconstruction", "{data}", "--data", "{out}", "--out", "{out}"], "two datasets"),
])
def test_eval_usage_errors_are_one_line(data, tmp_path, capsys, args, message):
    argv = [a.format(data=data, out=tmp_path / "o") for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_eval_wrong_checkpoint_names_the_model(golden_dir, data, tmp_path, capsys):
    assert main(["eval", "--model", "x2face", "--checkpoint", str(golden_dir / "mnet_small_cpk.pth.tar"),
                 "--data", str(data), "--out", str(tmp_path / "o")]) == 2
    assert "--model monkeynet" in capsys.readouterr().err
