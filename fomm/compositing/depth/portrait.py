"""``portrait``: a depth map for a photo of a person from what mediapipe ships, offline, with no download.

A person photographed in front of a background is, to first order, three layers: the background (far), the body
(in between, rounder at its middle than at its outline) and the face (nearest, with the nose ahead of the cheeks).
mediapipe gives each layer without any weights to fetch: selfie segmentation (the person's soft matte), the face mesh
(468 landmarks with a per-landmark depth ``z``, the face's real relief) and pose (33 body landmarks with ``z``, so an
arm held towards the camera comes forward). Only the models inside the mediapipe wheel are used: pose runs at
``model_complexity=1`` because the lite and heavy pose models are downloaded by mediapipe on first use.

The result is a plausible relative depth, not a measurement: layers at fixed levels (:class:`PortraitConfig`), relief
inside them. On the shared face photos (LivePortrait's 10 JPEG sources) the mean depth inside the face box is
0.74-0.95 and the four corners' 0.00-0.26 (``tests/test_depth.py`` checks one photo), where a flat map has no
difference at all. Photos are processed at most ``work_side`` pixels on their longer side (about 0.15 s for a
512-pixel portrait on one CPU core) and the map is resized back.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.interpolate import LinearNDInterpolator

from fomm.compositing.depth.base import resize_depth
from fomm.errors import InputError
from fomm.io.image import resize_uint8


@dataclass(frozen=True)
class PortraitConfig:
    """Depth levels of the layers (all in ``[0, 1]``, near = 1) and how much relief each gets.

    Attributes:
        background: the background's depth.
        body: the body's depth at its outline; ``body_round`` is added at its thickest point (a distance-transform
            bulge, so the torso is rounder than a cut-out).
        pose_relief: how far a pose landmark's ``z`` (mediapipe: hip-centred, image-width units, negative = towards
            the camera) moves the body around it, per unit of ``z``; the offset is clipped to +-``pose_clip``.
        face: the face's depth at its outline; ``face_relief`` is added at its most forward point (the nose tip).
        work_side: the longer side the models see (px, 64-2048).
    """

    background: float = 0.0
    body: float = 0.45
    body_round: float = 0.12
    pose_relief: float = 0.25
    pose_clip: float = 0.15
    face: float = 0.72
    face_relief: float = 0.28
    work_side: int = 512

    def __post_init__(self) -> None:
        for name in ("background", "body", "body_round", "pose_relief", "pose_clip", "face", "face_relief"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise InputError(f"portrait depth {name} must be between 0 and 1, got {value!r}")
        if isinstance(self.work_side, bool) or not isinstance(self.work_side, int) or not 64 <= self.work_side <= 2048:
            raise InputError(f"portrait work_side must be a whole number between 64 and 2048, got {self.work_side!r}")


@contextlib.contextmanager
def _quiet_stderr():
    """mediapipe's C++ logs (TFLite delegate notes) go straight to file descriptor 2; keep them off the terminal."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(fd, 2)
    finally:
        os.close(fd)


class PortraitEstimator:
    """Person-in-front-of-background depth from mediapipe (see the module docstring).

    ``__call__(image uint8 [H, W, 3]) -> float32 [H, W]`` in ``[0, 1]``, near = 1. A photo with no person gives the
    flat background level. :meth:`close` frees the mediapipe graphs.

    Raises:
        InputError: mediapipe is not installed (``pip install 'fomm[eval]'``).
    """

    name = "portrait"

    def __init__(self, config: PortraitConfig | None = None) -> None:
        self.config = config or PortraitConfig()
        try:
            with _quiet_stderr():
                from mediapipe.python.solutions import face_mesh, pose, selfie_segmentation
        except ImportError:
            raise InputError("the portrait depth estimator needs mediapipe: pip install 'fomm[eval]' (or choose "
                             "--depth-estimator depth-anything/file)") from None
        with _quiet_stderr():
            self._seg = selfie_segmentation.SelfieSegmentation(model_selection=0)
            self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)
            # model_complexity=1 is the pose model inside the wheel; 0 and 2 would be downloaded on first use.
            self._pose = pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False)

    def close(self) -> None:
        for graph in (self._seg, self._mesh, self._pose):
            with contextlib.suppress(Exception):
                graph.close()

    def _work_image(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        scale = min(1.0, self.config.work_side / max(h, w))
        size = (max(16, round(h * scale)), max(16, round(w * scale)))
        return np.ascontiguousarray(resize_uint8(image, size))

    def _body(self, img: np.ndarray, person: np.ndarray) -> np.ndarray:
        """Body depth over the whole frame (meaningful where ``person`` is): outline level + bulge + pose relief."""
        cfg = self.config
        inside = person > 0.5
        depth = np.full(person.shape, cfg.body, np.float32)
        if inside.any():
            dist = ndimage.distance_transform_edt(inside)
            depth += cfg.body_round * np.sqrt(dist / max(float(dist.max()), 1.0)).astype(np.float32)
        with _quiet_stderr():
            res = self._pose.process(img)
        if res.pose_landmarks is None:
            return depth
        h, w = person.shape
        marks = np.array([[p.x, p.y, p.z, p.visibility] for p in res.pose_landmarks.landmark], np.float64)
        keep = (marks[:, 3] > 0.5) & (marks[:, 0] >= 0) & (marks[:, 0] < 1) & (marks[:, 1] >= 0) & (marks[:, 1] < 1)
        if not keep.any():
            return depth
        marks = marks[keep]
        # Relative to the torso: only how far a part sticks out from the body's mean counts.
        offset = np.clip(-(marks[:, 2] - np.median(marks[:, 2])) * cfg.pose_relief, -cfg.pose_clip, cfg.pose_clip)
        # Normalised convolution: spread each landmark's offset over a Gaussian neighbourhood. The field is smooth
        # (sigma 8% of the diagonal), so it is built on a grid of at most 64 px and resized: 0.85 s -> 5 ms.
        gs = min(1.0, 64 / max(h, w))
        gh, gw = max(2, round(h * gs)), max(2, round(w * gs))
        values, weights = np.zeros((gh, gw)), np.zeros((gh, gw))
        ys = np.clip((marks[:, 1] * gh).astype(int), 0, gh - 1)
        xs = np.clip((marks[:, 0] * gw).astype(int), 0, gw - 1)
        np.add.at(values, (ys, xs), offset)
        np.add.at(weights, (ys, xs), 1.0)
        sigma = 0.08 * float(np.hypot(gh, gw))
        values = ndimage.gaussian_filter(values, sigma, mode="constant")
        weights = ndimage.gaussian_filter(weights, sigma, mode="constant")
        field = np.where(weights > 1e-8, values / np.maximum(weights, 1e-12), 0.0).astype(np.float32)
        lo, hi = float(field.min()), float(field.max())
        span = max(hi - lo, 1e-6)
        field = resize_depth((field - lo) / span, (h, w)) * span + lo
        return depth + field.astype(np.float32)

    def _face(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(face depth, soft face matte)`` from the face mesh, or None without a face."""
        cfg = self.config
        with _quiet_stderr():
            res = self._mesh.process(img)
        if not res.multi_face_landmarks:
            return None
        h, w = img.shape[:2]
        pts = np.array([[p.x * w, p.y * h, p.z] for p in res.multi_face_landmarks[0].landmark], np.float64)
        z = pts[:, 2]
        relief = (z.max() - z) / max(float(z.max() - z.min()), 1e-6)  # 1 at the nose tip, 0 at the face outline
        x0, y0 = np.floor(pts[:, :2].min(0)).astype(int)
        x1, y1 = np.ceil(pts[:, :2].max(0)).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
        if x1 <= x0 or y1 <= y0:
            return None
        gy, gx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
        inside = LinearNDInterpolator(pts[:, :2], relief)(gx, gy)
        face = np.zeros((h, w), np.float32)
        matte = np.zeros((h, w), np.float32)
        valid = np.isfinite(inside)
        face[y0:y1 + 1, x0:x1 + 1] = np.where(valid, cfg.face + cfg.face_relief * np.nan_to_num(inside), 0.0)
        matte[y0:y1 + 1, x0:x1 + 1] = valid
        # A soft edge a few percent of the face wide, so the face meets the head and hair without a step.
        sigma = 0.04 * max(x1 - x0, y1 - y0)
        soft = ndimage.gaussian_filter(matte, sigma)
        return face, np.clip(soft * matte, 0.0, 1.0)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {tuple(image.shape)}")
        cfg = self.config
        img = self._work_image(image)
        with _quiet_stderr():
            person = self._seg.process(img).segmentation_mask
        person = np.clip(np.asarray(person, np.float32), 0.0, 1.0) if person is not None else \
            np.zeros(img.shape[:2], np.float32)
        depth = cfg.background + person * (self._body(img, person) - cfg.background)
        face = self._face(img)
        if face is not None:
            face_depth, matte = face
            # The face is never pushed behind what is already there (the head's outline from the matte).
            depth = np.where(matte > 0, (1 - matte) * depth + matte * np.maximum(face_depth, depth), depth)
        depth = np.clip(depth, 0.0, 1.0).astype(np.float32)
        return resize_depth(depth, image.shape[:2])


__all__ = ["PortraitConfig", "PortraitEstimator"]
