"""Streaming animators for the baselines, with the interface of :class:`fomm.animate.Animator`
(``set_source``, ``set_initial_driving``, ``animate_batch``, ``animate_frames``, ``to_model_input``).

* Monkey-Net: keypoints of the source and of each driving frame, transferred with the original ``normalize_kp``
  (relative = ``move_location``: the driving keypoints' displacement from the initial driving frame is added to
  the source keypoints; ``adapt_movement_scale`` = ``movement_mult``, the ratio of the keypoint hulls;
  ``adapt_variance`` and ``clip_mean`` come from the config's ``transfer_params.normalization_params``).
  Driving frames of one batch go through the 3-D networks as the time axis of one clip; with frames processed
  independently (``(1, k, k)`` kernels, eval-mode BatchNorm) this equals the original's frame-by-frame loop.
* X2Face: the driving frame itself drives the source (:meth:`X2Face.animate_frame`); there are no keypoints, so
  ``relative``/``adapt_movement_scale``/the initial frame do not apply and are ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from fomm.animate.animator import stream_batches
from fomm.api import LoadedModel
from fomm.errors import InputError
from fomm.io.image import image_to_tensor

KP = dict[str, torch.Tensor]


class _StreamingBase:
    def __init__(self, model: LoadedModel, batch_size: int = 4) -> None:
        self.model = model
        self.device = model.device
        self.batch_size = max(1, int(batch_size))

    def to_model_input(self, frame: np.ndarray) -> torch.Tensor:
        """uint8 ``[H, W, 3]`` -> float ``[1, 3, h, w]`` in ``[0, 1]`` at the model's size, on its device."""
        return image_to_tensor(frame, self.model.image_size).to(self.device)

    def _as_input(self, frame: np.ndarray | torch.Tensor) -> torch.Tensor:
        return self.to_model_input(frame) if isinstance(frame, np.ndarray) else frame.to(self.device)

    def animate_batch(self, frames: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def animate_frames(self, driving: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Stream uint8 ``[H, W, 3]`` driving frames -> uint8 ``[h, w, 3]`` animated frames at the model's size."""
        return stream_batches(self, driving)


class MonkeyNetAnimator(_StreamingBase):
    """Monkey-Net transfer (see the module docstring). ``relative=False`` uses the driving keypoints as they
    are (absolute transfer, the reconstruction protocol)."""

    def __init__(self, model: LoadedModel, relative: bool = True, adapt_movement_scale: bool = True,
                 batch_size: int = 4) -> None:
        super().__init__(model, batch_size)
        norm = dataclasses.asdict(model.config.normalization_params)
        norm.update(move_location=bool(relative), movement_mult=bool(adapt_movement_scale and relative))
        if not relative:
            norm["adapt_variance"] = False  # relative to the initial frame's shape: meaningless in absolute mode
        self.normalization = norm
        self._source: torch.Tensor | None = None
        self._kp_source: KP | None = None
        self._kp_initial: KP | None = None

    def _keypoints(self, frames: torch.Tensor) -> KP:
        """``[B, 3, h, w]`` -> keypoints with the frames as the time axis: ``mean [1, B, K, 2]``."""
        return self.model.kp_detector(frames.permute(1, 0, 2, 3).unsqueeze(0))

    @torch.inference_mode()
    def set_source(self, source: np.ndarray | torch.Tensor) -> None:
        """``source``: uint8 ``[H, W, 3]`` or float ``[1, 3, h, w]`` in ``[0, 1]``."""
        from fomm.models.monkeynet import check_frame_size

        src = self._as_input(source)
        check_frame_size(self.model.kp_detector, self.model.generator, src.shape[-2], src.shape[-1])
        self._source = src.unsqueeze(2)  # [1, 3, 1, h, w]
        self._kp_source = self.model.kp_detector(self._source)
        self._kp_initial = None

    @torch.inference_mode()
    def set_initial_driving(self, frame: np.ndarray | torch.Tensor) -> None:
        """The driving frame whose pose corresponds to the source (default: the first driving frame)."""
        self._kp_initial = self._keypoints(self._as_input(frame))

    @torch.inference_mode()
    def animate_batch(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, 3, h, w]`` driving frames in ``[0, 1]`` -> ``[B, 3, h, w]`` predictions in ``(0, 1)``."""
        from fomm.models.monkeynet import normalize_kp

        if self._source is None or self._kp_source is None:
            raise RuntimeError("call set_source() first")
        kp_driving = self._keypoints(frames.to(self.device))
        if self._kp_initial is None:
            self._kp_initial = {k: v[:, :1] for k, v in kp_driving.items()}
        # normalize_kp takes frame 0 of the clip as the reference: put the initial frame in front, drop it after.
        clip = {k: torch.cat([self._kp_initial[k], v], dim=1) for k, v in kp_driving.items()}
        kp_norm = {k: v[:, 1:] for k, v in normalize_kp(clip, self._kp_source, **self.normalization).items()}
        out = self.model.generator(self._source, kp_driving=kp_norm, kp_source=self._kp_source)
        return out["video_prediction"][0].permute(1, 0, 2, 3)


class X2FaceAnimator(_StreamingBase):
    """X2Face: each driving frame drives the source directly (``relative`` and the initial frame are ignored)."""

    def __init__(self, model: LoadedModel, relative: bool = True, adapt_movement_scale: bool = True,
                 batch_size: int = 4) -> None:
        super().__init__(model, batch_size)
        self._source: torch.Tensor | None = None

    @torch.inference_mode()
    def set_source(self, source: np.ndarray | torch.Tensor) -> None:
        self._source = self._as_input(source)

    def set_initial_driving(self, frame: np.ndarray | torch.Tensor) -> None:
        """No-op: X2Face has no keypoints to make relative."""

    @torch.inference_mode()
    def animate_batch(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, 3, h, w]`` driving frames in ``[0, 1]`` -> ``[B, 3, H, W]`` (the source's size) in ``[0, 1]``."""
        if self._source is None:
            raise RuntimeError("call set_source() first")
        frames = frames.to(self.device)
        return self.model.generator.animate_frame(self._source.expand(frames.shape[0], -1, -1, -1), frames)


def make_animator(model: LoadedModel, relative: bool = True, adapt_movement_scale: bool = True,
                  batch_size: int = 4, precision: str = "fp32", channels_last: bool = False):
    """The streaming animator for ``model``: an ONNX model (``backend == "onnx"``) or a loaded ``fomm``,
    ``monkeynet`` or ``x2face`` model. ``precision`` and ``channels_last`` are torch FOMM speed options (see
    :class:`fomm.animate.Animator`); ``channels_last`` is a hint the other engines ignore, while a reduced
    ``precision`` they cannot honour is an :class:`InputError` rather than a silent fp32 run."""
    backend = getattr(model, "backend", "torch")
    kind = getattr(model, "model", "fomm")
    if precision != "fp32" and (backend != "torch" or kind != "fomm"):
        what = "the ONNX backend" if backend != "torch" else f"{kind} models"
        raise InputError(f"precision {precision!r} is a torch FOMM option; {what} run in fp32 (drop --precision)")
    if backend == "onnx":
        from fomm.realtime.onnx_runtime import OnnxAnimator

        return OnnxAnimator(model, relative=relative, adapt_movement_scale=adapt_movement_scale,
                            batch_size=batch_size)
    if kind == "monkeynet":
        return MonkeyNetAnimator(model, relative, adapt_movement_scale, batch_size)
    if kind == "x2face":
        return X2FaceAnimator(model, relative, adapt_movement_scale, batch_size)
    from fomm.animate.animator import Animator

    return Animator(model, relative=relative, adapt_movement_scale=adapt_movement_scale, batch_size=batch_size,
                    precision=precision, channels_last=channels_last)


__all__ = ["MonkeyNetAnimator", "X2FaceAnimator", "make_animator"]
