"""The live engine: one camera frame in, one animated frame out, with the state live use needs.

:class:`LiveEngine` is frame-at-a-time and owns no thread, so the same object serves ``fomm live`` (where
:class:`fomm.live.runner.LiveRunner` calls :meth:`LiveEngine.prepare` and :meth:`LiveEngine.animate` in its inference
thread, for the newest camera frame only) and a caller that has one frame at a time, such as the demo's
webcam tab (:meth:`LiveEngine.process`). What it adds to a :class:`~fomm.animate.StreamingAnimator`:

* the source is encoded once per photo (switching photos of a folder re-encodes only the new one);
* relative motion is anchored on a *calibration* frame: the first frame, or the frame after :meth:`calibrate`; the
  anchor survives a photo switch, so the person does not have to hold their neutral pose again;
* causal One-Euro smoothing of the detected keypoints (:mod:`fomm.live.smoothing`) between keypoint detection and
  decode, where the animator offers that seam (``animate_keypoints``: the torch and ONNX FOMM animators); other
  families run unsmoothed and say so (:attr:`LiveEngine.can_smooth`);
* the camera crop (:mod:`fomm.live.crop`) and an overlay of the source over the camera to line up the pose.

With smoothing off and the same frames, the animated frames are those of ``fomm animate`` (the animator's
``animate_outputs`` at batch 1; ``tests/test_live.py`` compares the two within 1 LSB).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fomm.animate.pipeline import output_size_option
from fomm.errors import InputError
from fomm.io.image import IMAGE_EXTENSIONS, read_image, resize_uint8, tensor_to_uint8
from fomm.live.crop import CROP_MODES, CameraCrop
from fomm.live.smoothing import KeypointSmoother, OneEuroConfig
from fomm.models.fomm.precision import PRECISIONS

KP = dict[str, torch.Tensor]
@dataclass(frozen=True)
class LiveOptions:
    """How to animate live (range-checked here).

    Attributes:
        relative: relative keypoint motion anchored on the calibration frame (absolute only suits the same person).
        adapt_movement_scale: scale the motion by the ratio of the keypoint hull sizes (relative only).
        smooth: One-Euro keypoint smoothing (toggled at run time with the ``smooth`` command).
        one_euro: the filter's parameters.
        crop: ``center``, ``auto`` (face tracking) or ``none`` (see :mod:`fomm.live.crop`).
        output_size: ``(H, W)`` of the animated frame (an int for a square), sides 16-8192; default the model's.
        precision: ``fp32``, ``bf16`` or ``fp16`` (torch FOMM; see :class:`fomm.animate.Animator`).
        channels_last: channels-last memory for the torch networks; ``None`` (default): on for a CPU model, as
            ``fomm animate`` does (measured at batch 1: ``actions-64`` fp32 took 0.5-0.9 s per frame with it and
            2.9-3.6 s without, on this 2-core CPU while it was heavily loaded).
        overlay_alpha: weight of the source photo in the overlay view, in ``[0, 1]``.
    """

    relative: bool = True
    adapt_movement_scale: bool = True
    smooth: bool = True
    one_euro: OneEuroConfig = field(default_factory=OneEuroConfig)
    crop: str = "center"
    output_size: int | tuple[int, int] | None = None
    precision: str = "fp32"
    channels_last: bool | None = None
    overlay_alpha: float = 0.5

    def __post_init__(self) -> None:
        if self.crop not in CROP_MODES:
            raise InputError(f"crop must be one of {', '.join(CROP_MODES)}, got {self.crop!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not (isinstance(self.overlay_alpha, (int, float)) and 0.0 <= self.overlay_alpha <= 1.0):
            raise InputError(f"overlay alpha must be between 0 and 1, got {self.overlay_alpha!r}")
        object.__setattr__(self, "output_size", output_size_option(self.output_size))


@dataclass(frozen=True)
class SourcePhoto:
    """One source photo: its name (for the window and stats) and pixels, uint8 ``[H, W, 3]``."""

    name: str
    image: np.ndarray


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def load_sources(path: str | os.PathLike) -> list[SourcePhoto]:
    """``--source``: a photo, or a folder of photos (every image file directly inside, in natural order: 2 before
    10). All are read now, so an unreadable one is reported before the camera opens.

    Raises:
        InputError: missing path, unreadable image, or a folder without images.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: source not found; pass a photo or a folder of photos")
    if not p.is_dir():
        return [SourcePhoto(p.name, read_image(p))]
    files = sorted((f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS),
                   key=lambda f: _natural_key(f.name))
    if not files:
        raise InputError(f"{p}: no images in this folder (looked for {', '.join(IMAGE_EXTENSIONS)}); "
                         f"pass a photo or a folder that holds photos")
    return [SourcePhoto(f.name, read_image(f)) for f in files]


def as_sources(sources: Sequence[SourcePhoto] | Sequence[np.ndarray] | np.ndarray) -> list[SourcePhoto]:
    if isinstance(sources, np.ndarray):
        sources = [sources]
    out = [s if isinstance(s, SourcePhoto) else SourcePhoto(f"photo {i + 1}", s) for i, s in enumerate(sources)]
    if not out:
        raise InputError("no source photo given")
    for s in out:
        if s.image.dtype != np.uint8 or s.image.ndim != 3 or s.image.shape[2] != 3:
            raise InputError(f"source {s.name}: expected a uint8 [H, W, 3] RGB image, got "
                             f"{s.image.dtype} {tuple(s.image.shape)}")
    # torch wants writable memory (a read-only array, e.g. np.asarray of a PIL image, makes it warn)
    return [s if s.image.flags.writeable else SourcePhoto(s.name, s.image.copy()) for s in out]


@dataclass
class Prepared:
    """A camera frame made ready for the model (by :meth:`LiveEngine.prepare`).

    Attributes:
        index: the frame's number in its stream.
        t: its capture time (``time.perf_counter()`` seconds).
        driving: the crop at the model's size, uint8 ``[h, w, 3]`` (the window's inset, the remote worker's input).
        input: the model input ``[1, 3, h, w]`` in ``[0, 1]`` on the model's device (``None`` for a remote engine).
    """

    index: int
    t: float
    driving: np.ndarray
    input: torch.Tensor | None = None


@dataclass
class LiveResult:
    """One animated frame.

    Attributes:
        index, t: the driving frame's number and capture time (from :class:`Prepared`).
        frame: the output, uint8 ``[H, W, 3]`` at the output size (the overlay view when overlay is on).
        driving: the driving crop at the model's size, uint8 ``[h, w, 3]``.
        source_index: which photo was animated.
        smoothed: whether the keypoints were smoothed.
        overlay: whether ``frame`` is the overlay view rather than an animated frame.
        kp_driving: the normalised driving keypoints the generator used (``value [1, K, 2]``), or ``None``.
        timings: seconds spent per step inside the engine (``model``; a remote engine adds ``network``).
    """

    index: int
    t: float
    frame: np.ndarray
    driving: np.ndarray
    source_index: int = 0
    smoothed: bool = False
    overlay: bool = False
    kp_driving: KP | None = None
    timings: dict[str, float] = field(default_factory=dict)


class LiveEngine:
    """Frame-at-a-time live animation of one or more source photos (see the module docstring).

    Args:
        animator: a streaming animator (from :func:`fomm.animate.make_animator`, batch size 1 for latency).
        sources: the photos (:func:`load_sources`), or uint8 ``[H, W, 3]`` arrays.
        options: a :class:`LiveOptions`.
    Threads: :meth:`prepare` may run in one thread while :meth:`animate` and the commands run in another (they
    touch disjoint state); neither method is safe to call from two threads at once.
    """

    def __init__(self, animator: Any, sources: Sequence[SourcePhoto] | Sequence[np.ndarray] | np.ndarray,
                 options: LiveOptions | None = None) -> None:
        self.animator = animator
        self.options = options or LiveOptions()
        self.sources = as_sources(sources)
        self.image_size: tuple[int, int] = tuple(animator.model.image_size)
        self.output_size: tuple[int, int] = self.options.output_size or self.image_size
        self.crop = CameraCrop(self.options.crop)
        self.smoother = KeypointSmoother(self.options.one_euro)
        self.can_smooth = callable(getattr(animator, "keypoints", None)) and callable(
            getattr(animator, "animate_keypoints", None))
        self.smoothing = bool(self.options.smooth) and self.can_smooth
        self.overlay = False
        self.source_index = 0
        self._reference: torch.Tensor | None = None  # the calibration frame's model input
        self._calibrate = False
        self._frames = 0
        self._source_view: np.ndarray | None = None
        self.set_source(0)

    @classmethod
    def for_model(cls, model: Any, sources: Sequence[SourcePhoto] | Sequence[np.ndarray] | np.ndarray,
                  options: LiveOptions | None = None) -> LiveEngine:
        """An engine for a loaded model (any family) or a backend model (ONNX), at batch 1."""
        from fomm.animate import make_animator

        opts = options or LiveOptions()
        channels_last = opts.channels_last
        if channels_last is None:
            channels_last = str(getattr(model, "device", "cpu")) == "cpu"
        animator = make_animator(model, relative=opts.relative, adapt_movement_scale=opts.adapt_movement_scale,
                                 batch_size=1, precision=opts.precision, channels_last=channels_last)
        return cls(animator, sources, opts)

    # ------------------------------------------------------------------------------------------------ commands
    @property
    def source(self) -> SourcePhoto:
        return self.sources[self.source_index]

    def set_source(self, index: int) -> None:
        """Animate photo ``index`` (modulo the number of photos) from now on; encoded once here. The calibration
        frame, if any, stays the reference pose."""
        self.source_index = int(index) % len(self.sources)
        self.animator.set_source(self.source.image)
        if self._reference is not None:
            self.animator.set_initial_driving(self._reference)
        self._source_view = None

    def set_sources(self, sources: Sequence[SourcePhoto] | Sequence[np.ndarray] | np.ndarray, index: int = 0) -> None:
        """Replace the photos (e.g. a remote client sent another one) and animate photo ``index``."""
        self.sources = as_sources(sources)
        self.set_source(index)

    def set_reference(self, frame: np.ndarray) -> None:
        """Anchor relative motion on ``frame`` (uint8 ``[h, w, 3]``, e.g. a calibration frame a remote client kept
        across a reconnect) instead of waiting for the next frame."""
        x = self.animator.to_model_input(np.ascontiguousarray(frame))
        self._reference = x
        self._calibrate = False
        self.animator.set_initial_driving(x)
        self.smoother.reset()

    def calibrate(self) -> None:
        """The next frame animated becomes the reference pose (the pose that shows the photo as it is)."""
        self._calibrate = True

    def command(self, name: str) -> bool:
        """Apply a command of :data:`fomm.live.control.COMMANDS` that concerns the engine; ``False`` for the
        others (``stats``, ``quit``: the runner's and the window's)."""
        if name == "calibrate":
            self.calibrate()
        elif name == "overlay":
            self.overlay = not self.overlay
        elif name in ("next", "previous"):
            self.set_source(self.source_index + (1 if name == "next" else -1))
        elif name == "smooth":
            self.smoothing = self.can_smooth and not self.smoothing
            self.smoother.reset()
        else:
            return False
        return True

    # ------------------------------------------------------------------------------------------------ frames
    def prepare(self, frame: np.ndarray, t: float | None = None, index: int | None = None) -> Prepared:
        """A camera frame (uint8 ``[H, W, 3]`` RGB) -> the crop and model input (the cheap half of a frame)."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError("a live frame must be a uint8 [H, W, 3] RGB image")
        t = time.perf_counter() if t is None else float(t)
        crop = self.crop(frame, t)
        if index is None:
            index = self._frames
            self._frames += 1
        return Prepared(index=index, t=t, driving=resize_uint8(crop, self.image_size),
                        input=self.animator.to_model_input(np.require(crop, requirements=("C", "W"))))

    @torch.inference_mode()
    def animate(self, prepared: Prepared) -> LiveResult:
        """Animate a prepared frame."""
        start = time.perf_counter()
        x = prepared.input if prepared.input is not None else self.animator.to_model_input(prepared.driving)
        if self._reference is None or self._calibrate:
            self._reference = x
            self._calibrate = False
            self.animator.set_initial_driving(x)
            self.smoother.reset()
        result = LiveResult(index=prepared.index, t=prepared.t, frame=prepared.driving, driving=prepared.driving,
                            source_index=self.source_index, smoothed=self.smoothing, overlay=self.overlay)
        if self.overlay:
            result.frame = self._overlay_view(prepared.driving)
        else:
            if self.smoothing:
                kp = self.smoother(self.animator.keypoints(x), prepared.t)
                outputs = self.animator.animate_keypoints(kp)
            else:
                outputs = self.animator.animate_outputs(x)
            result.kp_driving = outputs.kp_driving
            result.frame = resize_uint8(tensor_to_uint8(outputs.prediction[0]), self.output_size)
        result.timings["model"] = time.perf_counter() - start
        return result

    def process(self, frame: np.ndarray, t: float | None = None) -> LiveResult:
        """One camera frame (uint8 ``[H, W, 3]`` RGB) -> its :class:`LiveResult` (both shares, in this thread)."""
        return self.animate(self.prepare(frame, t))

    def _overlay_view(self, driving: np.ndarray) -> np.ndarray:
        if self._source_view is None:
            self._source_view = resize_uint8(self.source.image, self.output_size).astype(np.float32)
        a = self.options.overlay_alpha
        camera = resize_uint8(driving, self.output_size).astype(np.float32)
        return np.clip(np.rint(a * self._source_view + (1.0 - a) * camera), 0, 255).astype(np.uint8)


__all__ = ["LiveEngine", "LiveOptions", "LiveResult", "Prepared", "SourcePhoto", "as_sources", "load_sources"]
