"""The reconstruction protocol end to end: frame readers, resume, per-video failures, reports, compare()."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fomm.errors import FommError, InputError
from fomm.eval import protocol as P
from fomm.eval.report import compare
from fomm.io.clips import list_videos, read_clip

REPORT_FILES = [
    "metrics.json",
    "metrics.csv",
    "per_video.csv",
    "metrics.md",
    "plots/metric_distribution.png",
    "plots/l1_over_time.png",
    "qualitative.png",
]


class BrightCentroid:
    """Fake landmark backend: one keypoint at the centroid of bright pixels; nothing detected on dark frames."""

    info = {"name": "bright-centroid", "version": "test"}

    def detect(self, frame):
        ys, xs = np.nonzero(frame.mean(axis=2) > 128)
        if xs.size == 0:
            return None
        return np.array([[xs.mean(), ys.mean()]])


def _moving_square(t: int = 6, size: int = 32, start: int = 0) -> np.ndarray:
    v = np.zeros((t, size, size, 3), np.uint8)
    for i in range(t):
        v[i, 8 : 16, start + i : start + i + 8] = 255
    return v


def _write_strip(path: Path, video: np.ndarray) -> None:
    Image.fromarray(np.concatenate(list(video), axis=1)).save(path, format="PNG")


@pytest.fixture()
def toy_dataset(tmp_path) -> Path:
    root = tmp_path / "toy"
    (root / "test").mkdir(parents=True)
    _write_strip(root / "test" / "a.png", _moving_square())
    frames = root / "test" / "b"
    frames.mkdir()
    for i, f in enumerate(_moving_square(start=4)):
        Image.fromarray(f).save(frames / f"{i:03d}.png")
    return root


def test_frame_readers(toy_dataset, data_dir):
    assert [p.name for p in list_videos(toy_dataset)] == ["a.png", "b"]
    np.testing.assert_array_equal(read_clip(toy_dataset / "test" / "a.png"), _moving_square())
    np.testing.assert_array_equal(read_clip(toy_dataset / "test" / "b"), _moving_square(start=4))
    actions = read_clip(data_dir / "actions/test/00000002.jpg")  # PNG data named .jpg, RGBA
    assert actions.shape == (61, 64, 64, 3) and actions.dtype == np.uint8
    bad = toy_dataset / "bad.png"
    Image.fromarray(np.zeros((10, 25, 3), np.uint8)).save(bad)
    with pytest.raises(InputError, match="multiple of height"):
        read_clip(bad)
    with pytest.raises(InputError, match="does not exist"):
        list_videos(toy_dataset / "nope")


def test_copy_source_reconstructor_repeats_the_source():
    src = np.random.default_rng(0).random((4, 4, 3)).astype(np.float32)
    out = list(P.copy_source_reconstructor(src, iter([src * 0] * 3)))
    assert len(out) == 3 and all(np.array_equal(o, src) for o in out)


def test_identity_reconstruction_scores_zero(toy_dataset, tmp_path):
    out = tmp_path / "run"

    def identity(source, driving):
        yield from driving

    s = P.evaluate_reconstruction(toy_dataset, out, identity, suite=P.MetricSuite(landmarks=BrightCentroid()),
                                  model_name="identity", progress=False)
    assert s["metrics"]["l1"]["value"] == 0.0 and s["metrics"]["akd"]["value"] == 0.0
    assert s["videos"]["scored"] == 2


def test_copy_source_known_scores_and_reports(toy_dataset, tmp_path):
    out = tmp_path / "run"
    suite = P.MetricSuite(landmarks=BrightCentroid())
    s = P.evaluate_reconstruction(toy_dataset, out, P.copy_source_reconstructor, suite=suite,
                                  model_name="copy-source", progress=False)
    # The square moves 1 px right per frame at 32 px: the copied source is i px off at frame i -> AKD i/2 * 256/32.
    expected_akd = np.mean([i / 2 * 8 for i in range(6)])
    assert s["metrics"]["akd"]["value"] == pytest.approx(expected_akd)
    # L1: at frame i the two 8x8 squares differ on 2*min(i,8)*8 pixels of 32*32, all channels by 1.
    expected_l1 = np.mean([2 * min(i, 8) * 8 / (32 * 32) for i in range(6)])
    assert s["metrics"]["l1"]["value"] == pytest.approx(expected_l1)
    assert s["dataset"] == "toy" and s["model"] == "copy-source"
    assert s["backends"]["landmarks"]["name"] == "bright-centroid"
    for f in REPORT_FILES:
        assert (out / f).is_file(), f
    # generated frames are saved losslessly: they equal the source frame exactly
    gen = read_clip(out / "generated" / "a")
    assert np.array_equal(gen, np.repeat(_moving_square()[:1], 6, axis=0))
    rows = list(csv.DictReader((out / "per_video.csv").open()))
    assert [r["video"] for r in rows] == ["a", "b"] and all(r["status"] == "ok" for r in rows)
    assert "| AKD |" in (out / "metrics.md").read_text()
    grid = np.asarray(Image.open(out / "qualitative.png"))
    assert grid.shape[0] > 3 * 96  # two videos x three rows


def test_resume_skips_finished_videos_and_rescore_needs_no_model(toy_dataset, tmp_path):
    out = tmp_path / "run"
    calls: list[int] = []

    def counting(source, driving):
        calls.append(1)
        yield from P.copy_source_reconstructor(source, driving)

    P.evaluate_reconstruction(toy_dataset, out, counting, max_videos=1, progress=False)
    assert len(calls) == 1
    s = P.evaluate_reconstruction(toy_dataset, out, counting, progress=False)
    assert len(calls) == 2  # only the second video was reconstructed
    assert s["generation"] == {"ok": 1, "skipped": 1, "failed": 0}
    first = json.loads((out / "metrics.json").read_text())["metrics"]["l1"]["value"]
    # metrics are recomputed from the saved frames without the model
    s2 = P.evaluate_reconstruction(toy_dataset, out, None, progress=False)
    assert s2["metrics"]["l1"]["value"] == first and len(calls) == 2


def test_per_video_failures_are_recorded_not_fatal(toy_dataset, tmp_path):
    (toy_dataset / "test" / "c.png").write_bytes(b"not an image")
    out = tmp_path / "run"

    def drops_a_frame(source, driving):
        frames = list(driving)
        if frames[0][8:16].max() > 0 and frames[0][8, :4].max() > 0:  # video "a" (square starts at x=0)
            frames = frames[:-1]
        yield from frames

    s = P.evaluate_reconstruction(toy_dataset, out, drops_a_frame, progress=False)
    failed = {f["video"]: f["error"] for f in s["videos"]["failed"]}
    assert set(failed) == {"a", "c"}
    assert "5 frames for 6 driving frames" in failed["a"]
    assert "c.png: not an image" in failed["c"]  # fomm's one message for it, as every image reader words it
    assert s["videos"]["scored"] == 1 and s["metrics"]["l1"]["videos_scored"] == 1
    rows = {r["video"]: r for r in csv.DictReader((out / "per_video.csv").open())}
    assert rows["c"]["status"] == "failed" and "not an image" in rows["c"]["error"]
    assert "Failed videos" in (out / "metrics.md").read_text()


def test_no_detection_is_counted(toy_dataset, tmp_path):
    out = tmp_path / "run"

    def black(source, driving):
        for f in driving:
            yield np.zeros_like(f)

    s = P.evaluate_reconstruction(toy_dataset, out, black, suite=P.MetricSuite(landmarks=BrightCentroid()),
                                  progress=False)
    akd = s["metrics"]["akd"]
    assert akd["frames_missing_generated"] == 12 and akd["frames_scored"] == 0 and akd["value"] is None
    assert s["metrics"]["l1"]["frames_scored"] == 12


def test_missing_dataset_or_run_raises_before_writing(toy_dataset, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        P.evaluate_reconstruction(tmp_path / "nope", tmp_path / "run", P.copy_source_reconstructor, progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(InputError, match="no earlier run"):
        P.evaluate_reconstruction(toy_dataset, tmp_path / "run", None, progress=False)
    assert not (tmp_path / "run").exists()


def test_compare_lays_out_models_by_dataset(tmp_path):
    def fake_run(name, model, dataset, metrics):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps(
            {"model": model, "dataset": dataset, "metrics": {k: {"value": v} for k, v in metrics.items()}}))
        return d

    dirs = [
        fake_run("r1", "copy-source", "taichi", {"l1": 0.1, "akd": 10.0, "mkr": 0.2}),
        fake_run("r2", "copy-source", "vox", {"l1": 0.05, "akd": 5.0, "aed": 0.4}),
        fake_run("r3", "fomm", "taichi", {"l1": 0.06, "akd": 6.5, "mkr": 0.03}),
    ]
    table = compare(dirs).splitlines()
    assert table[0] == "| model | taichi L1 | taichi AKD | taichi MKR | vox L1 | vox AKD | vox AED |"
    assert table[2] == "| copy-source | 0.1000 | 10.00 | 0.200 | 0.0500 | 5.00 | 0.400 |"
    assert table[3] == "| fomm | 0.0600 | 6.50 | 0.030 | - | - | - |"
    with pytest.raises(InputError, match="fomm eval"):
        compare([tmp_path / "missing"])


@pytest.mark.slow
def test_actions_end_to_end_with_mediapipe(data_dir, tmp_path):
    pytest.importorskip("mediapipe")
    root = tmp_path / "actions"
    (root / "test").mkdir(parents=True)
    for name in ("00000002.jpg", "00000004.jpg"):
        shutil.copy(data_dir / "actions" / "test" / name, root / "test" / name)
    out = tmp_path / "run"
    s = P.evaluate_reconstruction(root, out, P.copy_source_reconstructor, kind="bodies", model_name="copy-source",
                                  progress=False)
    for f in REPORT_FILES:
        assert (out / f).is_file(), f
    m = s["metrics"]
    assert set(m) == {"l1", "akd", "mkr"} and s["videos"]["scored"] == 2
    assert 0 < m["l1"]["value"] < 0.2 and m["akd"]["value"] > 1.0 and 0 <= m["mkr"]["value"] < 0.5
    assert m["akd"]["backend"] == "mediapipe-pose" and m["akd"]["frames_scored"] + m["akd"]["frames_missing_real"] \
        + m["akd"]["frames_missing_generated"] == 61 + 103
    # a second run skips both videos and reuses their cached scores
    s2 = P.evaluate_reconstruction(root, out, P.copy_source_reconstructor, kind="bodies", model_name="copy-source",
                                   progress=False)
    assert s2["generation"]["skipped"] == 2 and s2["metrics"] == s["metrics"]
    assert "actions L1" in compare([out])


def test_cli_wiring_runs_copy_source_and_compare(toy_dataset, tmp_path):
    import argparse

    from fomm.eval.cli import add_eval_parser, run_eval

    parser = argparse.ArgumentParser(prog="fomm")
    add_eval_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "run"
    argv = ["eval", "reconstruction", str(toy_dataset), "--out", str(out), "--max-videos", "1"]
    text = run_eval(parser.parse_args(argv))
    assert "| L1 |" in text and (out / "metrics.json").is_file()
    assert json.loads((out / "metrics.json").read_text())["videos"]["total"] == 1
    table_file = tmp_path / "table.md"
    table = run_eval(parser.parse_args(["eval", "compare", str(out), "--out", str(table_file)]))
    assert table.startswith("| model | toy L1 |") and table_file.read_text() == table
    with pytest.raises(FommError, match="unknown model"):
        run_eval(parser.parse_args(["eval", "reconstruction", str(toy_dataset), "--out", str(out), "--model", "fomm"]))
