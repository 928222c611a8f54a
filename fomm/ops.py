"""Small differentiable ops shared by all models.

Coordinates follow the original code bases: a grid point is ``(x, y)`` with ``x`` along the width, both in
``[-1, 1]`` where ``-1``/``+1`` are the *centres* of the corner pixels (``grid_sample(align_corners=True)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def make_coordinate_grid(spatial_size: tuple[int, int], dtype: torch.dtype = torch.float32,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """Pixel-centre coordinate grid.

    Args:
        spatial_size: ``(h, w)``.
    Returns:
        ``[h, w, 2]`` tensor, last dim ``(x, y)`` in ``[-1, 1]``; ``x_i = 2 * (i / (w - 1)) - 1``.

    The expression is evaluated exactly as the originals do (arange, divide, scale, shift) in ``dtype``:
    ``linspace`` can differ by one ulp, which is visible in parity tests.
    """
    h, w = spatial_size
    x = torch.arange(w, dtype=dtype, device=device)
    y = torch.arange(h, dtype=dtype, device=device)
    x = 2 * (x / (w - 1)) - 1
    y = 2 * (y / (h - 1)) - 1
    yy = y.view(-1, 1).repeat(1, w)
    xx = x.view(1, -1).repeat(h, 1)
    return torch.cat([xx.unsqueeze(2), yy.unsqueeze(2)], 2)


def grid_sample(inp: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear, zero-padded ``grid_sample`` with ``align_corners=True``.

    All released checkpoints (FOMM, Monkey-Net, X2Face) were trained on torch <= 1.2, whose only behaviour was
    ``align_corners=True``; the newer default changes outputs by up to 0.3 on the golden fixtures.
    """
    return F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def gaussian_kernel2d(sigma: float, channels: int) -> torch.Tensor:
    """Normalised depthwise Gaussian kernel ``[channels, 1, k, k]`` with ``k = 2 * round(4 * sigma) + 1``."""
    kernel_size = 2 * round(sigma * 4) + 1
    ax = torch.arange(kernel_size, dtype=torch.float32)
    mean = (kernel_size - 1) / 2
    g = torch.exp(-((ax - mean) ** 2) / (2 * sigma ** 2))
    kernel = g[:, None] * g[None, :]
    kernel = kernel / kernel.sum()
    return kernel.view(1, 1, kernel_size, kernel_size).repeat(channels, 1, 1, 1)


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur followed by strided subsampling (FOMM's input downscaler).

    ``[B, C, H, W] -> [B, C, ceil(H*s), ceil(W*s)]`` for ``scale = s = 1/n``. The kernel is a buffer named
    ``weight`` so checkpoints that store it load unchanged. Pixels 0, n, 2n, ... are kept.
    """

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        sigma = (1 / scale - 1) / 2
        kernel = gaussian_kernel2d(sigma, channels)
        self.register_buffer("weight", kernel)
        self.groups = channels
        self.pad = kernel.shape[-1] // 2
        self.step = int(round(1 / scale))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.pad, self.pad, self.pad, self.pad))
        out = F.conv2d(out, self.weight, groups=self.groups)
        return out[:, :, :: self.step, :: self.step]


def inverse_2x2(m: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of ``[..., 2, 2]`` matrices (exports to ONNX, unlike ``torch.inverse``)."""
    a, b = m[..., 0, 0], m[..., 0, 1]
    c, d = m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    row0 = torch.stack([d, -b], dim=-1)
    row1 = torch.stack([-c, a], dim=-1)
    return torch.stack([row0, row1], dim=-2) / det[..., None, None]

