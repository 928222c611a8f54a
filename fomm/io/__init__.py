"""Image and video input/output shared by every fomm command."""

from __future__ import annotations

from fomm.io.image import image_to_tensor, read_image, resize_uint8, tensor_to_uint8, write_image
from fomm.io.video import (
    FrameFolderWriter,
    VideoInfo,
    VideoWriter,
    check_output_path,
    iter_frames,
    open_writer,
    probe_video,
)

__all__ = [
    "FrameFolderWriter", "VideoInfo", "VideoWriter", "check_output_path", "image_to_tensor", "iter_frames",
    "open_writer", "probe_video", "read_image", "resize_uint8", "tensor_to_uint8", "write_image",
]
