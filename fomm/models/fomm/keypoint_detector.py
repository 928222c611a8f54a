"""FOMM keypoint detector: keypoints with optional local affine jacobians."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fomm.models.fomm.blocks import Hourglass
from fomm.ops import AntiAliasInterpolation2d, make_coordinate_grid


def heatmap_to_keypoints(heatmap: torch.Tensor) -> torch.Tensor:
    """Expected coordinate under each heatmap.

    Args:
        heatmap: ``[B, K, h, w]``, each map summing to 1.
    Returns:
        ``[B, K, 2]`` as ``(x, y)`` in ``[-1, 1]``. The grid spans the heatmap itself, which for the released models
        is the valid-conv crop of the feature map; the result is used as image coordinates anyway (as trained).
    """
    grid = make_coordinate_grid(heatmap.shape[2:], dtype=heatmap.dtype, device=heatmap.device)
    return (heatmap.unsqueeze(-1) * grid[None, None]).sum(dim=(2, 3))


class KPDetector(nn.Module):
    """Images ``[B, C, H, W]`` in ``[0, 1]`` -> ``{"value": [B, K, 2], "jacobian": [B, K, 2, 2]}``.

    ``value`` is ``(x, y)`` in ``[-1, 1]``; ``jacobian`` (present when ``estimate_jacobian``) acts on column vectors
    ``(x, y)^T``. With ``single_jacobian_map`` one 2x2 map is shared by all keypoints.
    """

    def __init__(self, block_expansion: int, num_kp: int, num_channels: int, max_features: int, num_blocks: int,
                 temperature: float, estimate_jacobian: bool = False, scale_factor: float = 1,
                 single_jacobian_map: bool = False, pad: int = 0) -> None:
        super().__init__()
        self.predictor = Hourglass(block_expansion, in_features=num_channels, max_features=max_features,
                                   num_blocks=num_blocks)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_kp, kernel_size=7, padding=pad)
        if estimate_jacobian:
            self.num_jacobian_maps = 1 if single_jacobian_map else num_kp
            self.jacobian = nn.Conv2d(self.predictor.out_filters, 4 * self.num_jacobian_maps, kernel_size=7,
                                      padding=pad)
            # Start every jacobian at the identity so the untrained model behaves like the jacobian-free one.
            with torch.no_grad():
                self.jacobian.weight.zero_()
                self.jacobian.bias.copy_(torch.tensor([1, 0, 0, 1], dtype=torch.float32).repeat(self.num_jacobian_maps))
        else:
            self.jacobian = None
        self.num_kp = num_kp
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def heatmap_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(logits [B, K, h, w], feature_map)`` before the temperature softmax."""
        if self.scale_factor != 1:
            x = self.down(x)
        feature_map = self.predictor(x)
        return self.kp(feature_map), feature_map

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, feature_map = self.heatmap_logits(x)
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.view(b, k, -1) / self.temperature, dim=2).view(b, k, h, w)
        out = {"value": heatmap_to_keypoints(heatmap)}
        if self.jacobian is not None:
            jac_map = self.jacobian(feature_map).reshape(b, self.num_jacobian_maps, 4, h, w)
            jacobian = (heatmap.unsqueeze(2) * jac_map).view(b, k, 4, -1).sum(dim=-1)
            out["jacobian"] = jacobian.view(b, k, 2, 2)
        return out
