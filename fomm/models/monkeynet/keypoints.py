"""Monkey-Net keypoint detector and the keypoint <-> Gaussian-heatmap conversions.

A keypoint dict ``kp`` holds ``mean`` ``[B, D, K, 2]`` (``(x, y)`` in ``[-1, 1]``, pixel-centre convention of
:func:`fomm.ops.make_coordinate_grid`) and, for ``kp_variance`` 'matrix', ``var`` ``[B, D, K, 2, 2]`` (covariance of
the softmax heatmap; symmetric positive semi-definite). With a numeric ``kp_variance`` there is no ``var``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fomm.models.monkeynet.blocks import Hourglass
from fomm.models.monkeynet.config import KpVariance
from fomm.ops import make_coordinate_grid

# Added to the softmaxed heatmap before taking moments, as the original does, so the covariance of a collapsed
# heatmap is not exactly singular. It slightly biases the mean towards the grid centre; keep it for parity.
HEATMAP_EPS = 1e-7


def matrix_inverse(m: torch.Tensor) -> torch.Tensor:
    """Inverse of ``[..., 2, 2]`` matrices by LU solve against the identity (the original's ``torch.gesv`` path).

    An LU solve rather than the closed form keeps parity at float32 precision for badly conditioned covariances.
    """
    eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device).expand_as(m)
    return torch.linalg.solve(m, eye)


def smallest_singular(m: torch.Tensor) -> torch.Tensor:
    """Smallest singular value of ``[..., 2, 2]`` matrices, closed form, shape ``[..., 1]``."""
    a = m[..., 0, 0].unsqueeze(-1)
    b = m[..., 0, 1].unsqueeze(-1)
    c = m[..., 1, 0].unsqueeze(-1)
    d = m[..., 1, 1].unsqueeze(-1)
    s1 = a ** 2 + b ** 2 + c ** 2 + d ** 2
    s2 = (a ** 2 + b ** 2 - c ** 2 - d ** 2) ** 2
    s2 = torch.sqrt(s2 + 4 * (a * c + b * d) ** 2)
    # clamp: rounding can make s1 - s2 slightly negative for a near-singular matrix (sqrt would give NaN).
    return torch.sqrt(torch.clamp((s1 - s2) / 2, min=0))


def gaussian2kp(heatmap: torch.Tensor, kp_variance: KpVariance = "matrix",
                clip_variance: float | None = None) -> dict[str, torch.Tensor]:
    """Moments of softmax heatmaps.

    Args:
        heatmap: ``[B, K, D, H, W]``, each ``[H, W]`` map non-negative and summing to 1.
        kp_variance: 'matrix' adds ``var`` ``[B, D, K, 2, 2]``; a number (fixed variance) adds none.
        clip_variance: if set, each covariance is rescaled so its smallest singular value is at least this.
    Returns:
        ``{'mean': [B, D, K, 2], 'var': ...}``.
    """
    h = heatmap.unsqueeze(-1) + HEATMAP_EPS
    grid = make_coordinate_grid(heatmap.shape[3:], heatmap.dtype, heatmap.device)[None, None, None]
    mean = (h * grid).sum(dim=(3, 4))  # [B, K, D, 2]
    kp = {"mean": mean.permute(0, 2, 1, 3)}
    if kp_variance == "matrix":
        mean_sub = grid - mean.unsqueeze(-2).unsqueeze(-2)
        var = torch.matmul(mean_sub.unsqueeze(-1), mean_sub.unsqueeze(-2))
        var = (var * h.unsqueeze(-1)).sum(dim=(3, 4)).permute(0, 2, 1, 3, 4)
        if clip_variance:
            sg = smallest_singular(var).unsqueeze(-1)
            min_norm = torch.tensor(clip_variance, dtype=var.dtype, device=var.device)
            var = torch.max(min_norm, sg) * var / sg
        kp["var"] = var
    return kp


def kp2gaussian(kp: dict[str, torch.Tensor], spatial_size: tuple[int, int],
                kp_variance: KpVariance = "matrix") -> torch.Tensor:
    """Unnormalised Gaussians at the keypoints.

    Args:
        kp: ``mean`` ``[..., K, 2]`` (and for 'matrix' ``var`` ``[..., K, 2, 2]``).
        spatial_size: ``(h, w)`` of the output grid (coordinates in ``[-1, 1]`` over it).
    Returns:
        ``[..., K, h, w]`` with values in ``(0, 1]``: ``exp(-0.5 (z-mu)^T var^-1 (z-mu))`` for 'matrix',
        ``exp(-0.5 |z-mu|^2 / kp_variance)`` for a number.
    """
    mean = kp["mean"]
    lead = mean.shape[:-1]
    grid = make_coordinate_grid(spatial_size, mean.dtype, mean.device).view((1,) * len(lead) + (*spatial_size, 2))
    mean_sub = grid - mean.view(*lead, 1, 1, 2)
    if kp_variance == "matrix":
        inv_var = matrix_inverse(kp["var"]).view(*lead, 1, 1, 2, 2)
        under_exp = torch.matmul(torch.matmul(mean_sub.unsqueeze(-2), inv_var), mean_sub.unsqueeze(-1))
        return torch.exp(-0.5 * under_exp.squeeze(-1).squeeze(-1))
    return torch.exp(-0.5 * (mean_sub ** 2).sum(-1) / float(kp_variance))


class KPDetector(nn.Module):
    """Hourglass -> per-keypoint softmax heatmap -> moments.

    Input ``[B, C, D, H, W]`` in ``[0, 1]``; it is nearest-downscaled by ``scale_factor`` first (no anti-aliasing,
    like the original), so ``H * scale_factor`` must be divisible by ``2 ** num_blocks``. Output: see
    :func:`gaussian2kp`. The heatmap has the (downscaled) input's full size (padded final conv).
    """

    def __init__(self, block_expansion: int, num_kp: int, num_channels: int, max_features: int, num_blocks: int,
                 temperature: float, kp_variance: KpVariance = "matrix", scale_factor: float = 1,
                 clip_variance: float | None = None) -> None:
        super().__init__()
        self.predictor = Hourglass(block_expansion, in_features=num_channels, out_features=num_kp,
                                   max_features=max_features, num_blocks=num_blocks)
        self.temperature = temperature
        self.kp_variance = kp_variance
        self.scale_factor = scale_factor
        self.clip_variance = clip_variance

    def heatmap_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw predictor output ``[B, K, D, h, w]`` before the temperature softmax (for debugging)."""
        if self.scale_factor != 1:
            x = F.interpolate(x, scale_factor=(1, self.scale_factor, self.scale_factor))
        return self.predictor(x)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.heatmap_logits(x)
        shape = logits.shape
        heatmap = F.softmax(logits.view(shape[0], shape[1], shape[2], -1) / self.temperature, dim=3).view(shape)
        return gaussian2kp(heatmap, self.kp_variance, self.clip_variance)
