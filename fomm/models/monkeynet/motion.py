"""Movement embedding and dense motion module of Monkey-Net."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fomm.models.monkeynet.blocks import Hourglass, SameBlock3D
from fomm.models.monkeynet.config import KpVariance, NormConst
from fomm.models.monkeynet.keypoints import kp2gaussian
from fomm.ops import grid_sample, make_coordinate_grid


class MovementEmbeddingModule(nn.Module):
    """Per-keypoint motion features at the (downscaled) source resolution.

    ``forward(source_image [B, C, 1, H, W], kp_driving (D frames), kp_source (1 frame))`` returns
    ``[B, out_channels, D, h, w]`` with ``h, w = H * scale_factor, W * scale_factor``. Channels come in per-keypoint
    groups ``[heat, dx, dy, C source channels]`` (whichever are enabled), background group (all zero heat/shift,
    undeformed source) first when ``add_bg_feature_map``. ``heat`` is the driving Gaussian divided by ``norm_const``
    (or normalised to sum 1), minus the source one for heatmap_type 'difference'; ``(dx, dy)`` =
    ``kp_source - kp_driving``; the source channels are the source sampled at ``grid + (dx, dy)``.
    """

    def __init__(self, num_kp: int, kp_variance: KpVariance, num_channels: int, use_deformed_source_image: bool = False,
                 use_difference: bool = False, use_heatmap: bool = True, add_bg_feature_map: bool = False,
                 heatmap_type: str = "gaussian", norm_const: NormConst = "sum", scale_factor: float = 1) -> None:
        super().__init__()
        groups = num_kp + int(add_bg_feature_map)
        self.out_channels = (int(use_heatmap) + 2 * int(use_difference)
                             + num_channels * int(use_deformed_source_image)) * groups
        self.kp_variance = kp_variance
        self.heatmap_type = heatmap_type
        self.use_difference = use_difference
        self.use_deformed_source_image = use_deformed_source_image
        self.use_heatmap = use_heatmap
        self.add_bg_feature_map = add_bg_feature_map
        self.norm_const = norm_const
        self.scale_factor = scale_factor

    def normalize_heatmap(self, heatmap: torch.Tensor) -> torch.Tensor:
        if self.norm_const == "sum":
            s = heatmap.shape
            flat = heatmap.reshape(s[0], s[1], s[2], -1)
            return (flat / flat.sum(dim=3, keepdim=True)).view(s)
        return heatmap / self.norm_const

    def forward(self, source_image: torch.Tensor, kp_driving: dict[str, torch.Tensor],
                kp_source: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.scale_factor != 1:
            source_image = F.interpolate(source_image, scale_factor=(1, self.scale_factor, self.scale_factor))
        bs, _, _, h, w = source_image.shape
        _, d, num_kp, _ = kp_driving["mean"].shape

        inputs = []
        if self.use_heatmap:
            heatmap = self.normalize_heatmap(kp2gaussian(kp_driving, (h, w), self.kp_variance))
            if self.heatmap_type == "difference":
                heatmap = heatmap - self.normalize_heatmap(kp2gaussian(kp_source, (h, w), self.kp_variance))
            if self.add_bg_feature_map:
                heatmap = torch.cat([heatmap.new_zeros(bs, d, 1, h, w), heatmap], dim=2)
            inputs.append(heatmap.unsqueeze(3))  # [B, D, K(+1), 1, h, w]

        groups = num_kp + int(self.add_bg_feature_map)
        if self.use_difference or self.use_deformed_source_image:
            shift = kp_source["mean"] - kp_driving["mean"]  # [B, D, K, 2]
            if self.add_bg_feature_map:
                shift = torch.cat([shift.new_zeros(bs, d, 1, 2), shift], dim=2)
            if self.use_difference:
                inputs.append(shift.view(bs, d, groups, 2, 1, 1).expand(bs, d, groups, 2, h, w))
            if self.use_deformed_source_image:
                src = source_image[:, None, None].expand(bs, d, groups, *source_image.shape[1:])
                src = src.reshape(bs * d * groups, -1, h, w)
                grid = make_coordinate_grid((h, w), shift.dtype, shift.device).view(1, h, w, 2)
                grid = grid + shift.reshape(bs * d * groups, 1, 1, 2)
                inputs.append(grid_sample(src, grid).view(bs, d, groups, -1, h, w))

        embedding = torch.cat(inputs, dim=3).reshape(bs, d, -1, h, w)
        return embedding.permute(0, 2, 1, 3, 4)


class DenseMotionModule(nn.Module):
    """Predicts the backward deformation ``[B, D, h, w, 3]`` (last dim ``(x, y, z=0)``, grid_sample units).

    ``deformation = grid + sum_k softmax(mask)_k * (kp_source_k - kp_driving_k) + correction`` with k = 0 the
    background (zero shift). ``h, w`` are the source size times ``scale_factor``.
    """

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int, mask_embedding_params: dict,
                 num_kp: int, num_channels: int, kp_variance: KpVariance, use_correction: bool, use_mask: bool,
                 bg_init: float = 2, num_group_blocks: int = 0, scale_factor: float = 1) -> None:
        super().__init__()
        # The mask needs a background group (index 0), whatever the embedding options say.
        mask_params = {**mask_embedding_params, "add_bg_feature_map": True}
        self.mask_embedding = MovementEmbeddingModule(num_kp=num_kp, kp_variance=kp_variance,
                                                      num_channels=num_channels, **mask_params)
        self.difference_embedding = MovementEmbeddingModule(num_kp=num_kp, kp_variance=kp_variance,
                                                            num_channels=num_channels, add_bg_feature_map=True,
                                                            use_difference=True, use_heatmap=False,
                                                            use_deformed_source_image=False)
        ch = self.mask_embedding.out_channels
        # 1x1 grouped convs mix the features of one keypoint only.
        self.group_blocks = nn.ModuleList(
            SameBlock3D(ch, ch, groups=num_kp + 1, kernel_size=(1, 1, 1), padding=(0, 0, 0))
            for _ in range(num_group_blocks))
        self.hourglass = Hourglass(block_expansion=block_expansion, in_features=ch,
                                   out_features=(num_kp + 1) * int(use_mask) + 2 * int(use_correction),
                                   max_features=max_features, num_blocks=num_blocks)
        # Untrained start: identity-ish motion (background mask favoured, no correction).
        with torch.no_grad():
            self.hourglass.decoder.conv.weight.zero_()
            bias = ([bg_init] + [0] * num_kp) * int(use_mask) + [0, 0] * int(use_correction)
            self.hourglass.decoder.conv.bias.copy_(torch.tensor(bias, dtype=torch.float32))
        self.num_kp = num_kp
        self.use_correction = use_correction
        self.use_mask = use_mask
        self.scale_factor = scale_factor

    def forward(self, source_image: torch.Tensor, kp_driving: dict[str, torch.Tensor],
                kp_source: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.scale_factor != 1:
            source_image = F.interpolate(source_image, scale_factor=(1, self.scale_factor, self.scale_factor))
        prediction = self.mask_embedding(source_image, kp_driving, kp_source)
        for block in self.group_blocks:
            prediction = block(prediction)
        prediction = self.hourglass(prediction)

        bs, _, d, h, w = prediction.shape
        relative: torch.Tensor | float = 0.0
        if self.use_mask:
            mask = F.softmax(prediction[:, : self.num_kp + 1], dim=1).unsqueeze(2)
            shifts = self.difference_embedding(source_image, kp_driving, kp_source)
            shifts = shifts.reshape(bs, self.num_kp + 1, 2, d, h, w)
            relative = (shifts * mask).sum(dim=1)
        if self.use_correction:
            relative = relative + prediction[:, -2:]
        if not torch.is_tensor(relative):
            relative = prediction.new_zeros(bs, 2, d, h, w)
        relative = relative.permute(0, 2, 3, 4, 1)
        grid = make_coordinate_grid((h, w), relative.dtype, relative.device).view(1, 1, h, w, 2)
        deformation = relative + grid
        return torch.cat([deformation, deformation.new_zeros(deformation.shape[:-1] + (1,))], dim=-1)
