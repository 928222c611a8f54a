"""Which square of the camera frame the model sees: the centre, the whole frame, or a tracked face.

Webcams are 4:3 or 16:9 and the models square, and the FOMM face models were trained on VoxCeleb crops in which
the head fills about half the frame; a person at a desk fills a tenth of a 720p frame. ``auto`` therefore tracks the
face (:class:`fomm.crop.FaceDetector`: dlib HOG, OpenCV Haar as a fallback, both offline) and crops a square
around it with the margin ``fomm animate --auto-crop`` uses.

Detection runs every ``detect_every`` animated frames on a copy whose longer side is at most 320 px (dlib HOG on a
640x480 frame at that size: 28 ms median, measured on this shared 2-core CPU at load average 3.7; every 5th frame,
~6 ms per frame on average, against ~120-280 ms for a vox-256 bf16 frame), and the box is smoothed with the same
One-Euro filter as the keypoints (:mod:`fomm.live.smoothing`): a box that jumped by a few pixels between detections
would move the whole crop, which the model reads as head motion. When the face is lost the last box is kept.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from fomm.crop.boxes import DEFAULT_INCREASE, Box, crop_box, square_box
from fomm.errors import InputError
from fomm.live.smoothing import KeypointSmoother, OneEuroConfig

CropMode = Literal["auto", "center", "none"]
CROP_MODES: tuple[str, ...] = ("auto", "center", "none")


def center_square(frame: np.ndarray) -> np.ndarray:
    """The largest centred square of a uint8 ``[H, W, 3]`` frame (a view, no copy)."""
    h, w = frame.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return frame[top:top + s, left:left + s]


class FaceTrackCrop:
    """Square crops around the tracked face of successive camera frames (uint8 ``[H, W, 3]`` in, a square uint8
    crop out, padded with black where the square leaves the frame). Stateful: one instance per stream."""

    def __init__(self, increase: float = DEFAULT_INCREASE, detect_every: int = 5, detect_side: int = 320,
                 backend: str = "auto") -> None:
        from fomm.crop.detect import FaceDetector

        if not 1 <= int(detect_every) <= 1000:
            raise InputError(f"face detection interval must be 1-1000 frames, got {detect_every!r}")
        self.detector = FaceDetector(backend, max_side=detect_side)
        self.increase = float(increase)
        self.detect_every = int(detect_every)
        self._count = 0
        self._box: np.ndarray | None = None  # smoothed (cx, cy, side) in pixels
        # Box centre and side in pixels: a still face's detections jitter by a few pixels, a turn moves tens.
        self._filter = KeypointSmoother(OneEuroConfig(min_cutoff=0.5, beta=0.05, d_cutoff=1.0))

    @property
    def box(self) -> Box | None:
        """The current crop box ``(left, top, right, bottom)`` in frame pixels, or ``None`` before the first face."""
        if self._box is None:
            return None
        cx, cy, side = (float(v) for v in self._box)
        left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
        return (left, top, left + int(round(side)), top + int(round(side)))

    def __call__(self, frame: np.ndarray, t: float) -> np.ndarray:
        if self._count % self.detect_every == 0 or self._box is None:
            faces = self.detector.detect(frame)
            if faces:
                x0, y0, x1, y1 = square_box(faces[0], self.increase)
                measured = torch.tensor([[[(x0 + x1) / 2, (y0 + y1) / 2, float(x1 - x0)]]], dtype=torch.float64)
                self._box = self._filter({"value": measured}, t)["value"][0, 0].numpy()
        self._count += 1
        box = self.box
        if box is None:
            return center_square(frame)
        try:
            return crop_box(frame, box, mode="pad")
        except ValueError:  # a box off the frame (the camera's resolution changed): start over
            self._box = None
            self._filter.reset()
            return center_square(frame)


class CameraCrop:
    """``mode``: ``center`` (default: no detector needed), ``auto`` (:class:`FaceTrackCrop`) or ``none`` (the whole
    frame, squashed to the model's square by the resize)."""

    def __init__(self, mode: str = "center", **face_options) -> None:
        if mode not in CROP_MODES:
            raise InputError(f"crop must be one of {', '.join(CROP_MODES)}, got {mode!r}")
        self.mode = mode
        self._face = FaceTrackCrop(**face_options) if mode == "auto" else None

    def __call__(self, frame: np.ndarray, t: float = 0.0) -> np.ndarray:
        if self._face is not None:
            return self._face(frame, t)
        return center_square(frame) if self.mode == "center" else frame


__all__ = ["CROP_MODES", "CameraCrop", "FaceTrackCrop", "center_square"]
