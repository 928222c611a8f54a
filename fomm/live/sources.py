"""Where live frames come from: a camera (OpenCV capture) or a video file played at its own frame rate.

A source is an iterator of ``(frame, t)``: uint8 ``[H, W, 3]`` RGB and the capture time in
``time.perf_counter()`` seconds, read in the runner's capture thread. A file is *paced*: frame ``i`` is handed
over at ``start + i / fps`` (as a camera would deliver it) and the file loops, which is what tests and people without
a camera use. ``paced=False`` hands frames over as fast as they are taken, for a run that must animate every frame
(the runner then waits for the model instead of dropping, see :class:`fomm.live.runner.LiveRunner`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fomm.errors import FommError, InputError
from fomm.io.reading import iter_frames, probe_video


class VideoFileSource:
    """Frames of a video file (or frame folder) at the file's frame rate.

    Args:
        path: anything :func:`fomm.io.reading.iter_frames` reads.
        loop: start over at the end (default); ``False`` stops after one pass.
        paced: deliver frame ``i`` at ``start + i / fps``; ``False``: as fast as the consumer takes them.
    """

    def __init__(self, path: str | os.PathLike, loop: bool = True, paced: bool = True) -> None:
        self.path = Path(path)
        info = probe_video(self.path)  # InputError for a missing or unreadable file, before any thread starts
        if info.num_frames_exact and info.num_frames < 1:
            raise InputError(f"{self.path}: the video has no frames")
        self.fps = float(info.fps) if info.fps and info.fps > 0 else 25.0
        self.loop = loop
        self.paced = paced

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        start = time.perf_counter()
        i = 0
        while True:
            got = 0
            for frame in iter_frames(self.path):
                got += 1
                if self.paced:
                    due = start + i / self.fps
                    wait = due - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                    yield frame, due
                else:
                    yield frame, time.perf_counter()
                i += 1
            if not self.loop or got == 0:
                return

    def close(self) -> None:
        pass


def _silence_opencv(cv2) -> None:
    # OpenCV prints its own warnings (e.g. "can't open camera by index") on stderr; the error we raise says it all.
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # pragma: no cover - very old OpenCV
        pass


class CameraSource:
    """Frames of camera ``index`` through OpenCV (V4L2 on Linux), converted to RGB.

    Raises:
        InputError: no camera at that index, or it delivers no frame.
        FommError: OpenCV is not installed.
    """

    def __init__(self, index: int, size: tuple[int, int] | None = None, fps: float | None = None) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 63:
            raise InputError(f"--camera must be a camera index 0-63, got {index!r}")
        self.index = index
        if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
            found = sorted(p.name for p in Path("/dev").glob("video*"))
            have = f"cameras here: {', '.join(found)}" if found else "no camera is connected (no /dev/video*)"
            raise InputError(f"no camera at index {index} (/dev/video{index} does not exist; {have}); "
                             f"pick another --camera or use --driving VIDEO")
        try:
            import cv2
        except ImportError:
            raise FommError("camera capture needs OpenCV: pip install 'fomm[live]'") from None
        _silence_opencv(cv2)
        self._cv2 = cv2
        cap = cv2.VideoCapture(index)
        if not cap.isOpened():
            cap.release()
            raise InputError(f"no camera at index {index} (OpenCV could not open it; is another program using it?); "
                             f"pick another --camera or use --driving VIDEO")
        if size is not None:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[0])
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[1])
        if fps is not None:
            cap.set(cv2.CAP_PROP_FPS, float(fps))
        # One buffered frame at most, where the backend honours it: a stale frame is latency.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        ok, frame = cap.read()
        if not ok or frame is None:
            cap.release()
            raise InputError(f"camera {index} opened but delivers no frames; check it in another program or use "
                             f"--driving VIDEO")
        self._first = frame
        reported = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(reported) if reported and 1 <= reported <= 1000 else 30.0
        self._cap = cap

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        cv2 = self._cv2
        if self._first is not None:
            frame, self._first = self._first, None
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), time.perf_counter()
        while self._cap is not None:
            ok, frame = self._cap.read()
            t = time.perf_counter()
            if not ok or frame is None:
                raise InputError(f"camera {self.index} stopped delivering frames (unplugged?)")
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), t

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


__all__ = ["CameraSource", "VideoFileSource"]
