"""Clip augmentation for training pairs (no torchvision).

One set of random parameters is drawn per call and applied identically to every frame of the clip, so the
source and driving frames of a training pair stay geometrically and photometrically consistent (the motion
between them is the only difference the model may learn from).

Config keys (``dataset_params.augmentation_params``, same names as the original FOMM / Monkey-Net configs):

* ``flip_param: {horizontal_flip: bool, time_flip: bool}``: each applied with probability 0.5. A time flip
  reverses the clip, i.e. swaps source and driving for a pair.
* ``jitter_param: {brightness, contrast, saturation, hue}``: factors drawn like torchvision's ColorJitter:
  brightness/contrast/saturation ``~ U[max(0, 1 - v), 1 + v]``, hue shift ``~ U[-v, v]`` (``v <= 0.5``),
  applied in a random order.
* ``resize_param: {ratio: [lo, hi]}``: zoom by a random ratio, then crop / zero pad back to the size at a
  random position.
* ``rotation_param: {degrees: d}``: rotate by ``U[-d, d]`` degrees about the centre (zero fill).
* ``crop_param: {size: [h, w]}``: random ``h x w`` crop, resized back to the frame size.

Unknown keys (e.g. ``perspective_param``) raise :class:`~fomm.errors.ConfigError` rather than being ignored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from fomm.config import check_augmentation_params
from fomm.errors import ConfigError

_KNOWN = {"flip_param", "jitter_param", "resize_param", "rotation_param", "crop_param"}
_JITTER_KEYS = {"brightness", "contrast", "saturation", "hue"}


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """``[..., 3]`` RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of a turn)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc = rgb.max(-1)
    minc = rgb.min(-1)
    delta = maxc - minc
    safe = np.where(delta > 0, delta, 1.0)
    h = np.where(maxc == r, (g - b) / safe, np.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = np.where(delta > 0, (h / 6.0) % 1.0, 0.0)
    s = np.where(maxc > 0, delta / np.where(maxc > 0, maxc, 1.0), 0.0)
    return np.stack([h, s, maxc], -1)


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p = v * (1 - s)
    q = v * (1 - s * f)
    t = v * (1 - s * (1 - f))
    i = i.astype(np.int64) % 6
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], -1)


def _gray(img: np.ndarray) -> np.ndarray:
    # ITU-R 601 luma, the weights torchvision uses for its grayscale conversion.
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """``[H, W, 3]`` float in [0, 1] -> same, scaled by ``factor`` and clipped."""
    return np.clip(img * factor, 0.0, 1.0)


def adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the frame's mean grey level (factor 0 = flat grey, 1 = unchanged)."""
    mean = _gray(img).mean()
    return np.clip(factor * img + (1 - factor) * mean, 0.0, 1.0)


def adjust_saturation(img: np.ndarray, factor: float) -> np.ndarray:
    """Blend with the grey version of the frame (factor 0 = greyscale, 1 = unchanged)."""
    gray = _gray(img)[..., None]
    return np.clip(factor * img + (1 - factor) * gray, 0.0, 1.0)


def adjust_hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate hue by ``shift`` turns (``shift`` in [-0.5, 0.5])."""
    hsv = _rgb_to_hsv(img)
    hsv[..., 0] = (hsv[..., 0] + shift) % 1.0
    return np.clip(_hsv_to_rgb(hsv), 0.0, 1.0)


def _range(value: Any, name: str, center: float, lower: float | None) -> tuple[float, float]:
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(f"augmentation_params.jitter_param.{name} must be a number or [min, max], got {value!r}")
        lo, hi = float(value[0]), float(value[1])
    else:
        v = float(value)
        if v < 0:
            raise ConfigError(f"augmentation_params.jitter_param.{name} must be >= 0, got {v}")
        lo, hi = center - v, center + v
        if lower is not None:
            lo = max(lower, lo)
    return lo, hi


class ClipAugmentation:
    """Random clip augmentation configured by an ``augmentation_params`` dict (see module docstring).

    Call with a list of ``[H, W, 3]`` uint8 frames and a ``numpy.random.Generator``; returns
    ``(frames, info)`` where frames are ``[H, W, 3]`` float32 in [0, 1] (same size as the input) and ``info``
    records what was drawn (``horizontal_flip``, ``time_flip``, ``jitter`` order/factors, ...).
    """

    def __init__(self, params: dict | None) -> None:
        # Types and ranges first (the config readers did this already for a YAML; a dict built in code has not
        # been checked): strings reached float(), NaN the random draws, and a zoom of 100 a huge allocation.
        check_augmentation_params(params)
        params = dict(params or {})
        unknown = set(params) - _KNOWN
        if unknown:
            raise ConfigError(f"unsupported augmentation_params key(s) {sorted(unknown)}; "
                              f"supported: {sorted(_KNOWN)}")
        flip = params.get("flip_param") or {}
        self.horizontal_flip = bool(flip.get("horizontal_flip", False))
        self.time_flip = bool(flip.get("time_flip", False))
        jitter = params.get("jitter_param") or {}
        bad = set(jitter) - _JITTER_KEYS
        if bad:
            raise ConfigError(f"unsupported jitter_param key(s) {sorted(bad)}; supported: {sorted(_JITTER_KEYS)}")
        self.jitter: dict[str, tuple[float, float]] = {}
        for key in ("brightness", "contrast", "saturation"):
            if jitter.get(key):
                self.jitter[key] = _range(jitter[key], key, 1.0, 0.0)
        if jitter.get("hue"):
            lo, hi = _range(jitter["hue"], "hue", 0.0, None)
            if lo < -0.5 or hi > 0.5:
                raise ConfigError("augmentation_params.jitter_param.hue must lie in [-0.5, 0.5], "
                                  f"got {jitter['hue']!r}")
            self.jitter["hue"] = (lo, hi)
        resize = params.get("resize_param") or {}
        self.resize_ratio = tuple(float(r) for r in resize["ratio"]) if "ratio" in resize else None
        rot = params.get("rotation_param") or {}
        self.rotation = float(rot["degrees"]) if "degrees" in rot else None
        crop = params.get("crop_param") or {}
        self.crop_size = tuple(int(s) for s in crop["size"]) if "size" in crop else None

    @property
    def is_identity(self) -> bool:
        return not (self.horizontal_flip or self.time_flip or self.jitter or self.resize_ratio
                    or self.rotation or self.crop_size)

    def __call__(self, frames: list[np.ndarray], rng: np.random.Generator) -> tuple[list[np.ndarray], dict]:
        info: dict[str, Any] = {}
        frames = list(frames)
        h, w = frames[0].shape[:2]
        # Draw every parameter up front in a fixed order so the stream of random numbers (and so the result
        # for a given seed) does not depend on which branches run.
        ratio = rng.uniform(*self.resize_ratio) if self.resize_ratio else None
        zoom_pos = (float(rng.random()), float(rng.random())) if self.resize_ratio else None
        angle = rng.uniform(-self.rotation, self.rotation) if self.rotation else None
        hflip = bool(rng.random() < 0.5) if self.horizontal_flip else False
        tflip = bool(rng.random() < 0.5) if self.time_flip else False
        crop_origin = None
        if self.crop_size:
            ch, cw = self.crop_size
            if ch > h or cw > w:
                raise ConfigError(f"augmentation_params.crop_param.size {list(self.crop_size)} is larger than "
                                  f"the frame size {h}x{w}")
            crop_origin = (int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)))
        order = [str(k) for k in rng.permutation(sorted(self.jitter))] if self.jitter else []
        factors = {k: float(rng.uniform(*self.jitter[k])) for k in sorted(self.jitter)}
        info.update(resize_ratio=ratio, zoom_position=zoom_pos, rotation=angle, horizontal_flip=hflip, time_flip=tflip,
                    crop_origin=crop_origin, jitter_order=order, jitter=factors)

        if ratio is not None:
            frames = [_zoom(f, ratio, zoom_pos) for f in frames]
        if angle is not None:
            frames = [np.asarray(Image.fromarray(f).rotate(angle, resample=Image.Resampling.BILINEAR))
                      for f in frames]
        if hflip:
            frames = [f[:, ::-1] for f in frames]
        if tflip:
            frames = frames[::-1]
        if crop_origin is not None:
            y, x = crop_origin
            ch, cw = self.crop_size
            frames = [np.asarray(Image.fromarray(np.ascontiguousarray(f[y:y + ch, x:x + cw]))
                                 .resize((w, h), Image.Resampling.BILINEAR)) for f in frames]
        out = [np.ascontiguousarray(f, dtype=np.float32) / 255.0 for f in frames]
        ops = {"brightness": adjust_brightness, "contrast": adjust_contrast,
               "saturation": adjust_saturation, "hue": adjust_hue}
        for key in order:
            out = [ops[key](f, factors[key]).astype(np.float32) for f in out]
        return out, info


def _zoom(frame: np.ndarray, ratio: float, pos: tuple[float, float]) -> np.ndarray:
    """Resize by ``ratio`` and crop / zero pad back to the original size at relative position ``pos`` in [0, 1)
    (like the originals' resize followed by a random crop that pads when the frame got smaller)."""
    h, w = frame.shape[:2]
    nh, nw = max(1, round(h * ratio)), max(1, round(w * ratio))
    resized = np.asarray(Image.fromarray(frame).resize((nw, nh), Image.Resampling.BILINEAR))
    out = np.zeros_like(frame)
    oy, ox = int(pos[0] * (abs(nh - h) + 1)), int(pos[1] * (abs(nw - w) + 1))
    sy, sx = (oy if nh > h else 0), (ox if nw > w else 0)
    dy, dx = (oy if nh < h else 0), (ox if nw < w else 0)
    ch, cw = min(h, nh), min(w, nw)
    out[dy:dy + ch, dx:dx + cw] = resized[sy:sy + ch, sx:sx + cw]
    return out
