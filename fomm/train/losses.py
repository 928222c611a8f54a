"""Training losses of FOMM: perceptual (VGG19 or weight-free), equivariance, LSGAN and feature matching.

All images are ``[B, 3, H, W]`` float in [0, 1]. Loss functions return scalar tensors (unweighted unless a
weight list is an argument); the trainer multiplies by ``train_params.loss_weights``.

Config keys read (``train_params``): ``scales`` (image pyramid for the perceptual loss),
``loss_weights.perceptual`` (5 per-layer weights), ``transform_params`` (``sigma_affine``, ``sigma_tps``,
``points_tps``), and two keys of ours: ``perceptual_backend`` (``"vgg19"``, default, or ``"pyramid_l1"``)
and ``vgg19_weights`` (a path or URL of torchvision's ``vgg19-dcbb9e9d.pth`` layout; default
:data:`VGG19_URL`), plus ``ssim_weight`` (``pyramid_l1`` only, default 0).
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fomm.errors import ConfigError, FommError
from fomm.ops import AntiAliasInterpolation2d, inverse_2x2, make_coordinate_grid

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# VGG19 "E" configuration up to relu5_1 (index 29 of torchvision's ``features``); "M" is a 2x2 max pool.
_VGG19_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512]
# Exclusive end indices in ``features`` of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
_VGG19_SLICE_ENDS = (2, 7, 12, 21, 30)


# --------------------------------------------------------------------------------------------------------------
# Image pyramid
# --------------------------------------------------------------------------------------------------------------
class ImagePyramid(nn.Module):
    """Anti-aliased multi-scale copies of an image.

    ``forward(x [B, C, H, W]) -> {"prediction_<scale>": [B, C, ceil(H*scale), ceil(W*scale)]}`` with
    ``<scale>`` written as ``str(scale)`` (``prediction_1``, ``prediction_0.5``, ...), the keys the original
    discriminator consumes.
    """

    def __init__(self, scales: Sequence[float], num_channels: int = 3) -> None:
        super().__init__()
        self.scales = [s for s in scales]
        self.downs = nn.ModuleList([AntiAliasInterpolation2d(num_channels, float(s)) for s in self.scales])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f"prediction_{s}": down(x) for s, down in zip(self.scales, self.downs, strict=True)}


# --------------------------------------------------------------------------------------------------------------
# VGG19 perceptual loss
# --------------------------------------------------------------------------------------------------------------
class VGG19Features(nn.Module):
    """VGG19 up to relu5_1; ``state_dict`` keys are torchvision's (``features.N.weight/bias``, N <= 28).

    ``forward(x [B, 3, H, W] in [0, 1]) -> [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1]`` after ImageNet
    normalisation; inputs too small to reach the deeper layers (below 16 px for relu5_1) return only the
    shallower ones. Parameters are frozen (``requires_grad=False``); gradients flow to the input.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for item in _VGG19_CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, int(item), 3, padding=1), nn.ReLU()]
                in_ch = int(item)
        self.features = nn.Sequential(*layers)
        assert len(self.features) == _VGG19_SLICE_ENDS[-1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.mean) / self.std
        outs = []
        start = 0
        for end in _VGG19_SLICE_ENDS:
            for layer in self.features[start:end]:
                if isinstance(layer, nn.MaxPool2d) and min(h.shape[-2:]) < 2:
                    # Small pyramid levels (e.g. 64 px at scale 0.125) cannot reach the deep layers; return the
                    # levels that exist so the loss uses those instead of failing.
                    return outs
                h = layer(h)
            outs.append(h)
            start = end
        return outs

    def load_weights(self, source: str | os.PathLike) -> None:
        """Load a torchvision-layout VGG19 state dict from a file path or an http(s) URL (cached by torch.hub).

        Extra keys (``classifier.*``, ``features.30+``) are ignored; missing or mis-shaped ones raise FommError.
        """
        state = _load_vgg_state(str(source))
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise FommError(f"VGG19 weights {source} lack {len(missing)} key(s) such as {missing[0]!r}; "
                            f"expected torchvision's vgg19 layout (features.N.weight/bias)")
        for k, v in own.items():
            if tuple(state[k].shape) != tuple(v.shape):
                raise FommError(f"VGG19 weights {source}: {k} has shape {tuple(state[k].shape)}, expected "
                                f"{tuple(v.shape)}; is this a VGG19 (not VGG16) checkpoint?")
        self.load_state_dict({k: state[k] for k in own}, strict=True)


def _load_vgg_state(source: str) -> Mapping[str, torch.Tensor]:
    scheme = urllib.parse.urlparse(source).scheme
    if scheme in ("http", "https"):
        filename = os.path.basename(urllib.parse.urlparse(source).path)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if not cached.is_file():
            try:
                return torch.hub.load_state_dict_from_url(source, map_location="cpu", progress=True)
            except Exception as exc:
                raise FommError(f"cannot download VGG19 weights from {source} ({type(exc).__name__}: {exc}); "
                                f"download it elsewhere and set train_params.vgg19_weights to the local file "
                                f"(or put it at {cached}), or use train_params.perceptual_backend: pyramid_l1"
                                ) from None
        source = str(cached)
    path = Path(source)
    if not path.is_file():
        raise FommError(f"VGG19 weights file {path} does not exist; set train_params.vgg19_weights to a copy of "
                        f"torchvision's vgg19-dcbb9e9d.pth or use train_params.perceptual_backend: pyramid_l1")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FommError(f"VGG19 weights file {path} is not a readable torch state dict ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise FommError(f"VGG19 weights file {path} does not hold a state dict")
    return state


class PerceptualLoss(nn.Module):
    """FOMM's multi-scale VGG19 perceptual loss.

    ``forward(prediction, target)`` with ``[B, 3, H, W]`` in [0, 1] returns
    ``sum_scale sum_i weights[i] * mean|vgg_i(pyr_s(prediction)) - vgg_i(pyr_s(target))|`` (target features
    detached), a scalar. ``weights`` is ``loss_weights.perceptual`` (relu1_1..relu5_1), ``scales`` is
    ``train_params.scales``. The weights are already inside, so the trainer adds this value as is.
    """

    def __init__(self, scales: Sequence[float], weights: Sequence[float],
                 vgg_weights: str | os.PathLike | None = VGG19_URL, vgg: VGG19Features | None = None) -> None:
        super().__init__()
        if len(weights) != len(_VGG19_SLICE_ENDS):
            raise ConfigError(f"train_params.loss_weights.perceptual needs {len(_VGG19_SLICE_ENDS)} weights with "
                              f"perceptual_backend vgg19, one per VGG19 layer (relu1_1..relu5_1), got "
                              f"{len(weights)}: {list(weights)}")
        self.pyramid = ImagePyramid(scales, 3)
        self.weights = [float(w) for w in weights]
        if vgg is None:
            vgg = VGG19Features()
            if vgg_weights is not None:
                vgg.load_weights(vgg_weights)
        self.vgg = vgg.eval()

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.vgg.eval()  # no dropout/BN here, but keep it in eval regardless of the trainer
        return self

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pyr_p = self.pyramid(prediction)
        pyr_t = self.pyramid(target)
        total = prediction.new_zeros(())
        for key in pyr_p:
            fp = self.vgg(pyr_p[key])
            with torch.no_grad():
                ft = self.vgg(pyr_t[key])
            # Not strict: a pyramid level too small for the deep layers yields fewer feature maps than weights
            # (see VGG19Features.forward), and the loss uses the ones there are.
            for w, a, b in zip(self.weights, fp, ft, strict=False):
                if w != 0:
                    total = total + w * (a - b).abs().mean()
        return total


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean structural similarity of ``[B, C, H, W]`` images in [0, 1] (box window, reflect padding)."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    pad = window // 2
    xp = F.pad(x, (pad,) * 4, mode="reflect")
    yp = F.pad(y, (pad,) * 4, mode="reflect")
    mu_x = F.avg_pool2d(xp, window, 1)
    mu_y = F.avg_pool2d(yp, window, 1)
    sxx = F.avg_pool2d(xp * xp, window, 1) - mu_x ** 2
    syy = F.avg_pool2d(yp * yp, window, 1) - mu_y ** 2
    sxy = F.avg_pool2d(xp * yp, window, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2)
    return (num / den).mean()


class PyramidL1Loss(nn.Module):
    """Weight-free reconstruction loss: ``sum_scale weight * (mean|p_s - t_s| + ssim_weight * (1 - SSIM))``.

    ``weight`` is the sum of ``loss_weights.perceptual`` divided by 5, so switching backends keeps the loss
    magnitude roughly comparable. Same call convention as :class:`PerceptualLoss`.
    """

    def __init__(self, scales: Sequence[float], weight: float = 1.0, ssim_weight: float = 0.0) -> None:
        super().__init__()
        self.pyramid = ImagePyramid(scales, 3)
        self.weight = float(weight)
        self.ssim_weight = float(ssim_weight)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pyr_p = self.pyramid(prediction)
        pyr_t = self.pyramid(target)
        total = prediction.new_zeros(())
        for key in pyr_p:
            p, t = pyr_p[key], pyr_t[key].detach()
            value = (p - t).abs().mean()
            if self.ssim_weight and min(p.shape[-2:]) >= 7:
                value = value + self.ssim_weight * (1 - ssim(p, t))
            total = total + self.weight * value
        return total


def build_reconstruction_loss(train_params: Mapping[str, Any]) -> nn.Module:
    """The perceptual/reconstruction loss selected by ``train_params`` (see module docstring)."""
    scales = train_params.get("scales", [1, 0.5, 0.25, 0.125])
    weights = (train_params.get("loss_weights") or {}).get("perceptual", [10, 10, 10, 10, 10])
    if not isinstance(weights, (list, tuple)):  # the config readers refuse this; objectives built in code too
        raise ConfigError(f"train_params.loss_weights.perceptual must be a list of weights (one per VGG19 layer), "
                          f"got {weights!r}")
    weights = list(weights)
    backend = train_params.get("perceptual_backend", "vgg19")
    if backend == "vgg19":
        return PerceptualLoss(scales, weights, train_params.get("vgg19_weights", VGG19_URL))
    if backend == "pyramid_l1":
        return PyramidL1Loss(scales, sum(weights) / max(len(weights), 1), train_params.get("ssim_weight", 0.0))
    raise ConfigError(f"train_params.perceptual_backend must be 'vgg19' or 'pyramid_l1', got {backend!r}")


# --------------------------------------------------------------------------------------------------------------
# Equivariance
# --------------------------------------------------------------------------------------------------------------
class Transform:
    """Random smooth warp for the equivariance constraints (FOMM's ``transform_params``).

    ``theta = I[2x3] + N(0, sigma_affine)`` per sample; with ``sigma_tps`` and ``points_tps`` also a
    thin-plate-spline term on a ``points_tps x points_tps`` control grid with weights ``N(0, sigma_tps)``.
    As in the original, the TPS radial basis uses the L1 distance ``r = |dx| + |dy|`` and ``r^2 log(r + 1e-6)``.

    Coordinates are ``(x, y)`` in [-1, 1] (:func:`fomm.ops.make_coordinate_grid`). ``theta`` ``[B, 2, 3]``,
    ``control_points`` ``[1, P, 2]``, ``control_params`` ``[B, 1, P]``.
    """

    def __init__(self, bs: int, sigma_affine: float = 0.0, sigma_tps: float | None = None,
                 points_tps: int | None = None, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> None:
        self.bs = bs
        noise = torch.randn(bs, 2, 3, generator=generator) * sigma_affine
        self.theta = (noise + torch.eye(2, 3).view(1, 2, 3)).to(device)
        self.tps = sigma_tps is not None and points_tps is not None
        if self.tps:
            assert points_tps is not None and sigma_tps is not None
            self.control_points = make_coordinate_grid((points_tps, points_tps), device=device).view(1, -1, 2)
            self.control_params = (torch.randn(bs, 1, points_tps ** 2, generator=generator) * sigma_tps).to(device)

    @classmethod
    def from_params(cls, bs: int, transform_params: Mapping[str, Any], generator: torch.Generator | None = None,
                    device: torch.device | str | None = None) -> Transform:
        """Build from ``train_params.transform_params``."""
        unknown = set(transform_params) - {"sigma_affine", "sigma_tps", "points_tps"}
        if unknown:
            raise ConfigError(f"unknown train_params.transform_params key(s) {sorted(unknown)}")
        return cls(bs, float(transform_params.get("sigma_affine", 0.0)), transform_params.get("sigma_tps"),
                   transform_params.get("points_tps"), generator=generator, device=device)

    def warp_coordinates(self, coordinates: torch.Tensor) -> torch.Tensor:
        """``[B, N, 2] -> [B, N, 2]`` (a batch of 1 is broadcast over the transform's batch)."""
        theta = self.theta.to(coordinates)
        transformed = torch.einsum("bij,bnj->bni", theta[:, :, :2], coordinates.expand(self.bs, -1, -1))
        transformed = transformed + theta[:, None, :, 2]
        if self.tps:
            cp = self.control_points.to(coordinates)
            diff = coordinates.unsqueeze(2) - cp.unsqueeze(1)  # [B, N, P, 2]
            r = diff.abs().sum(-1)
            basis = r ** 2 * torch.log(r + 1e-6)
            offset = (basis * self.control_params.to(coordinates)).sum(-1)  # [B, N]
            transformed = transformed + offset.unsqueeze(-1)
        return transformed

    def transform_frame(self, frame: torch.Tensor) -> torch.Tensor:
        """Warp ``[B, C, H, W]`` images: ``out(p) = frame(warp(p))`` (bilinear, reflection padding)."""
        b, _, h, w = frame.shape
        grid = make_coordinate_grid((h, w), dtype=frame.dtype, device=frame.device).view(1, h * w, 2)
        grid = self.warp_coordinates(grid).view(self.bs, h, w, 2)
        return F.grid_sample(frame, grid, mode="bilinear", padding_mode="reflection", align_corners=True)

    def jacobian(self, coordinates: torch.Tensor) -> torch.Tensor:
        """``d warp / d coordinates`` at ``[B, N, 2]`` -> ``[B, N, 2, 2]`` (row = output x/y), via autograd.

        Differentiable (create_graph=True) so the equivariance loss can train the keypoint detector through it.
        """
        if not coordinates.requires_grad:
            coordinates = coordinates.detach().requires_grad_(True)
        with torch.enable_grad():
            warped = self.warp_coordinates(coordinates)
            gx = torch.autograd.grad(warped[..., 0].sum(), coordinates, create_graph=True)[0]
            gy = torch.autograd.grad(warped[..., 1].sum(), coordinates, create_graph=True)[0]
        return torch.stack([gx, gy], dim=-2)


def equivariance_value_loss(kp_driving: Mapping[str, torch.Tensor], kp_transformed: Mapping[str, torch.Tensor],
                            transform: Transform) -> torch.Tensor:
    """``mean |kp_driving.value - T(kp_transformed.value)|``.

    ``kp_driving`` are keypoints of the driving frame, ``kp_transformed`` of ``transform.transform_frame``
    applied to it; ``value`` ``[B, K, 2]``. Unweighted scalar.
    """
    return (kp_driving["value"] - transform.warp_coordinates(kp_transformed["value"])).abs().mean()


def equivariance_jacobian_loss(kp_driving: Mapping[str, torch.Tensor],
                               kp_transformed: Mapping[str, torch.Tensor], transform: Transform) -> torch.Tensor:
    """``mean |I - J_driving^-1 (dT(kp_transformed) J_transformed)|`` with jacobians ``[B, K, 2, 2]``."""
    jac_t = torch.matmul(transform.jacobian(kp_transformed["value"]), kp_transformed["jacobian"])
    value = torch.matmul(inverse_2x2(kp_driving["jacobian"]), jac_t)
    eye = torch.eye(2, dtype=value.dtype, device=value.device).view(1, 1, 2, 2)
    return (eye - value).abs().mean()


# --------------------------------------------------------------------------------------------------------------
# GAN
# --------------------------------------------------------------------------------------------------------------
# Discriminator output format (one dict per discriminator call, as FOMM's MultiScaleDiscriminator returns):
#   {"feature_maps_<s>": [f_1, ..., f_n],   # list of [B, C_i, H_i, W_i] intermediate maps at scale s
#    "prediction_map_<s>": p}               # [B, 1, h, w] patch scores at scale s (real -> 1, fake -> 0)
# for every discriminator scale s, written as str(s) ("1", "0.5", ...).
def _scales(maps: Mapping[str, Any]) -> list[str]:
    scales = [k[len("prediction_map_"):] for k in maps if k.startswith("prediction_map_")]
    if not scales:
        raise ValueError("discriminator output has no 'prediction_map_<scale>' entries")
    return scales


def generator_gan_loss(disc_generated: Mapping[str, Any]) -> torch.Tensor:
    """LSGAN generator term ``sum_s mean (1 - D_s(fake))^2`` (unweighted)."""
    return sum((((1 - disc_generated[f"prediction_map_{s}"]) ** 2).mean() for s in _scales(disc_generated)),
               torch.zeros(()))


def discriminator_gan_loss(disc_real: Mapping[str, Any], disc_generated: Mapping[str, Any]) -> torch.Tensor:
    """LSGAN discriminator term ``sum_s mean[(1 - D_s(real))^2 + D_s(fake)^2]`` (unweighted).

    Pass discriminator outputs computed on detached generated images.
    """
    total = torch.zeros(())
    for s in _scales(disc_real):
        real, fake = disc_real[f"prediction_map_{s}"], disc_generated[f"prediction_map_{s}"]
        total = total + ((1 - real) ** 2 + fake ** 2).mean()
    return total


def feature_matching_loss(disc_real: Mapping[str, Any], disc_generated: Mapping[str, Any],
                          weights: Sequence[float]) -> torch.Tensor:
    """``sum_s sum_i weights[i] * mean|F_s,i(real) - F_s,i(fake)|`` (``loss_weights.feature_matching``).

    Layers with weight 0 are skipped. Weighted scalar.
    """
    total = torch.zeros(())
    for s in _scales(disc_real):
        for w, a, b in zip(weights, disc_real[f"feature_maps_{s}"], disc_generated[f"feature_maps_{s}"], strict=True):
            if w != 0:
                total = total + float(w) * (a - b).abs().mean()
    return total
