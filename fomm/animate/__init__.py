"""Motion transfer: keypoint normalisation, streaming animation, best-frame search."""

from .animator import AnimationResult, Animator, animate_video
from .normalize import normalize_kp

__all__ = ["AnimationResult", "Animator", "animate_video", "normalize_kp"]
