"""Whole clips as arrays: the dataset layouts the papers evaluate on, and lossless frame folders.

Evaluation compares every generated frame with every real one, so it wants a clip as one ``uint8`` array
``[T, H, W, 3]`` (RGB) rather than a stream; converting to float in [0, 1] happens only where needed, which keeps
long 256x256 clips at a quarter of the float32 memory. A dataset entry is one of:

* a video file or GIF: decoded by :func:`fomm.io.reading.iter_frames`, like every other video in fomm, so a
  rotation tag or non-square pixels give the frames a viewer sees;
* a frame-strip image (Shapes, Actions): ``N`` square frames side by side in one picture;
* a folder of frame images, in name order (what :func:`write_frame_folder` writes for generated clips).

Images are opened through :func:`fomm.io.image.open_image`: one above fomm's pixel limit is refused from its header
before it is decoded, with the same one-line errors as everywhere else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fomm.errors import InputError, OutputError
from fomm.io.atomic import atomic_dir
from fomm.io.image import open_image
from fomm.io.reading import iter_frames

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
GIF_EXTS = {".gif"}


def list_videos(root: str | Path) -> list[Path]:
    """List the test videos of a dataset folder, sorted by name.

    ``root`` may be a dataset root holding ``test/`` (the papers' layout) or the test folder itself. Entries are
    video files, GIFs, frame-strip images (Shapes/Actions) or folders of frame images; hidden files are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset folder {root} does not exist; pass a folder that holds test/ (or the test folder)")
    test = root / "test" if (root / "test").is_dir() else root
    entries = []
    for p in sorted(test.iterdir()):
        if p.name.startswith("."):
            continue
        ext = p.suffix.lower()
        if p.is_dir() or ext in IMAGE_EXTS | VIDEO_EXTS | GIF_EXTS:
            entries.append(p)
    if not entries:
        raise InputError(f"no videos found in {test}; expected video files, frame folders or frame-strip images")
    return entries


def video_id(path: Path) -> str:
    """Stable identifier of a dataset entry: its file name without extension (folder name for frame folders)."""
    return path.name if path.is_dir() else path.stem


def _to_rgb_uint8(img: Image.Image) -> np.ndarray:
    # Alpha in Shapes/Actions is always opaque; dropping it (instead of compositing) keeps the colours exact.
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def split_strip(strip: np.ndarray, path: Path) -> np.ndarray:
    """A frame strip ``uint8 [H, N*H, 3]`` (``N`` square frames side by side) -> frames ``[N, H, H, 3]``.

    Raises:
        InputError: the width is not a multiple of the height (``path`` names the file in the message).
    """
    h, w = strip.shape[:2]
    if w % h != 0:
        raise InputError(f"{path} is {w}x{h}: a frame-strip image must be N frames of {h}x{h} side by side "
                         f"(width a multiple of height)")
    n = w // h
    return strip.reshape(h, n, h, 3).transpose(1, 0, 2, 3).copy()


def _read_folder(path: Path) -> np.ndarray:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise InputError(f"frame folder {path} holds no images")
    frames = []
    for f in files:
        with open_image(f) as img:
            frames.append(_to_rgb_uint8(img))
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise InputError(f"frames in {path} differ in size ({sorted(shapes)}); resize them to one size")
    return np.stack(frames)


def read_clip(path: str | Path) -> np.ndarray:
    """Read every frame of a dataset entry (video, GIF, frame strip or frame folder; see the module notes).

    Returns:
        ``uint8`` RGB frames ``[T, H, W, 3]``. A video's frames are at its display size (rotation and sample
        aspect ratio applied); a strip image gives its square frames (frame ``t`` is columns ``[H*t, H*t+H)``);
        a folder gives its images in name order.
    Raises:
        InputError: the entry is missing, of an unsupported type, or unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"video {path} does not exist")
    try:
        if path.is_dir():
            return _read_folder(path)
        ext = path.suffix.lower()
        if ext in IMAGE_EXTS:
            # PIL sniffs the content, so Actions' PNG-data-in-.jpg files read correctly.
            with open_image(path) as img:
                strip = _to_rgb_uint8(img)
            return split_strip(strip, path)
        if ext in VIDEO_EXTS | GIF_EXTS:
            frames = list(iter_frames(path))
            if not frames:
                raise InputError(f"video {path} has no decodable frames")
            return np.stack(frames)
    except InputError:
        raise
    except Exception as err:  # decoder errors come in many types; all mean "this file cannot be read"
        raise InputError(f"cannot read {path}: {type(err).__name__}: {err}") from err
    raise InputError(f"{path} has an unsupported type; use a video, a GIF, a frame strip image or a frame folder")


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize ``uint8`` frames ``[T, H, W, 3]`` to ``[T, size, size, 3]`` (bicubic, like the papers' loaders).

    Returns ``frames`` itself when the size already matches."""
    if frames.shape[1] == size and frames.shape[2] == size:
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in frames])


def to_float(frame: np.ndarray) -> np.ndarray:
    """``uint8`` ``[..., 3]`` -> ``float32`` in [0, 1]."""
    return frame.astype(np.float32) / 255.0


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """``float`` in [0, 1] (clipped) -> ``uint8``, rounding to nearest so a uint8 round trip is exact."""
    return np.clip(np.rint(np.asarray(frame, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def write_frame_folder(frames: np.ndarray, folder: str | Path) -> None:
    """Write ``uint8`` frames ``[T, H, W, 3]`` as ``00000.png ...`` into ``folder``, all or nothing.

    Frames go to a temporary sibling folder that replaces ``folder`` only when complete
    (:func:`fomm.io.atomic.atomic_dir`), so a crash never leaves a half-written clip that a resumed run would
    take for finished.

    Raises:
        OutputError: the folder's parent cannot be created or written.
    """
    folder = Path(folder)
    out = atomic_dir(folder)
    try:
        tmp = out.begin()
    except OSError as err:
        raise OutputError(f"cannot write to {folder.parent}: {err}; choose a writable output folder") from err
    with out:
        for t, f in enumerate(frames):
            Image.fromarray(f).save(tmp / f"{t:05d}.png")
