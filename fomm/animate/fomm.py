"""Streaming animation: one source image, a driving video of any length, frames out as they are made.

The source is encoded once (its keypoints, the generator's encoder features and the dense-motion input), driving
frames are processed in small batches, and each result is handed to the caller (or a writer) immediately, so memory
does not grow with the video's length.

About ``--find-best-frame``: the original animates forward and backward from the best-matching driving frame and
concatenates the two halves. With relative motion every output frame ``j`` depends only on the keypoints of driving
frame ``j`` and of the *initial* frame, so the result equals one pass in the natural order with the best frame's
keypoints as the initial ones; that single pass is what is done here.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fomm.animate.normalize import normalize_kp
from fomm.api import LoadedModel
from fomm.crop.boxes import DEFAULT_INCREASE
from fomm.errors import InputError
from fomm.io.image import image_to_tensor, read_image, resize_uint8, tensor_to_uint8
from fomm.io.video import check_output_path, iter_frames, open_writer, probe_video

if TYPE_CHECKING:
    from fomm.animate.autocrop import AutoCropPlan

KP = dict[str, torch.Tensor]


@dataclass
class AnimationResult:
    """What :func:`animate_video` wrote."""

    output: Path
    num_frames: int
    fps: float
    size: tuple[int, int]
    has_audio: bool
    best_frame: int
    #: with ``auto_crop``: the source/driving crop boxes (an :class:`~fomm.animate.autocrop.AutoCropPlan`)
    crop: AutoCropPlan | None = None


class Animator:
    """Animates one source image with driving frames.

    Args:
        model: from :func:`fomm.load_model`.
        relative: relative keypoint motion (recommended when source and driving show different people).
        adapt_movement_scale: scale motion by the ratio of the two faces' keypoint hull sizes (relative only).
        batch_size: driving frames per forward pass.
        precision: ``"fp32"``, ``"bf16"`` (CPUs with bf16 support, or GPU) or ``"fp16"`` (GPU) for the generator's
            bottleneck and up blocks and the two hourglass trunks; keypoint heads, masks, the warp and the final conv
            stay fp32 (see :mod:`fomm.realtime.precision`).
        channels_last: convert the networks (in place) and frames to channels-last memory, faster for CPU convs.
    """

    def __init__(self, model: LoadedModel, relative: bool = True, adapt_movement_scale: bool = True,
                 batch_size: int = 4, precision: str = "fp32", channels_last: bool = False) -> None:
        from fomm.realtime.fuse import fused_view
        from fomm.realtime.precision import autocast_dtype, low_precision_kp_detector, low_precision_view

        self.model = model
        self.relative = relative
        self.adapt_movement_scale = adapt_movement_scale and relative
        self.batch_size = max(1, int(batch_size))
        self.device = model.device
        self.precision = precision
        self._amp_dtype = autocast_dtype(precision, self.device)
        self.channels_last = channels_last
        if channels_last:
            for net in (model.kp_detector, model.generator):
                net.to(memory_format=torch.channels_last)
        # Batch norms folded and up blocks in their exact polyphase form (fomm.realtime.fuse): same output, fewer
        # passes over the activations and 2.25x fewer FLOPs in the up blocks. With reduced precision, only the
        # low-precision view of that is kept (its heavy convs hold their weights in the dtype; no autocast), not
        # the fp32 folded copies it was made from. (Backends without torch networks, e.g. the ONNX animator, have
        # no generator to rewrite.)
        generator = getattr(model, "generator", None)
        if generator is not None:
            generator = fused_view(generator)
            if self._amp_dtype is not None:
                generator = low_precision_view(generator, self._amp_dtype)
        self._generator = generator
        kp_detector = getattr(model, "kp_detector", None)
        if kp_detector is not None:
            kp_detector = (low_precision_kp_detector(kp_detector, self._amp_dtype) if self._amp_dtype is not None
                           else fused_view(kp_detector))
        self._kp_detector = kp_detector
        self._kp_source: KP | None = None
        self._encoding = None
        self._kp_initial: KP | None = None

    # ------------------------------------------------------------------------------------------------------ setup
    def to_model_input(self, frame: np.ndarray) -> torch.Tensor:
        """uint8 ``[H, W, 3]`` -> float ``[1, 3, h, w]`` in ``[0, 1]`` at the model's size, on the model's device."""
        t = image_to_tensor(frame, self.model.image_size).to(self.device)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last else t

    @torch.inference_mode()
    def set_source(self, source: np.ndarray | torch.Tensor) -> None:
        """Encode the source once. ``source``: uint8 ``[H, W, 3]`` or float ``[1, 3, h, w]`` in ``[0, 1]``."""
        src = self.to_model_input(source) if isinstance(source, np.ndarray) else source.to(self.device)
        self._kp_source = self.keypoints(src)  # the driving frames' detector, so equal frames give equal keypoints
        self._encoding = self.model.generator.encode_source(src)
        self._kp_initial = None
        if self._amp_dtype is not None:
            from fomm.realtime.precision import calibrate_low_precision

            calibrate_low_precision(self._generator, self._encoding, self._kp_source)

    @torch.inference_mode()
    def keypoints(self, frames: torch.Tensor) -> KP:
        """Keypoints of ``[B, 3, h, w]`` frames."""
        return self._kp_detector(frames)

    def set_initial_driving(self, frame: np.ndarray | torch.Tensor) -> None:
        """The driving frame whose pose corresponds to the source (default: the first driving frame)."""
        t = self.to_model_input(frame) if isinstance(frame, np.ndarray) else frame.to(self.device)
        self._kp_initial = self.keypoints(t)

    # ---------------------------------------------------------------------------------------------------- running
    def driving_keypoints(self, frames: torch.Tensor) -> KP:
        """Keypoints of ``[B, 3, h, w]`` driving frames, normalised against the source and the initial driving
        frame (the first frame seen, unless :meth:`set_initial_driving` chose one)."""
        kp_driving = self.keypoints(frames)
        if self._kp_initial is None:
            self._kp_initial = {k: v[:1] for k, v in kp_driving.items()}
        return normalize_kp(self._kp_source, kp_driving, self._kp_initial, use_relative_movement=self.relative,
                            use_relative_jacobian=self.relative, adapt_movement_scale=self.adapt_movement_scale)

    @torch.inference_mode()
    def animate_batch(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, 3, h, w]`` driving frames in ``[0, 1]`` -> ``[B, 3, h, w]`` predictions in ``[0, 1]``."""
        if self._encoding is None or self._kp_source is None:
            raise RuntimeError("call set_source() first")
        kp_norm = self.driving_keypoints(frames)
        return self._generator.decode(self._encoding, kp_source=self._kp_source, kp_driving=kp_norm,
                                      with_deformed=False)["prediction"]

    def animate_frames(self, driving: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Stream uint8 ``[H, W, 3]`` driving frames -> uint8 ``[h, w, 3]`` animated frames at the model's size."""
        return stream_batches(self, driving)


def stream_batches(animator: Any, driving: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Feed uint8 ``[H, W, 3]`` frames to ``animator.animate_batch`` in batches of ``animator.batch_size`` and yield
    uint8 ``[h, w, 3]`` results; shared by every animator (FOMM, ONNX, baselines)."""
    batch: list[torch.Tensor] = []
    for frame in driving:
        batch.append(animator.to_model_input(frame))
        if len(batch) == animator.batch_size:
            yield from tensor_to_uint8(animator.animate_batch(torch.cat(batch)))
            batch = []
    if batch:
        yield from tensor_to_uint8(animator.animate_batch(torch.cat(batch)))


def _parse_size(size: int | tuple[int, int] | None, default: tuple[int, int]) -> tuple[int, int]:
    if size is None:
        return default
    if isinstance(size, int):
        return (size, size)
    return (int(size[0]), int(size[1]))


def nth_frame(path: str | os.PathLike, index: int, frames: Iterable[np.ndarray] | None = None) -> np.ndarray:
    """Decode frames up to ``index`` and return that one (uint8 ``[H, W, 3]``); ``frames``: the stream to take it
    from (default: the video's frames)."""
    frame = None
    i = -1
    for i, frame in enumerate(itertools.islice(frames if frames is not None else iter_frames(path), index + 1)):
        pass
    if frame is None or i != index:
        raise InputError(f"{path}: --best-frame {index} is past the end of the video")
    return frame


def animate_video(model: LoadedModel, source: str | os.PathLike | np.ndarray, driving: str | os.PathLike,
                  output: str | os.PathLike, *, relative: bool = True, adapt_movement_scale: bool = True,
                  best_frame: int | None = None, find_best_frame: bool = False,
                  output_size: int | tuple[int, int] | None = None, batch_size: int = 4, audio: bool = True,
                  progress: bool = True, landmarks: Callable[[np.ndarray], np.ndarray | None] | None = None,
                  auto_crop: bool = False, crop_increase: float = DEFAULT_INCREASE, feather: float = 0.1,
                  max_frames: int | None = None, precision: str = "fp32", channels_last: bool = False
                  ) -> AnimationResult:
    """Animate ``source`` with ``driving`` and write ``output`` (an ``.mp4`` or a folder of PNG frames).

    Args:
        source: image path or uint8 ``[H, W, 3]`` array.
        driving: video file, frame folder or image.
        output: ``OUT.mp4`` (H.264, driving fps, driving audio) or ``DIR/`` for lossless PNG frames.
        best_frame: index of the driving frame that matches the source pose (relative mode's reference).
        find_best_frame: pick that frame automatically by face landmarks (``landmarks`` backend, default dlib).
        output_size: ``(h, w)`` or an int for square output; default the model's size (with ``auto_crop``: the
            photo's size).
        auto_crop: animate only the face (see :mod:`fomm.animate.autocrop`): crop a square around the face of
            the full-size source photo and around the driving video's face (one stable box for the whole video),
            animate the crops at the model's size and paste every result back into the photo with a feathered
            mask. Pixels outside the source crop box stay the photo's own; the output has the photo's size (an
            odd width/height is padded by one edge pixel in MP4 output, which needs even sizes).
        crop_increase: margin around each face per side, as a fraction of the face box side (``auto_crop``).
        feather: width of the paste-back blend ramp as a fraction of the crop box side, in ``[0, 0.5]``.
        max_frames: animate only the first frames of the driving video.
        precision, channels_last: torch speed options (see :class:`Animator`). ``model`` may also be a
            :class:`fomm.realtime.OnnxModel`, which runs the ONNX Runtime path (fp32 graphs; these two are ignored).
    Raises:
        FommError subclasses for unreadable inputs / unwritable outputs / no face found (``auto_crop``); nothing
        is left half-written.
    """
    out_path = check_output_path(output)
    info = probe_video(driving)
    src = source if isinstance(source, np.ndarray) else read_image(source)
    if best_frame is not None and not 0 <= best_frame < max(info.num_frames, 1) and info.num_frames_exact:
        raise InputError(f"--best-frame {best_frame} is outside the driving video (it has {info.num_frames} frames)")
    if max_frames is not None and max_frames < 1:
        raise InputError(f"max_frames must be >= 1, got {max_frames}")
    if not 0.0 <= feather <= 0.5:
        raise InputError(f"feather must be between 0 and 0.5, got {feather}")
    if crop_increase < 0:
        raise InputError(f"crop increase must be >= 0, got {crop_increase}")
    total = info.num_frames if max_frames is None else min(info.num_frames, max_frames)
    from fomm.animate.baselines import make_animator

    # Built before any cropping work, so an option the model cannot honour fails at once.
    animator = make_animator(model, relative=relative, adapt_movement_scale=adapt_movement_scale,
                             batch_size=batch_size, precision=precision, channels_last=channels_last)

    plan = None
    paste = None
    if auto_crop:
        from fomm.animate.autocrop import AutoCropPlan, PasteBack, cropped_frames, driving_face_box, source_face_crop

        side = max(model.image_size)
        src_model, src_box, src_face = source_face_crop(src, side, crop_increase)
        drv_box, drv_face = driving_face_box(driving, crop_increase, max_frames=max_frames, progress=progress)
        plan = AutoCropPlan(src_box, src_face, drv_box, drv_face)
        paste = PasteBack(src, src_box, feather)

        def driving_frames() -> Iterator[np.ndarray]:
            return cropped_frames(driving, drv_box, side, max_frames=max_frames)

        size = _parse_size(output_size, tuple(src.shape[:2]))
    else:
        src_model = src

        def driving_frames() -> Iterator[np.ndarray]:
            return iter_frames(driving, max_frames=max_frames)

        size = _parse_size(output_size, model.image_size)

    if find_best_frame and best_frame is None:
        from fomm.animate.best_frame import find_best_frame as _find

        best_frame = _find(src_model, driving_frames(), landmarks=landmarks, progress=progress, total=total)

    animator.set_source(src_model)
    if best_frame:
        animator.set_initial_driving(nth_frame(driving, best_frame, driving_frames()))

    from tqdm.auto import tqdm

    count = 0
    with open_writer(output, info.fps_fraction, audio_from=driving if audio else None) as writer:
        frames = animator.animate_frames(driving_frames())
        bar = tqdm(total=total, unit="frame", desc="animate", disable=not progress, leave=False)
        try:
            for frame in frames:
                if paste is not None:
                    frame = paste(frame)
                if frame.shape[:2] != size:
                    frame = resize_uint8(frame, size)
                writer.write(frame)
                count += 1
                bar.update(1)
        finally:
            bar.close()
        has_audio = bool(getattr(writer, "has_audio", False))
    return AnimationResult(output=out_path, num_frames=count, fps=info.fps, size=size, has_audio=has_audio,
                           best_frame=best_frame or 0, crop=plan)
