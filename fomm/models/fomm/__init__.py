"""First Order Motion Model networks (NeurIPS 2019)."""

from __future__ import annotations

import dataclasses

from ...config import FommConfig
from .dense_motion import DenseMotionNetwork, kp2gaussian, sparse_motions
from .discriminator import Discriminator, MultiScaleDiscriminator
from .generator import OcclusionAwareGenerator, SourceEncoding, deform_input
from .keypoint_detector import KPDetector, heatmap_to_keypoints


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


__all__ = [
    "DenseMotionNetwork", "Discriminator", "KPDetector", "MultiScaleDiscriminator", "OcclusionAwareGenerator",
    "SourceEncoding", "build_discriminator", "build_generator", "build_kp_detector", "deform_input",
    "heatmap_to_keypoints", "kp2gaussian", "sparse_motions",
]
