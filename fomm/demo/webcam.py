"""Live animation of a photo with the browser's webcam, one frame at a time.

The first webcam frame of a session is the reference pose (relative motion), so the photo starts in its own pose
and then follows the movement of the face in front of the camera.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from fomm.animate import StreamingAnimator, make_animator
from fomm.api import LoadedModel
from fomm.io.image import resize_uint8, tensor_to_uint8


def fastest_device() -> str:
    """The fastest torch device here: CUDA, then Apple MPS, then the CPU."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def on_device(model: LoadedModel, device: str) -> LoadedModel:
    """``model`` itself when it already runs on ``device`` (or is a backend model, e.g. ONNX, which chose its
    device when it was opened), else a copy moved there (the original stays put)."""
    if not isinstance(model, LoadedModel) or model.device.type == torch.device(device).type:
        return model
    moved = copy.copy(model)
    moved.kp_detector = copy.deepcopy(model.kp_detector).to(device)
    moved.generator = copy.deepcopy(model.generator).to(device)
    moved.discriminator = None
    moved.device = torch.device(device)
    return moved


@dataclass
class WebcamSession:
    """Per-browser state of the webcam tab: the animator for the current (model, source) pair."""

    key: tuple[str, str] | None = None
    animator: StreamingAnimator | None = None
    frames: int = 0
    source: np.ndarray | None = None  # the decoded photo, kept so it is not re-read every frame

    def animate(self, model: LoadedModel, model_label: str, source: np.ndarray, source_key: str,
                frame: np.ndarray, display: int = 256) -> np.ndarray:
        """One webcam frame (uint8 ``[H, W, 3]``) -> the animated photo, uint8 ``[display, display, 3]``.

        A new model or source resets the reference pose to the current frame.
        """
        key = (model_label, source_key)
        if key != self.key or self.animator is None:
            # The factory's animator: the model's family (FOMM, Monkey-Net, X2Face) or its backend's own (ONNX).
            self.animator = make_animator(model, relative=True, adapt_movement_scale=True, batch_size=1)
            self.animator.set_source(source)
            self.key = key
            self.frames = 0
        frame = _center_square(frame)
        pred = self.animator.animate_batch(self.animator.to_model_input(frame))
        self.frames += 1
        return resize_uint8(tensor_to_uint8(pred[0]), (display, display))


def _center_square(frame: np.ndarray) -> np.ndarray:
    """Webcams are 4:3 or 16:9 and the models square: keep the centre so the face is not squashed."""
    h, w = frame.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return frame[top:top + s, left:left + s]
