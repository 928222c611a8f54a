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
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from fomm.errors import InputError, OutputError
from fomm.io.atomic import atomic_file

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
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


def _megapixels(n: int) -> str:
    return f"{n / 1e6:.3g} MP"


def _too_large(p: Path, size: tuple[int, int] | None, pixels: int | None, limit: int) -> InputError:
    what = f"{size[0]}x{size[1]} = {_megapixels(size[0] * size[1])}" if size else _megapixels(pixels or 0)
    return InputError(f"{p}: image is {what}, above fomm's limit of {_megapixels(limit)}; downscale it first")


def _bomb_pixels(err: Exception) -> int | None:
    """The pixel count in Pillow's DecompressionBombError message, if it still reads 'Image size (N pixels)'."""
    m = re.search(r"\((\d+) pixels\)", str(err))
    return int(m.group(1)) if m else None


def _header_size(p: Path) -> tuple[int, int] | None:
    """``(w, h)`` from the header, through the format plugins as ``Image.open`` tries them but without its bomb
    check (which refuses above 179 MP before the size is known); ``None`` when no plugin reads it."""
    Image.init()
    with open(p, "rb") as fp:
        prefix = fp.read(16)
        for fmt in Image.ID:
            factory, accept = Image.OPEN[fmt]
            if accept is not None and not accept(prefix):
                continue
            fp.seek(0)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return tuple(factory(fp, os.fspath(p)).size)
            except Exception:  # a plugin that does not recognise the file, as Image.open skips it
                continue
    return None


def read_image(path: str | os.PathLike, min_size: int = DEFAULT_MIN_SIZE, *,
               max_pixels: int | None = None) -> np.ndarray:
    """Load an image file as RGB.

    Args:
        path: any format Pillow reads; the format is detected from the content, not the extension.
        min_size: minimum length in pixels of the shorter side; smaller images are rejected.
        max_pixels: largest width x height accepted (default :data:`MAX_IMAGE_PIXELS`), checked from the header
            before anything is decoded.
    Returns:
        ``uint8`` array ``[H, W, 3]``, RGB, EXIF orientation applied. Grayscale is replicated to 3 channels,
        alpha (RGBA, LA, palette transparency) is composited over white, CMYK converted to RGB, 16-bit
        data scaled to 8 bit. Multi-frame files (GIF, TIFF) give their first frame.
    Raises:
        InputError: missing, empty, not an image, corrupt/truncated, smaller than ``min_size`` or larger than
            ``max_pixels``.
    """
    limit = MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: image file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected an image file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: image file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own limit decides (below); Pillow's bomb warning is not for the user's eyes.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as img:  # lazy: reads the header only
                w, h = img.size
                if w * h > limit:
                    raise _too_large(p, (w, h), None, limit)
                img.load()
                img = ImageOps.exif_transpose(img)
                arr = _to_rgb(img)
    except UnidentifiedImageError:
        raise InputError(f"{p}: not an image or an unsupported image format") from None
    except Image.DecompressionBombError as err:
        # Pillow refuses above twice its own limit (179 MP) before we see the size.
        raise _too_large(p, _header_size(p), _bomb_pixels(err), limit) from None
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{p}: image is corrupt or truncated ({err})") from None
    h, w = arr.shape[:2]
    if min(h, w) < min_size:
        raise InputError(f"{p}: image is {w}x{h} pixels; the shorter side must be at least {min_size} pixels")
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
