"""Face detection for auto-crop: dlib's HOG frontal-face detector, OpenCV's Haar cascade as a fallback.

Both run offline on CPU (no weights to download): dlib ships its HOG model inside the library
(``dlib-bin`` wheel), OpenCV ships the cascade XML (``opencv-contrib-python``, the one OpenCV mediapipe also
needs). The Haar cascade is used only when dlib is not installed, because it gives more false positives on non-faces.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

import numpy as np
from PIL import Image

from fomm.crop.boxes import Box
from fomm.errors import FommError, InputError

Backend = Literal["auto", "dlib", "haar"]
# Detection runs on a copy whose longer side is at most this many pixels: HOG/Haar cost grows with
# area, and faces worth cropping are large enough to survive the downscale.
DETECT_MAX_SIDE = 640


@cache
def _dlib_detector():
    import dlib  # noqa: PLC0415 - optional dependency

    return dlib.get_frontal_face_detector()


@cache
def _haar_detector():
    import cv2  # noqa: PLC0415 - optional dependency

    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FommError(f"OpenCV could not load its face cascade {path}; reinstall opencv-contrib-python")
    return cascade


def available_backend(backend: Backend = "auto") -> str:
    """Resolve ``backend`` to ``'dlib'`` or ``'haar'``; raise :class:`FommError` if neither is installed."""
    order = ["dlib", "haar"] if backend == "auto" else [backend]
    for name in order:
        try:
            (_dlib_detector if name == "dlib" else _haar_detector)()
            return name
        except ImportError:
            continue
    raise FommError("face detection needs dlib or OpenCV: pip install 'fomm[crop]' "
                    "(dlib-bin, or opencv-contrib-python as a fallback)")


class FaceDetector:
    """Detects frontal faces in RGB uint8 ``[H, W, 3]`` images.

    ``detect`` returns boxes ``(left, top, right, bottom)`` in the input image's pixels, best first
    (largest area). ``min_score`` filters dlib's detections by their SVM score (dlib reports
    roughly 0..3 for real faces); it is ignored by the Haar backend.
    """

    def __init__(self, backend: Backend = "auto", max_side: int = DETECT_MAX_SIDE, min_score: float = 0.0,
                 upsample: int = 1) -> None:
        self.backend = available_backend(backend)
        self.max_side = max_side
        self.min_score = min_score
        self.upsample = upsample

    def detect(self, image: np.ndarray) -> list[Box]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"face detection needs an RGB uint8 image, got shape {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = image
        if scale < 1.0:
            small = np.asarray(Image.fromarray(image).resize(
                (max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR))
        if self.backend == "dlib":
            rects, scores, _ = _dlib_detector().run(np.ascontiguousarray(small), self.upsample, 0.0)
            raw = [(r.left(), r.top(), r.right() + 1, r.bottom() + 1)
                   for r, s in zip(rects, scores, strict=True) if s >= self.min_score]
        else:
            import cv2  # noqa: PLC0415

            gray = cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2GRAY)
            side = min(gray.shape[:2])
            found = _haar_detector().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=6,
                                                      minSize=(max(20, side // 10),) * 2)
            raw = [(int(x), int(y), int(x + fw), int(y + fh)) for x, y, fw, fh in found]
        boxes = [(int(round(x0 / scale)), int(round(y0 / scale)), int(round(x1 / scale)), int(round(y1 / scale)))
                 for x0, y0, x1, y1 in raw]
        # Clip to the image: dlib may report boxes slightly past the border.
        boxes = [(max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)) for x0, y0, x1, y1 in boxes]
        boxes = [bx for bx in boxes if bx[2] > bx[0] and bx[3] > bx[1]]
        boxes.sort(key=lambda bx: (bx[2] - bx[0]) * (bx[3] - bx[1]), reverse=True)
        return boxes


def find_face_box(image: np.ndarray, backend: Backend = "auto") -> Box | None:
    """The largest face in a still photo, as ``(left, top, right, bottom)`` pixels, or ``None``.

    ``image``: RGB uint8 ``[H, W, 3]``. The box is the detector's tight face box (brows to chin);
    use :func:`fomm.crop.boxes.square_box` to add a margin before cropping.
    """
    boxes = FaceDetector(backend).detect(image)
    return boxes[0] if boxes else None
