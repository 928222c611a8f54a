"""The streaming base every animator shares: batching and the per-frame loop.

An animator holds one encoded source and turns driving frames into animated frames. The model-specific part is two
methods, :meth:`StreamingAnimator.set_source` and :meth:`StreamingAnimator.animate_outputs`; everything around them
(uint8 frames in, batches of ``batch_size`` through the networks, uint8 frames or :class:`FrameOutputs` out, one at a
time so memory stays flat in the video's length) lives here once, whichever family or backend runs the networks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch

from fomm.animate.normalize import KeypointTransfer
from fomm.animate.outputs import FrameOutputs
from fomm.errors import InputError
from fomm.io.image import image_to_tensor, tensor_to_uint8


def check_batch_size(batch_size: Any) -> int:
    """``batch_size`` as an int >= 1, else a one-line :class:`InputError` (0 or -3 used to be clamped silently)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"batch size must be a whole number >= 1, got {batch_size!r}")
    return int(batch_size)


class StreamingAnimator(ABC):
    """Animates one source image with a stream of driving frames.

    Subclasses implement :meth:`set_source` and :meth:`animate_outputs` (and :meth:`set_initial_driving` when the
    family has a reference pose). ``model`` is whatever the family's loader returned; it must have ``image_size``
    (``(H, W)``) and ``device``.
    """

    def __init__(self, model: Any, batch_size: int = 4) -> None:
        self.model = model
        self.device = torch.device(getattr(model, "device", "cpu"))
        self.batch_size = check_batch_size(batch_size)

    # ------------------------------------------------------------------------------------------------ per family
    @abstractmethod
    def set_source(self, source: np.ndarray | torch.Tensor) -> None:
        """Encode the source once. ``source``: uint8 ``[H, W, 3]`` or float ``[1, 3, h, w]`` in ``[0, 1]``."""

    def set_initial_driving(self, frame: np.ndarray | torch.Tensor) -> None:  # noqa: B027 - optional hook
        """The driving frame whose pose corresponds to the source (default: the first driving frame). Families
        without a reference pose ignore it."""

    @abstractmethod
    def animate_outputs(self, frames: torch.Tensor) -> FrameOutputs:
        """``[B, 3, h, w]`` driving frames in ``[0, 1]`` -> :class:`FrameOutputs` (prediction ``[B, 3, h, w]``
        in ``[0, 1]``, plus the motion where the family has it)."""

    # ------------------------------------------------------------------------------------------------ shared
    def to_model_input(self, frame: np.ndarray) -> torch.Tensor:
        """uint8 ``[H, W, 3]`` -> float ``[1, 3, h, w]`` in ``[0, 1]`` at the model's size, on the model's device."""
        t = image_to_tensor(frame, self.model.image_size)
        if self.device.type == "cuda":
            # From page-locked memory the copy is asynchronous: the reader thread does not wait for the GPU.
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _as_input(self, frame: np.ndarray | torch.Tensor) -> torch.Tensor:
        return self.to_model_input(frame) if isinstance(frame, np.ndarray) else frame.to(self.device)

    def animate_batch(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, 3, h, w]`` driving frames in ``[0, 1]`` -> ``[B, 3, h, w]`` predictions in ``[0, 1]``."""
        return self.animate_outputs(frames).prediction

    def input_batches(self, driving: Iterable[np.ndarray]) -> Iterator[torch.Tensor]:
        """uint8 ``[H, W, 3]`` frames -> model inputs ``[b, 3, h, w]`` in ``[0, 1]`` on the model's device, in
        batches of :attr:`batch_size` (the last one shorter)."""
        batch: list[torch.Tensor] = []
        for frame in driving:
            batch.append(self.to_model_input(frame))
            if len(batch) == self.batch_size:
                yield torch.cat(batch)
                batch = []
        if batch:
            yield torch.cat(batch)

    def animate_frames(self, driving: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Stream uint8 ``[H, W, 3]`` driving frames -> uint8 ``[h, w, 3]`` animated frames at the model's size."""
        for frames in self.input_batches(driving):
            yield from tensor_to_uint8(self.animate_batch(frames))

    def animate_stream(self, driving: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, FrameOutputs]]:
        """Like :meth:`animate_frames`, with each frame's :class:`FrameOutputs` (a batch of one) beside it."""
        for frames in self.input_batches(driving):
            outputs = self.animate_outputs(frames)
            for i, frame in enumerate(tensor_to_uint8(outputs.prediction)):
                yield frame, outputs[i]


class KeypointAnimator(StreamingAnimator):
    """A :class:`StreamingAnimator` whose motion is FOMM's relative keypoint transfer (the torch ``Animator`` and
    the ONNX Runtime animator): the :class:`~fomm.animate.normalize.KeypointTransfer` state and the methods built on
    it live here once. Subclasses provide :meth:`keypoints`."""

    def __init__(self, model: Any, relative: bool = True, adapt_movement_scale: bool = True,
                 batch_size: int = 4) -> None:
        super().__init__(model, batch_size)
        self.transfer = KeypointTransfer(relative, adapt_movement_scale)

    @property
    def relative(self) -> bool:
        return self.transfer.relative

    @property
    def adapt_movement_scale(self) -> bool:
        return self.transfer.adapt_movement_scale

    @abstractmethod
    def keypoints(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Keypoints of ``[B, 3, h, w]`` frames: ``value [B, K, 2]`` in ``[-1, 1]`` (+ ``jacobian [B, K, 2, 2]``)."""

    def set_initial_driving(self, frame: np.ndarray | torch.Tensor) -> None:
        """The driving frame whose pose corresponds to the source (default: the first driving frame)."""
        self.transfer.set_initial(self.keypoints(self._as_input(frame)))

    def driving_keypoints(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Keypoints of ``[B, 3, h, w]`` driving frames, normalised against the source and the initial driving
        frame (the first frame seen, unless :meth:`set_initial_driving` chose one)."""
        return self.transfer(self.keypoints(frames))


__all__ = ["KeypointAnimator", "StreamingAnimator", "check_batch_size"]
