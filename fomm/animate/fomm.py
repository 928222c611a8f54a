"""The FOMM family's animator: keypoints with jacobians, dense motion, occlusion-aware generator.

The source is encoded once (its keypoints, the generator's encoder features and the dense-motion input); each batch
of driving frames then costs one keypoint pass and one :meth:`decode`. The networks run through the exact inference
rewrites of :mod:`fomm.models.fomm.fuse` (folded batch norms, polyphase up blocks) and, on request, the reduced
precision views of :mod:`fomm.models.fomm.precision`.
"""

from __future__ import annotations

import numpy as np
import torch

from fomm.animate.base import StreamingAnimator
from fomm.animate.normalize import KeypointTransfer
from fomm.animate.outputs import FrameOutputs
from fomm.api import LoadedModel
from fomm.models.fomm.fuse import fused_view
from fomm.models.fomm.precision import (
    autocast_dtype,
    calibrate_low_precision,
    low_precision_kp_detector,
    low_precision_view,
)

KP = dict[str, torch.Tensor]


class Animator(StreamingAnimator):
    """Animates one source image with driving frames (the ``fomm`` family).

    Args:
        model: from :func:`fomm.load_model`.
        relative: relative keypoint motion (recommended when source and driving show different people).
        adapt_movement_scale: scale motion by the ratio of the two faces' keypoint hull sizes (relative only).
        batch_size: driving frames per forward pass (>= 1).
        precision: ``"fp32"``, ``"bf16"`` (CPUs with bf16 support, or GPU) or ``"fp16"`` (GPU) for the generator's
            bottleneck and up blocks and the two hourglass trunks; keypoint heads, masks, the warp and the final conv
            stay fp32 (see :mod:`fomm.models.fomm.precision`).
        channels_last: convert the networks (in place) and frames to channels-last memory, faster for CPU convs.
    """

    def __init__(self, model: LoadedModel, relative: bool = True, adapt_movement_scale: bool = True,
                 batch_size: int = 4, precision: str = "fp32", channels_last: bool = False) -> None:
        super().__init__(model, batch_size)
        self.transfer = KeypointTransfer(relative, adapt_movement_scale)
        self.precision = precision
        self._amp_dtype = autocast_dtype(precision, self.device)
        self.channels_last = channels_last
        if channels_last:
            for net in (model.kp_detector, model.generator):
                net.to(memory_format=torch.channels_last)
        # Batch norms folded and up blocks in their exact polyphase form (fomm.models.fomm.fuse): same output, fewer
        # passes over the activations and 2.25x fewer FLOPs in the up blocks. With reduced precision, only the
        # low-precision view of that is kept (its heavy convs hold their weights in the dtype; no autocast), not
        # the fp32 folded copies it was made from.
        generator = fused_view(model.generator)
        if self._amp_dtype is not None:
            generator = low_precision_view(generator, self._amp_dtype)
        self._generator = generator
        self._kp_detector = (low_precision_kp_detector(model.kp_detector, self._amp_dtype)
                             if self._amp_dtype is not None else fused_view(model.kp_detector))
        self._encoding = None
        # The generator resizes its deformation this way (FrameOutputs.warp must match it).
        self._aligned = bool(getattr(model.generator, "align_deformation", False))

    @property
    def relative(self) -> bool:
        return self.transfer.relative

    @property
    def adapt_movement_scale(self) -> bool:
        return self.transfer.adapt_movement_scale

    # ------------------------------------------------------------------------------------------------------ setup
    def to_model_input(self, frame: np.ndarray) -> torch.Tensor:
        """uint8 ``[H, W, 3]`` -> float ``[1, 3, h, w]`` in ``[0, 1]`` at the model's size, on the model's device."""
        t = super().to_model_input(frame)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last else t

    @torch.inference_mode()
    def set_source(self, source: np.ndarray | torch.Tensor) -> None:
        """Encode the source once. ``source``: uint8 ``[H, W, 3]`` or float ``[1, 3, h, w]`` in ``[0, 1]``."""
        src = self._as_input(source)
        # The driving frames' detector, so equal frames give equal keypoints.
        self.transfer.set_source(self.keypoints(src))
        self._encoding = self.model.generator.encode_source(src)
        if self._amp_dtype is not None:
            calibrate_low_precision(self._generator, self._encoding, self.transfer.kp_source)

    @torch.inference_mode()
    def keypoints(self, frames: torch.Tensor) -> KP:
        """Keypoints of ``[B, 3, h, w]`` frames: ``value [B, K, 2]`` in ``[-1, 1]``, ``jacobian [B, K, 2, 2]``."""
        return self._kp_detector(frames)

    def set_initial_driving(self, frame: np.ndarray | torch.Tensor) -> None:
        """The driving frame whose pose corresponds to the source (default: the first driving frame)."""
        self.transfer.set_initial(self.keypoints(self._as_input(frame)))

    # ---------------------------------------------------------------------------------------------------- running
    def driving_keypoints(self, frames: torch.Tensor) -> KP:
        """Keypoints of ``[B, 3, h, w]`` driving frames, normalised against the source and the initial driving
        frame (the first frame seen, unless :meth:`set_initial_driving` chose one)."""
        return self.transfer(self.keypoints(frames))

    @torch.inference_mode()
    def animate_outputs(self, frames: torch.Tensor) -> FrameOutputs:
        """``[B, 3, h, w]`` driving frames in ``[0, 1]`` -> :class:`FrameOutputs` with the prediction, the
        deformation ``[B, h, w, 2]``, the occlusion map ``[B, 1, h, w]`` (when the config estimates it) and the
        normalised keypoints."""
        if self._encoding is None:
            raise RuntimeError("call set_source() first")
        kp_norm = self.driving_keypoints(frames)
        out = self._generator.decode(self._encoding, kp_source=self.transfer.kp_source, kp_driving=kp_norm,
                                     with_deformed=False)
        return FrameOutputs(prediction=out["prediction"], deformation=out.get("deformation"),
                            occlusion_map=out.get("occlusion_map"), kp_driving=kp_norm,
                            kp_source=self.transfer.kp_source, aligned=self._aligned)


__all__ = ["Animator"]
