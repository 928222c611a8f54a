"""``fomm animate --auto-crop``: animate the face of a full-size photo and paste it back.

The keypoint models are trained on square face crops (VoxCeleb framing), so a full-size portrait or a wide
driving video is first cropped around its face:

* source: the largest face of the photo is detected once; a square box around it (grown by ``increase`` per
  side, see :data:`fomm.crop.video.DEFAULT_INCREASE`) is cut out and animated at the model's size;
* driving: two streaming passes. The first decodes the video and runs the face detector on every
  ``detect_every``-th frame, tracks the face (:func:`fomm.crop.video.track_faces`) and takes the longest face
  segment's union box, grown by the same ``increase``: ONE box for the whole video, so the crop does not
  jitter. The second pass cuts that box out of every frame as it is animated. Memory stays at a few frames;
* every generated crop is resized to the source box and blended into the photo with a feathered mask
  (:class:`fomm.crop.paste.PasteBack`): pixels outside the box are the photo's own bytes, and the output has
  the photo's resolution.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from fomm.crop.boxes import Box, crop_and_resize, fit_box, square_box
from fomm.crop.detect import Backend, FaceDetector
from fomm.crop.paste import PasteBack, auto_crop_image
from fomm.crop.video import DEFAULT_INCREASE, _smooth, track_faces
from fomm.errors import InputError
from fomm.io.reading import iter_frames, probe_video

#: The driving video's face is looked for on every this-many-th frame in the first pass (faces in a
#: driving clip move slowly; 5 frames is 0.2 s at 25 fps, and the union box covers the frames between).
DETECT_EVERY = 5


@dataclass(frozen=True)
class AutoCropPlan:
    """Where :func:`animate_video` (``auto_crop=True``) cut the inputs.

    ``source_box``/``driving_box``: square ``(left, top, right, bottom)`` boxes in pixels of the photo and of
    the driving video's display frames (SAR applied). ``source_face``/``driving_face``: the detected face boxes
    they were grown from (the driving one is the union over the tracked segment).
    """

    source_box: Box
    source_face: Box
    driving_box: Box
    driving_face: Box


def driving_face_box(path: str | os.PathLike, increase: float = DEFAULT_INCREASE, *,
                     detect_every: int = DETECT_EVERY, max_frames: int | None = None, backend: Backend = "auto",
                     detect_size: int = 400, progress: bool = False) -> tuple[Box, Box]:
    """One stable square crop box for a whole driving video: ``(crop_box, face_union_box)``.

    Decodes the video once (streaming) and detects faces on every ``detect_every``-th frame among the first
    ``max_frames``. The longest tracked face segment wins (a second person or a false detection elsewhere does
    not move the box); its smoothed face boxes are united and grown by ``increase`` per side, then moved inside
    the frame. Boxes are in display pixels (SAR and rotation applied, as :func:`fomm.io.iter_frames` yields).

    Raises:
        InputError: the video is unreadable, or no face is found in any sampled frame.
    """
    if detect_every < 1:
        raise InputError(f"detect_every must be >= 1, got {detect_every}")
    info = probe_video(path)
    detector = FaceDetector(backend, max_side=detect_size)
    frames = iter_frames(path, max_frames=max_frames)
    total = info.num_frames if max_frames is None else min(info.num_frames, max_frames)
    sampled = itertools.islice(frames, 0, None, detect_every)
    # On sampled frames a face may move further between looks, so gaps are bridged for fewer samples.
    segments, (w, h) = track_faces(sampled, detector, max_lost=2, progress=progress,
                                   total=-(-total // detect_every))
    if not segments:
        raise InputError(f"{path}: no face found in the driving video; use a video showing a frontal face, "
                         "crop it to the face yourself, or run without --auto-crop")
    _, _, boxes = max(segments, key=lambda s: s[1] - s[0])
    smoothed = _smooth(boxes, 3)
    union = (min(b[0] for b in smoothed), min(b[1] for b in smoothed),
             max(b[2] for b in smoothed), max(b[3] for b in smoothed))
    return fit_box(square_box(union, increase), w, h), union


def source_face_crop(photo: np.ndarray, size: int, increase: float = DEFAULT_INCREASE,
                     backend: Backend = "auto") -> tuple[np.ndarray, Box, Box]:
    """``(crop, crop_box, face_box)`` for a full-size photo (uint8 ``[H, W, 3]``): the square crop is
    ``size`` x ``size`` uint8. Raises :class:`InputError` when the photo has no detectable face."""
    from fomm.crop.detect import find_face_box

    face = find_face_box(photo, backend)
    if face is None:
        raise InputError("no face found in the source image; use a photo with a frontal face, crop it to the "
                         "face yourself, or run without --auto-crop")
    crop, box = auto_crop_image(photo, size=size, increase=increase, backend=backend, face=face)
    return crop, box, face


def cropped_frames(path: str | os.PathLike, box: Box, size: int, *, max_frames: int | None = None
                   ) -> Iterator[np.ndarray]:
    """Stream the driving video's frames cut to ``box`` and resized to ``size`` x ``size`` (uint8)."""
    for frame in iter_frames(path, max_frames=max_frames):
        yield crop_and_resize(frame, box, size, mode="pad")


__all__ = ["DETECT_EVERY", "AutoCropPlan", "PasteBack", "cropped_frames", "driving_face_box", "source_face_crop"]
