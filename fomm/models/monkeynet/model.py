"""Building, loading and running Monkey-Net models.

Public entry points: :func:`build_monkeynet`, :func:`load_monkeynet_checkpoint`, :func:`load_monkeynet`,
:func:`detect_keypoints`, :func:`normalize_kp`, :func:`transfer_one`, :func:`check_frame_size`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.spatial import ConvexHull
from torch import nn

from fomm.checkpoint import check_finite, load_container
from fomm.errors import CheckpointError, InputError
from fomm.models.monkeynet.config import MonkeyNetConfig, NormalizationParams
from fomm.models.monkeynet.generator import Discriminator, MotionTransferGenerator
from fomm.models.monkeynet.keypoints import KPDetector, matrix_inverse

KP = dict[str, torch.Tensor]


def _asdict(p: Any) -> dict | None:
    return None if p is None else dataclasses.asdict(p)


def build_monkeynet(config: MonkeyNetConfig) -> tuple[KPDetector, MotionTransferGenerator, Discriminator]:
    """Construct ``(kp_detector, generator, discriminator)`` with the original state_dict layout (random weights)."""
    mp = config.model_params
    common = dataclasses.asdict(mp.common_params)
    kp_detector = KPDetector(**dataclasses.asdict(mp.kp_detector_params), **common)
    gp = mp.generator_params
    generator = MotionTransferGenerator(
        block_expansion=gp.block_expansion, max_features=gp.max_features, num_blocks=gp.num_blocks,
        num_refinement_blocks=gp.num_refinement_blocks, dense_motion_params=_asdict(gp.dense_motion_params),
        kp_embedding_params=_asdict(gp.kp_embedding_params), interpolation_mode=gp.interpolation_mode, **common)
    dp = mp.discriminator_params
    discriminator = Discriminator(block_expansion=dp.block_expansion, max_features=dp.max_features,
                                  num_blocks=dp.num_blocks, scale_factor=dp.scale_factor,
                                  kp_embedding_params=_asdict(dp.kp_embedding_params), **common)
    return kp_detector, generator, discriminator


def _load_container(path: Path) -> dict:
    # Shared safe reader: map_location for the cuda-tagged release files, weights_only so no pickled code runs.
    return load_container(path, map_location="cpu")


def _strict_load(module: nn.Module, state: Any, name: str, path: Path) -> None:
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: entry '{name}' is not a state_dict; is this a Monkey-Net checkpoint?")
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
             if k in state and torch.is_tensor(state[k]) and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        parts = []
        if name == "kp_detector" and any(k.startswith(("kp.", "jacobian.")) for k in state):
            parts.append("this looks like a First Order Motion Model checkpoint, not Monkey-Net")
        if missing:
            parts.append(f"missing keys {missing[:3]}{' ...' if len(missing) > 3 else ''} ({len(missing)} in all)")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''} "
                         f"({len(unexpected)} in all)")
        if wrong:
            parts.append(f"shape mismatch (file != model) {wrong[:3]}{' ...' if len(wrong) > 3 else ''} "
                         f"({len(wrong)} in all)")
        raise CheckpointError(f"{path}: '{name}' does not fit the config: " + "; ".join(parts)
                              + "; use the config the checkpoint was trained with")
    check_finite(state, name, path)
    module.load_state_dict(state, strict=True)


def load_monkeynet_checkpoint(path: str | Path, kp_detector: KPDetector, generator: MotionTransferGenerator,
                              discriminator: Discriminator | None = None) -> dict:
    """Strictly load an original Monkey-Net checkpoint into the given modules (in place).

    The container is the original ``Logger.save_cpk`` dict (``generator``, ``kp_detector``, ``discriminator``,
    ``optimizer_*``, ``epoch``, ``it``). The discriminator is loaded only if given and present.
    Returns ``{'epoch': int | None, 'it': int | None}``. Raises :class:`CheckpointError` naming the first
    mismatching keys/shapes when the file does not fit.
    """
    path = Path(path)
    cpk = _load_container(path)
    for key in ("generator", "kp_detector"):
        if key not in cpk:
            raise CheckpointError(f"{path} has no '{key}' entry (top-level keys: {sorted(map(str, cpk))[:8]}); "
                                  "expected a Monkey-Net checkpoint")
    _strict_load(kp_detector, cpk["kp_detector"], "kp_detector", path)
    _strict_load(generator, cpk["generator"], "generator", path)
    if discriminator is not None and "discriminator" in cpk:
        _strict_load(discriminator, cpk["discriminator"], "discriminator", path)
    return {"epoch": cpk.get("epoch"), "it": cpk.get("it")}


def load_monkeynet(config: MonkeyNetConfig | str | Path, checkpoint: str | Path | None = None,
                   device: str | torch.device = "cpu", with_discriminator: bool = False
                   ) -> tuple[KPDetector, MotionTransferGenerator, Discriminator | None]:
    """Build from a config (object or YAML path), load ``checkpoint`` if given, move to ``device``, set eval mode.

    Returns ``(kp_detector, generator, discriminator or None)``.
    """
    if not isinstance(config, MonkeyNetConfig):
        config = MonkeyNetConfig.from_yaml(config)
    kp_detector, generator, discriminator = build_monkeynet(config)
    if checkpoint is not None:
        load_monkeynet_checkpoint(checkpoint, kp_detector, generator, discriminator if with_discriminator else None)
    mods = [kp_detector, generator] + ([discriminator] if with_discriminator else [])
    for m in mods:
        m.to(device).eval()
    return kp_detector, generator, (discriminator if with_discriminator else None)


def _check_video(x: torch.Tensor, name: str) -> None:
    if not torch.is_tensor(x) or x.dim() != 5:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise InputError(f"{name} must be a [B, C, D, H, W] tensor (D = frames), got {shape}")


def _cat_kp(kps: list[KP], dim: int) -> KP:
    return {k: torch.cat([kp[k] for kp in kps], dim=dim) for k in kps[0]}


def check_frame_size(kp_detector: KPDetector, generator: MotionTransferGenerator, height: int, width: int) -> None:
    """Raise :class:`InputError` unless ``height x width`` frames fit every hourglass/encoder of the model.

    Each network halves the (possibly downscaled) frame ``num_blocks`` times and concatenates skips, so the size
    seen by each must be divisible by ``2 ** num_blocks``.
    """
    nets = [("keypoint detector", kp_detector.scale_factor, len(kp_detector.predictor.encoder.down_blocks)),
            ("generator", 1, len(generator.appearance_encoder.down_blocks))]
    dm = generator.dense_motion_module
    if dm is not None:
        nets.append(("dense motion module", dm.scale_factor, len(dm.hourglass.encoder.down_blocks)))
    for what, scale, blocks in nets:
        for size in (height, width):
            scaled = int(size * scale) if scale != 1 else size
            if scaled < 2 ** blocks:  # 0 divides by anything, and an empty map reached the first conv
                raise InputError(f"frame size {height}x{width} is too small for the {what} (it sees {scaled} px, "
                                 f"and its {blocks} down-sampling steps need at least {2 ** blocks}); use larger "
                                 "frames or change the config's num_blocks or scale_factor")
            if scaled % (2 ** blocks):
                raise InputError(f"frame size {height}x{width} does not fit the {what} (it sees {scaled} px, which "
                                 f"must be divisible by {2 ** blocks}); resize the frames, e.g. to the config's "
                                 "image_shape")


def check_discriminator_size(discriminator: Discriminator, height: int, width: int) -> None:
    """Raise :class:`InputError` unless ``height x width`` frames, after the discriminator's ``scale_factor``, are
    large enough for its blocks (each a valid 4x4 convolution, 3 pixels fewer, then a 2x2 average pool); too deep
    a discriminator used to stop the first training step with a RuntimeError from a convolution."""
    blocks = len(discriminator.down_blocks)
    need = 5  # the last block: 4 for its convolution, then 2 for its pool
    for _ in range(blocks - 1):
        need = 2 * need + 3
    scale = discriminator.scale_factor
    seen = min(height, width) if scale == 1 else int(min(height, width) * scale)
    if seen < need:
        raise InputError(f"frame size {height}x{width} is too small for the discriminator: it sees {seen} px and "
                         f"its {blocks} blocks need at least {need}; lower discriminator_params.num_blocks or "
                         "raise its scale_factor")


@torch.no_grad()
def detect_keypoints(kp_detector: KPDetector, video: torch.Tensor) -> KP:
    """Keypoints of every frame of ``video`` ``[B, C, D, H, W]`` in ``[0, 1]``.

    Frames are run one at a time (like the original transfer code), so results do not depend on D.
    Returns ``{'mean': [B, D, K, 2], 'var': [B, D, K, 2, 2]}`` (``var`` only for kp_variance 'matrix').
    """
    _check_video(video, "video")
    return _cat_kp([kp_detector(video[:, :, i:i + 1]) for i in range(video.shape[2])], dim=1)


def normalize_kp(kp_video: KP, kp_appearance: KP, movement_mult: bool = False, move_location: bool = False,
                 adapt_variance: bool = False, clip_mean: bool = False) -> KP:
    """Transfer driving keypoints onto the source (original ``transfer.normalize_kp``).

    Args:
        kp_video: driving keypoints, ``mean`` ``[B, D, K, 2]``, ``var`` ``[B, D, K, 2, 2]``.
        kp_appearance: source keypoints, ``mean`` ``[B, 1, K, 2]``, ``var`` ``[B, 1, K, 2, 2]``.
        move_location: relative motion, ``mean = (kp_d - kp_d[:, 0:1]) * s + kp_s``.
        movement_mult: ``s = sqrt(hull area of source kps) / sqrt(hull area of first driving frame kps)``, from
            batch element 0 and frame 0 only (1 if False). Only used with move_location.
        adapt_variance: ``var = var_d @ inv(var_d[:, 0:1]) @ var_s`` (relative change of shape applied to the
            source covariance). Not covered by a golden fixture.
        clip_mean: clamp the means to ``[-1, 1]``.
    Returns:
        A new dict (inputs are not modified); ``var`` is the driving one unless adapt_variance.
    """
    out = dict(kp_video)
    if move_location:
        scale = 1.0
        if movement_mult:
            src_area = ConvexHull(kp_appearance["mean"][0, 0].detach().cpu().numpy()).volume
            drv_area = ConvexHull(kp_video["mean"][0, 0].detach().cpu().numpy()).volume
            scale = float(np.sqrt(src_area) / np.sqrt(drv_area))
        diff = (kp_video["mean"] - kp_video["mean"][:, 0:1]) * scale
        out["mean"] = diff + kp_appearance["mean"]
    if clip_mean:
        out["mean"] = out["mean"].clamp(-1, 1)
    if adapt_variance and "var" in kp_video:
        var = torch.matmul(kp_video["var"], matrix_inverse(kp_video["var"][:, 0:1]))
        out["var"] = torch.matmul(var, kp_appearance["var"])
    return out


def _normalization(params: NormalizationParams | dict | None) -> dict:
    if params is None:
        return {}
    if isinstance(params, NormalizationParams):
        return dataclasses.asdict(params)
    return dict(params)


@torch.no_grad()
def transfer_one(generator: MotionTransferGenerator, kp_detector: KPDetector, source_image: torch.Tensor,
                 driving_video: torch.Tensor, normalization_params: NormalizationParams | dict | None = None
                 ) -> dict[str, Any]:
    """Animate ``source_image`` ``[B, C, 1, H, W]`` with ``driving_video`` ``[B, C, D, H, W]`` (both in ``[0, 1]``).

    Keypoints and the generator run frame by frame (batch B, one frame per call), as the original transfer does.
    Returns ``video_prediction`` ``[B, C, D, H, W]`` in ``(0, 1)``, ``video_deformed`` ``[B, C, D, H, W]``,
    ``deformation`` ``[B, D, h, w, 3]`` (dense motion output, ``(x, y, 0)``), ``kp_driving``, ``kp_source`` and
    ``kp_norm`` (keypoint dicts).
    """
    _check_video(source_image, "source_image")
    _check_video(driving_video, "driving_video")
    if source_image.shape[2] != 1:
        raise InputError(f"source_image must have exactly one frame (D=1), got D={source_image.shape[2]}")
    if source_image.shape[0] != driving_video.shape[0] or source_image.shape[1] != driving_video.shape[1] \
            or source_image.shape[3:] != driving_video.shape[3:]:
        raise InputError(f"source {tuple(source_image.shape)} and driving {tuple(driving_video.shape)} must agree in "
                         "batch, channels and frame size")
    check_frame_size(kp_detector, generator, source_image.shape[3], source_image.shape[4])
    kp_driving = detect_keypoints(kp_detector, driving_video)
    kp_source = kp_detector(source_image)
    kp_norm = normalize_kp(kp_driving, kp_source, **_normalization(normalization_params))
    outs = []
    for i in range(driving_video.shape[2]):
        kp_i = {k: v[:, i:i + 1] for k, v in kp_norm.items()}
        outs.append(generator(source_image, kp_driving=kp_i, kp_source=kp_source))
    result: dict[str, Any] = {
        "video_prediction": torch.cat([o["video_prediction"] for o in outs], dim=2),
        "video_deformed": torch.cat([o["video_deformed"] for o in outs], dim=2),
        "deformation": torch.cat([o["deformation"] for o in outs], dim=1),
    }
    result.update(kp_driving=kp_driving, kp_source=kp_source, kp_norm=kp_norm)
    return result
