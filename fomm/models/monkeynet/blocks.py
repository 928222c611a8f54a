"""3-D convolution building blocks of Monkey-Net.

Tensors are ``[B, C, D, H, W]`` with ``D`` = time. Every spatial block uses ``(1, k, k)`` kernels, so frames are
processed independently; only the layout is 3-D. Attribute names (``conv``, ``norm``, ``down_blocks``,
``up_blocks``, ``conv1`` ...) are the state_dict names of the original checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_K = (1, 3, 3)
_P = (0, 1, 1)


class DownBlock3D(nn.Module):
    """conv -> BN -> ReLU -> 2x2 spatial average pool: ``[B, Cin, D, H, W] -> [B, Cout, D, H/2, W/2]``."""

    def __init__(self, in_features: int, out_features: int, kernel_size=_K, padding=_P) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm3d(out_features, affine=True)
        self.pool = nn.AvgPool3d(kernel_size=(1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.relu(self.norm(self.conv(x))))


class UpBlock3D(nn.Module):
    """nearest x2 spatial upsample -> conv -> BN -> ReLU: ``[B, Cin, D, H, W] -> [B, Cout, D, 2H, 2W]``."""

    def __init__(self, in_features: int, out_features: int, kernel_size=_K, padding=_P) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm3d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(x, scale_factor=(1, 2, 2))
        return F.relu(self.norm(self.conv(out)))


class SameBlock3D(nn.Module):
    """(grouped) conv -> BN -> ReLU, size preserving."""

    def __init__(self, in_features: int, out_features: int, groups: int = 1, kernel_size=_K, padding=_P) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups)
        self.norm = nn.BatchNorm3d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class ResBlock3D(nn.Module):
    """Pre-activation residual block BN-ReLU-conv-BN-ReLU-conv + x (channels preserved)."""

    def __init__(self, in_features: int, kernel_size=_K, padding=_P) -> None:
        super().__init__()
        # Registration order conv1, conv2, norm1, norm2 is the checkpoint's key order.
        self.conv1 = nn.Conv3d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.conv2 = nn.Conv3d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm3d(in_features, affine=True)
        self.norm2 = nn.BatchNorm3d(in_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


def _width(block_expansion: int, max_features: int, i: int) -> int:
    return min(max_features, block_expansion * (2 ** i))


class Encoder(nn.Module):
    """Stack of DownBlock3D; ``forward`` returns ``[x, d1, d2, ...]`` (input first, coarsest last)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock3D(in_features if i == 0 else _width(block_expansion, max_features, i),
                        _width(block_expansion, max_features, i + 1))
            for i in range(num_blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """U-Net decoder: up-block, then concatenate the skip of the same size; optional final (1,3,3) conv.

    ``additional_features_for_block`` extra channels are expected on every skip (the generator appends keypoint
    embeddings to its deformed appearance skips). Without the last conv the output has
    ``block_expansion + in_features + additional_features_for_block`` channels at full resolution.
    """

    def __init__(self, block_expansion: int, in_features: int, out_features: int, num_blocks: int = 3,
                 max_features: int = 256, additional_features_for_block: int = 0, use_last_conv: bool = True) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            mult = 1 if i == num_blocks - 1 else 2
            blocks.append(UpBlock3D(mult * _width(block_expansion, max_features, i + 1) + additional_features_for_block,
                                    _width(block_expansion, max_features, i)))
        self.up_blocks = nn.ModuleList(blocks)
        self.conv: nn.Conv3d | None = None
        if use_last_conv:
            self.conv = nn.Conv3d(block_expansion + in_features + additional_features_for_block, out_features,
                                  kernel_size=_K, padding=_P)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return self.conv(out) if self.conv is not None else out


class Hourglass(nn.Module):
    """Encoder + Decoder: ``[B, in_features, D, H, W] -> [B, out_features, D, H, W]``.

    H and W must be divisible by ``2**num_blocks``.
    """

    def __init__(self, block_expansion: int, in_features: int, out_features: int, num_blocks: int = 3,
                 max_features: int = 256) -> None:
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, out_features, num_blocks, max_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
