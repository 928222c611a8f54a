"""Motion transfer: keypoint normalisation, streaming animation, best-frame search."""

from fomm.animate.animator import AnimationResult, Animator, animate_video
from fomm.animate.baselines import MonkeyNetAnimator, X2FaceAnimator, make_animator
from fomm.animate.normalize import normalize_kp

__all__ = ["AnimationResult", "Animator", "MonkeyNetAnimator", "X2FaceAnimator", "animate_video", "make_animator",
           "normalize_kp"]
