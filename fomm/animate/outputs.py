"""What an animator gives per driving frame besides the picture: the motion that made it.

Depth passes, compositing and live tools need more than the predicted frame: the animated frame is the source photo
moved by a dense motion field, so anything aligned with the source (its depth, a matte, a plate) can be moved by the
same field and stays consistent with the video by construction. :class:`FrameOutputs` carries that field, the
occlusion map (where the source cannot show what the frame needs) and the keypoints that drove the frame.

Coordinates follow :func:`torch.nn.functional.grid_sample` with ``align_corners=True`` (the sampler the released
checkpoints were trained with, :func:`fomm.ops.grid_sample`): ``deformation[b, y, x] = (u, v)`` says that output
pixel ``(x, y)`` takes the source at normalised position ``(u, v)``, with ``-1`` / ``+1`` the centres of the first /
last source pixel. Returning these costs nothing: the generator computes them for every frame anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from fomm.models.fomm.generator import deform_input

KP = dict[str, torch.Tensor]


def resample_deformation(deformation: torch.Tensor, size: tuple[int, int], aligned: bool = False) -> torch.Tensor:
    """Resize a sampling grid ``[B, h, w, 2]`` to ``[B, H, W, 2]`` (``size = (H, W)``), bilinearly.

    The values stay in normalised ``[-1, 1]`` source coordinates, so the resized grid warps a source of any size.
    ``aligned``: resize with ``align_corners=True`` (maps an identity grid to the identity grid exactly). The
    released checkpoints' generator resizes with ``align_corners=False`` (``aligned=False``), which is what its
    ``deformed`` output used; :attr:`FrameOutputs.aligned` says which one a model uses.
    """
    if deformation.dim() != 4 or deformation.shape[-1] != 2:
        raise ValueError(f"a deformation is [B, h, w, 2], got {tuple(deformation.shape)}")
    if tuple(deformation.shape[1:3]) == tuple(size):
        return deformation
    grid = F.interpolate(deformation.permute(0, 3, 1, 2), size=tuple(size), mode="bilinear", align_corners=aligned)
    return grid.permute(0, 2, 3, 1)


@dataclass(frozen=True)
class FrameOutputs:
    """One batch of animated frames with the motion that produced them (tensors on the animator's device).

    Attributes:
        prediction: ``[B, 3, H, W]`` float in ``[0, 1]``, the animated frames at the model's size.
        deformation: ``[B, h, w, 2]`` sampling grid in grid_sample coordinates (see the module docstring): where in
            the source each output pixel comes from. ``(h, w)`` is the dense-motion resolution (e.g. 64x64 for
            vox-256); :meth:`deformation_at` resizes it. ``None`` for models without dense motion (X2Face,
            Monkey-Net) and for ONNX exports made before format version 2.
        occlusion_map: ``[B, 1, h, w]`` in ``[0, 1]``: 1 where the warped source shows the pixel, towards 0 where
            the frame needs content the source does not have (newly visible regions the generator inpaints).
            ``None`` when the model estimates no occlusion.
        kp_driving: the *normalised* driving keypoints the generator used: ``value [B, K, 2]`` in ``[-1, 1]``
            (x, y) and, for FOMM, ``jacobian [B, K, 2, 2]``. ``None`` for X2Face.
        kp_source: the source's keypoints, ``value [1, K, 2]`` (+ ``jacobian``), or ``None``.
        aligned: how the generator resizes ``deformation`` to other sizes (see :func:`resample_deformation`).
        views: extra named images a stage produced for this frame (``[H, W, C]`` uint8 arrays; see
            :mod:`fomm.animate.stages`); empty from the animator.
    """

    prediction: torch.Tensor
    deformation: torch.Tensor | None = None
    occlusion_map: torch.Tensor | None = None
    kp_driving: KP | None = None
    kp_source: KP | None = None
    aligned: bool = False
    views: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.prediction.shape[0])

    def __getitem__(self, i: int) -> FrameOutputs:
        """Frame ``i`` as a batch of one (views into the batch's tensors, no copies)."""
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"frame {i} of a batch of {n}")
        i = i % n
        pick = slice(i, i + 1)
        return FrameOutputs(
            prediction=self.prediction[pick],
            deformation=None if self.deformation is None else self.deformation[pick],
            occlusion_map=None if self.occlusion_map is None else self.occlusion_map[pick],
            kp_driving=None if self.kp_driving is None else {k: v[pick] for k, v in self.kp_driving.items()},
            kp_source=self.kp_source, aligned=self.aligned)

    def deformation_at(self, size: tuple[int, int]) -> torch.Tensor:
        """The deformation resized to ``size = (H, W)``: ``[B, H, W, 2]``, the way the generator resizes it."""
        if self.deformation is None:
            raise ValueError("this model gives no deformation (no dense motion network)")
        return resample_deformation(self.deformation, size, self.aligned)

    def occlusion_at(self, size: tuple[int, int]) -> torch.Tensor:
        """The occlusion map resized (bilinearly) to ``size = (H, W)``: ``[B, 1, H, W]`` in ``[0, 1]``."""
        if self.occlusion_map is None:
            raise ValueError("this model estimates no occlusion map")
        if tuple(self.occlusion_map.shape[-2:]) == tuple(size):
            return self.occlusion_map
        return F.interpolate(self.occlusion_map, size=tuple(size), mode="bilinear", align_corners=False)

    def warp(self, image: torch.Tensor) -> torch.Tensor:
        """Move ``image [1|B, C, H, W]`` (aligned with the source, any size and channel count, e.g. a depth map)
        by this batch's deformation with the generator's own sampler: ``[B, C, H, W]``. Warping the source image
        itself gives the generator's ``deformed`` output."""
        if self.deformation is None:
            raise ValueError("this model gives no deformation (no dense motion network)")
        grid = self.deformation.to(device=image.device, dtype=image.dtype)
        return deform_input(image, grid, self.aligned)


__all__ = ["FrameOutputs", "resample_deformation"]
