"""Image and video input/output shared by every fomm command."""

from __future__ import annotations

from fomm.io.image import image_to_tensor, read_image, resize_uint8, tensor_to_uint8, write_image
from fomm.io.video import (
    FrameFolderWriter,
    FrameReader,
    VideoInfo,
    VideoWriter,
    check_output_path,
    iter_frames,
    open_writer,
    probe_video,
    read_frames_at,
)

__all__ = [
    "FrameFolderWriter", "FrameReader", "VideoInfo", "VideoWriter", "check_output_path", "image_to_tensor",
    "iter_frames", "open_writer", "probe_video", "read_frames_at", "read_image", "resize_uint8", "tensor_to_uint8",
    "write_image",
]
