"""Image and video input/output shared by every fomm command.

:mod:`fomm.io.image` (still images), :mod:`fomm.io.reading` (videos, frame folders), :mod:`fomm.io.audio`
(copying a source's sound), :mod:`fomm.io.writing` (frame sinks: MP4, PNG folder, memory), :mod:`fomm.io.atomic`
(all-or-nothing outputs) and :mod:`fomm.io.clips` (whole clips as arrays, for evaluation).
"""

from __future__ import annotations

from fomm.io.image import image_to_tensor, read_image, resize_uint8, tensor_to_uint8, write_image
from fomm.io.reading import FrameReader, FrameTimes, VideoInfo, frame_times, iter_frames, probe_video, read_frames_at
from fomm.io.writing import FrameFolderWriter, FrameSink, MemorySink, VideoWriter, check_output_path, open_writer

__all__ = [
    "FrameFolderWriter", "FrameReader", "FrameSink", "FrameTimes", "MemorySink", "VideoInfo", "VideoWriter",
    "check_output_path", "frame_times", "image_to_tensor",
    "iter_frames", "open_writer", "probe_video", "read_frames_at", "read_image", "resize_uint8", "tensor_to_uint8",
    "write_image",
]
