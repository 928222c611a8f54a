"""X2Face (Wiles, Koepke, Zisserman, ECCV 2018): embed the source face, then resample it with the driver's motion.

Pipeline for sources ``s_1..s_n`` and a driving frame ``d`` (all ``[B, 3, 256, 256]`` in [0, 1]):

* embedding network (skip U-Net) on each source -> 2 offset channels + 1 log-confidence;
  ``grid_i = tanh(offsets_i) + identity``, ``conf_i = exp(logconf_i) + 0.1``;
  embedded face = ``sum_i conf_i * grid_sample(s_i, grid_i) / sum_i conf_i``;
* driving network (no skips, Tanh output) on ``d`` -> 2 channels; ``grid = tanh(out) + identity``
  (tanh applied twice in total, as in the original) and the output is ``grid_sample(embedded, grid)``.

The pose variant replaces the driving network's 1x1 bottleneck with one generated from a head pose vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fomm.errors import InputError
from fomm.models.x2face.networks import IMAGE_SIZE, NoSkipNet, Pix2PixWrapper, SkipNet
from fomm.ops import grid_sample

#: Added to the exponentiated log-confidence in forward() so no source can get zero weight.
CONFIDENCE_FLOOR = 0.1


@dataclass(frozen=True)
class X2FaceConfig:
    """Hyper-parameters of X2Face.

    Attributes:
        ngf: width of the first encoder level of both networks (64 in the release, hard-coded there).
        inner_nc: width of the driving network's 1x1 bottleneck (128 in the release).
        input_pose: build the pose-driven variant (``UnwrappedFaceWeightedAveragePose``): adds the pose heads
            and returns the raw bottleneck; the identity model returns it after ReLU.
        output_num_channels: driving network output channels (2: a sampling offset field).
        input_num_channels: image channels (3).
    """

    ngf: int = 64
    inner_nc: int = 128
    input_pose: bool = False
    output_num_channels: int = 2
    input_num_channels: int = 3
    image_size: int = IMAGE_SIZE

    def __post_init__(self) -> None:
        if self.image_size != IMAGE_SIZE:
            raise ValueError(f"X2Face only works at {IMAGE_SIZE}x{IMAGE_SIZE} (8 stride-2 levels down to 1x1)")
        if self.output_num_channels != 2:
            raise ValueError("X2Face's driving network must output 2 channels (a sampling offset field)")


def identity_grid(size: int = IMAGE_SIZE, device: torch.device | str | None = None) -> torch.Tensor:
    """The original's identity sampling grid ``[size, size, 2]`` (``[..., 0]`` = x along the width), float32.

    Built from float64 ``np.linspace(-1, 1, size)`` and cast, exactly as the original. The float32 arange formula
    of :func:`fomm.ops.make_coordinate_grid` differs by up to ~6e-8 (an ulp) at most positions.
    """
    xs = np.linspace(-1, 1, size)
    gx, gy = np.meshgrid(xs, xs)
    grid = np.stack([gx, gy], axis=2).astype(np.float32)
    return torch.from_numpy(grid).to(device)


def _check_image(name: str, x: torch.Tensor, channels: int = 3) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != channels \
            or x.shape[2] != IMAGE_SIZE or x.shape[3] != IMAGE_SIZE:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputError(f"X2Face {name} must be a [B, {channels}, {IMAGE_SIZE}, {IMAGE_SIZE}] tensor, got {shape}; "
                         f"resize frames to {IMAGE_SIZE}x{IMAGE_SIZE} first (animate_frame does this for you)")


class X2Face(nn.Module):
    """X2Face generator: the identity model (``UnwrappedFaceWeightedAverage``) or, with ``config.input_pose``,
    the pose model (``UnwrappedFaceWeightedAveragePose``).

    Submodules ``pix2pixUnwrapped`` (embedding network, SkipNet -> 3 channels) and ``pix2pixSampler`` (driving
    network, NoSkipNet -> 2 channels + bottleneck) carry the original names, so ``state_dict()`` keys match the
    released ``x2face_model.pth`` one for one. BatchNorm statistics are used as stored: call ``.eval()`` for
    inference (as the original notebooks do).
    """

    def __init__(self, config: X2FaceConfig | None = None) -> None:
        super().__init__()
        self.config = config or X2FaceConfig()
        c = self.config
        self.pix2pixUnwrapped = Pix2PixWrapper(SkipNet(c.input_num_channels, 3, ngf=c.ngf))
        self.pix2pixSampler = Pix2PixWrapper(NoSkipNet(
            c.input_num_channels, c.output_num_channels, ngf=c.ngf, inner_nc=c.inner_nc,
            relu_bottleneck=not c.input_pose, input_pose=c.input_pose))
        self.register_buffer("grid", identity_grid(IMAGE_SIZE), persistent=False)

    # -- building blocks ---------------------------------------------------------------------------------------

    def embedding_raw(self, source: torch.Tensor) -> torch.Tensor:
        """Embedding network output ``[B, 3, 256, 256]``: channels 0:2 offsets before tanh, 2 the log-confidence."""
        _check_image("source", source, self.config.input_num_channels)
        return self.pix2pixUnwrapped(source)

    def sampler(self, driver: torch.Tensor, pose: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Driving network on ``driver [B, 3, 256, 256]``.

        Returns:
            ``(raw [B, 2, 256, 256] in (-1, 1)`` (after the network's own Tanh, before X2Face's second tanh),
            ``bottleneck [B, inner_nc, 1, 1])``. The identity model's bottleneck is after ReLU (>= 0), the pose
            model's is raw. With ``pose [B, 3]`` (pose model only) the bottleneck is moved to that head pose
            first and the moved one is returned.
        """
        _check_image("driver", driver, self.config.input_num_channels)
        if pose is not None:
            self._check_pose(pose, driver.shape[0])
        raw, bottleneck = self.pix2pixSampler(driver, pose)
        return raw, bottleneck

    def embed_source(self, source: torch.Tensor, confidence_floor: float = CONFIDENCE_FLOOR
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Warp one source into the embedded face.

        Returns:
            ``(embedded [B, C, 256, 256]`` in the source's value range, ``confidence [B, 1, 256, 256]`` > 0
            ``= exp(logconf) + confidence_floor)``.
        """
        raw = self.embedding_raw(source)
        grid = torch.tanh(raw[:, 0:2]).permute(0, 2, 3, 1) + self.grid
        conf = torch.exp(raw[:, 2:3]) + confidence_floor
        return grid_sample(source, grid), conf

    def embedded_face(self, *sources: torch.Tensor, confidence_floor: float = CONFIDENCE_FLOOR) -> torch.Tensor:
        """Confidence-weighted average of the embedded sources, ``[B, C, 256, 256]`` in [0, 1] for [0, 1] inputs.

        ``forward`` uses ``confidence_floor=0.1``; the original's ``get_unwrapped`` helper used ``exp()`` alone,
        which is ``confidence_floor=0.0`` here.
        """
        if not sources:
            raise InputError("X2Face needs at least one source image")
        num = None
        den = None
        for src in sources:
            emb, conf = self.embed_source(src, confidence_floor)
            num = conf * emb if num is None else num + conf * emb
            den = conf if den is None else den + conf
        return num / den

    def drive(self, embedded: torch.Tensor, sampler_raw: torch.Tensor) -> torch.Tensor:
        """Resample the embedded face ``[B, C, 256, 256]`` with the driving field ``sampler_raw [B, 2, 256, 256]``."""
        grid = torch.tanh(sampler_raw).permute(0, 2, 3, 1) + self.grid
        return grid_sample(embedded, grid)

    # -- inference ---------------------------------------------------------------------------------------------

    def forward(self, driver: torch.Tensor, *sources: torch.Tensor) -> torch.Tensor:
        """Animate: the sources' identity with the driver's pose and expression.

        Args:
            driver: ``[B, 3, 256, 256]`` in [0, 1].
            *sources: one or more ``[B, 3, 256, 256]`` in [0, 1] (same B), averaged by predicted confidence.
        Returns:
            ``[B, 3, 256, 256]`` in [0, 1].
        """
        embedded = self.embedded_face(*sources)
        sampler_raw, _ = self.sampler(driver)
        return self.drive(embedded, sampler_raw)

    def forward_pose(self, driver: torch.Tensor, pose: torch.Tensor, *sources: torch.Tensor) -> torch.Tensor:
        """Pose-driven generation (pose model only): the driver's expression turned to head pose ``pose``.

        The driver's bottleneck is shifted by ``bottlefrompose(pose) - bottlefrompose(estimated pose)`` before
        decoding (see :class:`~fomm.models.x2face.networks.BottleneckLevel`). The original notebook passes the
        source itself as ``driver`` to re-pose a face.

        Args:
            driver: ``[B, 3, 256, 256]`` in [0, 1].
            pose: ``[B, 3]`` target head pose (the original only ran B = 1; larger batches are the same per-sample
                computation in eval mode).
            *sources: one or more ``[B, 3, 256, 256]`` in [0, 1].
        Returns:
            ``[B, 3, 256, 256]`` in [0, 1].
        """
        embedded = self.embedded_face(*sources)
        sampler_raw, _ = self.sampler(driver, pose)
        return self.drive(embedded, sampler_raw)

    def estimate_pose(self, driver: torch.Tensor) -> torch.Tensor:
        """Head pose ``[B, 3]`` regressed from the driver's bottleneck (pose model only)."""
        if not self.config.input_pose:
            raise InputError("this X2Face model has no pose branch; load it with the posereg/posetobottle files")
        _, bottleneck = self.sampler(driver)
        return self._bottleneck_level().estimate_pose(bottleneck)

    def _bottleneck_level(self) -> nn.Module:
        level = self.pix2pixSampler.netG.model
        while hasattr(level, "submodule"):
            level = level.submodule
        return level

    @torch.no_grad()
    def animate_frame(self, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        """One animation step at any resolution: ``source [B, 3, H, W]``, ``driving [B, 3, h, w]`` in [0, 1].

        Both are resized to 256x256 (X2Face's only size; area-style antialiasing when shrinking), animated, and
        the prediction is resized back to the source's ``H x W``.

        Returns:
            ``[B, 3, H, W]`` in [0, 1].
        """
        for name, x in (("source", source), ("driving", driving)):
            if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
                shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise InputError(f"X2Face {name} frame must be a [B, 3, H, W] tensor in [0, 1], got {shape}")
        if source.shape[0] != driving.shape[0]:
            raise InputError(f"source and driving batch sizes differ ({source.shape[0]} vs {driving.shape[0]})")
        out_size = tuple(source.shape[2:])
        pred = self.forward(_resize(driving, (IMAGE_SIZE, IMAGE_SIZE)), _resize(source, (IMAGE_SIZE, IMAGE_SIZE)))
        return _resize(pred, out_size).clamp(0.0, 1.0)

    def _check_pose(self, pose: torch.Tensor, batch: int) -> None:
        if not self.config.input_pose:
            raise InputError("this X2Face model has no pose branch; load it with the posereg/posetobottle files")
        if not isinstance(pose, torch.Tensor) or pose.dim() != 2 or pose.shape[1] != 3 or pose.shape[0] != batch:
            shape = tuple(pose.shape) if isinstance(pose, torch.Tensor) else type(pose).__name__
            raise InputError(f"X2Face pose must be a [{batch}, 3] tensor (the head pose angles), got {shape}")


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[2:]) == tuple(size):
        return x
    shrink = x.shape[2] > size[0] or x.shape[3] > size[1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
