"""Multi-scale patch discriminator (used by the ``-adv`` configs and for feature matching)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fomm.models.fomm.dense_motion import kp2gaussian


class DiscDownBlock2d(nn.Module):
    """4x4 valid conv (optionally spectral-normalised), instance norm, LeakyReLU(0.2), optional 2x2 average pool."""

    def __init__(self, in_features: int, out_features: int, norm: bool = False, kernel_size: int = 4,
                 pool: bool = False, sn: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size)
        if sn:
            # The classic hook-based spectral norm: its weight_orig / weight_u / weight_v keys are what the
            # released checkpoints store (the parametrization API would rename them).
            self.conv = nn.utils.spectral_norm(self.conv)
        self.norm = nn.InstanceNorm2d(out_features, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = F.leaky_relu(out, 0.2)
        if self.pool:
            out = F.avg_pool2d(out, (2, 2))
        return out


class Discriminator(nn.Module):
    """``[B, C, H, W]`` (+ keypoints when ``use_kp``) -> ``(feature_maps, prediction_map [B, 1, h, w])``."""

    def __init__(self, num_channels: int = 3, block_expansion: int = 64, num_blocks: int = 4,
                 max_features: int = 512, sn: bool = False, use_kp: bool = False, num_kp: int = 10,
                 kp_variance: float = 0.01, **_: object) -> None:
        super().__init__()
        blocks = []
        for i in range(num_blocks):
            cin = num_channels + num_kp * use_kp if i == 0 else min(max_features, block_expansion * (2 ** i))
            blocks.append(DiscDownBlock2d(cin, min(max_features, block_expansion * (2 ** (i + 1))), norm=(i != 0),
                                          kernel_size=4, pool=(i != num_blocks - 1), sn=sn))
        self.down_blocks = nn.ModuleList(blocks)
        self.conv = nn.Conv2d(self.down_blocks[-1].conv.out_channels, 1, kernel_size=1)
        if sn:
            self.conv = nn.utils.spectral_norm(self.conv)
        self.use_kp = use_kp
        self.kp_variance = kp_variance

    def forward(self, x: torch.Tensor, kp: dict[str, torch.Tensor] | None = None
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
        out = x
        if self.use_kp:
            if kp is None:
                raise ValueError("this discriminator was built with use_kp=True and needs keypoints")
            out = torch.cat([out, kp2gaussian(kp["value"], x.shape[2:], self.kp_variance)], dim=1)
        feature_maps = []
        for block in self.down_blocks:
            out = block(out)
            feature_maps.append(out)
        return feature_maps, self.conv(out)


def scale_key(scale: float) -> str:
    """Module key of a scale: ``1 -> "1"``, ``0.5 -> "0-5"`` (module names cannot hold dots)."""
    return str(scale).replace(".", "-")


class MultiScaleDiscriminator(nn.Module):
    """One :class:`Discriminator` per image-pyramid scale.

    ``forward(x)`` takes a dict ``{"prediction_<scale>": [B, C, h, w]}`` (as made by an image pyramid) or a tensor for
    a single scale-1 discriminator, and returns ``{"feature_maps_<scale>": [...], "prediction_map_<scale>": ...}``.
    """

    def __init__(self, scales: tuple[float, ...] | list[float] = (1,), **kwargs: object) -> None:
        super().__init__()
        self.scales = list(scales)
        self.discs = nn.ModuleDict({scale_key(s): Discriminator(**kwargs) for s in self.scales})

    @property
    def num_feature_maps(self) -> int:
        """Feature maps each scale's discriminator returns (one per down block): the number of
        ``loss_weights.feature_matching`` weights."""
        return len(next(iter(self.discs.values())).down_blocks) if len(self.discs) else 0

    def forward(self, x: dict[str, torch.Tensor] | torch.Tensor, kp: dict[str, torch.Tensor] | None = None
                ) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, disc in self.discs.items():
            scale = key.replace("-", ".")
            inp = x if isinstance(x, torch.Tensor) else x["prediction_" + scale]
            feature_maps, prediction_map = disc(inp, kp)
            out["feature_maps_" + scale] = feature_maps
            out["prediction_map_" + scale] = prediction_map
        return out
