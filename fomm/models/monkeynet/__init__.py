"""Monkey-Net (Siarohin et al., CVPR 2019) baseline, state_dict-compatible with the original checkpoints."""

from fomm.models.monkeynet.config import ModelParams, MonkeyNetConfig, NormalizationParams
from fomm.models.monkeynet.generator import Discriminator, MotionTransferGenerator
from fomm.models.monkeynet.keypoints import KPDetector, gaussian2kp, kp2gaussian
from fomm.models.monkeynet.model import (
    build_monkeynet,
    check_discriminator_size,
    check_frame_size,
    detect_keypoints,
    load_monkeynet,
    load_monkeynet_checkpoint,
    normalize_kp,
    transfer_one,
)
from fomm.models.monkeynet.motion import DenseMotionModule, MovementEmbeddingModule

__all__ = [
    "MonkeyNetConfig", "ModelParams", "NormalizationParams", "KPDetector", "MotionTransferGenerator", "Discriminator",
    "DenseMotionModule", "MovementEmbeddingModule", "gaussian2kp", "kp2gaussian", "build_monkeynet",
    "load_monkeynet", "check_discriminator_size", "check_frame_size", "load_monkeynet_checkpoint",
    "detect_keypoints", "normalize_kp", "transfer_one",
]
