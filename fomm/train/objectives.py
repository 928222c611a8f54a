"""What one training step computes, per model: the "full models" of the original trainers.

A :class:`TrainingObjective` owns the networks of one model and turns a batch into a dict of weighted scalar
losses (the trainer sums them). The trainer knows nothing model-specific: it asks the objective for its
networks (saved under their original checkpoint names), their learning-rate keys, and, for adversarial
configs, a discriminator step. The baselines plug in by subclassing; :mod:`fomm.train.factory` maps a model
name to its builder, so this module never imports them.

Batch (from :class:`fomm.datasets.frames.FramesDataset`): ``{"source": [B,3,H,W], "driving": [B,3,H,W]}``
float in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fomm.errors import ConfigError
from fomm.train.losses import (
    ImagePyramid,
    Transform,
    build_reconstruction_loss,
    discriminator_gan_loss,
    equivariance_jacobian_loss,
    equivariance_value_loss,
    feature_matching_loss,
    generator_gan_loss,
)


class TrainingObjective(nn.Module):
    """Base class. Subclasses set :attr:`networks` (checkpoint name -> module) and implement
    :meth:`generator_losses`. ``forward`` = ``generator_losses`` so DistributedDataParallel can wrap it."""

    #: checkpoint name -> ``train_params`` learning-rate key
    lr_keys: Mapping[str, str] = {}

    def networks(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def generator_networks(self) -> dict[str, nn.Module]:
        """Networks updated by the generator loss (everything but the discriminator)."""
        return {k: v for k, v in self.networks().items() if k != "discriminator"}

    @property
    def adversarial(self) -> bool:
        return False

    def forward(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
                ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return self.generator_losses(batch, generator)

    def generator_losses(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
                         ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        raise NotImplementedError

    def discriminator_losses(self, batch: Mapping[str, torch.Tensor], generated: Mapping[str, Any]
                             ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def visual_items(self, batch: Mapping[str, torch.Tensor], generated: Mapping[str, Any]
                     ) -> dict[str, torch.Tensor]:
        """Images for the periodic PNG grid: name -> ``[B,3,H,W]`` or ``[B,1,H,W]`` in [0,1]; keypoints as
        ``kp_driving``/``kp_source`` ``[B,K,2]`` in [-1,1]."""
        return {}


class _DiscriminatorHolder:
    """Keeps the discriminator out of the generator objective's registered modules, so DDP over the generator
    objective neither all-reduces nor waits for discriminator gradients (its own DDP does that)."""

    def __init__(self, module: nn.Module | None) -> None:
        self.module = module


def _uses_gan(weights: Mapping[str, Any]) -> bool:
    """Whether FOMM's ``loss_weights`` train adversarially (``generator_gan`` > 0)."""
    return float(weights.get("generator_gan", 0) or 0) != 0


def _check_feature_matching(weights: Any, layers: int | None) -> None:
    """``loss_weights.feature_matching`` must give one weight per discriminator feature map (``num_blocks`` of
    ``discriminator_params``): a different count used to stop the first training step with a ValueError from
    ``zip``. Absent or empty means no feature-matching term."""
    if weights is None:
        return
    if not isinstance(weights, (list, tuple)):
        raise ConfigError(f"train_params.loss_weights.feature_matching must be a list of weights, one per "
                          f"discriminator block, got {weights!r}")
    if weights and layers is not None and len(weights) != layers:
        raise ConfigError(f"train_params.loss_weights.feature_matching has {len(weights)} weights but the "
                          f"discriminator has {layers} blocks (model_params.discriminator_params.num_blocks); "
                          f"give {layers} weights, one per block")


class FommObjective(TrainingObjective):
    """FOMM's generator objective (keypoints of source and driving, warp-and-inpaint reconstruction).

    Losses (weighted by ``train_params.loss_weights``): ``perceptual`` (VGG19 or the weight-free pyramid, see
    :func:`fomm.train.losses.build_reconstruction_loss`), ``equivariance_value`` and ``equivariance_jacobian``
    under a random affine+TPS :class:`Transform`, and with ``generator_gan > 0`` the LSGAN generator term plus
    ``feature_matching`` on a multi-scale discriminator fed the driving keypoints (detached).
    """

    lr_keys = {"generator": "lr_generator", "kp_detector": "lr_kp_detector", "discriminator": "lr_discriminator"}

    def __init__(self, kp_detector: nn.Module, generator: nn.Module, discriminator: nn.Module | None,
                 train_params: Mapping[str, Any], reconstruction_loss: nn.Module | None = None) -> None:
        super().__init__()
        self.kp_detector = kp_detector
        self.generator = generator
        self._disc = _DiscriminatorHolder(discriminator)
        self.train_params = dict(train_params)
        weights = dict(self.train_params.get("loss_weights") or {})
        self.weights = weights
        if self.adversarial:  # before the reconstruction loss, which may fetch VGG19 weights
            _check_feature_matching(weights.get("feature_matching"), getattr(discriminator, "num_feature_maps", None))
        self.reconstruction = reconstruction_loss if reconstruction_loss is not None else \
            build_reconstruction_loss(self.train_params)
        self.scales = list(self.train_params.get("scales", [1, 0.5, 0.25, 0.125]))
        self.transform_params = self.train_params.get("transform_params") or {}
        if self.adversarial:
            if discriminator is None:
                raise ConfigError("loss_weights.generator_gan > 0 needs a discriminator (discriminator_params)")
            disc_scales = getattr(discriminator, "scales", None) or [1]
            self.disc_pyramid = ImagePyramid(disc_scales, generator.num_channels if hasattr(generator, "num_channels")
                                             else 3)
        for key in ("equivariance_value", "equivariance_jacobian"):
            if float(weights.get(key, 0)) and not self.transform_params:
                raise ConfigError(f"loss_weights.{key} is set but train_params.transform_params is missing")

    @property
    def discriminator(self) -> nn.Module | None:
        return self._disc.module

    @property
    def adversarial(self) -> bool:
        return _uses_gan(self.weights)

    def networks(self) -> dict[str, nn.Module]:
        nets: dict[str, nn.Module] = {"generator": self.generator, "kp_detector": self.kp_detector}
        if self.discriminator is not None:
            nets["discriminator"] = self.discriminator
        return nets

    def generator_losses(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
                         ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        source, driving = batch["source"], batch["driving"]
        kp_source = self.kp_detector(source)
        kp_driving = self.kp_detector(driving)
        generated = self.generator(source, kp_source=kp_source, kp_driving=kp_driving)
        generated.update({"kp_source": kp_source, "kp_driving": kp_driving})
        w = self.weights
        losses: dict[str, torch.Tensor] = {}
        losses["perceptual"] = self.reconstruction(generated["prediction"], driving)

        if self.adversarial:
            disc = self.discriminator
            assert disc is not None
            kp_detached = {k: v.detach() for k, v in kp_driving.items()}
            real = disc(self.disc_pyramid(driving), kp=kp_detached)
            fake = disc(self.disc_pyramid(generated["prediction"]), kp=kp_detached)
            losses["gen_gan"] = float(w["generator_gan"]) * generator_gan_loss(fake)
            fm = w.get("feature_matching") or []
            if sum(float(v) for v in fm) != 0:
                losses["feature_matching"] = feature_matching_loss(real, fake, fm)

        wv = float(w.get("equivariance_value", 0) or 0)
        wj = float(w.get("equivariance_jacobian", 0) or 0)
        if wv or wj:
            transform = Transform.from_params(driving.shape[0], self.transform_params, generator=generator,
                                              device=driving.device)
            transformed = transform.transform_frame(driving)
            kp_transformed = self.kp_detector(transformed)
            generated["transformed_frame"] = transformed
            generated["kp_transformed"] = kp_transformed
            if wv:
                losses["equivariance_value"] = wv * equivariance_value_loss(kp_driving, kp_transformed, transform)
            if wj and "jacobian" in kp_driving:
                # The 2x2 inverse is badly conditioned in half precision; keep this term in fp32.
                with torch.autocast(driving.device.type, enabled=False):
                    kd = {k: v.float() for k, v in kp_driving.items()}
                    kt = {k: v.float() for k, v in kp_transformed.items()}
                    losses["equivariance_jacobian"] = wj * equivariance_jacobian_loss(kd, kt, transform)
        return losses, generated

    def discriminator_losses(self, batch: Mapping[str, torch.Tensor], generated: Mapping[str, Any]
                             ) -> dict[str, torch.Tensor]:
        disc = self.discriminator
        assert disc is not None
        kp_detached = {k: v.detach() for k, v in generated["kp_driving"].items()}
        real = disc(self.disc_pyramid(batch["driving"]), kp=kp_detached)
        fake = disc(self.disc_pyramid(generated["prediction"].detach()), kp=kp_detached)
        return {"disc_gan": float(self.weights.get("discriminator_gan", 1)) * discriminator_gan_loss(real, fake)}

    def visual_items(self, batch: Mapping[str, torch.Tensor], generated: Mapping[str, Any]
                     ) -> dict[str, torch.Tensor]:
        items: dict[str, torch.Tensor] = {"source": batch["source"], "driving": batch["driving"]}
        if "deformed" in generated:
            items["deformed"] = generated["deformed"]
        if "occlusion_map" in generated:
            items["occlusion"] = generated["occlusion_map"]
        items["prediction"] = generated["prediction"]
        items["kp_source"] = generated["kp_source"]["value"]
        items["kp_driving"] = generated["kp_driving"]["value"]
        return items


class DiscriminatorStep(nn.Module):
    """Wraps an objective's discriminator update so DDP can wrap it as a module of its own."""

    def __init__(self, objective: TrainingObjective) -> None:
        super().__init__()
        self.objective_ref = _DiscriminatorHolder(objective)
        disc = objective.networks().get("discriminator")
        if disc is None:
            raise ConfigError("this config has no discriminator")
        self.discriminator = disc

    def forward(self, batch: Mapping[str, torch.Tensor], generated: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        objective = self.objective_ref.module
        assert isinstance(objective, TrainingObjective)
        return objective.discriminator_losses(batch, generated)


def build_fomm_objective(config: Any, device: torch.device) -> FommObjective:
    from fomm.errors import InputError
    from fomm.models.fomm import (
        build_discriminator,
        build_generator,
        build_kp_detector,
        check_discriminator_size,
        check_frame_size,
    )

    kp = build_kp_detector(config)
    gen = build_generator(config)
    disc = build_discriminator(config)
    if config.image_size is not None:  # fail before the first batch, as the Monkey-Net objective does
        try:
            check_frame_size(kp, gen, *config.image_size)
            if _uses_gan(config.train_params.get("loss_weights") or {}):  # only then does the discriminator run
                check_discriminator_size(disc, *config.image_size)
        except InputError as exc:
            raise ConfigError(f"dataset_params.frame_shape: {exc}") from None
    return FommObjective(kp, gen, disc, config.train_params).to(device)


def load_fomm_config(config: Any) -> Any:
    """FOMM's config (bundled name, YAML path or loaded config), as :func:`fomm.train.factory.build_objective`
    expects it."""
    from fomm.config import load_config

    return load_config(config)
