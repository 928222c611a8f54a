"""Streaming video reading and writing: the names fomm has always offered here, kept for existing imports.

The code lives in three smaller modules: :mod:`fomm.io.reading` (probe, iterate, random access),
:mod:`fomm.io.audio` (copying a source's sound) and :mod:`fomm.io.writing` (MP4 / PNG-folder / in-memory sinks).
New code imports from those.
"""

from __future__ import annotations

from fomm.io.audio import MP4_AUDIO_COPY_CODECS
from fomm.io.reading import (
    AUDIO_FILE,
    DEFAULT_FPS,
    FPS_FILE,
    FrameReader,
    VideoInfo,
    iter_frames,
    probe_video,
    read_frames_at,
)
from fomm.io.writing import (
    VIDEO_EXTENSIONS,
    FrameFolderWriter,
    VideoWriter,
    check_output_path,
    open_writer,
    to_fraction,
)

__all__ = [
    "AUDIO_FILE", "DEFAULT_FPS", "FPS_FILE", "MP4_AUDIO_COPY_CODECS", "VIDEO_EXTENSIONS", "FrameFolderWriter",
    "FrameReader", "VideoInfo", "VideoWriter", "check_output_path", "iter_frames", "open_writer", "probe_video",
    "read_frames_at", "to_fraction",
]
