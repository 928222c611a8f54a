"""What the compositing stages read besides the frames: depth passes you bring and background plates.

A depth pass (:func:`open_depth_pass`) is one file used for every frame, a folder with one file per frame (natural
order) or a video; files are 8- or 16-bit grey PNG (``value / 255`` or ``/ 65535``) or float NPY, near = 1 and
far = 0 (the convention of the depth passes ``fomm depth`` and ``fomm animate --export-depth`` write). Its size and
length are checked against the video before anything is written, so a pass made for another clip is refused with
one line instead of producing a wrong-looking video.

A plate (:class:`Plate`) is an image or a video; a video loops. It is scaled to cover the frame (aspect ratio kept,
centre cropped), the way a background fills a screen.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from fomm.errors import InputError
from fomm.io.image import IMAGE_EXTENSIONS, resize_uint8
from fomm.io.reading import iter_frames, probe_video

DEPTH_EXTENSIONS = (".png", ".npy", ".tif", ".tiff")


def _natural_key(name: str) -> list:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def read_depth_file(path: str | os.PathLike) -> np.ndarray:
    """One depth map: float32 ``[H, W]`` in ``[0, 1]`` (near = 1) from a grey 8/16-bit PNG/TIFF or a float NPY.

    Raises:
        InputError: unreadable, not 2-D (or RGB), or values outside ``[0, 1]`` (NPY) / not finite.
    """
    p = Path(path)
    try:
        if p.suffix.lower() == ".npy":
            arr = np.load(p, allow_pickle=False).astype(np.float32)
        else:
            with Image.open(p) as img:
                raw = np.asarray(img)
            if raw.ndim == 3:
                raw = raw[..., 0]
            full = 65535.0 if raw.dtype in (np.uint16, np.int32) or raw.max(initial=0) > 255 else 255.0
            arr = raw.astype(np.float32) / full
    except (OSError, ValueError, SyntaxError) as err:
        raise InputError(f"{p}: not a readable depth map ({err}); give 16-bit PNG or float NPY files") from None
    if arr.ndim == 3 and arr.shape[-1] in (1, 3):
        arr = arr[..., 0]
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise InputError(f"{p}: a depth map must be one [H, W] channel, got shape {arr.shape}")
    if not np.isfinite(arr).all() or arr.min() < -1e-3 or arr.max() > 1 + 1e-3:
        raise InputError(f"{p}: depth values must be finite and in [0, 1] (near = 1, far = 0)")
    return np.clip(arr, 0.0, 1.0)


class DepthPass:
    """A depth pass on disk, read frame by frame: ``pass_(frame)`` returns the next depth map, float32
    ``[H, W]`` (the :class:`~fomm.compositing.depth.DepthEstimator` call signature, so a pass and an estimator
    are interchangeable).

    Attributes:
        path: what was opened; ``kind``: ``"file"`` (one map for every frame), ``"folder"`` or ``"video"``.
        size: ``(H, W)`` of the maps; ``num_frames``: how many maps (``None`` for one map used for every frame).
    Raises:
        InputError: missing, empty folder, unreadable first map; later a map of another size than its frame.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: depth pass not found; give a folder of depth maps, one map, or a depth video")
        self.path = p
        self._files: list[Path] | None = None
        if p.is_dir():
            self._files = sorted((f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                                  and f.suffix.lower() in DEPTH_EXTENSIONS), key=lambda f: _natural_key(f.name))
            if not self._files:
                raise InputError(f"{p}: folder has no depth maps ({', '.join(DEPTH_EXTENSIONS)})")
            self.kind = "folder"
            self.num_frames: int | None = len(self._files)
            self.size = read_depth_file(self._files[0]).shape
        elif p.suffix.lower() in DEPTH_EXTENSIONS or p.suffix.lower() in IMAGE_EXTENSIONS:
            self.kind = "file"
            self._single = read_depth_file(p)
            self.num_frames = None
            self.size = self._single.shape
        else:
            info = probe_video(p)
            self.kind = "video"
            self.num_frames = info.num_frames if info.num_frames_exact else None
            self.size = info.display_size
        self._iter: Iterator[np.ndarray] | None = None
        self.index = 0

    def check_against(self, size: tuple[int, int], num_frames: int, exact: bool) -> None:
        """Refuse a pass made for another clip: another size, or (when both counts are known) another length.

        ``size = (H, W)`` of the frames, ``num_frames`` how many will be composited."""
        if tuple(self.size) != tuple(size):
            raise InputError(f"{self.path}: depth pass is {self.size[1]}x{self.size[0]} but the video is "
                             f"{size[1]}x{size[0]}; give the depth of this video (fomm depth VIDEO -o DIR)")
        if self.num_frames is not None and exact and self.num_frames != num_frames:
            raise InputError(f"{self.path}: depth pass has {self.num_frames} frames but the video has {num_frames}; "
                             f"give the depth of this video (fomm depth VIDEO -o DIR)")

    def _frames(self) -> Iterator[np.ndarray]:
        if self.kind == "folder":
            for f in self._files:
                yield read_depth_file(f)
        else:
            for frame in iter_frames(self.path):
                yield frame[..., 0].astype(np.float32) / 255.0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The next depth map (the one map for ``kind="file"``); its size must be ``image``'s."""
        if self.kind == "file":
            depth = self._single
        else:
            if self._iter is None:
                self._iter = self._frames()
            depth = next(self._iter, None)
            if depth is None:
                raise InputError(f"{self.path}: depth pass ended at frame {self.index}; it must have one map per "
                                 f"frame")
        if depth.shape != image.shape[:2]:
            raise InputError(f"{self.path}: depth map {self.index} is {depth.shape[1]}x{depth.shape[0]} but the frame "
                             f"is {image.shape[1]}x{image.shape[0]}")
        self.index += 1
        return depth


def cover_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale ``image`` (uint8 ``[h, w, 3]``) to cover ``size = (H, W)`` with its aspect ratio kept, then crop
    the centre: uint8 ``[H, W, 3]``."""
    h, w = image.shape[:2]
    th, tw = size
    s = max(th / h, tw / w)
    rh, rw = max(th, round(h * s)), max(tw, round(w * s))
    big = resize_uint8(image, (rh, rw))
    y, x = (rh - th) // 2, (rw - tw) // 2
    return np.ascontiguousarray(big[y:y + th, x:x + tw])


class Plate:
    """A background plate: an image, or a video that loops. ``plate.next(size)`` gives the next frame covering
    ``size = (H, W)`` (uint8 ``[H, W, 3]``).

    Raises:
        InputError: the file cannot be read (checked when the plate is opened, before any output exists).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.info = probe_video(path)  # an image, a video or a frame folder; InputError when unreadable
        self.path = self.info.path
        self._still: np.ndarray | None = None
        self._iter: Iterator[np.ndarray] | None = None
        self._size: tuple[int, int] | None = None

    def next(self, size: tuple[int, int]) -> np.ndarray:
        if self.info.kind == "image" or self.info.num_frames == 1:
            if self._still is None or self._size != size:
                self._still = cover_resize(next(iter_frames(self.path)), size)
                self._size = size
            return self._still
        frame = next(self._iter, None) if self._iter is not None else None
        if frame is None:  # first frame, or the plate video ended: (re)start it
            self._iter = iter_frames(self.path)
            frame = next(self._iter)
        return cover_resize(frame, size)


__all__ = ["DEPTH_EXTENSIONS", "DepthPass", "Plate", "cover_resize", "read_depth_file"]
