"""Depth that does not flicker: the source's depth moved with the animation, and per-frame estimates held steady.

**Animated output.** An animated frame is the source photo moved by the generator's dense motion field, so the
source's depth moved by the *same* field (:meth:`FrameOutputs.warp`, the generator's own sampler) is aligned with
every frame by construction and changes only where the motion changes. Estimating depth once, on the source, also
means one network call per video instead of one per frame. Where the occlusion map says the frame shows something
the source does not have (a disoccluded strip of background behind a turning head), warped depth would be the
foreground that used to be there, so those pixels are filled from the *far* side: the hole is flooded inward from
its rim with a running minimum (far = 0), so it takes the background's depth and never the face's
(:func:`fill_disoccluded`). Soft occlusion blends the two the way the generator blends warped pixels with inpainted
ones. Measured on a still-camera animated clip (``benchmarks/depth_flicker.py``): see README "Depth".

**Any other video.** A per-frame estimate normalised to ``[0, 1]`` per frame jumps whenever the nearest or farthest
pixel changes (a hand entering the shot rescales the whole map). :class:`VideoDepthAligner` instead fits each
estimate to a running reference by least squares (``s * d + b ~= reference`` over the frame), which removes the
per-frame scale/shift jitter while keeping the per-frame detail, and resets the reference at scene cuts (a jump in
the colour histogram), where the old scale means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fomm.animate.outputs import FrameOutputs
from fomm.compositing.depth.base import check_depth, resize_depth
from fomm.errors import InputError


@dataclass(frozen=True)
class FillConfig:
    """How disoccluded pixels are filled.

    Attributes:
        visible: occlusion values at or above this count as fully visible (the occlusion map is soft and rarely
            reaches 1); below it the warped depth is blended towards the filled background linearly, reaching the
            fill at 0. In ``(0, 1]``.
        max_steps: flood-fill steps (one pixel each) before the remaining hole takes the farthest visible depth.
    """

    visible: float = 0.5
    max_steps: int = 256

    def __post_init__(self) -> None:
        if not (isinstance(self.visible, (int, float)) and 0.0 < self.visible <= 1.0):
            raise InputError(f"fill visible threshold must be in (0, 1], got {self.visible!r}")
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise InputError(f"fill max_steps must be >= 1, got {self.max_steps!r}")


def _as_tensor(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    return a.float() if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a, np.float32))


def background_fill(depth: torch.Tensor, hole: torch.Tensor, max_steps: int = 256) -> torch.Tensor:
    """Fill ``hole`` (bool ``[H, W]``) in ``depth`` (``[H, W]``, near = 1) from its rim by a running minimum.

    Each step a hole pixel takes the minimum of its 3x3 neighbourhood, so after the flood every hole pixel holds the
    farthest depth of the rim it was reached from: background, never foreground. Pixels still unreached after
    ``max_steps`` take the farthest visible depth. Returns a new ``[H, W]`` tensor (known pixels unchanged).
    """
    if not bool(hole.any()):
        return depth.clone()
    known = ~hole
    if not bool(known.any()):
        return torch.zeros_like(depth)  # nothing visible: call it all far
    inf = torch.tensor(float("inf"), dtype=depth.dtype)
    v = torch.where(known, depth, inf)[None, None]
    for _ in range(max_steps):
        nb = -F.max_pool2d(-v, 3, stride=1, padding=1)
        v = torch.where(known[None, None], v, torch.minimum(v, nb))
        if not bool(torch.isinf(v).any()):
            break
    out = v[0, 0]
    return torch.where(torch.isinf(out), depth[known].min(), out)


def fill_disoccluded(depth: np.ndarray | torch.Tensor, occlusion: np.ndarray | torch.Tensor | None,
                     config: FillConfig | None = None) -> np.ndarray:
    """Blend warped ``depth [H, W]`` with background depth where ``occlusion [H, W]`` (1 = visible in the source,
    0 = newly visible) is below ``config.visible``. Returns float32 ``[H, W]`` in ``[0, 1]``."""
    cfg = config or FillConfig()
    d = _as_tensor(depth)
    if occlusion is None:
        return d.clamp(0, 1).numpy()
    occ = _as_tensor(occlusion).clamp(0, 1)
    weight = (occ / cfg.visible).clamp(0, 1)
    hole = weight < 1
    if not bool(hole.any()):
        return d.clamp(0, 1).numpy()
    fill = background_fill(d, hole, cfg.max_steps)
    return (weight * d + (1 - weight) * fill).clamp(0, 1).numpy()


def warp_depth(source_depth: np.ndarray | torch.Tensor, outputs: FrameOutputs, size: tuple[int, int] | None = None,
               config: FillConfig | None = None) -> np.ndarray:
    """The source's depth as it appears in the animated frame ``outputs`` (a batch of one).

    ``source_depth``: float ``[Hs, Ws]`` in ``[0, 1]`` aligned with the source image; resized to ``size = (H, W)``
    (default its own size) and moved by the frame's deformation with the generator's sampler. Pixels sampled partly
    from outside the source are renormalised (the sampler pads with zeros, which would read as far); pixels the
    occlusion map marks newly visible are filled with background depth (:func:`fill_disoccluded`). Returns float32
    ``[H, W]`` in ``[0, 1]``. An identity deformation returns ``source_depth`` (within float rounding, < 1e-6).
    """
    src = _as_tensor(source_depth)
    if size is not None and tuple(src.shape) != tuple(size):
        src = torch.from_numpy(resize_depth(src.numpy(), size))
    h, w = src.shape
    both = torch.stack([src, torch.ones_like(src)])[None]  # depth and a coverage channel, moved together
    moved = outputs.warp(both)[0].float().cpu()
    depth, cover = moved[0], moved[1]
    # Renormalise only where the sampler reached outside the source: inside, coverage is 1 and the depth is exact.
    partial = cover < 0.999
    depth = torch.where(partial, depth / cover.clamp(min=1e-6), depth)
    occ = outputs.occlusion_at((h, w))[0, 0].float().cpu() if outputs.occlusion_map is not None else None
    outside = cover < 0.5
    if bool(outside.any()):
        occ = torch.where(outside, torch.zeros_like(cover), occ if occ is not None else torch.ones_like(cover))
    return fill_disoccluded(depth, occ, config)


class DepthPassStage:
    """Stage (:mod:`fomm.animate.stages`) adding the view ``"depth"``: float32 ``[H, W]`` in ``[0, 1]``, near = 1,
    the source's depth moved with each frame (:func:`warp_depth`), at the size of the frame it is given.

    ``source_depth``: the depth of the image the animator encodes (``[Hs, Ws]``, any size with the same framing).
    Not for auto-crop runs: there the frame is the pasted-back photo, not the frame the deformation belongs to.
    """

    def __init__(self, source_depth: np.ndarray, config: FillConfig | None = None, view: str = "depth") -> None:
        self.source_depth = check_depth(source_depth, "source depth")
        self.config = config or FillConfig()
        self.view = view
        self._resized: dict[tuple[int, int], torch.Tensor] = {}

    def _source_at(self, size: tuple[int, int]) -> torch.Tensor:
        if size not in self._resized:
            self._resized = {size: torch.from_numpy(resize_depth(self.source_depth, size).copy())}
        return self._resized[size]

    def __call__(self, frame: np.ndarray, outputs: FrameOutputs) -> dict[str, np.ndarray]:
        if outputs.deformation is None:
            raise InputError("this model gives no dense motion (X2Face, Monkey-Net, old ONNX exports), so the source "
                             "depth cannot follow it; export depth with a FOMM model")
        size = tuple(frame.shape[:2])
        return {"frame": frame, self.view: warp_depth(self._source_at(size), outputs, None, self.config)}


@dataclass(frozen=True)
class AlignConfig:
    """How :class:`VideoDepthAligner` holds per-frame estimates steady.

    Attributes:
        momentum: weight of each new aligned frame in the running reference, in ``(0, 1]`` (1 = align to the
            previous frame only; small = a long memory, steadier but slower to follow real change).
        cut_threshold: colour-histogram distance (half the L1 distance of 8x8x8-bin histograms, in ``[0, 1]``)
            from the previous frame that counts as a scene cut and resets the reference.
        fit_side: longer side of the thumbnails the scale and shift are fitted on (px, 16-1024).
    """

    momentum: float = 0.2
    cut_threshold: float = 0.5
    fit_side: int = 128

    def __post_init__(self) -> None:
        if not (isinstance(self.momentum, (int, float)) and 0.0 < self.momentum <= 1.0):
            raise InputError(f"align momentum must be in (0, 1], got {self.momentum!r}")
        if not (isinstance(self.cut_threshold, (int, float)) and 0.0 < self.cut_threshold <= 1.0):
            raise InputError(f"scene-cut threshold must be in (0, 1], got {self.cut_threshold!r}")
        if isinstance(self.fit_side, bool) or not isinstance(self.fit_side, int) or not 16 <= self.fit_side <= 1024:
            raise InputError(f"fit_side must be a whole number between 16 and 1024, got {self.fit_side!r}")


def colour_histogram(frame: np.ndarray) -> np.ndarray:
    """Normalised 8x8x8-bin RGB histogram of a uint8 ``[H, W, 3]`` frame (512 values summing to 1)."""
    q = (frame[::2, ::2] >> 5).astype(np.int32).reshape(-1, 3)
    hist = np.bincount(q[:, 0] * 64 + q[:, 1] * 8 + q[:, 2], minlength=512).astype(np.float64)
    return hist / max(hist.sum(), 1.0)


class VideoDepthAligner:
    """Per-frame depth estimates -> a steady sequence: each aligned to a running reference by a least-squares scale
    and shift over the frame; scene cuts reset the reference.

    ``__call__(frame uint8 [H, W, 3], depth float [H, W] in [0, 1]) -> float32 [H, W] in [0, 1]``. :attr:`cuts`
    lists the frame indices where the reference was reset (0 included).
    """

    def __init__(self, config: AlignConfig | None = None) -> None:
        self.config = config or AlignConfig()
        self.cuts: list[int] = []
        self._index = 0
        self._hist: np.ndarray | None = None
        self._ref: np.ndarray | None = None

    def _thumb(self, depth: np.ndarray) -> np.ndarray:
        h, w = depth.shape
        scale = min(1.0, self.config.fit_side / max(h, w))
        return resize_depth(depth, (max(1, round(h * scale)), max(1, round(w * scale)))).astype(np.float64)

    def __call__(self, frame: np.ndarray, depth: np.ndarray) -> np.ndarray:
        depth = np.asarray(depth, np.float32)
        hist = colour_histogram(frame)
        cut = self._hist is None or 0.5 * float(np.abs(hist - self._hist).sum()) > self.config.cut_threshold
        self._hist = hist
        thumb = self._thumb(depth)
        out = depth
        if not cut and self._ref is not None and self._ref.shape == thumb.shape:
            d, r = thumb.ravel(), self._ref.ravel()
            var = float(d.var())
            scale = float(((d - d.mean()) * (r - r.mean())).mean() / var) if var > 1e-10 else 1.0
            if scale <= 0:
                cut = True  # the estimate no longer resembles the reference: start again rather than invert it
            else:
                shift = float(r.mean() - scale * d.mean())
                out = np.clip(scale * depth + shift, 0.0, 1.0).astype(np.float32)
                thumb = np.clip(scale * thumb + shift, 0.0, 1.0)
        if cut or self._ref is None or self._ref.shape != thumb.shape:
            self.cuts.append(self._index)
            self._ref = thumb
        else:
            m = self.config.momentum
            self._ref = (1 - m) * self._ref + m * thumb
        self._index += 1
        return out


__all__ = ["AlignConfig", "DepthPassStage", "FillConfig", "VideoDepthAligner", "background_fill", "colour_histogram",
           "fill_disoccluded", "warp_depth"]
