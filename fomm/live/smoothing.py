"""Causal keypoint smoothing for live animation: the One-Euro filter (Casiez, Roussel and Vogel, CHI 2012).

Why: a webcam's sensor noise and JPEG blocks move the detected keypoints by a fraction of a pixel from frame to
frame even when the head is still, and the generator turns that into a shimmering face (what LivePortrait and
Avatarify users report as jitter). Averaging over time removes it but adds lag when the head really moves. The
One-Euro filter is a first-order low-pass whose cutoff rises with the measured speed: a still keypoint is filtered
hard (cutoff ``min_cutoff``), a moving one barely at all (cutoff ``min_cutoff + beta * speed``). It only looks at
past samples, so it adds no look-ahead latency.

Where: the filter runs on the *detected* driving keypoints, between the keypoint detector and the relative-motion
transfer + decode (:meth:`fomm.animate.Animator.animate_keypoints` is that seam). Filtering before the transfer
rather than after means a recalibration (a new reference pose) does not jump the filter's state, and the filter's
units are those of the camera image (normalised ``[-1, 1]`` coordinates), whatever the source photo.

Speed is measured per keypoint (the norm of its 2-D velocity) instead of per coordinate, and the same smoothing
factor is applied to the keypoint's position and to its jacobian: a keypoint that moves is followed at once in
both, a still one is held in both.

Measured with the defaults (``tests/test_live.py``: the golden 128x128 FOMM on a still face photo with fresh sensor
noise, sigma 4 levels, every frame, at 30 frames/s): the mean frame-to-frame keypoint motion of the still head falls
from 0.0028 (normalised units, 0.18 px) to 0.34 of that; when the head steps 6 px sideways, the filtered keypoints
cover 77% of the step on the step's own frame and 94% on the next (raw: 100%), so the lag is under one frame. The
defaults were picked from a sweep on that clip: ``beta`` 10 halves the jitter again (0.22) but covers only 56% on the
step frame; ``beta`` 100 covers 90% but keeps 0.57 of the jitter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fomm.errors import InputError

KP = dict[str, torch.Tensor]


@dataclass(frozen=True)
class OneEuroConfig:
    """One-Euro filter parameters (range-checked here).

    Attributes:
        min_cutoff: cutoff frequency in Hz for a still keypoint (> 0); lower = smoother and laggier when still.
        beta: how fast the cutoff rises with speed, in Hz per (normalised unit / s) (>= 0); higher = less lag on
            fast motion. Keypoints live in ``[-1, 1]``, so a speed of 1/s crosses half the frame in a second.
        d_cutoff: cutoff in Hz of the low-pass on the speed estimate itself (> 0).
    """

    min_cutoff: float = 1.0
    beta: float = 30.0
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        for name, low, inclusive in (("min_cutoff", 0.0, False), ("beta", 0.0, True), ("d_cutoff", 0.0, False)):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
                value >= low if inclusive else value > low)
            if not ok or value > 1e4:
                bound = ">= 0" if inclusive else "> 0"
                raise InputError(f"One-Euro {name} must be a number {bound} and at most 10000, got {value!r}")


def smoothing_factor(dt: float, cutoff: torch.Tensor | float) -> torch.Tensor | float:
    """The exponential smoothing factor of a first-order low-pass with ``cutoff`` Hz sampled every ``dt`` seconds:
    ``1 / (1 + tau / dt)`` with ``tau = 1 / (2 pi cutoff)``; in ``(0, 1)``, 1 = follow the input."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class KeypointSmoother:
    """One-Euro filter over a stream of keypoint dicts (``value [B, K, 2]``, optional ``jacobian [B, K, 2, 2]``),
    one call per frame with that frame's capture time in seconds. Pure tensor arithmetic on the keypoints' device
    (no host round trip). The first frame, and any frame after :meth:`reset` or a change of shape, passes through
    unchanged. Non-increasing timestamps are treated as 1 ms apart rather than rejected: a camera driver can repeat
    a timestamp."""

    def __init__(self, config: OneEuroConfig | None = None) -> None:
        self.config = config or OneEuroConfig()
        self._t: float | None = None
        self._value: torch.Tensor | None = None
        self._jacobian: torch.Tensor | None = None
        self._speed: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the past (the next frame passes through)."""
        self._t = self._value = self._jacobian = self._speed = None

    def __call__(self, kp: KP, t: float) -> KP:
        value = kp["value"]
        jacobian = kp.get("jacobian")
        fresh = self._value is None or self._value.shape != value.shape or (
            (jacobian is None) != (self._jacobian is None))
        if fresh:
            self._t, self._value, self._jacobian = float(t), value, jacobian
            self._speed = torch.zeros(value.shape[:-1], dtype=value.dtype, device=value.device)
            return dict(kp)
        cfg = self.config
        dt = max(float(t) - self._t, 1e-3)
        self._t = float(t)
        # Speed per keypoint [B, K] (the norm of its velocity), itself low-passed at d_cutoff.
        raw_speed = torch.linalg.vector_norm(value - self._value, dim=-1) / dt
        self._speed = self._speed + smoothing_factor(dt, cfg.d_cutoff) * (raw_speed - self._speed)
        alpha = smoothing_factor(dt, cfg.min_cutoff + cfg.beta * self._speed)  # [B, K]
        self._value = self._value + alpha[..., None] * (value - self._value)
        out = dict(kp)
        out["value"] = self._value
        if jacobian is not None:
            self._jacobian = self._jacobian + alpha[..., None, None] * (jacobian - self._jacobian)
            out["jacobian"] = self._jacobian
        return out


__all__ = ["KeypointSmoother", "OneEuroConfig", "smoothing_factor"]
