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
    gen_keys = "model_params.generator_params.num_down_blocks"
    nets = [("the generator", 1.0, len(generator.down_blocks), gen_keys)]
    dense = generator.dense_motion_network
    if dense is not None:
        nets.append(("the dense-motion hourglass", dense.scale_factor, len(dense.hourglass.encoder.down_blocks),
                     "model_params.generator_params.dense_motion_params.num_blocks or .scale_factor"))
    nets.append(("the keypoint-detector hourglass", kp_detector.scale_factor,
                 len(kp_detector.predictor.encoder.down_blocks), "model_params.kp_detector_params.num_blocks or "
                                                                 ".scale_factor"))
    for what, scale, blocks, keys in nets:
        seen_h, seen_w = (height, width) if scale == 1 else (int(height * scale), int(width * scale))
        factor = 2 ** blocks
        if min(seen_h, seen_w) < factor:  # 0 divides by anything, and an empty map reached the first conv
            raise InputError(f"frame size {height}x{width} is too small for {what}: it sees {seen_h}x{seen_w}, and "
                             f"its {blocks} down-sampling steps need at least {factor}x{factor}; use larger frames "
                             f"or change {keys}")
        if seen_h % factor or seen_w % factor:
            raise InputError(f"frame size {height}x{width} does not fit {what}: it sees {seen_h}x{seen_w}, which is "
                             f"not divisible by {factor}; resize the frames or change the config's num_blocks, "
                             f"scale_factor or num_down_blocks")


def _discriminator_fits(height: int, width: int, num_blocks: int) -> bool:
    """Whether a :class:`Discriminator` of ``num_blocks`` blocks runs on ``height x width`` inputs in training: each
    block is a valid 4x4 convolution (3 pixels fewer), an instance norm from the second block on (which needs more
    than one value per map), and all but the last then halve with a 2x2 average pool."""
    for i in range(num_blocks):
        if height < 4 or width < 4:
            return False
        height, width = height - 3, width - 3
        if i > 0 and height * width < 2:
            return False
        if i != num_blocks - 1:
            height, width = height // 2, width // 2
    return True


def min_discriminator_input(num_blocks: int) -> int:
    """Smallest side (pixels) of the square inputs a :class:`Discriminator` of ``num_blocks`` blocks trains on."""
    need = 4 if num_blocks == 1 else 5  # the last block: its 4x4 convolution, and 2x2 values for its norm
    for _ in range(num_blocks - 1):
        need = 2 * need + 3
    return need


def check_discriminator_size(discriminator: MultiScaleDiscriminator, height: int, width: int) -> None:
    """Raise :class:`InputError` unless ``height x width`` frames, at every scale of the discriminator's image
    pyramid, are large enough for its blocks; too deep a discriminator used to stop the first adversarial step
    with an error from a convolution, a pool or an instance norm."""
    blocks = discriminator.num_feature_maps
    for scale in discriminator.scales:
        step = 1 if scale == 1 else int(round(1 / scale))  # fomm.ops.AntiAliasInterpolation2d keeps every step-th
        seen_h, seen_w = -(-height // step), -(-width // step)
        if not _discriminator_fits(seen_h, seen_w, blocks):
            need = min_discriminator_input(blocks)
            raise InputError(f"frame size {height}x{width} is too small for the discriminator at scale {scale:g}: it "
                             f"sees {seen_h}x{seen_w} and its {blocks} blocks need at least {need}x{need}; lower "
                             f"model_params.discriminator_params.num_blocks or drop that scale from its scales")


__all__ = [
    "DenseMotionNetwork", "Discriminator", "KPDetector", "MultiScaleDiscriminator", "OcclusionAwareGenerator",
    "SourceEncoding", "build_discriminator", "build_generator", "build_kp_detector", "check_discriminator_size",
    "check_frame_size", "deform_input", "min_discriminator_input",
    "heatmap_to_keypoints", "kp2gaussian", "sparse_motions",
]
