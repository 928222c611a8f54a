"""Training objectives of the two baselines, each with the losses of its paper.

* :class:`MonkeyNetObjective` (Siarohin et al., CVPR 2019): the keypoint detector runs on the source and the
  driving frame together, the generator predicts the driving frame from the source and both keypoint sets, and
  the reconstruction loss is **feature matching on the discriminator** (``loss_weights.reconstruction``: one
  weight per discriminator feature map, the frame itself first), plus the LSGAN generator term
  (``generator_gan``); the discriminator sees the driving keypoints' Gaussian embedding and is trained with
  LSGAN (``discriminator_gan``). Optional ``reconstruction_deformed`` compares the dense-motion-warped source
  with the driving frame. One learning rate ``train_params.lr`` for the three networks, as in the original.
  The original trains on a clip (one source frame + several driving frames); here every item is a
  source/driving *pair* (the 3-D networks see ``D = 1``), which is the same loss per driving frame.
* :class:`X2FaceObjective` (Wiles et al., ECCV 2018): **photometric L1** between the frame generated from the
  source with the driving frame's motion and the driving frame (``loss_weights.photometric``, default 1). The
  networks run at X2Face's fixed 256x256; frames are resized to it and the prediction back to the frame size,
  where the loss is taken. The original's second stage (VGGFace identity/content losses) needs weights that
  are not available offline and is not reproduced. The original optimiser was SGD; the shared trainer uses Adam.

Both accept the weight-free option of :mod:`fomm.train.losses`: with ``train_params.perceptual_backend``
set (``pyramid_l1``: multi-scale L1 + SSIM; ``vgg19`` needs ImageNet weights) and ``loss_weights.perceptual``,
a ``perceptual`` term on the 2-D prediction is added.

Batches: ``{"source": [B,3,H,W], "driving": [B,3,H,W]}`` in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fomm.errors import ConfigError
from fomm.train.losses import build_reconstruction_loss
from fomm.train.objectives import TrainingObjective, _DiscriminatorHolder

KP = dict[str, torch.Tensor]


def _optional_perceptual(train_params: Mapping[str, Any]) -> nn.Module | None:
    """The weight-free (or VGG) reconstruction term, only when the config asks for it."""
    weights = (train_params.get("loss_weights") or {}).get("perceptual")
    if train_params.get("perceptual_backend") is None or not weights or not sum(float(w) for w in weights):
        return None
    return build_reconstruction_loss(train_params)


def _split_kp(kp_joined: KP, detach: bool) -> tuple[KP, KP]:
    """Keypoints of ``[source, driving]`` stacked along D -> ``(kp_source, kp_driving)``, each ``D = 1``."""
    if detach:
        kp_joined = {k: v.detach() for k, v in kp_joined.items()}
    return ({k: v[:, :1] for k, v in kp_joined.items()}, {k: v[:, 1:] for k, v in kp_joined.items()})


def feature_matching_reconstruction(real: list[torch.Tensor], fake: list[torch.Tensor],
                                    weights: list[float]) -> torch.Tensor:
    """Monkey-Net's reconstruction loss: ``sum_i w_i * mean|real_i - fake_i|`` over the discriminator feature maps
    (the prediction map, the last entry, excluded). ``len(weights)`` must equal ``len(real) - 1``."""
    maps_real, maps_fake = real[:-1], fake[:-1]
    if len(weights) != len(maps_real):
        raise ConfigError(f"train_params.loss_weights.reconstruction has {len(weights)} weights but the "
                          f"discriminator gives {len(maps_real)} feature maps (the frame + num_blocks); give one "
                          "weight per map")
    total = maps_fake[0].new_zeros(())
    for w, r, f in zip(weights, maps_real, maps_fake, strict=True):
        if float(w):
            total = total + float(w) * (r - f).abs().mean()
    return total


class MonkeyNetObjective(TrainingObjective):
    """Monkey-Net's generator and discriminator losses (see the module docstring).

    ``train_params`` keys: ``loss_weights`` {``reconstruction`` [per map], ``reconstruction_deformed``,
    ``generator_gan``, ``discriminator_gan``}, ``detach_kp_generator`` (default False),
    ``detach_kp_discriminator`` (must be True, as in every released config: only the discriminator is updated
    in its step), ``lr``.
    """

    lr_keys = {"generator": "lr", "kp_detector": "lr", "discriminator": "lr"}

    def __init__(self, kp_detector: nn.Module, generator: nn.Module, discriminator: nn.Module,
                 train_params: Mapping[str, Any]) -> None:
        super().__init__()
        self.kp_detector = kp_detector
        self.generator = generator
        self._disc = _DiscriminatorHolder(discriminator)
        self.train_params = dict(train_params)
        self.weights = dict(self.train_params.get("loss_weights") or {})
        rec = self.weights.get("reconstruction", [10, 10, 10, 10, 1])
        self.rec_weights = [float(w) for w in (rec if isinstance(rec, (list, tuple)) else [rec])]
        n_maps = len(getattr(discriminator, "down_blocks", [])) + 1
        if len(self.rec_weights) != n_maps:
            raise ConfigError(f"train_params.loss_weights.reconstruction has {len(self.rec_weights)} weights but the "
                              f"discriminator gives {n_maps} feature maps (the frame + num_blocks = "
                              f"{n_maps - 1}); give one weight per map")
        if not self.train_params.get("detach_kp_discriminator", True):
            raise ConfigError("detach_kp_discriminator: false is not supported (the discriminator step updates "
                              "the discriminator only); set it to true, as every released Monkey-Net config does")
        self.detach_kp_generator = bool(self.train_params.get("detach_kp_generator", False))
        self.perceptual = _optional_perceptual(self.train_params)

    @property
    def discriminator(self) -> nn.Module:
        return self._disc.module

    @property
    def adversarial(self) -> bool:
        # The reconstruction loss itself lives in the discriminator's features: it is always trained.
        return True

    def networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "kp_detector": self.kp_detector, "discriminator": self.discriminator}

    def generator_losses(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
                         ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        source = batch["source"].unsqueeze(2)  # [B, 3, 1, H, W]
        driving = batch["driving"].unsqueeze(2)
        kp_joined = self.kp_detector(torch.cat([source, driving], dim=2))
        kp_source, kp_driving = _split_kp(kp_joined, self.detach_kp_generator)
        out = self.generator(source, kp_driving=kp_driving, kp_source=kp_source)
        kp_s, kp_d = _split_kp(kp_joined, False)
        real = self.discriminator(driving, kp_driving=kp_d, kp_source=kp_s)
        fake = self.discriminator(out["video_prediction"], kp_driving=kp_d, kp_source=kp_s)
        w = self.weights
        losses: dict[str, torch.Tensor] = {
            "reconstruction": feature_matching_reconstruction(real, fake, self.rec_weights)}
        wd = float(w.get("reconstruction_deformed", 0) or 0)
        if wd:
            losses["reconstruction_deformed"] = wd * (driving - out["video_deformed"]).abs().mean()
        wg = float(w.get("generator_gan", 1) or 0)
        if wg:
            losses["gen_gan"] = wg * ((1 - fake[-1]) ** 2).mean()
        prediction = out["video_prediction"][:, :, 0]
        if self.perceptual is not None:
            losses["perceptual"] = self.perceptual(prediction, batch["driving"])
        generated = {"prediction": prediction, "deformed": out["video_deformed"][:, :, 0],
                     "video_prediction": out["video_prediction"], "kp_joined": kp_joined,
                     "kp_source": kp_s, "kp_driving": kp_d}
        return losses, generated

    def discriminator_losses(self, batch: Mapping[str, torch.Tensor], generated: Mapping[str, Any]
                             ) -> dict[str, torch.Tensor]:
        kp_s, kp_d = _split_kp(generated["kp_joined"], True)
        real = self.discriminator(batch["driving"].unsqueeze(2), kp_driving=kp_d, kp_source=kp_s)
        fake = self.discriminator(generated["video_prediction"].detach(), kp_driving=kp_d, kp_source=kp_s)
        wd = float(self.weights.get("discriminator_gan", 1))
        return {"disc_gan": wd * ((1 - real[-1]) ** 2 + fake[-1] ** 2).mean()}

    def visual_items(self, batch: Mapping[str, torch.Tensor], generated: Mapping[str, Any]
                     ) -> dict[str, torch.Tensor]:
        return {"source": batch["source"], "driving": batch["driving"], "deformed": generated["deformed"],
                "prediction": generated["prediction"], "kp_source": generated["kp_source"]["mean"][:, 0],
                "kp_driving": generated["kp_driving"]["mean"][:, 0]}


class X2FaceObjective(TrainingObjective):
    """X2Face's photometric L1 (see the module docstring). ``train_params``: ``loss_weights.photometric``
    (default 1), optional weight-free ``perceptual``, ``lr``.

    The network is saved under the checkpoint key ``state_dict``: a checkpoint written by ``fomm train`` is the
    original X2Face container (``{'state_dict': ...}``, plus our optimizer/epoch entries), readable by the
    authors' notebooks and by :func:`fomm.models.x2face.load_x2face`.
    """

    lr_keys = {"state_dict": "lr"}

    def __init__(self, x2face: nn.Module, train_params: Mapping[str, Any]) -> None:
        super().__init__()
        self.x2face = x2face
        self.train_params = dict(train_params)
        self.weights = dict(self.train_params.get("loss_weights") or {})
        self.photometric_weight = float(self.weights.get("photometric", 1))
        self.perceptual = _optional_perceptual(self.train_params)
        if not self.photometric_weight and self.perceptual is None:
            raise ConfigError("X2Face training needs loss_weights.photometric > 0 or a perceptual term")

    def networks(self) -> dict[str, nn.Module]:
        return {"state_dict": self.x2face}

    def generator_losses(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
                         ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from fomm.models.x2face.model import _resize
        from fomm.models.x2face.networks import IMAGE_SIZE

        source, driving = batch["source"], batch["driving"]
        size = tuple(driving.shape[-2:])
        full = (IMAGE_SIZE, IMAGE_SIZE)
        embedded = self.x2face.embedded_face(_resize(source, full))
        sampler_raw, _ = self.x2face.sampler(_resize(driving, full))
        prediction = _resize(self.x2face.drive(embedded, sampler_raw), size)
        losses: dict[str, torch.Tensor] = {}
        if self.photometric_weight:
            losses["photometric"] = self.photometric_weight * (prediction - driving).abs().mean()
        if self.perceptual is not None:
            losses["perceptual"] = self.perceptual(prediction, driving)
        return losses, {"prediction": prediction, "embedded": _resize(embedded, size)}

    def visual_items(self, batch: Mapping[str, torch.Tensor], generated: Mapping[str, Any]
                     ) -> dict[str, torch.Tensor]:
        # The embedded face takes the "deformed" column: it is the source warped into X2Face's canonical frame.
        return {"source": batch["source"], "driving": batch["driving"],
                "deformed": generated["embedded"].clamp(0, 1), "prediction": generated["prediction"].clamp(0, 1)}


def build_monkeynet_objective(config: Any, device: torch.device) -> MonkeyNetObjective:
    from fomm.errors import InputError
    from fomm.models.monkeynet import build_monkeynet, check_discriminator_size, check_frame_size

    kp, gen, disc = build_monkeynet(config)
    size = config.image_size
    if size is not None:
        try:
            check_frame_size(kp, gen, *size)
            check_discriminator_size(disc, *size)
        except InputError as exc:
            raise ConfigError(f"dataset_params.image_shape: {exc}") from None
    return MonkeyNetObjective(kp, gen, disc, config.train_params).to(device)


def build_x2face_objective(config: Any, device: torch.device) -> X2FaceObjective:
    from fomm.models.x2face import X2Face

    return X2FaceObjective(X2Face(config.model), config.train_params).to(device)


def load_monkeynet_config(config: Any) -> Any:
    from fomm.models.monkeynet import MonkeyNetConfig

    return MonkeyNetConfig.load(config)


def load_x2face_config(config: Any) -> Any:
    from fomm.models.x2face.config import X2FaceRunConfig

    return X2FaceRunConfig.load(config)


__all__ = ["MonkeyNetObjective", "X2FaceObjective", "build_monkeynet_objective", "build_x2face_objective",
           "feature_matching_reconstruction", "load_monkeynet_config", "load_x2face_config"]
