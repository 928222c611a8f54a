"""``animate_video``: one source image, a driving video of any length, frames out as they are made.

Data flows one way: driving frames -> animator (keypoints -> motion -> generator, in batches) -> per-frame
:class:`~fomm.animate.outputs.FrameOutputs` -> stages (paste-back, resize, the caller's) -> sinks (an MP4, a folder
of PNG frames, or any object with ``write``). Frames are decoded, animated and written as they come, so memory does
not grow with the video's length. :class:`AnimationOptions` is the one set of options the CLI, this function and the
demo's jobs share; every number in it is range-checked when it is built.

About ``--find-best-frame``: the original animates forward and backward from the best-matching driving frame and
concatenates the two halves. With relative motion every output frame ``j`` depends only on the keypoints of driving
frame ``j`` and of the *initial* frame, so the result equals one pass in the natural order with the best frame's
keypoints as the initial ones; that single pass is what is done here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fomm.animate.base import check_batch_size
from fomm.animate.factory import make_animator
from fomm.animate.outputs import FrameOutputs
from fomm.animate.overlap import WriteBehind, prefetch
from fomm.animate.stages import (
    PasteBackStage,
    ResizeStage,
    Stage,
    StageContext,
    begin_stages,
    check_stages,
    end_stages,
    run_stages,
)
from fomm.crop.boxes import DEFAULT_INCREASE
from fomm.errors import FommError, InputError
from fomm.io.image import read_image, tensor_to_uint8
from fomm.io.reading import frame_times, iter_frames, probe_video
from fomm.io.writing import check_output_path, open_writer
from fomm.models.fomm.precision import PRECISIONS

if TYPE_CHECKING:
    from fomm.animate.autocrop import AutoCropPlan
    from fomm.crop.paste import PasteBack

def output_size_option(size: Any) -> tuple[int, int] | None:
    """An output-size option (``N`` or ``(H, W)``, sides 16-8192, or ``None``) as ``(H, W)``; a one-line
    :class:`InputError` otherwise. Shared by :class:`AnimationOptions` and :class:`fomm.live.LiveOptions`."""
    if size is None:
        return None
    pair = (size, size) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
        raise InputError(f"output size must be N or (H, W) whole numbers, got {size!r}")
    if not all(16 <= v <= 8192 for v in pair):
        raise InputError(f"output size {size!r}: each side must be between 16 and 8192")
    return (int(pair[0]), int(pair[1]))


@dataclass(frozen=True)
class AnimationOptions:
    """How to animate (shared by ``fomm animate``, :func:`animate_video` and the demo's jobs).

    Attributes:
        relative: relative keypoint motion (recommended when source and driving show different people).
        adapt_movement_scale: scale motion by the ratio of the keypoint hull sizes (relative only).
        best_frame: index (>= 0) of the driving frame that matches the source pose (relative mode's reference).
        find_best_frame: pick that frame automatically by face landmarks.
        output_size: ``(H, W)`` or an int for square output, sides 16-8192; default the model's size (with
            ``auto_crop``: the photo's size).
        batch_size: driving frames per forward pass (>= 1).
        audio: copy the driving video's audio.
        progress: show a progress bar.
        auto_crop: animate only the face (see :mod:`fomm.animate.autocrop`) and paste it back into the photo.
        crop_increase: margin around each face per side, as a fraction of the face box side (>= 0).
        feather: width of the paste-back blend ramp as a fraction of the crop box side, in ``[0, 0.5]``.
        max_frames: animate only the first frames of the driving video (>= 1).
        precision: ``fp32``, ``bf16`` or ``fp16`` (torch FOMM only; see :class:`fomm.animate.Animator`).
        channels_last: channels-last memory for the torch networks (faster CPU convs).
        pipelined: decode and encode in their own threads, overlapping the model (same frames; ``False`` runs
            everything in the caller's thread, e.g. for debugging).
    Raises:
        InputError: a value out of its range, naming the option.
    """

    relative: bool = True
    adapt_movement_scale: bool = True
    best_frame: int | None = None
    find_best_frame: bool = False
    output_size: int | tuple[int, int] | None = None
    batch_size: int = 4
    audio: bool = True
    progress: bool = True
    auto_crop: bool = False
    crop_increase: float = DEFAULT_INCREASE
    feather: float = 0.1
    max_frames: int | None = None
    precision: str = "fp32"
    channels_last: bool = False
    pipelined: bool = True

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)
        if self.best_frame is not None and (isinstance(self.best_frame, bool) or not isinstance(
                self.best_frame, (int, np.integer)) or self.best_frame < 0):
            raise InputError(f"best frame must be a frame index >= 0, got {self.best_frame!r}")
        if self.max_frames is not None and (isinstance(self.max_frames, bool) or not isinstance(
                self.max_frames, (int, np.integer)) or self.max_frames < 1):
            raise InputError(f"max_frames must be >= 1, got {self.max_frames!r}")
        if not (isinstance(self.feather, (int, float)) and 0.0 <= self.feather <= 0.5):
            raise InputError(f"feather must be between 0 and 0.5, got {self.feather!r}")
        if not (isinstance(self.crop_increase, (int, float)) and math.isfinite(self.crop_increase)
                and self.crop_increase >= 0):
            raise InputError(f"crop increase must be >= 0, got {self.crop_increase!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        object.__setattr__(self, "output_size", output_size_option(self.output_size))

    def replace(self, **changes: Any) -> AnimationOptions:
        """A copy with ``changes`` applied (and checked)."""
        return dataclasses.replace(self, **changes)


@dataclass
class AnimationResult:
    """What :func:`animate_video` wrote."""

    output: Path | None
    num_frames: int
    fps: float
    size: tuple[int, int]
    has_audio: bool
    best_frame: int
    #: with ``auto_crop``: the source/driving crop boxes (an :class:`~fomm.animate.autocrop.AutoCropPlan`)
    crop: AutoCropPlan | None = None


def nth_frame(path: str | os.PathLike, index: int, frames: Iterable[np.ndarray] | None = None) -> np.ndarray:
    """Decode frames up to ``index`` and return that one (uint8 ``[H, W, 3]``); ``frames``: the stream to take it
    from (default: the video's frames)."""
    stream = frames if frames is not None else iter_frames(path)
    frame = next(itertools.islice(stream, index, index + 1), None)
    if frame is None:
        raise InputError(f"{path}: --best-frame {index} is past the end of the video")
    return frame


@dataclass
class _Plan:
    """Where frames come from and which built-in stages they go through."""

    source: np.ndarray  # what the animator encodes (the face crop with auto_crop)
    driving: Callable[[], Iterator[np.ndarray]]
    size: tuple[int, int]
    stages: list[Stage]
    crop: AutoCropPlan | None = None
    paste: PasteBack | None = None  # the paste-back stage's geometry, handed to the caller's stages (StageContext)


def _plan(model: Any, src: np.ndarray, driving: str | os.PathLike, opts: AnimationOptions) -> _Plan:
    if not opts.auto_crop:
        size = opts.output_size or tuple(model.image_size)
        return _Plan(src, lambda: iter_frames(driving, max_frames=opts.max_frames), size, [ResizeStage(size)])
    from fomm.animate.autocrop import AutoCropPlan, PasteBack, cropped_frames, driving_face_box, source_face_crop

    side = max(model.image_size)
    src_model, src_box, src_face = source_face_crop(src, side, opts.crop_increase)
    drv_box, drv_face = driving_face_box(driving, opts.crop_increase, max_frames=opts.max_frames,
                                         progress=opts.progress)
    size = opts.output_size or tuple(src.shape[:2])
    paste = PasteBack(src, src_box, opts.feather)
    return _Plan(src_model, lambda: cropped_frames(driving, drv_box, side, max_frames=opts.max_frames), size,
                 [PasteBackStage(paste), ResizeStage(size)], AutoCropPlan(src_box, src_face, drv_box, drv_face), paste)


def _is_sink(obj: Any) -> bool:
    return callable(getattr(obj, "write", None)) and not isinstance(obj, (str, os.PathLike))


def animate_video(model: Any, source: str | os.PathLike | np.ndarray, driving: str | os.PathLike,
                  output: str | os.PathLike | Any, options: AnimationOptions | None = None, *,
                  stages: Sequence[Stage] = (), view_sinks: Mapping[str, Any] | None = None,
                  landmarks: Callable[[np.ndarray], np.ndarray | None] | None = None,
                  **option_values: Any) -> AnimationResult:
    """Animate ``source`` with ``driving`` and write the frames to ``output``.

    Args:
        model: from :func:`fomm.load_model` (any family) or a backend model that provides ``make_animator``
            (:class:`fomm.realtime.OnnxModel`).
        source: image path or uint8 ``[H, W, 3]`` array.
        driving: video file, frame folder or image.
        output: ``OUT.mp4`` (H.264, driving fps, driving audio), ``DIR/`` for lossless PNG frames, or a sink: any
            object with ``write(frame uint8 [H, W, 3])`` (e.g. :class:`fomm.io.MemorySink`), used as a context
            manager when it is one.
        options: an :class:`AnimationOptions`; or pass its fields as keywords (``relative=False, batch_size=8``),
            which is how earlier versions were called. Not both.
        stages: the caller's per-frame stages, run after the built-in paste-back and resize (see
            :mod:`fomm.animate.stages`).
        view_sinks: ``{view name: sink}`` for named views the stages produce (each gets one frame per output frame).
        landmarks: face-landmark function for ``find_best_frame`` (default dlib).
    Raises:
        FommError subclasses for unreadable inputs / unwritable outputs / no face found (``auto_crop``) / options
        out of range; nothing is left half-written.
    """
    if options is not None and option_values:
        raise TypeError("pass either options= or option keywords, not both")
    opts = options if options is not None else AnimationOptions(**option_values)
    user_stages = check_stages(stages)
    out_path = None if _is_sink(output) else check_output_path(output)
    info = probe_video(driving)
    src = source if isinstance(source, np.ndarray) else read_image(source)
    if opts.best_frame is not None and opts.best_frame >= max(info.num_frames, 1) and info.num_frames_exact:
        raise InputError(f"--best-frame {opts.best_frame} is outside the driving video (it has {info.num_frames} "
                         f"frames)")
    total = info.num_frames if opts.max_frames is None else min(info.num_frames, opts.max_frames)
    # Built before any cropping work, so an option the model cannot honour fails at once.
    animator = make_animator(model, relative=opts.relative, adapt_movement_scale=opts.adapt_movement_scale,
                             batch_size=opts.batch_size, precision=opts.precision, channels_last=opts.channels_last)
    plan = _plan(model, src, driving, opts)
    best_frame = opts.best_frame
    if opts.find_best_frame and best_frame is None:
        from fomm.animate.best_frame import find_best_frame

        best_frame = find_best_frame(plan.source, plan.driving(), landmarks=landmarks, progress=opts.progress,
                                     total=total)
    animator.set_source(plan.source)
    if best_frame:
        animator.set_initial_driving(nth_frame(driving, best_frame, plan.driving()))
    all_stages = plan.stages + user_stages
    context = StageContext(model_size=tuple(model.image_size), output_size=plan.size, fps=info.fps_fraction,
                           num_frames=total, paste=plan.paste)
    # A variable-frame-rate driving video keeps each frame's time, so the output stays in sync with its audio.
    timing = frame_times(driving, max_frames=opts.max_frames) if out_path is not None else None
    vfr = timing is not None and timing.vfr
    writer = output if out_path is None else open_writer(output, info.fps_fraction,
                                                         audio_from=driving if opts.audio else None, vfr=vfr)
    count, has_audio = _write(animator, plan.driving(), writer, all_stages, context, dict(view_sinks or {}), opts,
                              timing.times if vfr else None)
    return AnimationResult(output=out_path, num_frames=count, fps=info.fps, size=plan.size, has_audio=has_audio,
                           best_frame=best_frame or 0, crop=plan.crop)


def check_finite_prediction(prediction: Any, index: int) -> None:
    """Stop at the first frame whose prediction holds NaN or inf.

    Converting to uint8 turns NaN into 0, so broken weights (or an fp16 overflow) would otherwise write an all-black
    video and report success. The first such frame is an error rather than a warning: the frames after it come
    from the same weights, and a partly black video is no more use than none. Nothing is left written (the writer
    removes its temporary file when the error passes through it). The check is one reduction per frame, on a tensor
    the uint8 conversion has already synchronised.
    """
    import torch

    if isinstance(prediction, torch.Tensor) and not bool(torch.isfinite(prediction).all()):
        raise FommError(f"the model produced non-finite values (NaN or inf) at frame {index}, so the video would be "
                        "black; its weights are broken (a diverged checkpoint?) or overflow (with --precision "
                        "bf16/fp16, try fp32); nothing was written")


def _write(animator: Any, driving: Iterator[np.ndarray], writer: Any, stages: list[Stage], context: StageContext,
           view_sinks: dict[str, Any], opts: AnimationOptions,
           times: Sequence[float] | None = None) -> tuple[int, bool]:
    """Animate, run the stages and write every frame (and view); returns ``(frames written, has audio)``.
    ``times``: each driving frame's time in seconds, passed to ``writer.write`` as ``pts`` (VFR input).

    With ``opts.pipelined`` (the default) decoding runs in a reader thread and converting, the stages and encoding
    in a writer thread (:mod:`fomm.animate.overlap`), so this thread only runs the model; the frames written are the
    same either way.
    """
    from tqdm.auto import tqdm

    count = 0
    ok = False

    def emit(outputs: FrameOutputs) -> None:
        nonlocal count
        check_finite_prediction(outputs.prediction, count)
        for i, frame in enumerate(tensor_to_uint8(outputs.prediction)):
            one = outputs[i]
            out = run_stages(stages, frame, one)
            if times is not None and count < len(times):
                writer.write(out, pts=times[count])
            else:
                writer.write(out)
            for name, sink in view_sinks.items():
                if name not in one.views:
                    raise InputError(f"no stage produced the view '{name}' that a view sink was given for")
                sink.write(one.views[name])
            count += 1
            bar.update(1)

    with contextlib.ExitStack() as stack:
        for sink in (writer, *view_sinks.values()):
            if hasattr(sink, "__enter__"):
                stack.enter_context(sink)
        begin_stages(stages, context)
        bar = stack.enter_context(tqdm(total=context.num_frames, unit="frame", desc="animate",
                                       disable=not opts.progress, leave=False))
        try:
            if opts.pipelined:
                batches = stack.enter_context(contextlib.closing(prefetch(animator.input_batches(driving))))
                with WriteBehind(emit) as behind:
                    for frames in batches:
                        behind.put(animator.animate_outputs(frames))
            else:
                for frames in animator.input_batches(driving):
                    emit(animator.animate_outputs(frames))
            ok = True
        finally:
            end_stages(stages, ok)
        has_audio = bool(getattr(writer, "has_audio", False))
    return count, has_audio


__all__ = ["PRECISIONS", "AnimationOptions", "AnimationResult", "animate_video", "nth_frame", "output_size_option"]
