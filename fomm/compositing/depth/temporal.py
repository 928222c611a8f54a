"""Depth that does not flicker: the source's depth moved with the animation, and per-frame estimates held steady.

**Animated output.** An animated frame is the source photo moved by the generator's dense motion field, so the
source's depth moved by the *same* field (:meth:`FrameOutputs.warp`, the generator's own sampler) is aligned with
every frame by construction and changes only where the motion changes. Estimating depth once, on the source, also
means one network call per video instead of one per frame. Where the occlusion map says the frame shows something
the source does not have (a disoccluded strip of background behind a turning head), warped depth would be the
foreground that used to be there, so those pixels are filled from the *far* side: the hole is flooded inward from
its rim with a running minimum (far = 0), so it takes the background's depth and never the face's
(:func:`fill_disoccluded`). Soft occlusion blends the two the way the generator blends warped pixels with inpainted
ones. On a still-camera animated clip (``benchmarks/depth_flicker.py``, shipped actions-64 model) the pass changes by
0.02% of its range per frame on pixels that do not move, against 0.45% for per-frame estimates aligned as below.

**Auto-crop.** With ``--auto-crop`` the written frame is the face crop pasted back into the full photo
(:class:`fomm.crop.PasteBack`), and the deformation belongs to the crop, so the depth pass is assembled the same way:
the full photo's depth (estimated once), the crop box cut out of it, moved at the size the generator made the colour,
resized to the box and blended in with the paste's own box and feathered mask (:meth:`fomm.crop.PasteBack.blend`),
then resized to the output like the frame. Outside the box the pass is the photo's depth bit for bit, and inside it
the face has its colour's geometry. Moving the crop at the model's size rather than the box's keeps the cost flat
in the photo's size (1152x1536 photo, 768-pixel box, one thread on this 2-core VM: 32 ms per frame at 256 against
1460 ms at 768, and 2.5 ms for the paste itself) and gives the depth no more detail than the face's colour has.

**Any other video.** A per-frame estimate normalised to ``[0, 1]`` per frame jumps whenever the nearest or farthest
pixel changes (a hand entering the shot rescales the whole map). :class:`VideoDepthAligner` instead fits each
estimate to a running reference by least squares (``s * d + b ~= reference`` over the frame), which removes the
per-frame scale/shift jitter while keeping the per-frame detail, and resets the reference at scene cuts (a jump in
the colour histogram), where the old scale means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from fomm.animate.outputs import FrameOutputs
from fomm.compositing.depth.base import check_depth, resize_depth
from fomm.crop.boxes import crop_box
from fomm.errors import InputError

if TYPE_CHECKING:
    from fomm.crop.paste import PasteBack


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

    Each step a hole pixel takes the minimum of its 3x3 neighbourhood, until nothing changes; then every hole pixel
    holds the farthest depth on the rim of its hole: background, never foreground. Pixels still unreached after
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
        nxt = torch.where(known[None, None], v, torch.minimum(v, nb))
        # Run until nothing changes, not just until every pixel is reached: a pixel first reached from a foreground
        # stretch of the rim must still get the background that arrives from farther along it.
        if torch.equal(nxt, v):
            break
        v = nxt
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


def _snap_exact(src: torch.Tensor, grid: torch.Tensor, sampled: torch.Tensor, tol: float = 1e-3) -> torch.Tensor:
    """Where the grid ``[H, W, 2]`` points within ``tol`` px of a source pixel centre, that pixel's exact value.

    Bilinear sampling at a pixel centre is that pixel, but the float32 arithmetic from normalised coordinates leaves
    weights of ~1e-5 on the neighbours (3e-6 of depth across a 0.8 step); snapping makes an identity or whole-pixel
    motion return the source depth bit for bit.
    """
    h, w = src.shape
    px = (grid[..., 0].double() + 1) * (w - 1) / 2
    py = (grid[..., 1].double() + 1) * (h - 1) / 2
    rx, ry = px.round(), py.round()
    on = ((px - rx).abs() < tol) & ((py - ry).abs() < tol) & (rx >= 0) & (rx <= w - 1) & (ry >= 0) & (ry <= h - 1)
    if not bool(on.any()):
        return sampled
    exact = src[ry.clamp(0, h - 1).long(), rx.clamp(0, w - 1).long()]
    return torch.where(on, exact, sampled)


def warp_depth(source_depth: np.ndarray | torch.Tensor, outputs: FrameOutputs, size: tuple[int, int] | None = None,
               config: FillConfig | None = None) -> np.ndarray:
    """The source's depth as it appears in the animated frame ``outputs`` (a batch of one).

    ``source_depth``: float ``[Hs, Ws]`` in ``[0, 1]`` aligned with the source image; resized to ``size = (H, W)``
    (default its own size) and moved by the frame's deformation with the generator's sampler. Pixels sampled partly
    from outside the source are renormalised (the sampler pads with zeros, which would read as far); pixels the
    occlusion map marks newly visible are filled with background depth (:func:`fill_disoccluded`). Returns float32
    ``[H, W]`` in ``[0, 1]``. An identity deformation returns ``source_depth`` exactly (see :func:`_snap_exact`).
    """
    src = _as_tensor(source_depth)
    if size is not None and tuple(src.shape) != tuple(size):
        src = torch.from_numpy(resize_depth(src.numpy(), size))
    h, w = src.shape
    both = torch.stack([src, torch.ones_like(src)])[None]  # depth and a coverage channel, moved together
    moved = outputs.warp(both)[0].float().cpu()
    depth, cover = moved[0], moved[1]
    depth = _snap_exact(src, outputs.deformation_at((h, w))[0].float().cpu(), depth)
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

    ``source_depth``: the depth of the source photo as the caller read it (``[Hs, Ws]``, any size with the same
    framing): the image the animator encodes, or with auto-crop the full photo the face was cut from. In an
    auto-crop run (:meth:`begin` is handed the paste-back, ``context.paste``) the frame is the pasted-back photo,
    not the crop the deformation belongs to, so the face crop's depth is cut out of the photo's with the paste's
    box, moved at the size the model made the colour, and pasted back into the photo's depth with the same box and
    feathered mask before it is resized to the frame (see the module docstring).
    """

    def __init__(self, source_depth: np.ndarray, config: FillConfig | None = None, view: str = "depth") -> None:
        self.source_depth = check_depth(source_depth, "source depth")
        self.config = config or FillConfig()
        self.view = view
        self._resized: dict[tuple[int, int], torch.Tensor] = {}
        self._paste: PasteBack | None = None
        self._photo_depth: np.ndarray | None = None  # auto-crop: the photo's depth at the photo's size
        self._box_depth: np.ndarray | None = None  # auto-crop: its crop box, padded like the colour crop

    def begin(self, context: Any) -> None:
        """Take the run's paste-back (``context.paste``, auto-crop only) and cut the face crop's depth once."""
        self._paste = getattr(context, "paste", None)
        self._resized = {}
        if self._paste is None:
            self._photo_depth = self._box_depth = None
            return
        self._photo_depth = resize_depth(self.source_depth, self._paste.size)
        # Outside the photo the colour crop is padded black; far is the depth's nearest thing to "nothing there",
        # and those pixels only show if the motion pulls them into the box.
        self._box_depth = crop_box(self._photo_depth, self._paste.box, mode="pad", fill=0)

    def _source_at(self, size: tuple[int, int]) -> torch.Tensor:
        if size not in self._resized:
            src = self.source_depth if self._box_depth is None else self._box_depth
            self._resized = {size: torch.from_numpy(resize_depth(src, size).copy())}
        return self._resized[size]

    def __call__(self, frame: np.ndarray, outputs: FrameOutputs) -> dict[str, np.ndarray]:
        if outputs.deformation is None:
            raise InputError("this model gives no dense motion (X2Face, Monkey-Net, old ONNX exports), so the source "
                             "depth cannot follow it; export depth with a FOMM model")
        size = tuple(frame.shape[:2])
        if self._paste is None:
            return {"frame": frame, self.view: warp_depth(self._source_at(size), outputs, None, self.config)}
        # Moved at the size the generator made the colour and resized to the box as the colour is, so the depth has
        # the face's geometry and no more detail than its colour.
        crop_size = tuple(outputs.prediction.shape[-2:])
        moved = warp_depth(self._source_at(crop_size), outputs, None, self.config)
        pasted = self._paste.blend(self._photo_depth, resize_depth(moved, self._paste.box_size))
        return {"frame": frame, self.view: resize_depth(pasted, size)}


@dataclass(frozen=True)
class AlignConfig:
    """How :class:`VideoDepthAligner` holds per-frame estimates steady.

    Attributes:
        momentum: weight of each new aligned frame in the running reference, in ``(0, 1]`` (1 = align to the
            previous frame only; small = a long memory, steadier but slower to follow real change).
        cut_threshold: colour-histogram distance (half the L1 distance of 8x8x8-bin histograms, in ``[0, 1]``)
            from the previous frame that counts as a scene cut and resets the reference.
        fit_side: longer side of the thumbnails the scale and shift are fitted on (px, 16-1024).
        still_tolerance: thumbnail pixels whose grey level changed less than this (in ``[0, 1]``) since the previous
            frame are the ones the fit uses (all pixels when fewer than 10% are still), in ``(0, 1]``.
    """

    momentum: float = 0.2
    cut_threshold: float = 0.5
    fit_side: int = 128
    still_tolerance: float = 0.02

    def __post_init__(self) -> None:
        if not (isinstance(self.momentum, (int, float)) and 0.0 < self.momentum <= 1.0):
            raise InputError(f"align momentum must be in (0, 1], got {self.momentum!r}")
        if not (isinstance(self.cut_threshold, (int, float)) and 0.0 < self.cut_threshold <= 1.0):
            raise InputError(f"scene-cut threshold must be in (0, 1], got {self.cut_threshold!r}")
        if not (isinstance(self.still_tolerance, (int, float)) and 0.0 < self.still_tolerance <= 1.0):
            raise InputError(f"still tolerance must be in (0, 1], got {self.still_tolerance!r}")
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
        self._grey: np.ndarray | None = None

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
        grey = self._thumb(frame.mean(axis=2, dtype=np.float32) / 255.0)
        still = None if self._grey is None or self._grey.shape != grey.shape else \
            np.abs(grey - self._grey).ravel() < self.config.still_tolerance
        self._grey = grey
        out = depth
        if not cut and self._ref is not None and self._ref.shape == thumb.shape:
            d, r = thumb.ravel(), self._ref.ravel()
            if still is not None and still.mean() > 0.1:
                # Fit where the picture did not change: a moving head changes its own depth, and letting it into
                # the fit shifts the whole map.
                d, r = d[still], r[still]
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
