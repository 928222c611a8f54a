"""Depth (issue #19): warped source depth, background fill, files, estimators, ``fomm depth`` and ``--export-depth``."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
from conftest import DATA
from helpers import tiny_config
from hostile import assert_refused, run_main
from PIL import Image

from fomm.animate.outputs import FrameOutputs
from fomm.compositing.depth import (
    CONVENTION,
    AlignConfig,
    DepthFolderWriter,
    DepthOptions,
    VideoDepthAligner,
    make_estimator,
    read_depth,
    read_sidecar,
    warp_depth,
    write_depth,
)
from fomm.io.writing import VideoWriter


def _identity_grid(h: int, w: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return torch.stack([xs, ys], -1)[None]


def _outputs(grid: torch.Tensor, occlusion: torch.Tensor | None = None, aligned: bool = True) -> FrameOutputs:
    h, w = grid.shape[1:3]
    return FrameOutputs(prediction=torch.zeros(1, 3, h, w), deformation=grid, occlusion_map=occlusion, aligned=aligned)


def _scene(h: int = 48, w: int = 64) -> np.ndarray:
    """Background at 0.1 with a near square (0.9) in the middle and a gentle ramp, so shifts are visible."""
    d = np.full((h, w), 0.1, np.float32) + np.linspace(0, 0.05, w, dtype=np.float32)[None]
    d[16:32, 24:40] = 0.9
    return d


# --- temporal: the source's depth moved with the animation ---------------------------------------------------------

def test_identity_deformation_returns_the_source_depth():
    src = _scene()
    out = warp_depth(src, _outputs(_identity_grid(*src.shape), torch.ones(1, 1, *src.shape)))
    assert out.dtype == np.float32 and out.shape == src.shape
    assert np.array_equal(out, src)
    # the same from a coarse motion grid resized the way an aligned generator resizes it
    out = warp_depth(src, _outputs(_identity_grid(12, 16), None, aligned=True))
    assert np.array_equal(out, src)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_translating_deformation_shifts_the_depth_by_k_pixels(k):
    src = _scene()
    h, w = src.shape
    grid = _identity_grid(h, w)
    grid[..., 0] -= 2.0 * k / (w - 1)  # output pixel x takes the source at x - k: content moves right by k
    out = warp_depth(src, _outputs(grid))
    assert np.array_equal(out[:, k:], src[:, :-k])
    assert not np.allclose(out, src, atol=1e-3)


def test_disoccluded_regions_get_background_depth_never_foreground():
    src = _scene()
    h, w = src.shape
    occ = torch.ones(1, 1, h, w)
    occ[..., 12:36, 18:32] = 0.0  # newly visible: half the near square and the background left of it
    out = warp_depth(src, _outputs(_identity_grid(h, w), occ))
    hole = out[12:36, 18:32]
    background = src[src < 0.5]
    assert hole.max() <= background.max() + 1e-6, "a disoccluded pixel took foreground depth"
    assert hole.min() >= background.min() - 1e-6
    keep = np.ones((h, w), bool)
    keep[12:36, 18:32] = False
    np.testing.assert_allclose(out[keep], src[keep], atol=1e-6)  # visible pixels are untouched
    # soft occlusion blends towards the fill, never above the warped depth
    occ[..., 12:36, 18:32] = 0.25
    soft = warp_depth(src, _outputs(_identity_grid(h, w), occ))[12:36, 18:32]
    assert np.all(soft <= src[12:36, 18:32] + 1e-6) and np.all(soft >= hole - 1e-6)


def test_aligner_removes_per_frame_scale_and_shift_and_resets_at_cuts():
    rng = np.random.default_rng(0)
    base = _scene()
    frame = np.full((*base.shape, 3), 120, np.uint8)
    cut_frame = np.zeros_like(frame)
    cut_frame[..., 2] = 250
    aligner = VideoDepthAligner(AlignConfig(momentum=0.2))
    outs = []
    for t in range(8):
        s, b = rng.uniform(0.6, 1.0), rng.uniform(0.0, 0.2)
        est = np.clip(s * base + b, 0, 1).astype(np.float32)
        outs.append(aligner(cut_frame if t == 5 else frame, est))
    diffs = [np.abs(outs[t] - outs[t - 1]).mean() / outs[t - 1].mean() for t in (1, 2, 3, 4)]
    assert max(diffs) < 0.01
    assert aligner.cuts == [0, 5, 6]


# --- files ------------------------------------------------------------------------------------------------------

def test_round_trips_png16_exr_npy_and_sidecar(tmp_path):
    rng = np.random.default_rng(1)
    depth = rng.random((37, 53)).astype(np.float32)
    depth[0, 0], depth[0, 1] = 0.0, 1.0
    for ext, tol in ((".png", 0.5 / 65535 + 1e-7), (".exr", 0.0), (".npy", 0.0)):
        path = write_depth(tmp_path / f"d{ext}", depth, {"estimator": "test"})
        back = read_depth(path)
        assert back.dtype == np.float32 and back.shape == depth.shape
        assert np.abs(back - depth).max() <= tol, ext
        meta = read_sidecar(path)
        assert meta["convention"] == CONVENTION and meta["near"] == 1 and meta["far"] == 0
        assert (meta["width"], meta["height"], meta["estimator"], meta["format"]) == (53, 37, "test", ext[1:])
    import OpenEXR

    with OpenEXR.File(str(tmp_path / "d.exr"), separate_channels=True) as f:
        assert list(f.channels()) == ["Z"] and f.header()["fommConvention"] == CONVENTION
    with DepthFolderWriter(tmp_path / "seq", fps="30000/1001", fmt="exr", meta={"estimator": "test"}) as sink:
        for t in range(3):
            sink.write(depth * (t + 1) / 3)
    meta = read_sidecar(tmp_path / "seq")
    assert (meta["fps"], meta["num_frames"]) == ("30000/1001", 3)
    assert np.array_equal(read_depth(tmp_path / "seq" / "000002.exr"), depth * 3 / 3)
    assert sorted(p.name for p in (tmp_path / "seq").iterdir()) == ["000000.exr", "000001.exr", "000002.exr",
                                                                     "depth.json"]


# --- estimators -------------------------------------------------------------------------------------------------

@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")

    for name in ("connect", "connect_ex", "sendto", "sendall"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_tiny_depth_anything_loads_from_a_folder_and_runs_offline(tmp_path, no_network):
    transformers = pytest.importorskip("transformers")
    backbone = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                         intermediate_size=64, patch_size=14, image_size=56,
                                         out_features=["stage1", "stage2", "stage3", "stage4"],
                                         reshape_hidden_states=False)
    cfg = transformers.DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, patch_size=14,
                                           neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16,
                                           head_hidden_size=8)
    torch.manual_seed(0)
    transformers.DepthAnythingForDepthEstimation(cfg).save_pretrained(tmp_path / "tiny-da")
    image = np.random.default_rng(2).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    for name in ("depth-anything", "auto"):
        est = make_estimator(DepthOptions(estimator=name, model=str(tmp_path / "tiny-da"), input_size=56))
        assert est.name == "depth-anything"
        depth = est(image)
        assert depth.dtype == np.float32 and depth.shape == (45, 61)
        assert depth.min() >= 0.0 and depth.max() <= 1.0 and depth.max() > depth.min()


def test_portrait_puts_the_face_in_front_of_the_background_corners():
    pytest.importorskip("mediapipe")
    from mediapipe.python.solutions import face_detection

    from fomm.io.image import read_image

    image = read_image(DATA / "faces" / "tpsmm" / "source.png")
    h, w = image.shape[:2]
    # The face box comes from mediapipe's face *detector*, not from the mesh the estimator uses.
    with face_detection.FaceDetection(model_selection=0) as det:
        box = det.process(image).detections[0].location_data.relative_bounding_box
    x0, y0 = int(box.xmin * w), int(box.ymin * h)
    x1, y1 = int((box.xmin + box.width) * w), int((box.ymin + box.height) * h)
    est = make_estimator(DepthOptions(estimator="portrait"))
    try:
        depth = est(image)
    finally:
        est.close()
    assert depth.shape == (h, w) and depth.min() >= 0 and depth.max() <= 1
    c = min(h, w) // 10
    corners = np.mean([depth[:c, :c].mean(), depth[:c, -c:].mean(), depth[-c:, :c].mean(), depth[-c:, -c:].mean()])
    face = depth[y0:y1, x0:x1].mean()
    assert face > corners + 0.3, (face, corners)


# --- the commands -----------------------------------------------------------------------------------------------

def _clip(path, frames: int, size: int = 64, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with VideoWriter(path, fps=25) as w:
        for _ in range(frames):
            w.write(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _grey_clip(path, frames: int, size: int = 48) -> None:
    with VideoWriter(path, fps=25) as w:
        for t in range(frames):
            w.write(np.full((size, size, 3), 40 + 20 * t, np.uint8))


def test_fomm_depth_converts_a_depth_video_to_exr_frames(tmp_path):
    _clip(tmp_path / "clip.mp4", 4)
    _grey_clip(tmp_path / "depth.mp4", 4)
    res = run_main(["depth", tmp_path / "clip.mp4", "-o", tmp_path / "out", "--depth-file", tmp_path / "depth.mp4",
                    "--depth-format", "exr", "-q"])
    assert res.rc == 0, res.stderr
    assert "resized to the frames' 64x64" in res.stderr  # the note about the size
    meta = json.loads((tmp_path / "out" / "depth.json").read_text())
    assert (meta["estimator"], meta["num_frames"], meta["width"], meta["fps"]) == ("file", 4, 64, "25/1")
    d0, d3 = read_depth(tmp_path / "out" / "000000.exr"), read_depth(tmp_path / "out" / "000003.exr")
    assert d0.shape == (64, 64) and d3.mean() > d0.mean() + 0.15


def test_animate_export_depth_writes_one_depth_frame_per_video_frame(tmp_path):
    src = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(src).save(tmp_path / "src.png")
    np.save(tmp_path / "src-depth.npy", _scene(32, 32))
    _clip(tmp_path / "drv.mp4", 5, size=32)
    res = run_main(["animate", "--config", tiny_config(tmp_path), "--random-weights", "--source", tmp_path / "src.png",
                    "--driving", tmp_path / "drv.mp4", "-o", tmp_path / "out.mp4", "-q", "--export-depth",
                    tmp_path / "depth", "--depth-file", tmp_path / "src-depth.npy"])
    assert res.rc == 0, res.stderr
    meta = read_sidecar(tmp_path / "depth")
    assert (meta["num_frames"], meta["width"], meta["fps"], meta["estimator"]) == (5, 32, "25/1", "file")
    frames = sorted((tmp_path / "depth").glob("*.png"))
    assert len(frames) == 5 and all(0 <= read_depth(f).min() <= read_depth(f).max() <= 1 for f in frames)


def test_bad_depth_input_is_refused_with_one_line(tmp_path):
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(tmp_path / "img.png")
    out = tmp_path / "out.png"
    common = ["depth", tmp_path / "img.png", "-o", out, "-q"]
    outs = [out, tmp_path / "out.png.json"]

    (tmp_path / "notimage.png").write_text("this is not a picture\n")
    assert_refused([*common, "--depth-file", tmp_path / "notimage.png"], inputs=[tmp_path / "notimage.png"],
                   outputs=outs, match="not an image")

    for bad in (np.nan, np.inf):
        arr = np.full((40, 40), 0.5, np.float32)
        arr[3, 4] = bad
        np.save(tmp_path / "bad.npy", arr)
        assert_refused([*common, "--depth-file", tmp_path / "bad.npy"], inputs=[tmp_path / "bad.npy"], outputs=outs,
                       match="NaN/inf")

    import OpenEXR

    plane = np.full((40, 40), 0.5, np.float32)
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                      {"foo": plane, "bar": plane}) as f:
        f.write(str(tmp_path / "nochannel.exr"))
    assert_refused([*common, "--depth-file", tmp_path / "nochannel.exr"], inputs=[tmp_path / "nochannel.exr"],
                   outputs=outs, match="no usable depth channel")

    (tmp_path / "empty-model").mkdir()
    assert_refused([*common, "--depth-estimator", "depth-anything", "--depth-model", tmp_path / "empty-model"],
                   inputs=[tmp_path / "empty-model"], outputs=outs, match="config.json")

    _clip(tmp_path / "clip.mp4", 6)
    _grey_clip(tmp_path / "short.mp4", 3)
    vouts = [tmp_path / "vout"]
    assert_refused(["depth", tmp_path / "clip.mp4", "-o", tmp_path / "vout", "--depth-file", tmp_path / "short.mp4",
                    "-q"], inputs=[tmp_path / "clip.mp4", tmp_path / "short.mp4"], outputs=vouts,
                   match="3 depth frames")

    folder = tmp_path / "dfolder"
    folder.mkdir()
    for i in (0, 1, 3, 4, 5, 6):
        np.save(folder / f"{i:06d}.npy", np.full((64, 64), 0.5, np.float32))
    assert_refused(["depth", tmp_path / "clip.mp4", "-o", tmp_path / "vout", "--depth-file", folder, "-q"],
                   inputs=[tmp_path / "clip.mp4", folder], outputs=vouts, match="depth frame 2 is missing")

    assert_refused(["depth", tmp_path / "clip.mp4", "-o", tmp_path / "one.png", "--depth-estimator", "portrait"],
                   inputs=[tmp_path / "clip.mp4"], outputs=[tmp_path / "one.png"], match="give a folder")


def test_the_estimator_table_matches_the_names_options_accept():
    from fomm.compositing.depth import ESTIMATORS, estimator_names
    from fomm.compositing.depth.base import ESTIMATOR_NAMES

    assert set(ESTIMATORS) == set(ESTIMATOR_NAMES) and estimator_names()[0] == "auto"
