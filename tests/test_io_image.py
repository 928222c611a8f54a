from __future__ import annotations

import io
import tracemalloc
import warnings

import av
import numpy as np
import pytest
import torch
from helpers import huge_png
from hostile import bomb_jpeg, bomb_png, growing_gif
from PIL import Image

from fomm.errors import InputError, OutputError
from fomm.io.image import (
    MAX_IMAGE_PIXELS,
    ImageTooLarge,
    check_pixels,
    image_to_tensor,
    open_image,
    read_image,
    resize_uint8,
    seek_frame,
    tensor_to_uint8,
    write_image,
)


def _rgb(h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_formats_fomm_does_not_read_are_not_handed_to_their_plugins(tmp_path):
    """Pillow has an EPS plugin that runs Ghostscript on the file when it is installed: an ``.eps`` renamed to
    ``.jpg`` must be "not an image", never parsed by that plugin."""
    eps = tmp_path / "photo.jpg"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\nshowpage\n%%EOF\n")
    with Image.open(eps) as img:  # Pillow on its own takes it
        assert img.format == "EPS"
    with pytest.raises(InputError, match="not an image or an unsupported image format"):
        read_image(eps)
    mpo = tmp_path / "phone.jpg"  # what Pillow calls many phones' JPEGs
    Image.fromarray(_rgb()).save(mpo, format="MPO")
    assert read_image(mpo).shape == (48, 64, 3)


def test_rgb_png_exact(tmp_path):
    img = _rgb()
    Image.fromarray(img).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    np.testing.assert_array_equal(out, img)


def test_grayscale_replicated(tmp_path):
    g = _rgb()[..., 0]
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (48, 64, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_composited_over_white(tmp_path, mode):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., :3] = 100
    rgba[:, :10, 3] = 0      # fully transparent -> white
    rgba[:, 10:20, 3] = 255  # opaque -> the colour
    rgba[:, 20:, 3] = 128    # half -> in between
    img = Image.fromarray(rgba, mode="RGBA")
    if mode == "LA":
        img = img.convert("LA")
    img.save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert (out[:, :10] == 255).all()
    assert (out[:, 10:20] == 100).all()
    mid = out[:, 20:].astype(int)
    assert (np.abs(mid - (100 * 128 + 255 * 127) / 255) <= 1).all()


def test_palette_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (40, 40))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    arr = np.zeros((40, 40), np.uint8)
    arr[:, 20:] = 1
    pal.putdata(arr.ravel().tolist())
    pal.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[0, 39]) == (0, 0, 255)
    pal.save(tmp_path / "pt.png", transparency=1)
    out = read_image(tmp_path / "pt.png")
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[0, 39]) == (255, 255, 255)


def test_cmyk(tmp_path):
    cmyk = np.zeros((40, 40, 4), np.uint8)
    cmyk[:, :20, 0] = 255  # pure cyan
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.tif")
    out = read_image(tmp_path / "c.tif")
    assert tuple(out[0, 0]) == (0, 255, 255)
    assert tuple(out[0, 39]) == (255, 255, 255)


def test_16bit_gray_scaled(tmp_path):
    a = np.zeros((40, 40), np.uint16)
    a[:, 10:20] = 65535
    a[:, 20:] = 32896  # 128 * 257
    Image.fromarray(a).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    assert (out[:, :10] == 0).all() and (out[:, 10:20] == 255).all() and (out[:, 20:] == 128).all()


def test_48bit_rgb_png(tmp_path):
    a = np.zeros((40, 40, 3), np.uint16)
    a[..., 0] = 65535
    a[..., 1] = 32896
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 40, 40, "rgb48be"
    ctx.time_base = 1
    packets = ctx.encode(av.VideoFrame.from_ndarray(a, format="rgb48le"))
    (tmp_path / "c48.png").write_bytes(b"".join(bytes(p) for p in packets))
    assert (tmp_path / "c48.png").read_bytes()[24:26] == bytes([16, 2])  # IHDR: bit depth 16, truecolour
    out = read_image(tmp_path / "c48.png")
    assert tuple(out[0, 0]) == (255, 128, 0)


def test_exif_orientation_applied(tmp_path):
    img = np.zeros((40, 60, 3), np.uint8)
    img[:5, :5] = 255  # marker at top-left of the stored pixels
    pil = Image.fromarray(img)
    exif = pil.getexif()
    exif[0x0112] = 6  # stored rotated: display = rotate 90 degrees clockwise
    pil.save(tmp_path / "r.jpg", exif=exif, quality=100)
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == (60, 40, 3)
    ys, xs = np.nonzero(out[..., 0] > 128)
    assert ys.mean() < 10 and xs.mean() > 30  # top-left moved to top-right


def test_png_data_with_jpg_name(tmp_path):
    img = _rgb()
    Image.fromarray(img).save(tmp_path / "really_png.jpg", format="PNG")
    np.testing.assert_array_equal(read_image(tmp_path / "really_png.jpg"), img)


def test_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "text.jpg").write_text("hello, not an image\n")
    with pytest.raises(InputError, match="not an image"):
        read_image(tmp_path / "text.jpg")
    buf = io.BytesIO()
    Image.fromarray(_rgb(200, 200)).save(buf, format="JPEG")
    (tmp_path / "trunc.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match="corrupt or truncated"):
        read_image(tmp_path / "trunc.jpg")
    with pytest.raises(InputError, match="folder"):
        read_image(tmp_path)


def test_too_small(tmp_path):
    Image.fromarray(_rgb(20, 100)).save(tmp_path / "tiny.png")
    with pytest.raises(InputError, match=r"100x20.*at least 32"):
        read_image(tmp_path / "tiny.png")
    assert read_image(tmp_path / "tiny.png", min_size=16).shape == (20, 100, 3)


def test_error_message_is_one_line_with_path(tmp_path):
    with pytest.raises(InputError) as ei:
        read_image(tmp_path / "nope.png")
    msg = str(ei.value)
    assert "\n" not in msg and "nope.png" in msg


def test_image_to_tensor_and_back():
    img = _rgb(50, 70)
    t = image_to_tensor(img)
    assert t.shape == (1, 3, 50, 70) and t.dtype == torch.float32
    assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    np.testing.assert_array_equal(tensor_to_uint8(t)[0], img)
    np.testing.assert_array_equal(tensor_to_uint8(t[0]), img)
    assert tensor_to_uint8(t).shape == (1, 50, 70, 3)
    t2 = image_to_tensor(img, (32, 40))
    assert t2.shape == (1, 3, 32, 40)


def test_resize_is_antialiased():
    # A 1-pixel checkerboard shrunk 4x must become flat grey; point sampling would keep 0/255.
    board = ((np.indices((256, 256)).sum(0) % 2) * 255).astype(np.uint8)
    img = np.repeat(board[:, :, None], 3, axis=2)
    t = image_to_tensor(img, (64, 64))
    assert abs(float(t.mean()) - 0.5) < 0.01 and float(t.std()) < 0.02
    small = resize_uint8(img, (64, 64))
    assert small.shape == (64, 64, 3) and np.abs(small.astype(int) - 128).max() <= 2


def test_tensor_to_uint8_clips_and_rejects_bad_shapes():
    t = torch.tensor([-0.5, 0.5, 2.0]).view(3, 1, 1)
    assert tensor_to_uint8(t)[0, 0].tolist() == [0, 128, 255]
    with pytest.raises(ValueError):
        tensor_to_uint8(torch.zeros(4, 8, 8))


def test_write_image_roundtrip_and_errors(tmp_path):
    img = _rgb()
    write_image(tmp_path / "sub" / "o.png", img)
    np.testing.assert_array_equal(read_image(tmp_path / "sub" / "o.png"), img)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["o.png"]
    with pytest.raises(OutputError, match="extension"):
        write_image(tmp_path / "o.xyz", img)


@pytest.mark.parametrize("side", [10000, 20000])  # 20000: past Pillow's own bomb limit (179 MP)
def test_huge_image_refused_from_its_header(tmp_path, side):
    path = huge_png(tmp_path / "huge.png", side, side)
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no raw DecompressionBombWarning may reach the user
            with pytest.raises(InputError) as err:
                read_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(err.value) == (f"{path}: image is {side}x{side} = {side * side // 10**6:g} MP, above fomm's limit "
                              f"of {MAX_IMAGE_PIXELS // 10**6} MP; downscale it first")
    assert peak < 20e6  # refused before decoding: one decoded copy alone would be 300 MB or more


def test_pixel_limit_is_adjustable(tmp_path):
    path = huge_png(tmp_path / "big.png", 400, 300)
    with pytest.raises(InputError, match="400x300 = 0.12 MP, above fomm's limit of 0.1 MP"):
        read_image(path, max_pixels=100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(path, max_pixels=120_000).shape == (300, 400, 3)


def test_empty_png_has_its_own_message(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="image file is empty"):
        read_image(tmp_path / "empty.png")


# ------------------------------------------------------------------------ open_image: the one checked way to decode
def test_bytes_and_streams_read_like_the_file(tmp_path):
    img = _rgb()
    Image.fromarray(img).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    for source in (data, bytearray(data), memoryview(data), io.BytesIO(data)):
        np.testing.assert_array_equal(read_image(source), img)
    with open_image(data, name="frame 3") as opened:
        assert opened.size == (64, 48)
    with pytest.raises(InputError, match="^frame 3: image is empty"):
        read_image(b"", name="frame 3")
    with pytest.raises(InputError, match="^image: not an image or an unsupported image format$"):
        read_image(b"GIF87a, not really")
    with pytest.raises(InputError, match="^frame: image is corrupt or truncated"):  # decode errors in the body too
        with open_image(data[:len(data) // 2], name="frame") as opened:
            opened.load()


@pytest.mark.parametrize("data,size", [(bomb_png(8000, 8000), (8000, 8000)), (bomb_jpeg(8000, 8000), (8000, 8000)),
                                       (bomb_jpeg(65000, 65000), (65000, 65000))])
def test_header_bombs_are_refused_from_bytes(data, size):
    """8000x8000: between fomm's limit and Pillow's guards, only fomm's check refuses it; 65000x65000: Pillow's
    guard fires first and fomm still reports the size from the header. Pillow's global limit is left alone."""
    pil_limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageTooLarge) as err:
            read_image(data, name="frame")
    w, h = size
    assert (err.value.size, err.value.pixels, err.value.limit) == (size, w * h, MAX_IMAGE_PIXELS)
    mp = "64 MP" if w == 8000 else "4,225 MP"
    assert str(err.value) == f"frame: image is {w}x{h} = {mp}, above fomm's limit of 50 MP; downscale it first"
    assert Image.MAX_IMAGE_PIXELS == pil_limit


def test_check_pixels_and_seek_frame():
    check_pixels("depth.npy", 5000, 10000)  # exactly 50 MP
    with pytest.raises(ImageTooLarge, match="^depth.npy: image is 5001x10000 = 50 MP, above"):
        check_pixels("depth.npy", 5001, 10000)
    data = growing_gif(9000, 9000)  # frame 1 grows the 16x16 canvas to 9000x9000 when Pillow seeks to it
    with open_image(data, name="clip.gif") as gif:
        assert gif.size == (16, 16) and gif.n_frames == 2
        seek_frame(gif, 0, name="clip.gif frame 0")
        assert np.asarray(gif.convert("RGB")).shape == (16, 16, 3)
        with pytest.raises(ImageTooLarge, match="^clip.gif frame 1: image is 9000x9000 = 81 MP, above"):
            seek_frame(gif, 1, name="clip.gif frame 1")
