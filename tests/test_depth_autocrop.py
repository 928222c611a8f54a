"""``fomm animate --auto-crop`` with a depth pass: the full photo's depth with the face crop's moved depth pasted back
like the colour (same box, same feathered mask, same resize to ``--size``), so compositing sees a full-frame depth
that matches the full-frame video.

The photos are synthetic and the face boxes are set (the detector is replaced), so every crop region is known; the
depth is given as an NPY file of the full photo and exported as NPY, so comparisons are exact where they should be.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
import torch
import yaml
from helpers import tiny_config
from hostile import assert_refused, run_main
from PIL import Image

from fomm.animate.outputs import FrameOutputs
from fomm.animate.stages import StageContext
from fomm.compositing.depth import DepthPassStage, read_depth, read_sidecar, resize_depth
from fomm.crop.paste import PasteBack, feather_mask
from fomm.errors import InputError
from fomm.io import probe_video, read_frames_at

PHOTO_HW = (96, 128)
FACE = (40, 16, 104, 80)  # 64x64: with --crop-increase 0 the crop box itself, twice the tiny model's 32
FRAMES = 4


def _photo_depth(h: int, w: int) -> np.ndarray:
    """Smooth and steep enough that a shift of a few pixels shows: a ramp in x plus a round bump, in [0.1, 0.9]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = 0.1 + 0.4 * xx / (w - 1) + 0.4 * np.exp(-((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (2 * (w / 5) ** 2))
    return d.astype(np.float32)


def _grid(h: int, w: int, shift_px: float = 0.0) -> torch.Tensor:
    """An ``align_corners=True`` sampling grid ``[1, h, w, 2]``: identity, or content moved right by ``shift_px``."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return torch.stack([xs - 2.0 * shift_px / (w - 1), ys], -1)[None]


def _outputs(size: int, shift_px: float = 0.0) -> FrameOutputs:
    return FrameOutputs(prediction=torch.zeros(1, 3, size, size), deformation=_grid(size, size, shift_px),
                        aligned=True)


def _box_mask(paste: PasteBack) -> np.ndarray:
    """The paste's feathered mask placed in the photo: 0 outside the box."""
    left, top, right, bottom = paste.box
    full = np.zeros(paste.size, np.float32)
    full[top:bottom, left:right] = feather_mask(bottom - top, right - left, 0.1)
    return full


# --- the stage on its own, with motions whose result is known ------------------------------------------------

def _stage(box, model: int = 32, output=PHOTO_HW) -> tuple[DepthPassStage, PasteBack, np.ndarray]:
    photo = np.zeros((*PHOTO_HW, 3), np.uint8)
    depth = _photo_depth(*PHOTO_HW)
    paste = PasteBack(photo, box, 0.1)
    stage = DepthPassStage(depth)
    stage.begin(StageContext((model, model), output, Fraction(25), FRAMES, paste))
    return stage, paste, depth


def test_box_the_models_size_moves_the_crop_and_leaves_the_rest_bit_for_bit():
    box = (50, 30, 82, 62)  # 32x32, the model's size: no resampling anywhere
    stage, paste, depth = _stage(box)
    frame = np.zeros((*PHOTO_HW, 3), np.uint8)
    same = stage(frame, _outputs(32))["depth"]
    assert same.shape == PHOTO_HW and np.array_equal(same, depth)

    k = 3
    moved = stage(frame, _outputs(32, k))["depth"]
    mask = _box_mask(paste)
    assert np.array_equal(moved[mask == 0], depth[mask == 0])
    shifted = depth.copy()
    shifted[30:62, 50 + k:82] = depth[30:62, 50:82 - k]  # the crop's content, k pixels right, inside the box
    inner = mask == 1
    assert inner.sum() > 300 and np.array_equal(moved[inner], shifted[inner])
    feather = (mask > 0) & (mask < 1)
    feather[:, 50:50 + k] = False  # the columns the motion pulls from outside the crop are filled, not shifted
    expect = depth + (shifted - depth) * mask
    np.testing.assert_allclose(moved[feather], expect[feather], atol=1e-6)
    assert not np.allclose(moved, depth, atol=1e-2)


def test_a_larger_box_scales_the_motion_and_size_resizes_like_the_frame():
    box = FACE  # 64x64 box for a 32x32 model: a 2-pixel move in the crop is 4 photo pixels
    stage, paste, depth = _stage(box)
    frame = np.zeros((*PHOTO_HW, 3), np.uint8)
    moved = stage(frame, _outputs(32, 2))["depth"]
    mask = _box_mask(paste)
    assert np.array_equal(moved[mask == 0], depth[mask == 0])
    left, top, right, bottom = box
    shifted = np.roll(depth, 4, axis=1)
    inner = mask == 1
    inner[:, :left + 8] = False  # away from the filled columns and the upsampling's edge
    # Upsampling the 32-pixel crop to 64 smooths the bump by under 0.001; a 2-pixel move would be off by 0.024.
    np.testing.assert_allclose(moved[inner], shifted[inner], atol=0.004)
    assert np.abs(depth[inner] - shifted[inner]).max() > 0.02

    out_hw = (48, 64)  # --size 64x48: the frame stage's resize, applied to the photo-sized pass
    small = stage(np.zeros((*out_hw, 3), np.uint8), _outputs(32, 2))["depth"]
    assert small.shape == out_hw and np.array_equal(small, resize_depth(moved, out_hw))


def test_without_a_paste_the_stage_moves_the_whole_source_as_before():
    depth = _photo_depth(32, 32)
    stage = DepthPassStage(depth)
    stage.begin(StageContext((32, 32), (32, 32), Fraction(25), 1))
    out = stage(np.zeros((32, 32, 3), np.uint8), _outputs(32, 2))["depth"]
    assert np.array_equal(out[:, 2:], depth[:, :-2])


# --- fomm animate --auto-crop, in-process ------------------------------------------------------------------------

@pytest.fixture
def scene(tmp_path, monkeypatch):
    """A random-texture photo with a known face box, its depth (NPY, the photo's size), a driving folder of equal
    frames, and a tiny model whose deformation resizes exactly (``align_deformation``) and has no occlusion map."""
    rng = np.random.default_rng(5)
    photo = rng.integers(0, 256, (*PHOTO_HW, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    np.save(tmp_path / "photo-depth.npy", _photo_depth(*PHOTO_HW))
    (tmp_path / "drv").mkdir()
    face = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for i in range(FRAMES):
        Image.fromarray(face).save(tmp_path / "drv" / f"{i:04d}.png")
    cfg_path = tiny_config(tmp_path)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["model_params"]["generator_params"].update(align_deformation=True, estimate_occlusion_map=False)
    cfg_path.write_text(yaml.safe_dump(cfg))

    monkeypatch.setattr("fomm.crop.detect.find_face_box", lambda image, backend="auto": FACE)
    monkeypatch.setattr("fomm.animate.autocrop.driving_face_box",
                        lambda path, increase=None, **kw: ((0, 0, 32, 32), (0, 0, 32, 32)))
    args = ["animate", "--config", cfg_path, "--random-weights", "--source", tmp_path / "photo.png",
            "--driving", tmp_path / "drv", "--auto-crop", "--crop-increase", "0", "--no-adapt-scale", "-q"]
    return tmp_path, photo, args


def _shift_motion(monkeypatch, shift_px: float) -> None:
    """Every animated frame's motion becomes a known move right by ``shift_px`` model pixels (the colour stays the
    model's), so the depth pass has an answer to compare with."""
    from fomm.animate.fomm import Animator

    original = Animator.animate_outputs

    def moved(self, frames):
        out = original(self, frames)
        b, _, h, w = out.prediction.shape
        return dataclasses.replace(out, deformation=_grid(h, w, shift_px).expand(b, -1, -1, -1), occlusion_map=None,
                                   aligned=True)

    monkeypatch.setattr(Animator, "animate_outputs", moved)


def test_export_depth_is_the_photo_depth_with_the_moved_face_pasted_in(scene, monkeypatch):
    tmp_path, photo, args = scene
    _shift_motion(monkeypatch, 2)  # 4 photo pixels in the 64-pixel box
    res = run_main([*args, "-o", f"{tmp_path}/frames/", "--export-depth", tmp_path / "depth",
                    "--depth-file", tmp_path / "photo-depth.npy", "--depth-format", "npy"])
    assert res.rc == 0, res.stderr
    video = probe_video(tmp_path / "frames")
    files = sorted((tmp_path / "depth").glob("*.npy"))
    assert len(files) == video.num_frames == FRAMES
    meta = read_sidecar(tmp_path / "depth")
    assert (meta["num_frames"], meta["height"], meta["width"]) == (FRAMES, *PHOTO_HW)
    depth = _photo_depth(*PHOTO_HW)
    paste = PasteBack(photo, FACE, 0.1)
    mask = _box_mask(paste)
    left = FACE[0]
    inner = mask == 1
    inner[:, :left + 8] = False
    for i, (path, frame) in enumerate(zip(files, read_frames_at(tmp_path / "frames", range(FRAMES)), strict=True)):
        d = read_depth(path)
        assert d.shape == PHOTO_HW == frame.shape[:2]
        assert np.array_equal(d[mask == 0], depth[mask == 0]), f"frame {i}: depth changed outside the box"
        np.testing.assert_allclose(d[inner], np.roll(depth, 4, axis=1)[inner], atol=0.004)
        # the colour changed exactly where the depth may: inside the same box
        assert np.array_equal(frame[mask == 0], photo[mask == 0])


def test_identity_motion_gives_the_photo_depth_at_the_output_size(scene):
    """The tiny model's own motion for equal driving frames is the identity: the face crop's depth comes back where
    it was cut (resampled 64 -> 32 -> 64 inside the box), the rest is the photo's depth resized like the frame."""
    tmp_path, photo, args = scene
    res = run_main([*args, "-o", f"{tmp_path}/frames/", "--size", "64x48", "--export-depth", tmp_path / "depth",
                    "--depth-file", tmp_path / "photo-depth.npy", "--depth-format", "npy"])
    assert res.rc == 0, res.stderr
    files = sorted((tmp_path / "depth").glob("*.npy"))
    assert len(files) == probe_video(tmp_path / "frames").num_frames == FRAMES
    full = _photo_depth(*PHOTO_HW)
    expect = resize_depth(full, (48, 64))
    far = np.ones((48, 64), bool)
    far[16 // 2 - 2:80 // 2 + 2, 40 // 2 - 2:104 // 2 + 2] = False  # the box at half size, plus the resize's reach
    for path in files:
        d = read_depth(path)
        assert d.shape == (48, 64)
        assert np.array_equal(d[far], expect[far])
        np.testing.assert_allclose(d, expect, atol=0.01)


def test_parallax_and_stereo_run_with_auto_crop_on_the_estimated_photo_depth(scene):
    tmp_path, _, args = scene
    res = run_main([*args, "-o", tmp_path / "sbs.mp4", "--stereo", "sbs", "--parallax", "swing",
                    "--export-depth", tmp_path / "depth"])  # the default estimator, on the full photo
    assert res.rc == 0, res.stderr
    info = probe_video(tmp_path / "sbs.mp4")
    assert (info.height, info.width, info.num_frames) == (PHOTO_HW[0], 2 * PHOTO_HW[1], FRAMES)
    files = sorted((tmp_path / "depth").glob("*.png"))
    assert len(files) == FRAMES and all(read_depth(f).shape == PHOTO_HW for f in files)


def test_nothing_is_written_when_an_auto_crop_depth_run_fails(scene, monkeypatch):
    tmp_path, _, args = scene
    outs = [tmp_path / "out.mp4", tmp_path / "depth"]
    common = [*args, "-o", tmp_path / "out.mp4", "--export-depth", tmp_path / "depth",
              "--depth-file", tmp_path / "photo-depth.npy"]
    inputs = [tmp_path / "photo.png", tmp_path / "drv", tmp_path / "photo-depth.npy"]

    from fomm.animate.fomm import Animator

    original = Animator.animate_outputs
    calls = []

    def fails_later(self, frames):
        calls.append(len(frames))
        if len(calls) > 1:
            raise InputError("the driving video broke off")
        return original(self, frames)

    monkeypatch.setattr(Animator, "animate_outputs", fails_later)
    assert_refused([*common, "--batch-size", "1"], inputs=inputs, outputs=outs, match="broke off")
    assert len(calls) > 1  # it failed after depth frames were made

    monkeypatch.setattr("fomm.crop.detect.find_face_box", lambda image, backend="auto": None)
    assert_refused(common, inputs=inputs, outputs=outs, match="no face found in the source image")
