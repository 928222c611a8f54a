"""Clip augmentation: identical parameters on all frames, torchvision-like jitter, config validation."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from fomm.datasets.augment import (
    ClipAugmentation,
    _hsv_to_rgb,
    _rgb_to_hsv,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
)
from fomm.errors import ConfigError


def _clip(n: int = 2, size: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return [base.copy() for _ in range(n)]


def test_identity_params_return_float_copy() -> None:
    aug = ClipAugmentation(None)
    assert aug.is_identity
    frames, info = aug(_clip(), np.random.default_rng(0))
    assert frames[0].dtype == np.float32 and np.allclose(frames[0] * 255, _clip()[0])
    assert info["horizontal_flip"] is False and info["time_flip"] is False


def test_same_transform_on_every_frame() -> None:
    params = {"flip_param": {"horizontal_flip": True, "time_flip": True},
              "jitter_param": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.2},
              "rotation_param": {"degrees": 20}, "resize_param": {"ratio": [0.8, 1.2]},
              "crop_param": {"size": [12, 12]}}
    aug = ClipAugmentation(params)
    seen = set()
    for seed in range(12):
        frames, info = aug(_clip(3), np.random.default_rng(seed))
        # Identical input frames must stay identical: every frame got the same parameters.
        assert np.array_equal(frames[0], frames[1]) and np.array_equal(frames[1], frames[2])
        assert frames[0].shape == (16, 16, 3) and frames[0].min() >= 0 and frames[0].max() <= 1
        seen.add(info["horizontal_flip"])
        assert set(info["jitter"]) == {"brightness", "contrast", "saturation", "hue"}
        assert 0.7 <= info["jitter"]["brightness"] <= 1.3 and -0.2 <= info["jitter"]["hue"] <= 0.2
    assert seen == {True, False}


def test_flips_and_determinism() -> None:
    clip = _clip(2)
    clip[1] = clip[1][::-1].copy()  # make the two frames different
    aug = ClipAugmentation({"flip_param": {"horizontal_flip": True, "time_flip": True}})
    for seed in range(10):
        frames, info = aug(clip, np.random.default_rng(seed))
        again, _ = aug(clip, np.random.default_rng(seed))
        assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))
        order = clip[::-1] if info["time_flip"] else clip
        expected = [f[:, ::-1] if info["horizontal_flip"] else f for f in order]
        assert all(np.allclose(a * 255, b) for a, b in zip(frames, expected, strict=True))


def test_colour_ops() -> None:
    rng = np.random.default_rng(1)
    img = rng.random((8, 8, 3)).astype(np.float32)
    hsv = _rgb_to_hsv(img)
    ref = np.array([colorsys.rgb_to_hsv(*px) for px in img.reshape(-1, 3)]).reshape(8, 8, 3)
    assert np.allclose(hsv, ref, atol=1e-6)
    assert np.allclose(_hsv_to_rgb(hsv), img, atol=1e-6)
    assert np.allclose(adjust_hue(img, 0.0), img, atol=1e-6)
    assert np.allclose(adjust_hue(adjust_hue(img, 0.25), -0.25), img, atol=1e-5)
    grey = adjust_saturation(img, 0.0)
    assert np.allclose(grey[..., 0], grey[..., 1]) and np.allclose(grey[..., 1], grey[..., 2])
    flat = adjust_contrast(img, 0.0)
    assert np.allclose(flat, flat.mean())


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="perspective_param"):
        ClipAugmentation({"perspective_param": {"pers_num": [30, 40]}})
    with pytest.raises(ConfigError, match="gamma"):
        ClipAugmentation({"jitter_param": {"gamma": 0.1}})
    with pytest.raises(ConfigError, match="hue"):
        ClipAugmentation({"jitter_param": {"hue": 0.7}})
    with pytest.raises(ConfigError, match="crop_param"):
        ClipAugmentation({"crop_param": {"size": [32, 32]}})(_clip(), np.random.default_rng(0))


def test_zoom_in_and_out_keep_size_and_content() -> None:
    frame = np.zeros((20, 20, 3), np.uint8)
    frame[8:12, 8:12] = 255
    aug = ClipAugmentation({"resize_param": {"ratio": [0.5, 0.5]}})
    out, info = aug([frame], np.random.default_rng(0))
    assert out[0].shape == (20, 20, 3)
    assert (out[0].mean(-1) > 0.5).sum() < (frame.mean(-1) > 127).sum()  # shrunk square, zero padding around
    assert out[0][0].max() == 0 and out[0][:, 0].max() == 0
    aug = ClipAugmentation({"resize_param": {"ratio": [2.0, 2.0]}})
    out, _ = aug([frame], np.random.default_rng(0))
    assert out[0].shape == (20, 20, 3) and (out[0].mean(-1) > 0.5).sum() > (frame.mean(-1) > 127).sum()
