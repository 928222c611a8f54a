"""Lazy, random-access readers for the video layouts training data comes in.

A *video source* knows its frame count and frame size after a cheap probe (image header, folder listing or
container metadata) and decodes only the frames asked for:

* a folder of image frames (sorted by name; VoxCeleb/TaiChi ``*-png`` layout),
* a stacked strip image: frames of ``h x fw`` side by side, ``fw = round(h * W / H)`` for the configured frame
  shape ``(H, W)`` (Monkey-Net's Shapes and Actions; Actions files are PNG data named ``.jpg``),
* a GIF (PIL seeks frame by frame),
* a container video (.mp4/.mov/...): PyAV seeks to the keyframe before the wanted frame and decodes forward
  only as far as needed.

All readers return ``[h, w, 3]`` uint8 RGB frames (alpha dropped).
"""

from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
GIF_EXTS = {".gif"}


class UnreadableVideo(Exception):
    """Internal: a video could not be probed or decoded (the dataset skips it with a warning)."""


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


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
        try:
            with Image.open(path / self.files[0]) as img:
                self.frame_hw = (img.height, img.width)
        except Exception as exc:  # PIL raises several types for bad files
            raise UnreadableVideo(f"cannot read frame {self.files[0]}: {exc}") from None

    def read(self, indices: list[int]) -> list[np.ndarray]:
        out = []
        for i in indices:
            try:
                with Image.open(self.path / self.files[i]) as img:
                    arr = _to_rgb(img)
            except Exception as exc:
                raise UnreadableVideo(f"cannot read frame {self.files[i]}: {exc}") from None
            out.append(arr)
        return out


class StripSource(VideoSource):
    def __init__(self, path: Path, aspect_w_over_h: float) -> None:
        self.path = path
        try:
            with Image.open(path) as img:
                width, height = img.width, img.height
        except Exception as exc:
            raise UnreadableVideo(f"not a readable image: {exc}") from None
        fw = max(1, round(height * aspect_w_over_h))
        if width % fw:
            raise UnreadableVideo(f"image width {width} is not a multiple of the frame width {fw} "
                                  f"(strip of {height}-px-high frames)")
        self.frame_w = fw
        self.num_frames = width // fw
        self.frame_hw = (height, fw)

    def read(self, indices: list[int]) -> list[np.ndarray]:
        # A strip is one compressed image, so it is decoded once per call; only the wanted columns are kept.
        try:
            with Image.open(self.path) as img:
                arr = _to_rgb(img)
        except Exception as exc:
            raise UnreadableVideo(f"cannot decode image: {exc}") from None
        fw = self.frame_w
        return [np.ascontiguousarray(arr[:, fw * i: fw * (i + 1)]) for i in indices]

    def iter_all(self):
        yield from self.read(list(range(self.num_frames)))


class GifSource(VideoSource):
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with Image.open(path) as img:
                self.num_frames = int(getattr(img, "n_frames", 1))
                self.frame_hw = (img.height, img.width)
        except Exception as exc:
            raise UnreadableVideo(f"not a readable GIF: {exc}") from None

    def read(self, indices: list[int]) -> list[np.ndarray]:
        try:
            with Image.open(self.path) as img:
                out = []
                for i in indices:
                    img.seek(i)
                    out.append(_to_rgb(img))
                return out
        except Exception as exc:
            raise UnreadableVideo(f"cannot decode GIF frame: {exc}") from None


class ContainerSource(VideoSource):
    """Container video (probe and sequential decoding from :mod:`fomm.io.video`; random access here).

    ``decoded_frames`` counts frames decoded by the last ``read``. Frame ``i`` is the one whose presentation
    time is closest to ``start + i / fps`` (the videos this is for are constant frame rate; for variable-rate
    files indices are approximate). Frames come out at the display size (sample aspect ratio and rotation
    applied), exactly as :func:`fomm.io.video.iter_frames` yields them.
    """

    def __init__(self, path: Path) -> None:
        import av

        from fomm.errors import InputError
        from fomm.io.video import probe_video

        self.path = path
        self.decoded_frames = 0
        try:
            info = probe_video(path)
        except InputError as exc:
            raise UnreadableVideo(str(exc)) from None
        if info.kind != "video":
            raise UnreadableVideo(f"not a video ({info.kind})")
        self.info = info
        self.frame_hw = info.display_size
        self.num_frames = info.num_frames
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                self.time_base = Fraction(stream.time_base)
                self.start = stream.start_time or 0
                if not info.num_frames_exact:
                    # The duration estimate can be off by a frame or two; counting packets decodes nothing.
                    self.num_frames = sum(1 for pk in container.demux(stream) if pk.pts is not None)
        except Exception as exc:
            raise UnreadableVideo(f"not a readable video: {exc}") from None
        self.rate = info.fps_fraction

    def _index_of(self, pts: int) -> int:
        return int(round((pts - self.start) * self.time_base * self.rate))

    def _pts_of(self, index: int) -> int:
        return self.start + int(round(index / self.rate / self.time_base))

    def _rgb(self, frame) -> np.ndarray:
        from fomm.io.video import _finish, _frame_rotation, _frame_to_rgb

        return _finish(_frame_to_rgb(frame), _frame_rotation(frame), self.frame_hw)

    def read(self, indices: list[int]) -> list[np.ndarray]:
        import av

        wanted = set(int(i) for i in indices)
        got: dict[int, np.ndarray] = {}
        self.decoded_frames = 0
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for target in sorted(wanted):
                    if target in got:
                        continue
                    # Seeking lands on the keyframe at or before the target; decode forward from there only.
                    container.seek(self._pts_of(target), stream=stream, backward=True, any_frame=False)
                    last = None
                    for frame in container.decode(stream):
                        self.decoded_frames += 1
                        if frame.pts is None:
                            continue
                        idx = self._index_of(frame.pts)
                        if idx in wanted and idx not in got:
                            got[idx] = self._rgb(frame)
                        last = frame
                        if idx >= target:
                            break
                    if target not in got and last is not None:
                        # The stream ended before the counted length: use its last frame.
                        got[target] = self._rgb(last)
        except Exception as exc:
            raise UnreadableVideo(f"cannot decode video: {exc}") from None
        missing = [i for i in indices if int(i) not in got]
        if missing:
            raise UnreadableVideo(f"frames {missing[:5]} could not be decoded")
        return [got[int(i)] for i in indices]

    def iter_all(self):
        from fomm.errors import InputError
        from fomm.io.video import iter_frames

        try:
            yield from iter_frames(self.path, max_frames=self.num_frames)
        except InputError as exc:
            raise UnreadableVideo(str(exc)) from None


def open_source(path: Path, frame_shape: tuple[int, int, int]) -> VideoSource:
    """Pick the reader for ``path`` (a folder or a file) and probe it; raises UnreadableVideo."""
    if path.is_dir():
        return FolderSource(path)
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return StripSource(path, frame_shape[1] / frame_shape[0])
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
