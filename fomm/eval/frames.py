"""Minimal, lossless frame I/O for the evaluation protocol.

Kept inside ``fomm.eval`` so the protocol does not depend on the still-moving ``fomm.io``; it reads the three
dataset layouts the papers use and writes generated videos losslessly so metrics can be recomputed later.

All frames returned here are ``uint8`` arrays of shape ``[T, H, W, 3]`` (RGB); evaluation converts to float in
[0, 1] only where needed, which keeps long 256x256 videos at a quarter of the float32 memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from fomm.errors import InputError, OutputError
from fomm.io.atomic import atomic_dir

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


def _split_strip(arr: np.ndarray, path: Path) -> np.ndarray:
    h, w = arr.shape[:2]
    if w % h != 0:
        raise InputError(
            f"{path} is {w}x{h}: a frame-strip image must be N frames of {h}x{h} side by side (width a multiple of height)"
        )
    n = w // h
    return arr.reshape(h, n, h, 3).transpose(1, 0, 2, 3).copy()


def read_video(path: str | Path) -> np.ndarray:
    """Read every frame of a dataset entry.

    Returns ``uint8`` RGB frames ``[T, H, W, 3]``. A single image is read as a horizontal strip of square frames
    (frame ``t`` is columns ``[H*t, H*t+H)``); a folder is read as its images in name order.
    Raises :class:`InputError` for anything missing or unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"video {path} does not exist")
    try:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
            if not files:
                raise InputError(f"frame folder {path} holds no images")
            frames = [_to_rgb_uint8(Image.open(f)) for f in files]
            shapes = {f.shape for f in frames}
            if len(shapes) != 1:
                raise InputError(f"frames in {path} differ in size ({sorted(shapes)}); resize them to one size")
            return np.stack(frames)
        ext = path.suffix.lower()
        if ext in IMAGE_EXTS:
            # PIL sniffs the content, so Actions' PNG-data-in-.jpg files read correctly.
            with Image.open(path) as img:
                return _split_strip(_to_rgb_uint8(img), path)
        if ext in GIF_EXTS:
            with Image.open(path) as img:
                return np.stack([_to_rgb_uint8(f) for f in ImageSequence.Iterator(img)])
        if ext in VIDEO_EXTS:
            import av

            with av.open(str(path)) as container:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            if not frames:
                raise InputError(f"video {path} has no decodable frames")
            return np.stack(frames)
    except InputError:
        raise
    except Exception as err:  # decoder errors come in many types; all mean "this file cannot be read"
        raise InputError(f"cannot read {path}: {type(err).__name__}: {err}") from err
    raise InputError(f"{path} has an unsupported type; use a video, a GIF, a frame strip image or a frame folder")


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Resize ``uint8`` frames ``[T, H, W, 3]`` to ``[T, size, size, 3]`` (bicubic, like the papers' loaders' resize)."""
    if frames.shape[1] == size and frames.shape[2] == size:
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in frames])


def to_float(frame: np.ndarray) -> np.ndarray:
    """``uint8`` ``[..., 3]`` -> ``float32`` in [0, 1]."""
    return frame.astype(np.float32) / 255.0


def to_uint8(frame: np.ndarray) -> np.ndarray:
    """``float`` in [0, 1] (clipped) -> ``uint8``, rounding to nearest so a uint8 round trip is exact."""
    return np.clip(np.rint(np.asarray(frame, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def write_frame_folder(frames: np.ndarray, folder: Path) -> None:
    """Write ``uint8`` frames ``[T, H, W, 3]`` as ``00000.png ...`` into ``folder``, atomically.

    Frames go to a temporary sibling folder that is renamed into place only when complete, so a crash never
    leaves a half-written video that a resumed run would take for finished.
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
