"""Paste an animated face crop back into the full-resolution photo it was cut from.

``fomm animate --auto-crop`` crops a square around the face (:func:`auto_crop_image`), animates that
crop at the model's resolution, then pastes every output frame back into the original photo with
:class:`PasteBack`. The blend mask is 1 in the middle of the crop box and ramps smoothly to exactly 0 at
the box border, so pixels outside the box (and on its outermost ring) are bit-identical to the photo.
"""

from __future__ import annotations

import numpy as np

from fomm.crop.boxes import DEFAULT_INCREASE, Box, crop_and_resize, fit_box, resize_image, square_box
from fomm.crop.detect import Backend, find_face_box
from fomm.errors import InputError


def feather_mask(height: int, width: int, feather: float) -> np.ndarray:
    """Blend weights ``[height, width]`` float32 in [0, 1]: 0 on the border ring, 1 inside.

    The ramp is ``feather * min(height, width)`` pixels wide (at least one pixel) and uses a
    smoothstep so the seam has no visible kink. ``feather=0`` still zeroes only the border ring.
    """
    if not 0.0 <= feather <= 0.5:
        raise ValueError("feather must be in [0, 0.5]")
    ramp = max(1.0, feather * min(height, width))

    def axis(n: int) -> np.ndarray:
        i = np.arange(n, dtype=np.float64)
        dist = np.minimum(i, n - 1 - i)  # 0 on the first/last pixel
        x = np.clip(dist / ramp, 0.0, 1.0)
        return x * x * (3.0 - 2.0 * x)

    return np.outer(axis(height), axis(width)).astype(np.float32)


class PasteBack:
    """Pastes animated crops into a fixed photo with a fixed crop box (reuses the mask per frame).

    ``photo``: RGB uint8 ``[H, W, 3]`` (the full-size source). ``box``: the ``(left, top, right, bottom)``
    crop box in photo pixels that the animated crops correspond to; it may extend past the photo (the
    outside part is simply not pasted). ``feather``: width of the soft edge as a fraction of the box side.
    """

    def __init__(self, photo: np.ndarray, box: Box, feather: float = 0.1) -> None:
        if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
            raise InputError(f"paste-back needs an RGB uint8 photo, got {photo.shape} {photo.dtype}")
        h, w = photo.shape[:2]
        left, top, right, bottom = box
        if right <= left or bottom <= top:
            raise InputError(f"crop box {box} has no area")
        self.photo = photo
        self.box = box
        self.inner = (max(left, 0), max(top, 0), min(right, w), min(bottom, h))
        il, it, ir, ib = self.inner
        if ir <= il or ib <= it:
            raise InputError(f"crop box {box} lies outside the {w}x{h} photo")
        mask = feather_mask(bottom - top, right - left, feather)[self._inside]
        self._mask = mask[..., None]
        self._region = photo[it:ib, il:ir].astype(np.float32)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the photo, which every pasted result has."""
        return int(self.photo.shape[0]), int(self.photo.shape[1])

    @property
    def box_size(self) -> tuple[int, int]:
        """``(height, width)`` of the crop box: the size a crop is resized to before it is blended."""
        left, top, right, bottom = self.box
        return bottom - top, right - left

    @property
    def _inside(self) -> tuple[slice, slice]:
        # The part of a box-sized array that lands inside the photo (all of it unless the box runs past an edge).
        left, top, _, _ = self.box
        il, it, ir, ib = self.inner
        return np.s_[it - top:ib - top, il - left:ir - left]

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Blend one animated crop ``[h, w, 3]`` uint8 (any size; resized to the box) into a copy of the photo.

        Returns RGB uint8 ``[H, W, 3]``, the photo's size.
        """
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError(f"animated frame must be [h, w, 3], got {frame.shape}")
        if frame.dtype != np.uint8:
            frame = np.clip(np.asarray(frame, dtype=np.float32) * (255.0 if frame.max() <= 1.0 else 1.0),
                            0, 255).round().astype(np.uint8)
        il, it, ir, ib = self.inner
        h, w = self.box_size
        full = resize_image(frame, w, h)[self._inside].astype(np.float32)
        blended = self._region + (full - self._region) * self._mask
        out = self.photo.copy()
        # Where the mask is 0 keep the photo's own bytes (no float round trip at all).
        out[it:ib, il:ir] = np.where(self._mask > 0, np.clip(np.rint(blended), 0, 255).astype(np.uint8),
                                     self.photo[it:ib, il:ir])
        return out

    def blend(self, base: np.ndarray, crop: np.ndarray) -> np.ndarray:
        """Blend a map that is not colour (a depth pass) the way :meth:`__call__` blends a frame: the same box and
        feathered mask, so the result lines up with the pasted video pixel for pixel.

        ``base``: float ``[H, W]`` or ``[H, W, C]``, the photo's size (e.g. the full photo's depth). ``crop``: the
        animated map already resized to :attr:`box_size` (``[h, w]`` or ``[h, w, C]``; the caller resizes it with a
        filter suited to its values, where colour uses bicubic). Returns a float32 copy of ``base`` with ``crop``
        blended in; where the mask is 0 (outside the box and on its outer ring) the values are ``base``'s, bit for
        bit, because ``base + (crop - base) * 0`` is ``base`` in floating point.
        """
        base = np.asarray(base, np.float32)
        crop = np.asarray(crop, np.float32)
        if base.shape[:2] != self.size or base.ndim not in (2, 3):
            raise InputError(f"paste-back base must be the photo's {self.size[1]}x{self.size[0]}, got {base.shape}")
        if crop.shape[:2] != self.box_size or crop.shape[2:] != base.shape[2:]:
            raise InputError(f"paste-back map must be the crop box's {self.box_size[1]}x{self.box_size[0]} with the "
                             f"base's channels, got {crop.shape} for a base of {base.shape}")
        il, it, ir, ib = self.inner
        mask = self._mask if base.ndim == 3 else self._mask[..., 0]
        region = base[it:ib, il:ir]
        out = base.copy()
        out[it:ib, il:ir] = region + (crop[self._inside] - region) * mask
        return out


def paste_back(photo: np.ndarray, box: Box, frame: np.ndarray, feather: float = 0.1) -> np.ndarray:
    """One-shot :class:`PasteBack`: blend ``frame`` into ``photo`` at ``box``; returns ``[H, W, 3]`` uint8."""
    return PasteBack(photo, box, feather)(frame)


def auto_crop_image(image: np.ndarray, size: int = 256, increase: float = DEFAULT_INCREASE,
                    backend: Backend = "auto", face: Box | None = None) -> tuple[np.ndarray, Box]:
    """Crop a square around the largest face of a still photo.

    Returns ``(crop, box)``: ``crop`` is RGB uint8 ``[size, size, 3]``; ``box`` is the square crop box in
    photo pixels, moved inside the photo when possible (so the crop has no padding), to pass to
    :class:`PasteBack`. ``face``: an already detected face box (skips detection). Raises :class:`InputError`
    if no face is found.
    """
    if face is None:
        face = find_face_box(image, backend)
    if face is None:
        raise InputError("no face found in the source image; crop it to the face yourself or run without --auto-crop")
    h, w = image.shape[:2]
    box = fit_box(square_box(face, increase), w, h)
    return crop_and_resize(image, box, size, mode="pad"), box
