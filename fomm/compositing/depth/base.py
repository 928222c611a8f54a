"""What every depth map in fomm is, and the registry of the estimators that make one.

One convention everywhere: a depth map is float32 ``[H, W]`` in ``[0, 1]`` holding *relative inverse depth*, near = 1,
far = 0 (what Depth-Anything and most monocular estimators predict, up to scale and shift, and what a compositor's
"depth matte" expects). It is relative: 0.5 is "between the nearest and the farthest thing in the shot", not a
distance. Every file fomm saves says so (:data:`CONVENTION`, in the JSON sidecar and the EXR header), because the
opposite convention (Z = distance, far = large) is just as common and a swapped map silently inverts fog or focus.

An estimator is any callable ``estimator(image uint8 [H, W, 3]) -> float32 [H, W]`` in that convention, with a
``name`` and, optionally, ``close()``. :func:`fomm.compositing.depth.make_estimator` builds
one from :class:`DepthOptions` (``auto`` picks as described there) from the table in
:mod:`fomm.compositing.depth.estimators`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from fomm.errors import InputError

#: The depth convention, written into every file fomm saves.
CONVENTION = "relative inverse depth in [0, 1]: near = 1, far = 0"
NEAR = 1.0
FAR = 0.0


@runtime_checkable
class DepthEstimator(Protocol):
    """``estimator(image uint8 [H, W, 3]) -> depth float32 [H, W]`` in ``[0, 1]``, near = 1, far = 0."""

    name: str

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


#: The estimators :func:`fomm.compositing.depth.make_estimator` builds (``auto`` first); the table that builds them
#: is in :mod:`fomm.compositing.depth.estimators`, which a test keeps equal to this list.
ESTIMATOR_NAMES: tuple[str, ...] = ("auto", "depth-anything", "file", "portrait")


@dataclass(frozen=True)
class DepthOptions:
    """Which estimator to build and how (shared by ``fomm depth``, ``fomm animate --export-depth`` and the API).

    Attributes:
        estimator: a registered name (:func:`estimator_names`): ``auto``, ``portrait``, ``depth-anything``, ``file``.
            ``auto`` takes ``file`` when ``depth_file`` is given, else ``depth-anything`` when its weights are
            found without a download (``model`` given, or :data:`DEFAULT_DEPTH_ANYTHING` in the local Hugging Face
            cache) and ``transformers`` is installed, else ``portrait``.
        model: Depth-Anything weights: a folder (``save_pretrained`` layout) or a Hugging Face id. An id not in the
            local cache is downloaded only because the user named it.
        depth_file: depth the user brings: one image (8/16-bit PNG, EXR, NPY), a folder of them, or a video.
        device: torch device for Depth-Anything.
        input_size: Depth-Anything's network input: the shorter side, rounded to its patch size (14), 28-2048.
    """

    estimator: str = "auto"
    model: str | None = None
    depth_file: str | Path | None = None
    device: str = "cpu"
    input_size: int = 518

    def __post_init__(self) -> None:
        names = ESTIMATOR_NAMES
        if self.estimator not in names:
            raise InputError(f"unknown depth estimator {self.estimator!r}; choose one of {', '.join(names)}")
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, int) or \
                not 28 <= self.input_size <= 2048:
            raise InputError(f"depth input size must be a whole number between 28 and 2048, got {self.input_size!r}")
        if self.estimator == "file" and self.depth_file is None:
            raise InputError("the 'file' depth estimator needs --depth-file PATH (an image, a folder or a video)")
        if self.depth_file is not None and self.estimator not in ("file", "auto"):
            raise InputError(f"--depth-file is only used by the 'file' (or 'auto') estimator, not {self.estimator!r}")
        if self.model is not None and self.estimator not in ("depth-anything", "auto"):
            raise InputError(f"--depth-model is only used by 'depth-anything' (or 'auto'), not {self.estimator!r}")


def check_depth(depth: np.ndarray, where: str = "depth") -> np.ndarray:
    """``depth`` as float32 ``[H, W]``, checked finite and inside ``[0, 1]`` (one-line InputError otherwise)."""
    arr = np.asarray(depth)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise InputError(f"{where}: a depth map is [H, W], got shape {tuple(arr.shape)}")
    arr = arr.astype(np.float32, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        raise InputError(f"{where}: holds {int((~finite).sum())} NaN/inf values; a depth map must be finite")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise InputError(f"{where}: values run {lo:g}..{hi:g}, outside [0, 1]; fomm reads depth as {CONVENTION} "
                         f"(convert it first, e.g. (far - z) / (far - near) for distances)")
    return arr


def normalise(raw: np.ndarray | torch.Tensor) -> np.ndarray:
    """Min-max normalise to ``[0, 1]`` (float32); a constant map becomes 0 (all far)."""
    arr = raw.detach().float().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw, np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo < 1e-12:
        return np.zeros(arr.shape, np.float32)
    return ((arr - lo) / (hi - lo)).astype(np.float32)


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of float ``[h, w]`` to ``size = (H, W)`` (anti-aliased when shrinking); values stay in range."""
    if tuple(depth.shape[:2]) == tuple(size):
        return depth.astype(np.float32, copy=False)
    t = torch.from_numpy(np.ascontiguousarray(depth, np.float32))[None, None]
    shrink = size[0] < depth.shape[0] or size[1] < depth.shape[1]
    out = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink)
    return out[0, 0].clamp_(0.0, 1.0).numpy()


__all__ = ["CONVENTION", "ESTIMATOR_NAMES", "FAR", "NEAR", "DepthEstimator", "DepthOptions", "check_depth", "normalise",
           "resize_depth"]
