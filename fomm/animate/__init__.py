"""Motion transfer: keypoint normalisation, streaming animation, best-frame search."""

from .animator import AnimationResult, Animator, animate_video
from .baselines import MonkeyNetAnimator, X2FaceAnimator, make_animator
from .normalize import normalize_kp

__all__ = ["AnimationResult", "Animator", "MonkeyNetAnimator", "X2FaceAnimator", "animate_video", "make_animator",
           "normalize_kp"]
