"""What the compositing stages read besides the frames: depth passes and background plates.

A depth pass (:class:`DepthPass`) is what ``fomm depth`` and ``fomm animate --export-depth`` write, or any depth the
user brings in that convention (near = 1, far = 0): one file used for every frame, a folder with one file per
frame or a grey video; reading is :mod:`fomm.compositing.depth.files` (16-bit PNG, EXR, NPY). Unlike the depth
estimators' ``file`` mode, which resizes a map to fit, a pass given to ``fomm composite`` must have the video's
size and length, checked before anything is written: a pass made for another clip is refused with one line
instead of producing a plausible-looking but wrong 3D video. ``--depth auto`` estimates depth instead
(:func:`auto_depth`: the depth package's ``auto`` estimator, steadied across frames by its aligner).

A plate (:class:`Plate`) is an image or a video; a video loops. It is scaled to cover the frame (aspect ratio kept,
centre cropped), the way a background fills a screen.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from fomm.compositing.depth.base import DepthOptions, check_depth
from fomm.compositing.depth.estimators import make_estimator
from fomm.compositing.depth.files import count_depth_frames, iter_depth_frames, read_depth
from fomm.compositing.depth.temporal import VideoDepthAligner
from fomm.errors import InputError
from fomm.io.image import resize_uint8
from fomm.io.reading import iter_frames, probe_video


class DepthPass:
    """A depth pass on disk, read frame by frame: ``pass_(frame)`` returns the next depth map, float32
    ``[H, W]`` in ``[0, 1]`` (the depth estimators' call signature, so a pass and an estimator are
    interchangeable).

    Attributes:
        path: what was opened; ``single``: one map used for every frame.
        size: ``(H, W)`` of the maps; ``num_frames`` / ``exact``: how many maps, and whether that count is exact.
    Raises:
        InputError: missing, unreadable, an empty folder or one with a gap; later a map of another size than its
            frame, or a pass that ends before the video.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: depth pass not found; give a folder of depth maps (fomm depth VIDEO -o DIR), "
                             f"one map, a depth video, or --depth auto")
        self.path = p
        self.num_frames, self.exact = count_depth_frames(p)
        self.single = not p.is_dir() and self.num_frames == 1 and probe_kind(p) == "image"
        first = read_depth(p) if self.single else next(iter_depth_frames(p), None)
        if first is None:
            raise InputError(f"{p}: depth pass has no frames")
        self.size = tuple(first.shape)
        self._fixed = check_depth(first, str(p)) if self.single else None
        self._iter: Iterator[np.ndarray] | None = None
        self.index = 0

    def check_against(self, size: tuple[int, int], num_frames: int, exact: bool) -> None:
        """Refuse a pass made for another clip: another size, or (both counts exact) another length.

        ``size = (H, W)`` of the frames, ``num_frames`` how many will be composited."""
        if self.size != tuple(size):
            raise InputError(f"{self.path}: depth pass is {self.size[1]}x{self.size[0]} but the video is "
                             f"{size[1]}x{size[0]}; give the depth of this video (fomm depth VIDEO -o DIR)")
        if not self.single and self.exact and exact and self.num_frames != num_frames:
            raise InputError(f"{self.path}: depth pass has {self.num_frames} frames but the video has {num_frames};"
                             f" give the depth of this video (fomm depth VIDEO -o DIR)")

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The next depth map (the one map when ``single``); it must have ``image``'s size."""
        if self.single:
            depth = self._fixed
        else:
            if self._iter is None:
                self._iter = iter_depth_frames(self.path)
            depth = next(self._iter, None)
            if depth is None:
                raise InputError(f"{self.path}: depth pass ends after {self.index} frames but the video has more; "
                                 f"give one depth map per frame")
            depth = check_depth(depth, f"{self.path} frame {self.index}")
        if depth.shape != image.shape[:2]:
            raise InputError(f"{self.path}: depth map {self.index} is {depth.shape[1]}x{depth.shape[0]} but the "
                             f"frame is {image.shape[1]}x{image.shape[0]}")
        self.index += 1
        return depth


def probe_kind(path: Path) -> str:
    """``"image"`` for a single depth map file (PNG/TIFF/EXR/NPY), else ``"video"``."""
    return "image" if path.suffix.lower() in (".png", ".tif", ".tiff", ".exr", ".npy", ".jpg", ".jpeg") else "video"


def auto_depth(device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    """Estimated depth for any video, offline: the depth package's ``auto`` estimator (Depth-Anything when its
    weights are on disk, else the portrait estimator), each frame aligned to a running reference so the 3D does
    not breathe. ``depth(frame uint8 [H, W, 3]) -> float32 [H, W]``."""
    estimator = make_estimator(DepthOptions(estimator="auto", device=device))
    aligner = VideoDepthAligner()

    def depth(frame: np.ndarray) -> np.ndarray:
        return aligner(frame, estimator(frame))

    depth.estimator = estimator  # type: ignore[attr-defined]  # for callers that report which one ran
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


__all__ = ["DepthPass", "Plate", "auto_depth", "cover_resize", "probe_kind"]
