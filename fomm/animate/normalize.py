"""Keypoint normalisation for motion transfer (relative motion, jacobians, movement-scale adaptation)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import ConvexHull, QhullError

from fomm.ops import inverse_2x2

KP = dict[str, torch.Tensor]


def hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of ``[K, 2]`` points (0 for degenerate sets)."""
    try:
        return float(ConvexHull(points).volume)
    except (QhullError, ValueError):
        return 0.0


def movement_scale(kp_source: KP, kp_driving_initial: KP) -> float:
    """``sqrt(area(hull(kp_source[0]))) / sqrt(area(hull(kp_driving_initial[0])))``.

    Only batch element 0 is used, as in the original demo (the scale of the *pair* of faces, not per frame).
    Returns 1.0 when either hull is degenerate.
    """
    src = kp_source["value"][0].detach().cpu().double().numpy()
    drv = kp_driving_initial["value"][0].detach().cpu().double().numpy()
    a_src, a_drv = hull_area(src), hull_area(drv)
    if a_src <= 0 or a_drv <= 0:
        return 1.0
    return float(np.sqrt(a_src) / np.sqrt(a_drv))


def normalize_kp(kp_source: KP, kp_driving: KP, kp_driving_initial: KP, use_relative_movement: bool = False,
                 use_relative_jacobian: bool = False, adapt_movement_scale: bool = False) -> KP:
    """Driving keypoints expressed relative to the source, as the FOMM demo does.

    Args:
        kp_source: ``value [1|B, K, 2]`` (and ``jacobian [1|B, K, 2, 2]``) of the source image.
        kp_driving: keypoints of the current driving frame(s), ``[B, K, 2]``.
        kp_driving_initial: keypoints of the driving frame that corresponds to the source pose (frame 0, or the
            best-matching frame), ``[1, K, 2]``.
        use_relative_movement: ``value = (kp_d - kp_d0) * s + kp_s``; otherwise ``kp_driving`` is returned as is.
        use_relative_jacobian: ``jacobian = J_d @ inv(J_d0) @ J_s`` (needs jacobians on all three).
        adapt_movement_scale: ``s`` from :func:`movement_scale`, else 1.
    Returns:
        A new dict with ``value`` (and ``jacobian``) for the generator.
    """
    out = {k: v for k, v in kp_driving.items()}
    if not use_relative_movement:
        return out
    scale = movement_scale(kp_source, kp_driving_initial) if adapt_movement_scale else 1.0
    diff = (kp_driving["value"] - kp_driving_initial["value"]) * scale
    out["value"] = diff + kp_source["value"]
    if use_relative_jacobian and "jacobian" in kp_driving:
        if "jacobian" not in kp_source or "jacobian" not in kp_driving_initial:
            raise ValueError("use_relative_jacobian needs jacobians for the source and initial driving keypoints")
        jac_diff = torch.matmul(kp_driving["jacobian"], inverse_2x2(kp_driving_initial["jacobian"]))
        out["jacobian"] = torch.matmul(jac_diff, kp_source["jacobian"])
    return out


def relative_motion(kp_driving: KP, kp_source: KP, kp_initial: KP, scale: torch.Tensor | float,
                    inv_initial_jacobian: torch.Tensor | None) -> KP:
    """The per-frame half of :func:`normalize_kp` (relative movement and relative jacobians), with everything that
    depends only on the source and the initial driving frame passed in precomputed: the movement ``scale`` and
    ``inv(J_d0)``. Pure tensor arithmetic in the same order as :func:`normalize_kp` (so bit-identical to it), with no
    host round trip and no data-dependent branch: it can run inside a captured graph.

    Args:
        kp_driving: ``value [B, K, 2]`` (+ ``jacobian [B, K, 2, 2]``).
        kp_source, kp_initial: ``value [1, K, 2]`` (+ jacobians).
        scale: the movement scale (a float, or a 0-dim tensor on the keypoints' device).
        inv_initial_jacobian: ``inverse_2x2(kp_initial["jacobian"])`` ``[1, K, 2, 2]``, or ``None`` to keep the
            driving jacobians as they are.
    """
    out = {"value": (kp_driving["value"] - kp_initial["value"]) * scale + kp_source["value"]}
    if "jacobian" in kp_driving:
        if inv_initial_jacobian is None:
            out["jacobian"] = kp_driving["jacobian"]
        else:
            out["jacobian"] = torch.matmul(torch.matmul(kp_driving["jacobian"], inv_initial_jacobian),
                                           kp_source["jacobian"])
    return out


class KeypointTransfer:
    """The relative-motion state of one animation: source keypoints, the reference (initial) driving keypoints and
    the options, applied to each batch of driving keypoints.

    Shared by every keypoint animator that uses FOMM's normalisation (the torch and ONNX engines), so the two
    cannot drift apart. The first driving batch seen supplies the reference unless :meth:`set_initial` chose one.
    What depends only on the source and the reference (the movement scale from two convex hulls, computed on the
    host with scipy, and ``inv(J_d0)``) is computed once per reference instead of once per batch: the per-batch
    step (:func:`relative_motion`) then never waits for the host, which the GPU pipeline needs (a host round trip
    per batch cost ~70 ms on an H100). Results are bit-identical to :func:`normalize_kp`.
    """

    def __init__(self, relative: bool = True, adapt_movement_scale: bool = True) -> None:
        self.relative = bool(relative)
        self.adapt_movement_scale = bool(adapt_movement_scale) and self.relative
        self.kp_source: KP | None = None
        self.kp_initial: KP | None = None
        #: 0-dim tensor on the keypoints' device (1 without adapt_movement_scale)
        self.scale: torch.Tensor | None = None
        self.inv_initial_jacobian: torch.Tensor | None = None

    def set_source(self, kp_source: KP) -> None:
        """New source keypoints (``value [1, K, 2]``, ``jacobian [1, K, 2, 2]``); forgets the reference."""
        self.kp_source = kp_source
        self.kp_initial = None
        self.scale = self.inv_initial_jacobian = None

    def set_initial(self, kp_initial: KP) -> None:
        """Keypoints ``[1, K, ...]`` of the driving frame whose pose corresponds to the source."""
        if self.kp_source is None:
            raise RuntimeError("call set_source() first")
        self.kp_initial = kp_initial
        value = kp_initial["value"]
        factor = movement_scale(self.kp_source, kp_initial) if self.adapt_movement_scale else 1.0
        # float32(factor): what multiplying a float32 tensor by the Python float does.
        self.scale = torch.tensor(factor, dtype=value.dtype, device=value.device)
        use_jac = self.relative and "jacobian" in kp_initial and "jacobian" in self.kp_source
        self.inv_initial_jacobian = inverse_2x2(kp_initial["jacobian"]) if use_jac else None

    def __call__(self, kp_driving: KP) -> KP:
        """Driving keypoints ``[B, K, ...]`` -> the normalised keypoints the generator takes."""
        if self.kp_source is None:
            raise RuntimeError("call set_source() first")
        if self.kp_initial is None:
            self.set_initial({k: v[:1] for k, v in kp_driving.items()})
        if not self.relative:
            return dict(kp_driving)
        return relative_motion(kp_driving, self.kp_source, self.kp_initial, self.scale, self.inv_initial_jacobian)
