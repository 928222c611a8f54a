"""Box geometry shared by dataset preparation, face auto-crop and paste-back.

A box is ``(left, top, right, bottom)`` in integer pixels, right/bottom exclusive (numpy slice
convention: ``image[top:bottom, left:right]``). Boxes may extend past the image; :func:`crop_box`
then either clamps (drops the outside part, like numpy slicing) or pads with a constant colour.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]
OutOfFrame = Literal["clamp", "pad"]

#: Default margin for face auto-crop (``fomm crop``, ``fomm animate --auto-crop``), per side, as a fraction of
#: the face box side: the square crop is ``(1 + 2 * 0.5) = 2`` face boxes wide, so dlib's brows-to-chin box
#: fills half the crop. That is VoxCeleb-like framing: the whole head including hair, with some margin above
#: it, and the neck and top of the shoulders below. Judged on contact sheets of the shared face videos
#: (``faces/liveportrait``, ``faces/tpsmm``) at 0.1/0.3/0.4/0.5/0.7: 0.1 (the original tool's value, meant
#: for detector boxes that already include the forehead) cuts the forehead and chin; 0.3-0.4 still touch the
#: top of the hair on several clips; 0.7 shrinks the face to a third of the crop. For reference, dlib's face box
#: fills 0.62 (median; 0.52-0.75 for 10-90 %) of the VoxCeleb1 crops in ``faces/x2face-voxceleb``, which are
#: tighter than the FOMM VoxCeleb preprocessing's crops; a moving head's union box also adds margin.
DEFAULT_INCREASE = 0.5


def box_size(box: Box) -> tuple[int, int]:
    """``(width, height)`` of a box."""
    return box[2] - box[0], box[3] - box[1]


def scale_box(box: Box, sx: float, sy: float) -> Box:
    """Scale a box from one resolution to another (``x * sx``, ``y * sy``), truncating to int.

    Truncation (not rounding) matches the original VoxCeleb/TaiChi preprocessing when the
    downloaded video's resolution differs from the one listed in the metadata.
    """
    left, top, right, bottom = box
    return int(left * sx), int(top * sy), int(right * sx), int(bottom * sy)


def square_box(box: Box | tuple[float, float, float, float], increase: float) -> Box:
    """The square box centred on ``box`` whose side is ``max(w, h) * (1 + 2 * increase)``.

    ``increase`` is the margin added on each side as a fraction of the box's longer side
    (0.1 = 10 % each side). Nothing is clipped: the result may extend past the image.
    """
    if increase < 0:
        raise ValueError("increase must be >= 0")
    left, top, right, bottom = box
    side = max(right - left, bottom - top) * (1.0 + 2.0 * increase)
    cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    side_i = max(1, int(round(side)))
    new_left = int(round(cx - side_i / 2.0))
    new_top = int(round(cy - side_i / 2.0))
    return new_left, new_top, new_left + side_i, new_top + side_i


def fit_box(box: Box, width: int, height: int) -> Box:
    """Move a box inside a ``width`` x ``height`` image without changing its shape where possible.

    If the box is larger than the image along an axis it is shrunk to a square of side
    ``min(width, height)`` (kept centred), so the result always lies fully inside the image
    and stays square when the input was square.
    """
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    if w > width or h > height:
        side = min(width, height, max(w, h))
        cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
        left, top = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
        w = h = side
    left = min(max(left, 0), width - w)
    top = min(max(top, 0), height - h)
    return left, top, left + w, top + h


def crop_box(image: np.ndarray, box: Box, mode: OutOfFrame = "clamp", fill: int = 0) -> np.ndarray:
    """Cut ``box`` out of an ``[H, W, C]`` image.

    ``mode="clamp"`` keeps only the part inside the image (like numpy slicing; the result is smaller
    than the box when it runs past the edge); ``mode="pad"`` returns exactly the box size, filling the
    outside with ``fill``. Raises ``ValueError`` if the box does not overlap the image at all.
    """
    h, w = image.shape[:2]
    left, top, right, bottom = box
    il, it, ir, ib = max(left, 0), max(top, 0), min(right, w), min(bottom, h)
    if ir <= il or ib <= it:
        raise ValueError(f"box {box} lies outside the {w}x{h} frame")
    inside = image[it:ib, il:ir]
    if mode == "clamp" or (il, it, ir, ib) == (left, top, right, bottom):
        return inside
    if mode != "pad":
        raise ValueError(f"unknown out-of-frame mode {mode!r}; use 'clamp' or 'pad'")
    out = np.full((bottom - top, right - left) + image.shape[2:], fill, dtype=image.dtype)
    out[it - top:ib - top, il - left:ir - left] = inside
    return out


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Antialiased resize of a uint8 ``[H, W, 3]`` image to ``[height, width, 3]`` (identity if same size)."""
    if image.shape[1] == width and image.shape[0] == height:
        return np.ascontiguousarray(image)
    # PIL's bicubic filter widens its support when shrinking, so downscaling is antialiased.
    # np.array (not asarray): PIL's buffer is read-only, and callers hand crops to torch.from_numpy.
    return np.array(Image.fromarray(np.ascontiguousarray(image)).resize((width, height), Image.BICUBIC))


def crop_and_resize(image: np.ndarray, box: Box, size: int | None, mode: OutOfFrame = "clamp") -> np.ndarray:
    """:func:`crop_box` then resize to ``size`` x ``size`` (``None``: keep the crop's size)."""
    crop = crop_box(image, box, mode)
    if size is None:
        return np.ascontiguousarray(crop)
    return resize_image(crop, size, size)
