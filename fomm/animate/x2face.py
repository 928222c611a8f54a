"""The X2Face family's animator (the ECCV 2018 baseline), with the interface of every fomm animator.

X2Face: the driving frame itself drives the source (:meth:`X2Face.animate_frame`); there are no keypoints, so
``relative``/``adapt_movement_scale``/the initial frame do not apply and are ignored.
"""

from __future__ import annotations

import numpy as np
import torch

from fomm.animate.base import StreamingAnimator
from fomm.animate.outputs import FrameOutputs
from fomm.api import LoadedModel


class X2FaceAnimator(StreamingAnimator):
    """X2Face: each driving frame drives the source directly (``relative`` and the initial frame are ignored)."""

    def __init__(self, model: LoadedModel, relative: bool = True, adapt_movement_scale: bool = True,
                 batch_size: int = 4) -> None:
        super().__init__(model, batch_size)
        self._source: torch.Tensor | None = None

    @torch.inference_mode()
    def set_source(self, source: np.ndarray | torch.Tensor) -> None:
        self._source = self._as_input(source)

    @torch.inference_mode()
    def animate_outputs(self, frames: torch.Tensor) -> FrameOutputs:
        """``[B, 3, h, w]`` driving frames in ``[0, 1]`` -> predictions ``[B, 3, H, W]`` (the source's size) in
        ``[0, 1]``; X2Face has no keypoints and exposes no motion field here."""
        if self._source is None:
            raise RuntimeError("call set_source() first")
        frames = frames.to(self.device)
        return FrameOutputs(prediction=self.model.generator.animate_frame(
            self._source.expand(frames.shape[0], -1, -1, -1), frames))


__all__ = ["X2FaceAnimator"]
