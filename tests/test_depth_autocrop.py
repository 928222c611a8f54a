"""``fomm animate --auto-crop`` with a depth pass: the full photo's depth with the face crop's moved depth pasted back
like the colour (same box, same feathered mask, same resize to ``--size``), so compositing sees a full-frame depth
that matches the full-frame video.

The photos are synthetic and the face boxes are set (the detector is replaced), so every crop region is known; the
depth is given as an NPY file of the full photo and exported as NPY, so comparisons are exact where they should be.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch

from fomm.animate.outputs import FrameOutputs
from fomm.animate.stages import StageContext
from fomm.compositing.depth import DepthPassStage, resize_depth
from fomm.crop.paste import PasteBack, feather_mask

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
