"""Still-image loading and tensor conversion.

Every image entering fomm goes through :func:`read_image`, so all commands agree on what a picture
looks like: 8-bit RGB, EXIF orientation applied, transparency composited over **white** (a transparent
PNG portrait then looks like it does in a browser, and the models never see an arbitrary black
background that was never visible to the user).

Size limit: decoding needs the whole picture in memory several times over (the decoded pixels, the RGB copy, the
array), so a huge file can take the machine down long before the models shrink it to 256x256: a 10000x10000 PNG
(100 MP, 97 kB on disk when flat) peaked at 1.8 GB of memory in ``fomm animate`` and took 37 s. :func:`read_image`
reads the size from the header first and refuses anything above :data:`MAX_IMAGE_PIXELS` before decoding a pixel,
with a message that says so (Pillow's own decompression-bomb guard would print a raw warning at 89 MP and refuse at
179 MP with a message about DOS attacks).

One door: every decode of image data a user or a peer hands fomm (a photo, a dataset frame or strip, a depth PNG, a
JPEG frame off the network, a webcam frame in the demo) goes through :func:`open_image` (or :func:`read_image`,
built on it), which takes a path, bytes or a binary file object. So the pixel limit, and the one-line errors for
files that are missing, empty, not images, corrupt or truncated, are the same wherever the data comes from. Readers
of other formats (NPY, EXR depth) check their header's size with :func:`check_pixels`, and multi-frame readers step
with :func:`seek_frame` (a GIF frame may grow the canvas).
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from fomm.errors import InputError, OutputError
from fomm.io.atomic import atomic_file

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
#: The Pillow formats fomm decodes (JPEG covers the multi-picture JPEGs many phones write; GIF is for frame strips).
#: Pillow would otherwise try every plugin it has, EPS included, which runs Ghostscript on the file when installed.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "WEBP", "TIFF", "GIF")
DEFAULT_MIN_SIZE = 32
#: Largest image :func:`read_image` decodes, in pixels (width x height): 50 MP, e.g. 8660x5773, more than any
#: phone or DSLR photo today; decoding one peaks near 1 GB. Larger images are refused from their header; downscale
#: them first (the models work at 256-512 px anyway). Change it here, or per call with ``max_pixels`` (above 179 MP
#: Pillow's own guard refuses too, unless ``PIL.Image.MAX_IMAGE_PIXELS`` is raised as well).
MAX_IMAGE_PIXELS = 50_000_000


def _composite_over_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> uint8 ``[H, W, 3]``."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grayscale (PNG/TIFF); "I" is how some Pillow versions load it. Scale the full 16-bit range.
        arr = np.asarray(img).astype(np.float64)
        arr = np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img).astype(np.float64)
        scale = 255.0 if np.nanmax(arr) <= 1.0 else 1.0
        arr = np.clip(np.round(np.nan_to_num(arr) * scale), 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info) \
        or (mode in ("L", "RGB") and "transparency" in img.info)
    if has_alpha:
        with warnings.catch_warnings():
            # Pillow warns that palette transparency "should be converted to RGBA": that is what we do.
            warnings.simplefilter("ignore")
            rgb = _composite_over_white(img)
    else:
        rgb = img.convert("RGB")
    return np.array(rgb, dtype=np.uint8)


#: What :func:`open_image` and :func:`read_image` take: a path, the encoded bytes, or a binary file object.
ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


def _megapixels(n: int) -> str:
    mp = n / 1e6
    return f"{mp:,.0f} MP" if mp >= 1000 else f"{mp:.3g} MP"  # 4,225 MP, not 4.22e+03 MP


class ImageTooLarge(InputError):
    """An image above the pixel limit, refused from its header before anything was decoded.

    ``size`` is ``(w, h)`` when the header was read (``None`` when only Pillow's own count is known), ``pixels`` the
    pixel count, ``limit`` the limit it broke; ``str()`` is the complete one-line message."""

    def __init__(self, name: str, size: tuple[int, int] | None, pixels: int, limit: int) -> None:
        self.name, self.size, self.pixels, self.limit = name, size, int(pixels), int(limit)
        super().__init__(f"{name}: image is {self.dimensions}, above fomm's limit of {_megapixels(limit)}; "
                         f"downscale it first")

    @property
    def dimensions(self) -> str:
        """``"WxH = N MP"``, or ``"N MP"`` when the header could not be read."""
        return f"{self.size[0]}x{self.size[1]} = {_megapixels(self.pixels)}" if self.size else _megapixels(self.pixels)


def _limit(max_pixels: int | None) -> int:
    return MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)


def check_pixels(name: str, width: int, height: int, max_pixels: int | None = None) -> None:
    """Raise :class:`ImageTooLarge` when ``width x height`` is above ``max_pixels`` (default
    :data:`MAX_IMAGE_PIXELS`): the check for readers of formats Pillow does not open (NPY, EXR), so they refuse with
    the same limit and words."""
    limit = _limit(max_pixels)
    if int(width) * int(height) > limit:
        raise ImageTooLarge(name, (int(width), int(height)), int(width) * int(height), limit)


def _bomb_pixels(err: Exception) -> int | None:
    """The pixel count in Pillow's DecompressionBombError message, if it still reads 'Image size (N pixels)'."""
    m = re.search(r"\((\d+) pixels\)", str(err))
    return int(m.group(1)) if m else None


def _header_size(fp: BinaryIO, filename: str) -> tuple[int, int] | None:
    """``(w, h)`` from the header, through the format plugins as ``Image.open`` tries them but without its bomb
    check (which refuses above 179 MP before the size is known); ``None`` when no plugin reads it."""
    Image.init()
    fp.seek(0)
    prefix = fp.read(16)
    for fmt in (f for f in Image.ID if f in IMAGE_FORMATS):
        factory, accept = Image.OPEN[fmt]
        if accept is not None and not accept(prefix):
            continue
        fp.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return tuple(factory(fp, filename).size)
        except Exception:  # a plugin that does not recognise the file, as Image.open skips it
            continue
    return None


def _bomb_size(source: os.PathLike | BinaryIO) -> tuple[int, int] | None:
    if isinstance(source, os.PathLike):
        with open(source, "rb") as fp:
            return _header_size(fp, os.fspath(source))
    try:
        return _header_size(source, "")
    except (OSError, ValueError):  # an unseekable stream: Pillow's count is all we have
        return None


def _name_of(source: ImageSource, name: str | None) -> str:
    """What messages call ``source``: ``name``, else the path, else ``"image"`` (bytes and streams)."""
    if name:
        return name
    return str(Path(source)) if isinstance(source, (str, os.PathLike)) else "image"


def _opened(source: ImageSource, name: str) -> os.PathLike | BinaryIO:
    """What ``Image.open`` takes; InputError for a missing, folder or empty source."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise InputError(f"{name}: image is empty (0 bytes)")
        return io.BytesIO(bytes(source))
    if hasattr(source, "read"):
        return source
    p = Path(source)
    if not p.exists():
        raise InputError(f"{name}: image file not found")
    if p.is_dir():
        raise InputError(f"{name}: is a folder, expected an image file")
    if p.stat().st_size == 0:
        raise InputError(f"{name}: image file is empty (0 bytes)")
    return p


@contextmanager
def open_image(source: ImageSource, *, name: str | None = None, max_pixels: int | None = None,
               hint: str = "") -> Iterator[Image.Image]:
    """Open an image for decoding, with fomm's checks: the one way fomm decodes image data it was given.

    The image's size is read from its header and refused above ``max_pixels`` (default :data:`MAX_IMAGE_PIXELS`)
    before a pixel is decoded. The ``with`` body decodes (``load``, ``convert``, ``np.asarray``, ``seek`` through
    :func:`seek_frame`); Pillow's errors raised there become the same one-line :class:`InputError`. PIL's global
    ``Image.MAX_IMAGE_PIXELS`` is left alone.

    Args:
        source: a path, the encoded bytes, or a binary file object (read from its start, as Pillow does).
        name: what messages call it (default: the path, or ``"image"`` for bytes and streams).
        max_pixels: largest width x height accepted.
        hint: appended to the "not an image" message (e.g. which formats the caller wants).
    Raises:
        InputError: missing, a folder, empty, not an image, corrupt or truncated; :class:`ImageTooLarge` above
            ``max_pixels``.
    """
    limit = _limit(max_pixels)
    name = _name_of(source, name)
    src = _opened(source, name)
    try:
        with warnings.catch_warnings():
            # Our own limit decides (below); Pillow's bomb warning is not for the user's eyes.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.init()  # registers every plugin, so the names in IMAGE_FORMATS resolve (once; cheap after)
            img = Image.open(src, formats=IMAGE_FORMATS)  # lazy: reads the header only
    except UnidentifiedImageError:
        raise InputError(f"{name}: not an image or an unsupported image format{hint}") from None
    except Image.DecompressionBombError as err:
        # Pillow refuses above twice its own limit (179 MP) before we see the size.
        size = _bomb_size(src)
        pixels = size[0] * size[1] if size else _bomb_pixels(err) or 0
        raise ImageTooLarge(name, size, pixels, limit) from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise InputError(f"{name}: image is corrupt or truncated ({err})") from None
    with img:
        check_pixels(name, *img.size, max_pixels=limit)
        try:
            yield img
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise InputError(f"{name}: image is corrupt or truncated ({err})") from None


def seek_frame(img: Image.Image, frame: int, *, name: str, max_pixels: int | None = None) -> None:
    """Go to ``frame`` of a multi-frame image from :func:`open_image`, one frame at a time, checking the size at
    each: a GIF frame may grow the canvas, and Pillow decodes each frame it passes on the way at its new size."""
    if frame < img.tell():
        img.seek(0)
    while img.tell() < frame:
        img.seek(img.tell() + 1)
        check_pixels(name, *img.size, max_pixels=max_pixels)


def read_image(source: ImageSource, min_size: int = DEFAULT_MIN_SIZE, *, max_pixels: int | None = None,
               name: str | None = None) -> np.ndarray:
    """Load an image as RGB (from a path, the encoded bytes or a binary file object; see :func:`open_image`).

    Args:
        source: any format Pillow reads; the format is detected from the content, not the extension.
        min_size: minimum length in pixels of the shorter side; smaller images are rejected.
        max_pixels: largest width x height accepted (default :data:`MAX_IMAGE_PIXELS`), checked from the header
            before anything is decoded.
        name: what messages call the image (default: the path, or ``"image"``).
    Returns:
        ``uint8`` array ``[H, W, 3]``, RGB, EXIF orientation applied. Grayscale is replicated to 3 channels,
        alpha (RGBA, LA, palette transparency) is composited over white, CMYK converted to RGB, 16-bit
        data scaled to 8 bit. Multi-frame files (GIF, TIFF) give their first frame.
    Raises:
        InputError: missing, empty, not an image, corrupt/truncated, smaller than ``min_size`` or larger than
            ``max_pixels`` (:class:`ImageTooLarge`).
    """
    name = _name_of(source, name)
    with open_image(source, name=name, max_pixels=max_pixels) as img:
        img.load()
        arr = _to_rgb(ImageOps.exif_transpose(img))
    h, w = arr.shape[:2]
    if min(h, w) < min_size:
        raise InputError(f"{name}: image is {w}x{h} pixels; the shorter side must be at least {min_size} pixels")
    return arr


def resize_uint8(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased resize of a uint8 ``[H, W, 3]`` image to ``size = (h, w)`` (triangle filter whose
    support widens when shrinking, so downscaling does not alias). Returns ``img`` itself when the size
    already matches."""
    h, w = size
    if img.shape[0] == h and img.shape[1] == w:
        return img
    # np.array, not asarray: callers get a writable array they own.
    return np.array(Image.fromarray(img).resize((w, h), Image.Resampling.BILINEAR))


def image_to_tensor(img: np.ndarray, size: tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` RGB -> float32 ``[1, 3, h, w]`` in ``[0, 1]``.

    ``size = (h, w)``; ``None`` keeps the input size. Resizing is done in float with an anti-aliased
    bilinear filter (no 8-bit requantisation), so a face shrunk from 1024 px to 256 px does not alias.
    """
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got {img.dtype} {tuple(img.shape)}")
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
    if size is not None and tuple(size) != tuple(t.shape[-2:]):
        t = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
        t = t.clamp_(0.0, 1.0)
    return t.contiguous()


def tensor_to_uint8(t: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` -> ``[H, W, 3]`` or ``[B, 3, H, W]`` -> ``[B, H, W, 3]``; values in ``[0, 1]`` (clipped)
    are scaled to uint8 with rounding."""
    if t.ndim not in (3, 4) or t.shape[-3] != 3:
        raise ValueError(f"expected a [3, H, W] or [B, 3, H, W] tensor, got {tuple(t.shape)}")
    arr = t.detach().to("cpu", torch.float32).clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)
    arr = arr.movedim(-3, -1)
    return np.ascontiguousarray(arr.numpy())


def write_image(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write a uint8 ``[H, W, 3]`` RGB image atomically (:func:`fomm.io.atomic.atomic_file`).
    The format follows the extension (PNG lossless; JPEG at quality 95).

    Raises:
        OutputError: unknown extension, or the file cannot be written (one line naming the path).
    """
    p = Path(path)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP",
           ".tif": "TIFF", ".tiff": "TIFF"}.get(p.suffix.lower())
    if fmt is None:
        raise OutputError(f"{p}: unknown image extension {p.suffix!r}; use one of {', '.join(IMAGE_EXTENSIONS)}")
    kwargs = {"quality": 95} if fmt == "JPEG" else {}
    try:
        with atomic_file(p) as tmp:
            Image.fromarray(np.ascontiguousarray(img)).save(tmp, format=fmt, **kwargs)
    except OSError as err:
        raise OutputError(f"{p}: cannot write here ({err.strerror or err})") from None
