"""First Order Motion Model networks (NeurIPS 2019)."""

from __future__ import annotations

import dataclasses

from fomm.config import FommConfig
from fomm.errors import InputError
from fomm.models.fomm.dense_motion import DenseMotionNetwork, kp2gaussian, sparse_motions
from fomm.models.fomm.discriminator import Discriminator, MultiScaleDiscriminator
from fomm.models.fomm.generator import OcclusionAwareGenerator, SourceEncoding, deform_input
from fomm.models.fomm.keypoint_detector import KPDetector, heatmap_to_keypoints


def _kwargs(params: object) -> dict:
    d = {f.name: getattr(params, f.name) for f in dataclasses.fields(params) if f.name != "extra"}
    return d


def build_kp_detector(config: FommConfig) -> KPDetector:
    mp = config.model_params
    return KPDetector(**_kwargs(mp.kp_detector_params), **_kwargs(mp.common_params))


def build_generator(config: FommConfig) -> OcclusionAwareGenerator:
    mp = config.model_params
    gen = _kwargs(mp.generator_params)
    dm = mp.generator_params.dense_motion_params
    gen["dense_motion_params"] = None if dm is None else _kwargs(dm)
    return OcclusionAwareGenerator(**gen, **_kwargs(mp.common_params))


def build_discriminator(config: FommConfig) -> MultiScaleDiscriminator:
    mp = config.model_params
    common = _kwargs(mp.common_params)
    common.pop("estimate_jacobian")
    return MultiScaleDiscriminator(**_kwargs(mp.discriminator_params), **common)


def check_frame_size(kp_detector: KPDetector, generator: OcclusionAwareGenerator, height: int, width: int) -> None:
    """Raise :class:`InputError` unless ``height x width`` frames fit every down-sampling stack of the model: the
    generator's down blocks, and the dense-motion and keypoint-detector hourglasses at their ``scale_factor``
    (each halves its input ``num_blocks`` times and concatenates skips, so what it sees must divide by
    ``2 ** num_blocks``). The FOMM counterpart of :func:`fomm.models.monkeynet.check_frame_size`."""
    nets = [("the generator", 1.0, len(generator.down_blocks))]
    dense = generator.dense_motion_network
    if dense is not None:
        nets.append(("the dense-motion hourglass", dense.scale_factor, len(dense.hourglass.encoder.down_blocks)))
    nets.append(("the keypoint-detector hourglass", kp_detector.scale_factor,
                 len(kp_detector.predictor.encoder.down_blocks)))
    for what, scale, blocks in nets:
        seen_h, seen_w = (height, width) if scale == 1 else (int(height * scale), int(width * scale))
        factor = 2 ** blocks
        if seen_h % factor or seen_w % factor:
            raise InputError(f"frame size {height}x{width} does not fit {what}: it sees {seen_h}x{seen_w}, which is "
                             f"not divisible by {factor}; resize the frames or change the config's num_blocks, "
                             f"scale_factor or num_down_blocks")


__all__ = [
    "DenseMotionNetwork", "Discriminator", "KPDetector", "MultiScaleDiscriminator", "OcclusionAwareGenerator",
    "SourceEncoding", "build_discriminator", "build_generator", "build_kp_detector", "check_frame_size", "deform_input",
    "heatmap_to_keypoints", "kp2gaussian", "sparse_motions",
]
