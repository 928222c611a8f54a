"""Monkey-Net motion transfer generator and discriminator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fomm.models.monkeynet.blocks import Decoder, Encoder, ResBlock3D
from fomm.models.monkeynet.config import KpVariance
from fomm.models.monkeynet.motion import DenseMotionModule, MovementEmbeddingModule
from fomm.ops import grid_sample, make_coordinate_grid


class MotionTransferGenerator(nn.Module):
    """Source frame + keypoints -> video.

    ``forward(source_image [B, C, 1, H, W], kp_driving (D frames), kp_source (1 frame))`` returns
    ``video_prediction`` ``[B, C, D, H, W]`` in ``(0, 1)``, ``video_deformed`` ``[B, C, D, H, W]`` (source warped
    by the dense motion, zeros outside) and ``deformation`` ``[B, D, h, w, 3]`` (the dense motion module output).
    Each appearance-encoder skip (including the source itself) is warped by the deformation resized to the skip
    (``interpolation_mode``), then concatenated with the keypoint embedding resized the same way.
    ``H, W`` must be divisible by ``2 ** num_blocks``.
    """

    def __init__(self, num_channels: int, num_kp: int, kp_variance: KpVariance, block_expansion: int,
                 max_features: int, num_blocks: int, num_refinement_blocks: int,
                 dense_motion_params: dict | None = None, kp_embedding_params: dict | None = None,
                 interpolation_mode: str = "nearest") -> None:
        super().__init__()
        self.appearance_encoder = Encoder(block_expansion, in_features=num_channels, max_features=max_features,
                                          num_blocks=num_blocks)
        self.kp_embedding_module: MovementEmbeddingModule | None = None
        embedding_features = 0
        if kp_embedding_params is not None:
            self.kp_embedding_module = MovementEmbeddingModule(num_kp=num_kp, kp_variance=kp_variance,
                                                               num_channels=num_channels, **kp_embedding_params)
            embedding_features = self.kp_embedding_module.out_channels
        self.dense_motion_module: DenseMotionModule | None = None
        if dense_motion_params is not None:
            self.dense_motion_module = DenseMotionModule(num_kp=num_kp, kp_variance=kp_variance,
                                                         num_channels=num_channels, **dense_motion_params)
        self.video_decoder = Decoder(block_expansion=block_expansion, in_features=num_channels,
                                     out_features=num_channels, max_features=max_features, num_blocks=num_blocks,
                                     additional_features_for_block=embedding_features, use_last_conv=False)
        in_features = block_expansion + num_channels + embedding_features
        self.refinement_module = nn.Sequential()
        for i in range(num_refinement_blocks):
            self.refinement_module.add_module(f"r{i}",
                                              ResBlock3D(in_features, kernel_size=(1, 3, 3), padding=(0, 1, 1)))
        self.refinement_module.add_module("conv-last", nn.Conv3d(in_features, num_channels, kernel_size=1, padding=0))
        self.interpolation_mode = interpolation_mode

    def _resize(self, x: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
        if self.interpolation_mode == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        return F.interpolate(x, size=size, mode=self.interpolation_mode, align_corners=False)

    def deform_input(self, inp: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
        """Warp ``inp`` ``[B, C, 1, h, w]`` by ``deformation`` ``[B, D, h', w', 3]`` -> ``[B, C, D, h, w]``."""
        d = deformation.shape[1]
        h, w = inp.shape[3:]
        grid = self._resize(deformation.permute(0, 4, 1, 2, 3), (d, h, w)).permute(0, 2, 3, 4, 1)
        return grid_sample(inp, grid)

    def identity_deformation(self, source_image: torch.Tensor, d: int) -> torch.Tensor:
        """``[B, D, H, W, 3]`` identity grid, used when the config has no dense_motion_params."""
        bs, _, _, h, w = source_image.shape
        grid = make_coordinate_grid((h, w), source_image.dtype, source_image.device)
        grid = torch.cat([grid, grid.new_zeros(h, w, 1)], dim=-1)
        return grid.view(1, 1, h, w, 3).expand(bs, d, h, w, 3)

    def forward(self, source_image: torch.Tensor, kp_driving: dict[str, torch.Tensor],
                kp_source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        d = kp_driving["mean"].shape[1]
        skips = self.appearance_encoder(source_image)
        if self.dense_motion_module is not None:
            deformation = self.dense_motion_module(source_image, kp_driving, kp_source)
        else:
            deformation = self.identity_deformation(source_image, d)
        deformed = [self.deform_input(skip, deformation) for skip in skips]
        if self.kp_embedding_module is not None:
            emb = self.kp_embedding_module(source_image, kp_driving, kp_source)
            deformed = [torch.cat([s, self._resize(emb, (d,) + tuple(s.shape[3:]))], dim=1) for s in deformed]
        video_deformed = self.deform_input(source_image, deformation)
        out = self.refinement_module(self.video_decoder(deformed))
        return {"video_prediction": torch.sigmoid(out), "video_deformed": video_deformed,
                "deformation": deformation}


class DiscriminatorDownBlock(nn.Module):
    """valid (1,4,4) conv -> [InstanceNorm] -> LeakyReLU(0.2) -> 2x2 average pool."""

    def __init__(self, in_features: int, out_features: int, norm: bool = False, kernel_size: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, kernel_size=(1, kernel_size, kernel_size))
        self.norm = nn.InstanceNorm3d(out_features, affine=True) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        return F.avg_pool3d(F.leaky_relu(out, 0.2), (1, 2, 2))


class Discriminator(nn.Module):
    """Patch discriminator on ``video [B, C, D, H, W]`` concatenated with the driving keypoint embedding.

    ``forward(x, kp_driving, kp_source)`` returns a list: ``[x, block_1, ..., block_n, prediction_map]``
    (feature maps for the feature-matching loss, last entry ``[B, 1, D, h, w]`` patch scores).
    """

    def __init__(self, num_channels: int = 3, num_kp: int = 10, kp_variance: KpVariance = 0.01,
                 scale_factor: float = 1, block_expansion: int = 64, num_blocks: int = 4, max_features: int = 512,
                 kp_embedding_params: dict | None = None) -> None:
        super().__init__()
        self.kp_embedding: MovementEmbeddingModule | None = None
        emb = 0
        if kp_embedding_params is not None:
            self.kp_embedding = MovementEmbeddingModule(num_kp=num_kp, kp_variance=kp_variance,
                                                        num_channels=num_channels, **kp_embedding_params)
            emb = self.kp_embedding.out_channels
        self.down_blocks = nn.ModuleList(
            DiscriminatorDownBlock(num_channels + emb if i == 0 else min(max_features, block_expansion * (2 ** i)),
                                   min(max_features, block_expansion * (2 ** (i + 1))), norm=(i != 0), kernel_size=4)
            for i in range(num_blocks))
        self.conv = nn.Conv3d(self.down_blocks[-1].conv.out_channels, 1, kernel_size=1)
        self.scale_factor = scale_factor

    def forward(self, x: torch.Tensor, kp_driving: dict[str, torch.Tensor],
                kp_source: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        maps = [x]
        if self.scale_factor != 1:
            x = F.interpolate(x, scale_factor=(1, self.scale_factor, self.scale_factor))
        out = torch.cat([x, self.kp_embedding(x, kp_driving, kp_source)], dim=1) if self.kp_embedding is not None else x
        for block in self.down_blocks:
            out = block(out)
            maps.append(out)
        maps.append(self.conv(out))
        return maps
