"""The Monkey-Net family's animator (the CVPR 2019 baseline), with the interface of every fomm animator.

Monkey-Net: keypoints of the source and of each driving frame, transferred with the original ``normalize_kp``
(relative = ``move_location``: the driving keypoints' displacement from the initial driving frame is added to
the source keypoints; ``adapt_movement_scale`` = ``movement_mult``, the ratio of the keypoint hulls;
``adapt_variance`` and ``clip_mean`` come from the config's ``transfer_params.normalization_params``).
Driving frames of one batch go through the 3-D networks as the time axis of one clip; with frames processed
independently (``(1, k, k)`` kernels, eval-mode BatchNorm) this equals the original's frame-by-frame loop.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from fomm.animate.base import StreamingAnimator
from fomm.animate.outputs import FrameOutputs
from fomm.api import LoadedModel
from fomm.models.monkeynet import check_frame_size, normalize_kp

KP = dict[str, torch.Tensor]


class MonkeyNetAnimator(StreamingAnimator):
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
    def animate_outputs(self, frames: torch.Tensor) -> FrameOutputs:
        """``[B, 3, h, w]`` driving frames in ``[0, 1]`` -> predictions ``[B, 3, h, w]`` in ``(0, 1)`` and the
        transferred keypoints (``mean [B, K, 2]`` as ``value``); Monkey-Net's per-keypoint motion is not one dense
        field, so ``deformation`` and ``occlusion_map`` are ``None``."""
        if self._source is None or self._kp_source is None:
            raise RuntimeError("call set_source() first")
        kp_driving = self._keypoints(frames.to(self.device))
        if self._kp_initial is None:
            self._kp_initial = {k: v[:, :1] for k, v in kp_driving.items()}
        # normalize_kp takes frame 0 of the clip as the reference: put the initial frame in front, drop it after.
        clip = {k: torch.cat([self._kp_initial[k], v], dim=1) for k, v in kp_driving.items()}
        kp_norm = {k: v[:, 1:] for k, v in normalize_kp(clip, self._kp_source, **self.normalization).items()}
        out = self.model.generator(self._source, kp_driving=kp_norm, kp_source=self._kp_source)
        return FrameOutputs(prediction=out["video_prediction"][0].permute(1, 0, 2, 3),
                            kp_driving={"value": kp_norm["mean"][0]},
                            kp_source={"value": self._kp_source["mean"][:, 0]})


__all__ = ["MonkeyNetAnimator"]
