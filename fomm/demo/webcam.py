"""Live animation of a photo with the browser's webcam, one frame at a time.

Each browser has its own :class:`WebcamSession` (its own animator and reference pose), so several people can stream
at once; the app bounds how many run together. The first webcam frame of a session is the reference pose (relative
motion), so the photo starts in its own pose and then follows the movement of the face in front of the camera.

Why the session does what it does:

* **A new reference on every start.** Gradio tells the handler nothing when Stop and Record are pressed, so a frame
  that arrives more than :data:`RESTART_GAP_S` after the previous one starts a new session (frames come every
  0.1 s while streaming); the "reset reference" button does the same on demand. Before, Stop then Record kept the
  old reference pose.
* **Time limit.** ``time_limit`` on Gradio's stream event did not stop a 140 s stream at 120 s, so the session
  counts its own time and refuses frames past the limit until the next start.
* **Face crop.** Webcam frames show a head and shoulders; the face models want a face-filling crop. The face is
  found once per reference (a detector call per frame would cost more than the model at 64x64) and that box is
  used until the next reset, so the crop does not jitter.
* **The live engine.** Frames are animated by :class:`fomm.live.LiveEngine`, the engine ``fomm live`` runs: the
  animator from the factory (any family, or an ONNX model's own), the reference pose, and causal One-Euro keypoint
  smoothing (on by default; webcam keypoints jitter by a pixel or two from frame to frame).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from fomm.animate import StreamingAnimator
from fomm.api import LoadedModel
from fomm.errors import InputError
from fomm.io.image import resize_uint8

#: A pause longer than this between two frames means the stream was stopped and started again.
RESTART_GAP_S = 1.5


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
    device when it was opened), else a copy moved there (the original stays put). Callers keep the copy
    (:meth:`fomm.demo.models.ModelPool.get_on`): making it is a deep copy of the networks."""
    if not isinstance(model, LoadedModel) or model.device.type == torch.device(device).type:
        return model
    moved = copy.copy(model)
    moved.kp_detector = None if model.kp_detector is None else copy.deepcopy(model.kp_detector).to(device)
    moved.generator = copy.deepcopy(model.generator).to(device)
    moved.discriminator = None
    moved.device = torch.device(device)
    return moved


@dataclass(frozen=True)
class WebcamOptions:
    """The webcam tab's choices: relative or absolute motion, cropping the webcam frame to the face, drawing the
    keypoints that drive the photo over the result, and keypoint smoothing."""

    relative: bool = True
    face_crop: bool = False
    overlay: bool = False
    smooth: bool = True


#: the name this dataclass had before the live engine's own ``LiveOptions`` existed
LiveOptions = WebcamOptions


class WebcamSession:
    """Per-browser state of the webcam tab: the animator for the current (model, source, options), the reference
    pose's start time and the face box."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.engine = None  # a fomm.live.LiveEngine
        self.animator: StreamingAnimator | None = None
        self.frames = 0
        self.source: np.ndarray | None = None  # the decoded photo, kept so it is not re-read every frame
        self.source_key: str | None = None
        self.started: float | None = None
        self.last_frame: float | None = None
        self.face_box: tuple[int, int, int, int] | None = None
        self.expired = False
        self.told_expired = False

    def reset(self) -> None:
        """Take the next frame as the new reference pose (and look for the face again)."""
        self.engine = None
        self.animator = None
        self.face_box = None
        self.started = None
        self.expired = False
        self.told_expired = False

    def over_limit(self, limit_s: float | None, now: float | None = None) -> bool:
        """Whether this stream has run past ``limit_s`` seconds (a new start, after a pause, resets the clock)."""
        now = time.monotonic() if now is None else now
        if self.last_frame is not None and now - self.last_frame > RESTART_GAP_S:
            self.reset()  # Stop, then Record: a new start
        self.last_frame = now
        if self.started is None:
            self.started = now
        if limit_s is not None and now - self.started > limit_s:
            self.expired = True
        return self.expired

    def animate(self, model: LoadedModel, model_label: str, source: np.ndarray, source_key: str,
                frame: np.ndarray, display: int = 256, options: WebcamOptions | None = None,
                t: float | None = None) -> np.ndarray:
        """One webcam frame (uint8 ``[H, W, 3]``) -> the animated photo, uint8 ``[display, display, 3]``.

        A new model, source or option resets the reference pose to the current frame. ``t``: the frame's time in
        seconds (default: now), which the keypoint smoothing filters over.
        """
        from fomm.live import LiveEngine
        from fomm.live import LiveOptions as EngineOptions

        opts = options or WebcamOptions()
        key = (model_label, source_key, opts.relative, opts.face_crop, opts.smooth)
        if key != self.key or self.engine is None:
            # The factory's animator inside (the model's family or an ONNX model's own). Models are shared by every
            # job and session, so their memory format is left alone (channels_last would convert them in place);
            # the crop is done here, once per reference, so the engine takes the square as it is.
            self.engine = LiveEngine.for_model(model, [source], EngineOptions(
                relative=opts.relative, smooth=opts.smooth, crop="none", channels_last=False))
            self.animator = self.engine.animator
            self.key = key
            self.frames = 0
            self.face_box = _face_box(frame) if opts.face_crop else None
        frame = _crop(frame, self.face_box) if self.face_box is not None else _center_square(frame)
        result = self.engine.process(np.ascontiguousarray(frame), t)
        self.frames += 1
        out = resize_uint8(result.frame, (display, display))
        if opts.overlay and result.kp_driving is not None:
            from fomm.demo.jobs import draw_keypoints

            out = draw_keypoints(out, result.kp_driving["value"][0].float().cpu().numpy())
        return out


def face_crop_available() -> bool:
    """Whether a face detector (dlib or OpenCV) is installed, so the webcam tab can offer its face crop."""
    from fomm.crop.detect import available_backend
    from fomm.errors import FommError

    try:
        available_backend()
    except FommError:
        return False
    return True


def _face_box(frame: np.ndarray) -> tuple[int, int, int, int] | None:
    """A square box around the largest face with the auto-crop margin, inside the frame; ``None`` when there is no
    face (the centre square is used then)."""
    from fomm.crop.boxes import fit_box, square_box
    from fomm.crop.detect import find_face_box
    from fomm.crop.video import DEFAULT_INCREASE

    try:
        box = find_face_box(frame)
    except InputError:
        return None
    if box is None:
        return None
    h, w = frame.shape[:2]
    return tuple(int(v) for v in fit_box(square_box(box, DEFAULT_INCREASE), w, h))


def _crop(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return frame[max(y0, 0):y1, max(x0, 0):x1]


def _center_square(frame: np.ndarray) -> np.ndarray:
    """Webcams are 4:3 or 16:9 and the models square: keep the centre so the face is not squashed."""
    h, w = frame.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return frame[top:top + s, left:left + s]


__all__ = ["RESTART_GAP_S", "LiveOptions", "WebcamSession", "face_crop_available", "fastest_device", "on_device"]
