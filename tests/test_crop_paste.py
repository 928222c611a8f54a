"""Box geometry, still-photo face detection and paste-back."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fomm.crop.boxes import crop_box, fit_box, scale_box, square_box
from fomm.crop.detect import FaceDetector, find_face_box
from fomm.crop.paste import PasteBack, auto_crop_image, feather_mask, paste_back
from fomm.errors import InputError


def _img(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_crop_box_clamp_and_pad():
    img = _img(20, 30)
    assert np.array_equal(crop_box(img, (5, 4, 15, 10)), img[4:10, 5:15])
    # past bottom/right: clamp = numpy slicing, pad = full box with zeros outside
    assert np.array_equal(crop_box(img, (25, 15, 35, 25), "clamp"), img[15:20, 25:30])
    padded = crop_box(img, (25, 15, 35, 25), "pad")
    assert padded.shape == (10, 10, 3)
    assert np.array_equal(padded[:5, :5], img[15:20, 25:30]) and not padded[5:].any() and not padded[:, 5:].any()
    with pytest.raises(ValueError):
        crop_box(img, (40, 0, 50, 10))


def test_square_fit_scale():
    assert square_box((10, 20, 30, 60), 0.0) == (0, 20, 40, 60)
    assert square_box((0, 0, 100, 100), 0.1) == (-10, -10, 110, 110)
    assert fit_box((-10, -10, 110, 110), 200, 150) == (0, 0, 120, 120)
    assert fit_box((-10, -10, 190, 190), 300, 150) == (15, 0, 165, 150)  # too big: shrink to square
    assert fit_box((250, 100, 290, 140), 260, 120) == (220, 80, 260, 120)
    assert scale_box((10, 11, 21, 33), 0.5, 0.5) == (5, 5, 10, 16)


def test_feather_mask_zero_border_one_centre():
    m = feather_mask(40, 40, 0.1)
    assert m.shape == (40, 40) and m.dtype == np.float32
    assert (m[0] == 0).all() and (m[-1] == 0).all() and (m[:, 0] == 0).all() and (m[:, -1] == 0).all()
    assert m[20, 20] == 1.0 and (m >= 0).all() and (m <= 1).all()


@pytest.mark.parametrize("box", [(30, 20, 94, 84), (-16, 60, 48, 124), (70, -10, 110, 30)])
def test_paste_back_keeps_outside_pixels_bit_identical(box):
    photo = _img(100, 100, 1)
    frame = _img(32, 32, 2)
    out = paste_back(photo, box, frame, feather=0.15)
    assert out.shape == photo.shape and out.dtype == np.uint8
    left, top, right, bottom = box
    outside = np.ones(photo.shape[:2], bool)
    outside[max(top, 0):max(bottom, 0), max(left, 0):max(right, 0)] = False
    assert np.array_equal(out[outside], photo[outside])
    # the centre of the box is the animated frame (mask 1): equal to the resized frame there
    cy, cx = (top + bottom) // 2, (left + right) // 2
    if 0 <= cy < 100 and 0 <= cx < 100:
        up = np.asarray(Image.fromarray(frame).resize((right - left, bottom - top), Image.BICUBIC))
        assert np.array_equal(out[cy, cx], up[cy - top, cx - left])
    assert (out != photo).any()


def test_paste_back_identity_when_frame_is_the_crop():
    photo = _img(64, 64, 3)
    box = (8, 8, 56, 56)
    p = PasteBack(photo, box)
    assert np.array_equal(p(photo[8:56, 8:56].copy()), photo)
    with pytest.raises(InputError):
        PasteBack(photo, (70, 70, 80, 80))


@pytest.mark.parametrize("box", [(40, 16, 104, 80), (-8, 50, 40, 98)])  # inside; running past two edges
def test_blend_lays_a_float_map_where_the_colour_paste_lays_the_frame(box):
    """A depth pass pasted with :meth:`PasteBack.blend` lines up with the pasted video: same box, same mask."""
    photo = np.zeros((96, 128, 3), np.uint8)
    paste = PasteBack(photo, box, 0.1)
    left, top, right, bottom = box
    assert paste.size == (96, 128) and paste.box_size == (bottom - top, right - left)
    colour = paste(np.full((bottom - top, right - left, 3), 255, np.uint8))[..., 0] / 255.0
    ones = paste.blend(np.zeros((96, 128), np.float32), np.ones(paste.box_size, np.float32))
    np.testing.assert_allclose(ones, colour, atol=0.5 / 255)  # the colour is rounded to whole levels
    base = np.random.default_rng(1).random((96, 128)).astype(np.float32)
    kept = base.copy()
    blended = paste.blend(base, np.ones(paste.box_size, np.float32))
    untouched = ones == 0
    assert untouched.any() and np.array_equal(blended[untouched], base[untouched])  # bit for bit
    assert blended.dtype == np.float32 and np.array_equal(base, kept)  # a copy: the base is not written into
    two = paste.blend(np.stack([base, base], -1), np.ones((*paste.box_size, 2), np.float32))
    assert np.array_equal(two[..., 1], blended)
    with pytest.raises(InputError, match="crop box"):
        paste.blend(base, np.ones((32, 32), np.float32))


def test_find_face_box_on_real_photo(data_dir):
    photo = np.asarray(Image.open(data_dir / "faces" / "tpsmm" / "source.png").convert("RGB"))
    box = find_face_box(photo)
    assert box is not None
    left, top, right, bottom = box
    # the portrait's face is centred: its box centre lies in the middle third and is reasonably large
    assert 680 / 3 < (left + right) / 2 < 2 * 680 / 3 and 676 / 4 < (top + bottom) / 2 < 3 * 676 / 4
    assert right - left > 150
    crop, cbox = auto_crop_image(photo, size=128, increase=0.1)
    assert crop.shape == (128, 128, 3)
    cl, ct, cr, cb = cbox
    assert cr - cl == cb - ct and 0 <= cl and 0 <= ct and cr <= 680 and cb <= 676
    assert cl <= left and ct <= top and cr >= right and cb >= bottom
    # the Haar fallback agrees roughly with dlib on a plain frontal portrait
    haar = FaceDetector("haar").detect(photo)
    assert haar and abs((haar[0][0] + haar[0][2]) / 2 - (left + right) / 2) < 40


def test_no_face_in_photo(data_dir):
    flat = np.full((200, 200, 3), 128, np.uint8)
    assert find_face_box(flat) is None
    with pytest.raises(InputError, match="no face"):
        auto_crop_image(flat)
