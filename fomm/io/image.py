"""Still-image loading and tensor conversion.

Every image entering fomm goes through :func:`read_image`, so all commands agree on what a picture
looks like: 8-bit RGB, EXIF orientation applied, transparency composited over **white** (a transparent
PNG portrait then looks like it does in a browser, and the models never see an arbitrary black
background that was never visible to the user).
"""

from __future__ import annotations

import os
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


def read_image(path: str | os.PathLike, min_size: int = DEFAULT_MIN_SIZE) -> np.ndarray:
    """Load an image file as RGB.

    Args:
        path: any format Pillow reads; the format is detected from the content, not the extension.
        min_size: minimum length in pixels of the shorter side; smaller images are rejected.
    Returns:
        ``uint8`` array ``[H, W, 3]``, RGB, EXIF orientation applied. Grayscale is replicated to 3 channels,
        alpha (RGBA, LA, palette transparency) is composited over white, CMYK converted to RGB, 16-bit
        data scaled to 8 bit. Multi-frame files (GIF, TIFF) give their first frame.
    Raises:
        InputError: missing, empty, not an image, corrupt/truncated, or smaller than ``min_size``.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: image file not found")
    if p.is_dir():
        raise InputError(f"{p}: is a folder, expected an image file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: image file is empty (0 bytes)")
    try:
        with Image.open(p) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            arr = _to_rgb(img)
    except UnidentifiedImageError:
        raise InputError(f"{p}: not an image or an unsupported image format") from None
    except Image.DecompressionBombError as err:
        raise InputError(f"{p}: image is too large to load safely ({err})") from None
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
