"""The animation engine: one streaming base, one animator per model family, a factory, and the video pipeline.

========================  ====================================================================================
module                    what
========================  ====================================================================================
``base``                  :class:`StreamingAnimator`: batching and the per-frame loop every animator shares
``outputs``               :class:`FrameOutputs`: prediction, deformation, occlusion map, keypoints per frame
``fomm``                  :class:`Animator` (FOMM; fused and reduced-precision inference)
``monkeynet``, ``x2face``  the baselines' animators
``factory``               :func:`make_animator`: the registry's animator for a model, or the backend's own
``stages``                per-frame stages (paste-back, resize, the caller's) between the model and the sinks
``pipeline``              :func:`animate_video` and :class:`AnimationOptions`
``normalize``             keypoint normalisation (relative motion, movement scale)
========================  ====================================================================================

Nothing in this package imports a backend (ONNX brings its own animator) or anything above it (eval, train, CLI).
"""

from fomm.animate.base import KeypointAnimator, StreamingAnimator
from fomm.animate.factory import make_animator
from fomm.animate.fomm import Animator
from fomm.animate.monkeynet import MonkeyNetAnimator
from fomm.animate.normalize import KeypointTransfer, normalize_kp
from fomm.animate.outputs import FrameOutputs, resample_deformation
from fomm.animate.pipeline import AnimationOptions, AnimationResult, animate_video
from fomm.animate.stages import PasteBackStage, ResizeStage, Stage, StageContext
from fomm.animate.x2face import X2FaceAnimator

__all__ = ["AnimationOptions", "AnimationResult", "Animator", "FrameOutputs", "KeypointAnimator", "KeypointTransfer",
           "MonkeyNetAnimator", "PasteBackStage", "ResizeStage", "Stage", "StageContext", "StreamingAnimator",
           "X2FaceAnimator", "animate_video", "make_animator", "normalize_kp", "resample_deformation"]
