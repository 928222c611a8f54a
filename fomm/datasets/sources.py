"""Lazy, random-access readers for the video layouts training data comes in.

A *video source* knows its frame count and frame size after a cheap probe (image header, folder listing or
container metadata) and decodes only the frames asked for:

* a folder of image frames (sorted by name; VoxCeleb/TaiChi ``*-png`` layout),
* a stacked strip image: frames of ``h x fw`` side by side, ``fw = round(h * W / H)`` for the configured frame
  shape ``(H, W)`` (Monkey-Net's Shapes and Actions; Actions files are PNG data named ``.jpg``),
* a GIF (PIL seeks frame by frame),
* a container video (.mp4/.mov/...): PyAV seeks to the keyframe before the wanted frame and decodes forward
  only as far as needed.

All readers return ``[h, w, 3]`` uint8 RGB frames (alpha dropped). Images (frames, strips, GIFs) are opened through
:func:`fomm.io.image.open_image`, so a frame above fomm's pixel limit (50 MP) is refused from its header, at the probe
or when it is read, before it is decoded.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from fomm.errors import InputError
from fomm.io.image import open_image, seek_frame

VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
GIF_EXTS = {".gif"}


class UnreadableVideo(Exception):
    """Internal: a video could not be probed or decoded (the dataset skips it with a warning)."""


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


@contextmanager
def _unreadable(what: str, name: str) -> Iterator[None]:
    """Errors inside -> :class:`UnreadableVideo` saying ``what``, the file ``name`` and why; the dataset skips or
    reports the video."""
    try:
        yield
    except InputError as exc:  # fomm's own checks (open_image): the message starts with the name
        raise UnreadableVideo(f"{what}: {exc}") from None
    except Exception as exc:  # anything else a decoder raised for a broken file
        raise UnreadableVideo(f"{what}: {name}: {exc}") from None


class VideoSource:
    """Base class: ``num_frames``, ``frame_hw`` (h, w) and ``read(indices) -> list[[h, w, 3] uint8]``."""

    path: Path
    num_frames: int
    frame_hw: tuple[int, int]

    def read(self, indices: list[int]) -> list[np.ndarray]:
        raise NotImplementedError

    def iter_all(self):
        for i in range(self.num_frames):
            yield self.read([i])[0]


class FolderSource(VideoSource):
    def __init__(self, path: Path) -> None:
        self.path = path
        # Natural order (frame2 before frame10), as fomm.io reads frame folders.
        self.files = sorted((p for p in os.listdir(path)
                             if not p.startswith(".") and os.path.splitext(p)[1].lower() in IMAGE_EXTS),
                            key=lambda n: [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", n)])
        self.num_frames = len(self.files)
        if self.num_frames == 0:
            raise UnreadableVideo("folder holds no image frames")
        first = self.files[0]
        with _unreadable("cannot read frame", first), open_image(path / first, name=first) as img:
            self.frame_hw = (img.height, img.width)

    def read(self, indices: list[int]) -> list[np.ndarray]:
        out = []
        for i in indices:
            name = self.files[i]
            with _unreadable("cannot read frame", name), open_image(self.path / name, name=name) as img:
                out.append(_to_rgb(img))
        return out


class DecodedCache:
    """A least-recently-used cache of decoded images, bounded in bytes (``max_bytes``; 0 disables it).

    A strip holds a whole clip in one compressed image, so every training pair would otherwise decode the whole clip
    again for two of its frames (~30 ms per Actions clip). One cache belongs to one dataset (each DataLoader worker
    gets its own copy), so memory stays at most ``max_bytes`` per process.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: str, load: Callable[[], np.ndarray]) -> np.ndarray:
        """The array stored under ``key``, else ``load()`` (stored when it fits). Treat the result as read-only."""
        arr = self._items.get(key)
        if arr is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return arr
        self.misses += 1
        arr = load()
        if 0 < arr.nbytes <= self.max_bytes:
            self._items[key] = arr
            self.bytes += arr.nbytes
            while self.bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self.bytes -= old.nbytes
        return arr


class StripSource(VideoSource):
    def __init__(self, path: Path, aspect_w_over_h: float, cache: DecodedCache | None = None) -> None:
        self.path = path
        self.cache = cache
        with _unreadable("not a readable image", path.name), open_image(path, name=path.name) as img:
            width, height = img.width, img.height
        fw = max(1, round(height * aspect_w_over_h))
        if width % fw:
            raise UnreadableVideo(f"image width {width} is not a multiple of the frame width {fw} "
                                  f"(strip of {height}-px-high frames)")
        self.frame_w = fw
        self.num_frames = width // fw
        self.frame_hw = (height, fw)

    def _decode(self) -> np.ndarray:
        with _unreadable("cannot decode image", self.path.name), open_image(self.path, name=self.path.name) as img:
            return _to_rgb(img)

    def read(self, indices: list[int]) -> list[np.ndarray]:
        # A strip is one compressed image: decoded whole (or taken from the cache); only the wanted columns are kept.
        arr = self.cache.get(str(self.path), self._decode) if self.cache is not None else self._decode()
        fw = self.frame_w
        return [np.ascontiguousarray(arr[:, fw * i: fw * (i + 1)]) for i in indices]

    def iter_all(self):
        yield from self.read(list(range(self.num_frames)))


class GifSource(VideoSource):
    def __init__(self, path: Path) -> None:
        self.path = path
        with _unreadable("not a readable GIF", path.name), open_image(path, name=path.name) as img:
            self.num_frames = int(getattr(img, "n_frames", 1))
            self.frame_hw = (img.height, img.width)

    def read(self, indices: list[int]) -> list[np.ndarray]:
        out = []
        with _unreadable("cannot decode GIF frame", self.path.name), open_image(self.path, name=self.path.name) as img:
            for i in indices:
                seek_frame(img, i, name=f"{self.path.name} frame {i}")
                out.append(_to_rgb(img))
        return out


class ContainerSource(VideoSource):
    """Container video: random access through :class:`fomm.io.reading.FrameReader`.

    ``decoded_frames`` counts frames decoded by the last ``read`` (seeking to the keyframe before each wanted
    frame). Frames come out at the display size (sample aspect ratio and rotation applied), exactly as
    :func:`fomm.io.reading.iter_frames` yields them.
    """

    def __init__(self, path: Path) -> None:
        from fomm.errors import InputError
        from fomm.io.reading import FrameReader

        self.path = path
        try:
            self._reader = FrameReader(path)
        except InputError as exc:
            raise UnreadableVideo(str(exc)) from None
        if self._reader.info.kind != "video":
            raise UnreadableVideo(f"not a video ({self._reader.info.kind})")
        self.info = self._reader.info
        self.frame_hw = self._reader.frame_hw
        self.num_frames = self._reader.num_frames
        self.rate = self.info.fps_fraction

    @property
    def decoded_frames(self) -> int:
        return self._reader.decoded_frames

    def read(self, indices: list[int]) -> list[np.ndarray]:
        from fomm.errors import InputError

        try:
            return self._reader.read(indices)
        except InputError as exc:
            raise UnreadableVideo(str(exc)) from None

    def iter_all(self):
        from fomm.errors import InputError
        from fomm.io.reading import iter_frames

        try:
            yield from iter_frames(self.path, max_frames=self.num_frames)
        except InputError as exc:
            raise UnreadableVideo(str(exc)) from None


def open_source(path: Path, frame_shape: tuple[int, int, int], cache: DecodedCache | None = None) -> VideoSource:
    """Pick the reader for ``path`` (a folder or a file) and probe it; raises UnreadableVideo. ``cache`` keeps
    decoded strip images between reads."""
    if path.is_dir():
        return FolderSource(path)
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return StripSource(path, frame_shape[1] / frame_shape[0], cache)
    if ext in GIF_EXTS:
        return GifSource(path)
    if ext in VIDEO_EXTS:
        return ContainerSource(path)
    raise UnreadableVideo(f"unknown video type {ext!r}")


def is_video_entry(path: Path) -> bool:
    """Whether a folder entry looks like a video (folder, strip image, GIF or container file)."""
    if path.name.startswith("."):
        return False
    if path.is_dir():
        return True
    return path.suffix.lower() in IMAGE_EXTS | GIF_EXTS | VIDEO_EXTS
