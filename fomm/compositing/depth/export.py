"""``fomm depth INPUT -o OUT`` as a function, and the source-depth stage behind ``fomm animate --export-depth``.

Frames are decoded, estimated, aligned and written one at a time (:func:`fomm.io.reading.iter_frames` ->
estimator -> :class:`~fomm.compositing.depth.temporal.VideoDepthAligner` -> :class:`DepthFolderWriter`), so memory
stays flat however long the video is; the output folder appears whole at the end or not at all.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from fomm.compositing.depth.base import DepthOptions
from fomm.compositing.depth.estimators import FileDepth, make_estimator
from fomm.compositing.depth.files import FORMATS, DepthFolderWriter, check_depth_folder, format_of, write_depth
from fomm.compositing.depth.temporal import AlignConfig, DepthPassStage, FillConfig, VideoDepthAligner
from fomm.errors import InputError, OutputError
from fomm.io.atomic import refuse_input_overwrite
from fomm.io.reading import iter_frames, probe_video


@dataclass
class DepthExportResult:
    """What :func:`export_depth` wrote: the file or folder, frames, ``(H, W)``, fps, estimator, scene cuts."""

    output: Path
    num_frames: int
    size: tuple[int, int]
    fps: Fraction
    estimator: str
    cuts: list[int] = field(default_factory=list)


def _estimator_meta(est) -> dict:
    meta = {"estimator": getattr(est, "name", type(est).__name__)}
    for attr, key in (("model_id", "model"), ("path", "depth_file")):
        value = getattr(est, attr, None)
        if value is not None:
            meta[key] = str(value)
    return meta


def _is_folder_target(path: str | os.PathLike) -> bool:
    s = os.fspath(path)
    return s.endswith(("/", os.sep)) or Path(s).is_dir()


def export_depth(input: str | os.PathLike, output: str | os.PathLike, options: DepthOptions | None = None, *,
                 fmt: str | None = None, align: bool = True, align_config: AlignConfig | None = None,
                 max_frames: int | None = None, progress: bool = True) -> DepthExportResult:
    """Estimate the depth of an image, a video or a folder of frames and write it.

    Args:
        input: image, video, or folder of frames.
        output: for one image, a ``.png`` (16-bit) / ``.exr`` / ``.npy`` file (or a folder); for a video or a
            folder, a folder that receives ``000000.<fmt>``... and ``depth.json``.
        options: which estimator (:class:`DepthOptions`; default ``auto``).
        fmt: ``png``, ``exr`` or ``npy`` for a folder (default ``png``); for a file it must match the extension.
        align: steady a video's per-frame estimates (:class:`VideoDepthAligner`); the ``file`` estimator is never
            aligned (the user's depth is taken as given).
        max_frames: only the first frames (>= 1).
    Raises:
        InputError / OutputError: unreadable input, unusable depth, unwritable output; nothing is left half-written.
    """
    from tqdm.auto import tqdm

    opts = options or DepthOptions()
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise InputError(f"max_frames must be >= 1, got {max_frames!r}")
    if fmt is not None and fmt not in FORMATS.values():
        raise OutputError(f"unknown depth format {fmt!r}; choose png (16-bit), exr or npy")
    info = probe_video(input)
    one_file = info.kind == "image" and not _is_folder_target(output)
    if one_file:
        file_fmt = format_of(output)
        if fmt is not None and fmt != file_fmt:
            raise OutputError(f"{output}: the extension says {file_fmt} but --depth-format says {fmt}")
        fmt = file_fmt
        if Path(output).is_dir():
            raise OutputError(f"{output}: is a folder; give a depth file name (out.png, out.exr, out.npy)")
    else:
        if Path(output).suffix.lower() in FORMATS and not Path(output).is_dir():
            raise OutputError(f"{output}: {input} has {info.num_frames} frames, so the depth is one file per frame; "
                              f"give a folder (e.g. {Path(output).with_suffix('')}/) and --depth-format "
                              f"{FORMATS[Path(output).suffix.lower()]}")
        check_depth_folder(output)
        fmt = fmt or "png"
    refuse_input_overwrite([output], [input, opts.depth_file])
    total = info.num_frames if max_frames is None else min(info.num_frames, max_frames)
    est = make_estimator(opts)
    try:
        if isinstance(est, FileDepth) and info.num_frames_exact:
            est.expect_frames(total)
        aligner = VideoDepthAligner(align_config) if align and not isinstance(est, FileDepth) and \
            info.kind != "image" else None
        meta = _estimator_meta(est)
        meta.update(source=str(input), temporal=(
            "per-frame estimates aligned to a running reference (least-squares scale and shift), reset at scene cuts"
            if aligner is not None else "per-frame, as estimated"))
        if one_file:
            frame = next(iter_frames(input))
            depth = est(frame)
            write_depth(output, depth, meta)
            return DepthExportResult(Path(output), 1, depth.shape, info.fps_fraction, meta["estimator"])
        writer = DepthFolderWriter(output, info.fps_fraction, fmt, meta)
        with writer, tqdm(total=total, unit="frame", desc="depth", disable=not progress, leave=False) as bar:
            for frame in iter_frames(input, max_frames=max_frames):
                depth = est(frame)
                if aligner is not None:
                    depth = aligner(frame, depth)
                writer.write(np.asarray(depth, np.float32))
                bar.update(1)
            if aligner is not None:
                writer.meta["scene_cuts"] = list(aligner.cuts)
        return DepthExportResult(writer.path, writer.frames_written, writer.size, info.fps_fraction,
                                 meta["estimator"], list(aligner.cuts) if aligner else [])
    finally:
        close = getattr(est, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()


def source_depth_stage(source: np.ndarray, options: DepthOptions | None = None,
                       fill: FillConfig | None = None) -> tuple[DepthPassStage, dict]:
    """Estimate the depth of the ``source`` photo (uint8 ``[H, W, 3]``) once and return the stage that moves it with
    every animated frame, plus the sidecar metadata (estimator, model/file) for its depth folder.

    Raises:
        InputError: a ``file`` depth that is a folder or video (the source is one image: give one depth map).
    """
    est = make_estimator(options or DepthOptions())
    try:
        if isinstance(est, FileDepth) and not est.single:
            raise InputError(f"{est.path}: for --export-depth give one depth map of the source photo (a PNG, EXR or "
                             f"NPY file), not a folder or a video")
        depth = est(source)
    finally:
        close = getattr(est, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()
    meta = _estimator_meta(est)
    meta["temporal"] = ("the source's depth, estimated once and moved with each frame's deformation; newly visible "
                        "regions filled from background depth")
    return DepthPassStage(depth, fill), meta


__all__ = ["DepthExportResult", "export_depth", "source_depth_stage"]
