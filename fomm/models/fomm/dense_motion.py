"""Dense motion network: from sparse keypoint motions to a dense deformation and an occlusion map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fomm.models.fomm.blocks import Hourglass
from fomm.ops import AntiAliasInterpolation2d, grid_sample, inverse_2x2, make_coordinate_grid


def kp2gaussian(value: torch.Tensor, spatial_size: tuple[int, int], kp_variance: float) -> torch.Tensor:
    """Unnormalised isotropic Gaussians at keypoints.

    Args:
        value: ``[B, K, 2]`` keypoints ``(x, y)`` in ``[-1, 1]``.
    Returns:
        ``[B, K, h, w]`` with ``exp(-0.5 * |z - kp|^2 / kp_variance)``.
    """
    grid = make_coordinate_grid(spatial_size, dtype=value.dtype, device=value.device)
    diff = grid[None, None] - value[:, :, None, None, :]
    return torch.exp(-0.5 * (diff ** 2).sum(-1) / kp_variance)


def sparse_motions(spatial_size: tuple[int, int], kp_driving: dict[str, torch.Tensor],
                   kp_source: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-keypoint backward warps (driving frame -> source frame), first-order Taylor expansion.

    Returns:
        ``[B, K+1, h, w, 2]`` sampling grids; index 0 is the identity (background), index ``k`` is
        ``J_s,k @ inv(J_d,k) @ (z - kp_d,k) + kp_s,k`` (without jacobians ``z - kp_d,k + kp_s,k``).
    """
    value_d = kp_driving["value"]
    b, k, _ = value_d.shape
    h, w = spatial_size
    identity = make_coordinate_grid(spatial_size, dtype=value_d.dtype, device=value_d.device).view(1, 1, h, w, 2)
    coords = identity - value_d.view(b, k, 1, 1, 2)
    if "jacobian" in kp_driving and "jacobian" in kp_source:
        jac = torch.matmul(kp_source["jacobian"], inverse_2x2(kp_driving["jacobian"]))  # [B, K, 2, 2]
        coords = torch.matmul(jac[:, :, None, None], coords.unsqueeze(-1)).squeeze(-1)
    driving_to_source = coords + kp_source["value"].view(b, k, 1, 1, 2)
    return torch.cat([identity.expand(b, 1, h, w, 2), driving_to_source], dim=1)


class DenseMotionNetwork(nn.Module):
    """Source image ``[B, C, H, W]`` + keypoints -> dense motion at ``scale_factor`` resolution ``(h, w)``.

    Output dict: ``sparse_deformed [B, K+1, C, h, w]``, ``mask [B, K+1, h, w]`` (softmax, channel 0 = background),
    ``deformation [B, h, w, 2]`` (grid_sample units, ``(x, y)``), and ``occlusion_map [B, 1, h, w]`` in ``[0, 1]`` when
    estimated. Also ``heatmap_representation [B, K+1, 1, h, w]`` and ``sparse_motion [B, K+1, h, w, 2]``.
    """

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_kp: int, num_channels: int,
                 estimate_occlusion_map: bool = False, scale_factor: float = 1, kp_variance: float = 0.01) -> None:
        super().__init__()
        self.hourglass = Hourglass(block_expansion=block_expansion, in_features=(num_kp + 1) * (num_channels + 1),
                                   max_features=max_features, num_blocks=num_blocks)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.occlusion = (nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=7, padding=3)
                          if estimate_occlusion_map else None)
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def downsample(self, source_image: torch.Tensor) -> torch.Tensor:
        return self.down(source_image) if self.scale_factor != 1 else source_image

    def forward(self, source_image: torch.Tensor, kp_driving: dict[str, torch.Tensor],
                kp_source: dict[str, torch.Tensor], source_small: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """``source_small`` may carry a cached ``downsample(source_image)`` (the animator encodes the source once)."""
        src = self.downsample(source_image) if source_small is None else source_small
        b, c, h, w = src.shape
        kp_s = {k: v.expand(kp_driving["value"].shape[0], *v.shape[1:]) for k, v in kp_source.items()}
        if src.shape[0] != kp_driving["value"].shape[0]:
            src = src.expand(kp_driving["value"].shape[0], c, h, w)
            b = src.shape[0]

        heat = kp2gaussian(kp_driving["value"], (h, w), self.kp_variance) - kp2gaussian(kp_s["value"], (h, w),
                                                                                        self.kp_variance)
        heat = torch.cat([heat.new_zeros(b, 1, h, w), heat], dim=1).unsqueeze(2)  # [B, K+1, 1, h, w]
        motion = sparse_motions((h, w), kp_driving, kp_s)  # [B, K+1, h, w, 2]
        k1 = self.num_kp + 1
        src_rep = src.unsqueeze(1).expand(b, k1, c, h, w).reshape(b * k1, c, h, w)
        deformed = grid_sample(src_rep, motion.reshape(b * k1, h, w, 2)).view(b, k1, c, h, w)

        # Interleaved per keypoint: [H_0, C_0..., H_1, C_1..., ...] as the checkpoints' first conv expects.
        net_in = torch.cat([heat, deformed], dim=2).view(b, -1, h, w)
        prediction = self.hourglass(net_in)
        mask_logits, occlusion_logits = self.head_logits(prediction)
        mask = F.softmax(mask_logits, dim=1)
        deformation = (motion.permute(0, 1, 4, 2, 3) * mask.unsqueeze(2)).sum(dim=1).permute(0, 2, 3, 1)
        out = {
            "heatmap_representation": heat,
            "sparse_motion": motion,
            "sparse_deformed": deformed,
            "mask": mask,
            "deformation": deformation,
        }
        if occlusion_logits is not None:
            out["occlusion_map"] = torch.sigmoid(occlusion_logits)
        return out

    def head_logits(self, prediction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The hourglass output ``[B, F, h, w]`` -> mask logits ``[B, K+1, h, w]`` and occlusion logits
        ``[B, 1, h, w]`` (``None`` without an occlusion head). An inference view may set ``merged_heads``, one conv
        holding both heads' kernels (mask channels first): the 7x7 heads are bound by reading their input, so one
        pass instead of two halves their cost (:func:`fomm.models.fomm.fuse.fused_view`)."""
        merged = self._modules.get("merged_heads")
        if merged is not None:
            logits = merged(prediction)
            k1 = self.num_kp + 1
            return logits[:, :k1], (logits[:, k1:] if logits.shape[1] > k1 else None)
        return self.mask(prediction), (self.occlusion(prediction) if self.occlusion is not None else None)
