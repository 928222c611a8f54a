"""``composite_video``: the compositing stage on any video, with a depth pass you bring or estimated depth.

This is what ``fomm composite VIDEO -o OUT`` runs: frames are decoded (and their depth maps read or estimated)
in a reader thread, composited in the caller's thread and encoded in a writer thread (the hand-offs of
:mod:`fomm.animate.overlap`), so the three overlap on a multi-core CPU. Everything that can be refused is checked
before the first frame: the options, the depth pass against the video (size, length), the plate, the output path,
the stereo packing against the frame size. The output is written atomically (nothing is left behind on an
error) and a ``.mkv`` output of a stereo packing carries the Matroska ``stereo_mode`` tag.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fomm.animate.overlap import WriteBehind, prefetch
from fomm.animate.stages import StageContext
from fomm.compositing.sources import DepthPass, auto_depth
from fomm.compositing.stage import CompositeOptions, CompositeStage
from fomm.errors import InputError
from fomm.io.atomic import refuse_input_overwrite
from fomm.io.reading import iter_frames, probe_video
from fomm.io.writing import check_output_path, open_writer


@dataclass
class CompositeResult:
    """What :func:`composite_video` wrote."""

    output: Path
    num_frames: int
    fps: float
    size: tuple[int, int]
    has_audio: bool
    depth: str
    stereo_mode: str | None = None


def stereo_metadata(output: str | os.PathLike, options: CompositeOptions) -> dict[str, str]:
    """The stream tags for ``output``: Matroska's ``stereo_mode`` for a stereo packing into ``.mkv``."""
    if options.stereo is not None and Path(output).suffix.lower() == ".mkv":
        return {"stereo_mode": options.stereo.mkv_stereo_mode}
    return {}


@dataclass(frozen=True)
class _Views:
    """What :class:`CompositeStage` reads of a frame's outputs: its named views (here just the depth)."""

    views: dict[str, np.ndarray]


def _with_depth(frames: Iterator[np.ndarray], depth: Callable[[np.ndarray], np.ndarray]
                ) -> Iterator[tuple[np.ndarray, _Views]]:
    """Each frame with its depth map, so reading (or estimating) the depth happens in the reader thread, next to
    the decoding, and the compositing thread only composites."""
    for frame in frames:
        yield frame, _Views({"depth": depth(frame)})


def composite_video(video: str | os.PathLike, output: str | os.PathLike, options: CompositeOptions,
                    depth: str | os.PathLike = "auto", *, max_frames: int | None = None, audio: bool = True,
                    progress: bool = True, device: str = "cpu", preset: str = "veryfast") -> CompositeResult:
    """Composite every frame of ``video`` (see :mod:`fomm.compositing.stage`) into ``output``.

    Args:
        video: a video file, a frame folder or an image.
        output: ``.mp4``/``.mov``/``.m4v``/``.mkv`` or a folder ending with ``/`` for PNG frames.
        options: what to composite.
        depth: a depth pass (folder, one map, or grey video; its size and length must match the video) or
            ``"auto"`` to estimate depth offline.
        max_frames: only the first frames (>= 1). audio: copy the video's sound.
        device: torch device for the compositing (and Depth-Anything). preset: x264 preset of a video output.
    Raises:
        InputError / OutputError: bad options, unreadable inputs, a depth pass of another size or length, an
        unwritable output; nothing is left half-written.
    """
    from tqdm.auto import tqdm

    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                   or max_frames < 1):
        raise InputError(f"--max-frames must be >= 1, got {max_frames!r}")
    out_path = check_output_path(output)
    info = probe_video(video)
    refuse_input_overwrite([output], [video, None if str(depth) == "auto" else depth, options.background])
    total = info.num_frames if max_frames is None else min(info.num_frames, max_frames)
    size = info.display_size
    if str(depth) == "auto":
        source = auto_depth(device)
        depth_name = f"auto ({getattr(source, 'estimator', None).__class__.__name__})"
    else:
        source = DepthPass(depth)
        source.check_against(size, info.num_frames, info.num_frames_exact)
        depth_name = str(depth)
    stage = CompositeStage(options, device=device)  # the depth comes with each frame, read by the reader thread
    stage.begin(StageContext(model_size=size, output_size=size, fps=info.fps_fraction, num_frames=total))
    metadata = stereo_metadata(output, options)
    kwargs = {"metadata": metadata, "preset": preset} if not str(output).endswith(("/", os.sep)) and \
        not Path(output).is_dir() else {}
    writer = open_writer(output, info.fps_fraction, audio_from=video if audio else None, **kwargs)
    count = 0
    with writer, tqdm(total=total, unit="frame", desc="composite", disable=not progress, leave=False) as bar:
        frames = prefetch(_with_depth(iter_frames(video, max_frames=max_frames), source))
        with contextlib.closing(frames), WriteBehind(writer.write) as behind:
            for frame, views in frames:
                behind.put(stage(frame, views))
                count += 1
                bar.update(1)
    h, w = options.output_size(size)
    return CompositeResult(output=out_path, num_frames=count, fps=info.fps, size=(h, w), has_audio=writer.has_audio,
                           depth=depth_name, stereo_mode=metadata.get("stereo_mode"))


__all__ = ["CompositeResult", "composite_video", "stereo_metadata"]
