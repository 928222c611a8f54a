"""Occlusion-aware generator.

The forward pass is split in two so callers can cache what depends on the source only:
:meth:`OcclusionAwareGenerator.encode_source` (first block + down blocks + the dense-motion input downsample, about a
fifth of the FLOPs at vox-256) and :meth:`OcclusionAwareGenerator.decode` (dense motion, warping, bottleneck, decoder),
run once per driving frame. ``forward`` is exactly ``decode(encode_source(...))``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fomm.models.fomm.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from fomm.models.fomm.dense_motion import DenseMotionNetwork
from fomm.ops import grid_sample


@dataclass
class SourceEncoding:
    """What the generator needs from a source image ``[B, C, H, W]``: the image, its encoder features
    ``[B, F, H / 2**n, W / 2**n]`` and the dense-motion network's downsampled copy ``[B, C, h, w]``."""

    image: torch.Tensor
    features: torch.Tensor
    small: torch.Tensor | None


def deform_input(inp: torch.Tensor, deformation: torch.Tensor, aligned: bool = False) -> torch.Tensor:
    """Warp ``inp [B, C, H, W]`` with ``deformation [B, h, w, 2]`` (sampling positions in ``[-1, 1]``).

    When ``(h, w) != (H, W)`` the deformation is bilinearly resized first. The authors resize with
    ``align_corners=False`` but sample with ``align_corners=True``; that mix stretches the grid, so even an identity
    deformation moves pixels by up to half a pixel (0 at the centre, +-0.5 at the borders) and the bilinear sampling
    blurs the whole image (L1 0.0065 on Actions frames at 32 -> 64). The released checkpoints never hit it (their
    deformation is made at the feature size) but a config whose dense-motion ``scale_factor`` differs from the feature
    resolution does. ``aligned=True`` resizes with ``align_corners=True``, which maps an identity grid to the exact
    identity grid at any size.
    """
    _, h_old, w_old, _ = deformation.shape
    _, _, h, w = inp.shape
    if (h_old, w_old) != (h, w):
        deformation = F.interpolate(deformation.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                    align_corners=aligned).permute(0, 2, 3, 1)
    if inp.shape[0] != deformation.shape[0]:
        inp = inp.expand(deformation.shape[0], *inp.shape[1:])
    return grid_sample(inp, deformation)


class OcclusionAwareGenerator(nn.Module):
    """``(source [B, C, H, W] in [0,1], kp_source, kp_driving) -> dict``.

    Output keys: ``prediction [B, C, H, W]`` in ``[0, 1]``; with a dense-motion network also ``mask [B, K+1, h, w]``,
    ``sparse_deformed [B, K+1, C, h, w]``, ``deformation [B, h, w, 2]``, ``deformed [B, C, H, W]`` (the source warped by
    the deformation) and ``occlusion_map [B, 1, h, w]`` when estimated. A source batch of 1 is broadcast against a
    batch of driving keypoints. ``align_deformation``: see :func:`deform_input` (``aligned``).

    ``blend_deformed`` (ours, needs dense motion): the output is ``m * deformed + (1 - m) * decoded`` with a per-pixel
    ``m = sigmoid(blend(features)) [B, 1, H, W]`` (returned as ``blend_mask``) from a 7x7 conv beside ``final``. The
    authors' generator always re-synthesises every pixel through its decoder, which softens what merely moved or
    stayed put; the blend lets those pixels come straight from the sharply warped source and keeps the decoder for
    what the source cannot show (measured on Actions 64x64, where ~95% of each frame is static background: the
    warped source alone matches the decoder's L1, and the two err on different pixels).
    """

    def __init__(self, num_channels: int, num_kp: int, block_expansion: int, max_features: int,
                 num_down_blocks: int, num_bottleneck_blocks: int, estimate_occlusion_map: bool = False,
                 dense_motion_params: dict | None = None, estimate_jacobian: bool = False,
                 align_deformation: bool = False, blend_deformed: bool = False) -> None:
        super().__init__()
        if blend_deformed and dense_motion_params is None:
            raise ValueError("blend_deformed needs dense_motion_params: without dense motion there is no warped source")
        self.align_deformation = align_deformation
        if dense_motion_params is not None:
            self.dense_motion_network = DenseMotionNetwork(num_kp=num_kp, num_channels=num_channels,
                                                           estimate_occlusion_map=estimate_occlusion_map,
                                                           **dense_motion_params)
        else:
            self.dense_motion_network = None

        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3)

        def width(level: int) -> int:
            return min(max_features, block_expansion * (2 ** level))

        self.down_blocks = nn.ModuleList(
            [DownBlock2d(width(i), width(i + 1)) for i in range(num_down_blocks)])
        self.up_blocks = nn.ModuleList(
            [UpBlock2d(width(num_down_blocks - i), width(num_down_blocks - i - 1)) for i in range(num_down_blocks)])
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(width(num_down_blocks), kernel_size=3, padding=1))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)
        self.blend = nn.Conv2d(block_expansion, 1, kernel_size=7, padding=3) if blend_deformed else None
        self.estimate_occlusion_map = estimate_occlusion_map
        self.num_channels = num_channels

    @staticmethod
    def _fp32_island(like: torch.Tensor, enabled: bool) -> contextlib.AbstractContextManager:
        return torch.autocast(like.device.type, enabled=False) if enabled else contextlib.nullcontext()

    def encode_source(self, source_image: torch.Tensor) -> SourceEncoding:
        out = self.first(source_image)
        for block in self.down_blocks:
            out = block(out)
        small = None
        if self.dense_motion_network is not None:
            small = self.dense_motion_network.downsample(source_image)
        return SourceEncoding(image=source_image, features=out, small=small)

    def decode(self, enc: SourceEncoding, kp_source: dict[str, torch.Tensor],
               kp_driving: dict[str, torch.Tensor], fp32_islands: bool = False,
               with_deformed: bool = True) -> dict[str, torch.Tensor]:
        """``fp32_islands``: run the dense-motion network and the final conv outside any active autocast, so a
        reduced-precision decode (bf16/fp16 bottleneck and up blocks) still warps with a full-precision deformation
        field and rounds the output only once, in fp32 (measured: +3 dB PSNR at vox-256; see fomm.realtime).
        ``with_deformed=False`` skips the full-resolution ``deformed`` image (a visualisation; the animator does not
        need it) unless the generator blends with it (``blend_deformed``)."""
        out = enc.features
        result: dict[str, torch.Tensor] = {}
        deformed = None
        if self.dense_motion_network is not None:
            with self._fp32_island(enc.image, fp32_islands):
                motion = self.dense_motion_network(enc.image, kp_driving=kp_driving, kp_source=kp_source,
                                                   source_small=enc.small)
            result["mask"] = motion["mask"]
            result["sparse_deformed"] = motion["sparse_deformed"]
            deformation = motion["deformation"]
            result["deformation"] = deformation
            out = deform_input(out, deformation, self.align_deformation)
            occlusion = motion.get("occlusion_map")
            if occlusion is not None:
                result["occlusion_map"] = occlusion
                if out.shape[2:] != occlusion.shape[2:]:
                    occlusion = F.interpolate(occlusion, size=out.shape[2:], mode="bilinear", align_corners=False)
                out = out * occlusion
            if with_deformed or self.blend is not None:
                deformed = deform_input(enc.image, deformation, self.align_deformation)
                result["deformed"] = deformed
        elif out.shape[0] != kp_driving["value"].shape[0]:
            out = out.expand(kp_driving["value"].shape[0], *out.shape[1:])

        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        with self._fp32_island(out, fp32_islands):
            decoded = torch.sigmoid(self.final(out.float() if fp32_islands else out))
            if self.blend is not None:
                # The head runs in its weights' dtype (fp32 even when a reduced-precision view or an fp32 island
                # hands it bf16/fp16 features).
                m = torch.sigmoid(self.blend(out.to(self.blend.weight.dtype)))
                result["blend_mask"] = m
                decoded = decoded + m * (deformed - decoded)
            result["prediction"] = decoded
        return result

    def forward(self, source_image: torch.Tensor, kp_driving: dict[str, torch.Tensor],
                kp_source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.decode(self.encode_source(source_image), kp_source=kp_source, kp_driving=kp_driving)
