"""Reconstruction metrics of the Monkey-Net / FOMM papers, as small pure functions.

Conventions shared by every function here:

* Frames are ``float`` arrays in [0, 1], shape ``[T, H, W, 3]`` (a video) or ``[H, W, 3]`` (one frame).
* Keypoints are ``[K, 2]`` arrays of ``(x, y)`` pixel coordinates *in the frame they were detected on*; a row of
  NaN marks a keypoint the detector did not find; ``None`` marks a frame where nothing was detected at all.
* Embeddings are ``[D]`` arrays, or ``None`` where no face/person was found.
* Per-frame values are NaN where a frame cannot be scored; such frames are **counted** in the returned
  :class:`FrameScores` (never silently dropped) and excluded from the mean.

Video scores average frames; dataset scores (:func:`dataset_mean`) average videos, as in the papers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: AKD is reported in pixels of a 256x256 frame (the FOMM paper's resolution), whatever the dataset's size.
AKD_REFERENCE_SIZE = 256


@dataclass(frozen=True)
class FrameScores:
    """Per-frame values of one metric on one video and how many frames could not be scored.

    ``per_frame``: ``[T]`` float, NaN where unscored. ``missing_real``: frames with no detection on the ground truth.
    ``missing_generated``: frames detected on the ground truth but with no detection on the generated frame.
    """

    per_frame: np.ndarray
    missing_real: int = 0
    missing_generated: int = 0

    @property
    def frames_scored(self) -> int:
        return int(np.sum(np.isfinite(self.per_frame)))

    @property
    def mean(self) -> float:
        """Mean over scored frames; NaN when no frame could be scored."""
        vals = self.per_frame[np.isfinite(self.per_frame)]
        return float(vals.mean()) if vals.size else float("nan")


def _check_videos(generated: np.ndarray, real: np.ndarray) -> None:
    if generated.shape != real.shape:
        raise ValueError(f"generated {generated.shape} and real {real.shape} videos must have the same shape")
    if generated.ndim != 4 or generated.shape[-1] != 3:
        raise ValueError(f"videos must be [T, H, W, 3], got {generated.shape}")


def l1_per_frame(generated: np.ndarray, real: np.ndarray) -> FrameScores:
    """Mean absolute pixel difference of each frame.

    ``generated``, ``real``: ``[T, H, W, 3]`` in [0, 1] (uint8 is accepted and divided by 255).
    Returns ``[T]`` values in [0, 1].
    """
    generated = _as_unit_float(generated)
    real = _as_unit_float(real)
    _check_videos(generated, real)
    return FrameScores(np.abs(generated - real).mean(axis=(1, 2, 3)))


def l1(generated: np.ndarray, real: np.ndarray) -> float:
    """Video L1: mean over frames of the per-frame mean absolute difference, in [0, 1]."""
    return l1_per_frame(generated, real).mean


def _as_unit_float(video: np.ndarray) -> np.ndarray:
    video = np.asarray(video)
    if video.dtype == np.uint8:
        return video.astype(np.float64) / 255.0
    return video.astype(np.float64)


def scale_keypoints(kp: np.ndarray, frame_hw: tuple[int, int], size: int = AKD_REFERENCE_SIZE) -> np.ndarray:
    """Rescale ``[K, 2]`` (x, y) pixel keypoints of an ``H x W`` frame to a ``size x size`` frame.

    Pixel centres map to pixel centres (``x' = (x + 0.5) * size / W - 0.5``), so a 1-pixel shift on a 64x64 frame
    becomes exactly a 4-pixel shift at 256x256.
    """
    h, w = frame_hw
    kp = np.asarray(kp, dtype=np.float64)
    scale = np.array([size / w, size / h])
    return (kp + 0.5) * scale - 0.5


def akd_per_frame(
    kp_generated: Sequence[np.ndarray | None],
    kp_real: Sequence[np.ndarray | None],
    frame_hw: tuple[int, int],
) -> FrameScores:
    """Average Keypoint Distance per frame, in pixels at 256x256.

    ``kp_generated``, ``kp_real``: ``T`` entries, each ``[K, 2]`` (x, y) pixels of an ``H x W`` frame (``frame_hw``),
    NaN rows for undetected keypoints, or ``None`` when nothing was detected.
    Per frame: the mean absolute coordinate difference (over x and y separately, not the Euclidean distance,
    as in the papers' evaluation code) over keypoints detected on both frames.
    """
    if len(kp_generated) != len(kp_real):
        raise ValueError(f"{len(kp_generated)} generated vs {len(kp_real)} real keypoint frames")
    values = np.full(len(kp_real), np.nan)
    missing_real = missing_gen = 0
    for t, (kg, kr) in enumerate(zip(kp_generated, kp_real, strict=True)):
        if kr is None or not np.isfinite(kr).all(axis=1).any():
            missing_real += 1
            continue
        if kg is None or not np.isfinite(kg).all(axis=1).any():
            missing_gen += 1
            continue
        kg = scale_keypoints(kg, frame_hw)
        kr = scale_keypoints(kr, frame_hw)
        if kg.shape != kr.shape:
            raise ValueError(f"frame {t}: keypoint arrays differ in shape {kg.shape} vs {kr.shape}")
        both = np.isfinite(kg).all(axis=1) & np.isfinite(kr).all(axis=1)
        if not both.any():
            missing_gen += 1
            continue
        values[t] = np.abs(kg[both] - kr[both]).mean()
    return FrameScores(values, missing_real, missing_gen)


def mkr_per_frame(
    kp_generated: Sequence[np.ndarray | None], kp_real: Sequence[np.ndarray | None]
) -> FrameScores:
    """Missing Keypoint Rate per frame, in [0, 1].

    Per frame: the fraction of keypoints detected on the ground truth (finite rows of ``kp_real``) that are missing
    on the generated frame (NaN rows, or the whole frame ``None``). Frames with nothing detected on the ground truth
    are unscored and counted in ``missing_real``; ``missing_generated`` counts frames where the generated frame had
    no detection at all (they score 1.0).
    """
    if len(kp_generated) != len(kp_real):
        raise ValueError(f"{len(kp_generated)} generated vs {len(kp_real)} real keypoint frames")
    values = np.full(len(kp_real), np.nan)
    missing_real = missing_gen = 0
    for t, (kg, kr) in enumerate(zip(kp_generated, kp_real, strict=True)):
        det_real = np.zeros(0, bool) if kr is None else np.isfinite(kr).all(axis=1)
        if not det_real.any():
            missing_real += 1
            continue
        if kg is None:
            missing_gen += 1
            values[t] = 1.0
            continue
        det_gen = np.isfinite(kg).all(axis=1)
        values[t] = float(np.sum(det_real & ~det_gen)) / float(np.sum(det_real))
    return FrameScores(values, missing_real, missing_gen)


def aed_per_frame(
    emb_generated: Sequence[np.ndarray | None], emb_real: Sequence[np.ndarray | None]
) -> FrameScores:
    """AED per frame: the **squared** L2 distance between identity embeddings (the project spec's "mean squared L2
    distance between identity embeddings"; the dataset number is the mean of these).

    ``emb_generated``, ``emb_real``: ``T`` entries, each a ``[D]`` embedding or ``None`` (no face/person found).
    Per frame: ``||e_gen - e_real||_2 ** 2``. Note that dlib's documented same-person threshold 0.6 is on the
    *unsquared* distance, i.e. 0.36 on this scale. Values depend on the embedding network, so compare only numbers
    made with the same backend.
    """
    if len(emb_generated) != len(emb_real):
        raise ValueError(f"{len(emb_generated)} generated vs {len(emb_real)} real embedding frames")
    values = np.full(len(emb_real), np.nan)
    missing_real = missing_gen = 0
    for t, (eg, er) in enumerate(zip(emb_generated, emb_real, strict=True)):
        if er is None:
            missing_real += 1
            continue
        if eg is None:
            missing_gen += 1
            continue
        diff = np.asarray(eg, np.float64) - np.asarray(er, np.float64)
        values[t] = float(np.dot(diff, diff))
    return FrameScores(values, missing_real, missing_gen)


def dataset_mean(video_means: Sequence[float]) -> tuple[float, int]:
    """Average per-video means over videos that have a score; returns ``(mean, videos_scored)``.

    Videos whose mean is NaN (no frame scored) are left out of the mean and reported via the count.
    """
    vals = np.asarray([v for v in video_means if v is not None], dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    return (float(vals.mean()) if vals.size else float("nan")), int(vals.size)
