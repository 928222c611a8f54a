"""``fomm eval`` / ``fomm prepare`` / ``fomm crop`` through the one CLI."""

from __future__ import annotations

import json
import shutil

import pytest

from fomm.cli.main import main
from fomm.io.reading import probe_video


def test_eval_fomm_model_on_actions_clip(tmp_path, golden_dir, data_dir, capsys):
    ds = tmp_path / "ds" / "test"
    ds.mkdir(parents=True)
    shutil.copy(data_dir / "actions" / "test" / sorted(p.name for p in (data_dir / "actions" / "test").iterdir())[0],
                ds / "clip.png")
    out = tmp_path / "run"
    code = main(["eval", "reconstruction", str(tmp_path / "ds"), "--out", str(out), "--model", "fomm",
                 "--config", str(golden_dir / "fomm_small_main.yaml"),
                 "--checkpoint", str(golden_dir / "fomm_small_main_cpk.pth.tar"), "--max-videos", "1"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    text = json.dumps(metrics)
    assert "l1" in text.lower()
    for name in ("metrics.csv", "per_video.csv", "metrics.md"):
        assert (out / name).is_file()
    # Baseline for the same clip: a random-weight model must not be scored identically to copy-the-source.
    base = tmp_path / "base"
    assert main(["eval", "reconstruction", str(tmp_path / "ds"), "--out", str(base)]) == 0
    assert (out / "metrics.csv").read_text() != (base / "metrics.csv").read_text()


def test_eval_fomm_needs_checkpoint(tmp_path, capsys):
    code = main(["eval", "reconstruction", str(tmp_path), "--out", str(tmp_path / "r"), "--model", "fomm"])
    err = capsys.readouterr().err
    assert code == 2 and "--checkpoint" in err and len(err.strip().splitlines()) == 1


def test_prepare_rejects_wrong_metadata(tmp_path, capsys):
    bad = tmp_path / "meta.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    code = main(["prepare", "vox", "--metadata", str(bad), "--videos", str(tmp_path), "-o", str(tmp_path / "o"),
                 "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("fomm: error:") and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_crop_cli_on_shared_face_clip(tmp_path, data_dir, capsys):
    pytest.importorskip("dlib")
    out = tmp_path / "crop.mp4"
    assert main(["crop", "--video", str(data_dir / "faces/liveportrait/driving/d0.mp4"), "-o", str(out),
                 "--size", "64", "-q"]) == 0
    written = sorted(tmp_path.glob("crop*.mp4"))
    assert written
    info = probe_video(written[0])
    assert (info.width, info.height) == (64, 64) and info.num_frames >= 8
