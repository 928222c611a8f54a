"""Public entry point: :func:`load_model`.

A loaded model is a small bundle of networks plus the config they were built from; everything else (animator,
evaluation, export) takes such a bundle.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fomm.checkpoint import load_container, load_state_dict_strict, state_dict_mismatch
from fomm.config import ConfigLike, bundled_configs, load_config
from fomm.errors import CheckpointError, ConfigError, FommError, InputError
from fomm.families import family_names, get_family

#: the model families :func:`load_model` accepts (kept for callers of the old constant; see :mod:`fomm.families`)
MODEL_NAMES = family_names()


@dataclass
class LoadedModel:
    """Networks of one model in eval mode on ``device``.

    ``kp_detector(images [B,3,H,W] in [0,1]) -> {"value": [B,K,2], "jacobian"?: [B,K,2,2]}``;
    ``generator(source, kp_source=..., kp_driving=...) -> {"prediction", "mask", "occlusion_map", "sparse_deformed",
    "deformed", "deformation"}`` (see :class:`fomm.models.fomm.OcclusionAwareGenerator`).
    """

    config: Any  # FommConfig, MonkeyNetConfig or X2FaceConfig
    kp_detector: nn.Module | None
    generator: nn.Module
    discriminator: nn.Module | None
    device: torch.device
    model: str = "fomm"
    checkpoint: str | None = None
    epoch: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` the model expects."""
        size = getattr(self.config, "image_size", None)
        if isinstance(size, int):  # X2Face: fixed square input
            return (size, size)
        if size is None:  # Monkey-Net: dataset_params.image_shape, if the config has one
            shape = getattr(self.config, "image_shape", None) or (64, 64)
            return (int(shape[0]), int(shape[1]))
        return tuple(size)  # type: ignore[return-value]


def parse_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, with a misspelt or unknown device (``"quantum"``, ``"cuda:-1"``) as one
    :class:`FommError` line instead of torch's RuntimeError; whether the device exists here is not checked."""
    if isinstance(device, torch.device):
        return device
    try:
        dev = torch.device(str(device))
    except (RuntimeError, ValueError, TypeError):
        dev = None
    if dev is None or dev.type == "meta":  # meta tensors hold no data: nothing could be animated on it
        raise FommError(f"unknown device '{device}': use cpu, cuda, cuda:N or mps")
    return dev


def resolve_device(device: str | torch.device) -> torch.device:
    """The torch device for ``device``; :class:`FommError` when it is unknown or not available on this machine."""
    dev = parse_device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FommError(f"device '{device}' requested but CUDA is not available here; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise FommError(f"device '{device}' requested but MPS is not available here; use --device cpu")
    return dev


@functools.cache
def _bundled_shapes(name: str) -> dict[str, dict[str, tuple[int, ...]]]:
    from fomm.models.fomm import build_generator, build_kp_detector

    cfg = load_config(name)
    with torch.device("meta"):
        kp, gen = build_kp_detector(cfg), build_generator(cfg)
    return {"kp_detector": {k: tuple(v.shape) for k, v in kp.state_dict().items()},
            "generator": {k: tuple(v.shape) for k, v in gen.state_dict().items()}}


def matching_bundled_configs(container: dict[str, Any]) -> list[str]:
    """Bundled configs whose kp_detector and generator shapes fit the checkpoint exactly."""
    fits = []
    for name in bundled_configs():
        shapes = _bundled_shapes(name)
        ok = True
        for part in ("kp_detector", "generator"):
            found = container.get(part)
            if not isinstance(found, dict):
                return []
            found_shapes = {k: tuple(v.shape) for k, v in found.items() if isinstance(v, torch.Tensor)}
            if found_shapes != shapes[part]:
                ok = False
                break
        if ok:
            fits.append(name)
    return fits


def guess_model_kind(container: dict[str, Any]) -> str | None:
    """Which of our models a loaded checkpoint container looks like (``None`` when unknown).

    X2Face: ``{'state_dict': {'pix2pixUnwrapped...': ...}}`` (or that state dict bare); Monkey-Net: a
    ``kp_detector`` of 3-D (5-dim) convolutions or an ``it`` entry; FOMM: a ``kp_detector`` of 2-D convolutions.
    """
    if not isinstance(container, dict):
        return None
    if any(str(k).startswith(("pix2pixUnwrapped.", "pix2pixSampler.")) for k in container):
        return "x2face"
    if "state_dict" in container and "generator" not in container:
        return "x2face"
    kp = container.get("kp_detector")
    if isinstance(kp, dict):
        conv_dims = {v.dim() for k, v in kp.items() if isinstance(v, torch.Tensor) and k.endswith("conv.weight")}
        if 5 in conv_dims or "it" in container:
            return "monkeynet"
        if 4 in conv_dims:
            return "fomm"
    return None


def _wrong_kind_hint(checkpoint: Any, model: str, err: CheckpointError) -> CheckpointError:
    """``err`` with ", it looks like a <kind> checkpoint (use --model <kind>)" when the file is another model's."""
    try:
        kind = guess_model_kind(load_container(checkpoint, map_location="cpu"))
    except FommError:
        return err
    if kind is None or kind == model or f"--model {kind}" in str(err):
        return err
    return CheckpointError(f"{err}; it looks like a {kind} checkpoint, not {model} (use --model {kind})")


def _config_hint(container: dict[str, Any]) -> str:
    kind = guess_model_kind(container)
    if kind not in (None, "fomm"):
        return f"It looks like a {kind} checkpoint (use --model {kind})"
    fits = matching_bundled_configs(container)
    if fits:
        return f"It fits the bundled config(s): {', '.join(fits)} (use --config {fits[0]})"
    return "No bundled config fits it; pass the YAML config it was trained with"


def load_model(config: ConfigLike, checkpoint: str | os.PathLike | None = None, device: str | torch.device = "cpu",
               model: str = "fomm", with_discriminator: bool = False, **baseline_files: Any) -> LoadedModel:
    """Build a model from ``config`` and (optionally) load an original-format checkpoint into it.

    Args:
        config: bundled config name (``"vox-256"``), YAML path, dict or :class:`~fomm.config.FommConfig`.
        checkpoint: path of a checkpoint in the authors' container (``vox-cpk.pth.tar``) or one saved by ``fomm
            train``; ``None`` keeps random weights (useful for tests and benchmarks).
        device: torch device string.
        model: ``"fomm"``, ``"monkeynet"`` (``config`` is a Monkey-Net YAML or a bundled name from
            ``fomm/configs/monkeynet``, e.g. ``"actions-64"``) or ``"x2face"`` (``config`` may be ``None``/``"x2face"``
            for the released architecture, or an X2Face YAML / bundled name from ``fomm/configs/x2face``; the pose
            model needs ``posereg=`` and ``posetobottle=`` file paths). A checkpoint of another of the three
            models raises a :class:`CheckpointError` naming the model it looks like.
        with_discriminator: also build (and load, if present) the discriminator.
    Raises:
        FommError subclasses with a one-line explanation for every user mistake.
    """
    family = get_family(model)
    dev = resolve_device(device)
    if baseline_files and family.name != "x2face":
        raise FommError(f"{', '.join(sorted(baseline_files))}: X2Face pose files, not options of a {model} model")
    loader = family.resolve("loader")
    return loader(config, checkpoint, dev, with_discriminator=with_discriminator, **baseline_files)


def load_fomm(config: ConfigLike, checkpoint: str | os.PathLike | None, dev: torch.device,
              with_discriminator: bool = False) -> LoadedModel:
    """The ``fomm`` family's loader (see :func:`load_model`; ``dev`` already resolved)."""
    from fomm.models.fomm import build_discriminator, build_generator, build_kp_detector, check_frame_size

    cfg = load_config(config)
    kp_detector = build_kp_detector(cfg)
    generator = build_generator(cfg)
    try:
        # Frames are resized to the config's frame_shape: networks too deep for it (num_blocks: 16 on 64x64 frames)
        # used to stop the first frame with a RuntimeError from a pooling layer.
        check_frame_size(kp_detector, generator, *cfg.image_size)
    except InputError as exc:
        raise ConfigError(f"{cfg.source or cfg.name}: dataset_params.frame_shape: {exc}") from None
    discriminator = build_discriminator(cfg) if with_discriminator else None
    epoch = None
    if checkpoint is not None:
        container = load_container(checkpoint, map_location="cpu")
        for part in ("generator", "kp_detector"):
            if part not in container:
                keys = ", ".join(sorted(map(str, container))[:6])
                kind = guess_model_kind(container)
                hint = f"; it looks like a {kind} checkpoint (use --model {kind})" if kind else ""
                raise CheckpointError(f"{checkpoint}: not a FOMM checkpoint (no '{part}' entry; found: {keys}){hint}")
        hint = functools.partial(_config_hint, container)
        load_state_dict_strict(kp_detector, container["kp_detector"], "kp_detector", checkpoint, hint)
        load_state_dict_strict(generator, container["generator"], "generator", checkpoint, hint)
        if discriminator is not None and "discriminator" in container:
            load_state_dict_strict(discriminator, container["discriminator"], "discriminator", checkpoint)
        ep = container.get("epoch")
        epoch = int(ep) if isinstance(ep, (int, float)) else None
    for net in (kp_detector, generator, discriminator):
        if net is not None:
            net.to(dev).eval()
    return LoadedModel(config=cfg, kp_detector=kp_detector, generator=generator, discriminator=discriminator,
                       device=dev, model="fomm", checkpoint=None if checkpoint is None else str(checkpoint),
                       epoch=epoch)


def load_monkeynet(config: Any, checkpoint: Any, dev: torch.device, with_discriminator: bool = False) -> LoadedModel:
    """The ``monkeynet`` family's loader (see :func:`load_model`)."""
    from fomm.models.monkeynet import MonkeyNetConfig, build_monkeynet, load_monkeynet_checkpoint

    cfg = MonkeyNetConfig.load(config)
    kp, gen, disc = build_monkeynet(cfg)
    epoch = None
    if checkpoint is not None:
        try:
            info = load_monkeynet_checkpoint(checkpoint, kp, gen, disc if with_discriminator else None)
        except CheckpointError as err:
            raise _wrong_kind_hint(checkpoint, "monkeynet", err) from None
        epoch = int(info["epoch"]) if isinstance(info.get("epoch"), (int, float)) else None
    for net in (kp, gen) + ((disc,) if with_discriminator else ()):
        net.to(dev).eval()
    return LoadedModel(config=cfg, kp_detector=kp, generator=gen, discriminator=disc if with_discriminator else None,
                       device=dev, model="monkeynet", checkpoint=None if checkpoint is None else str(checkpoint),
                       epoch=epoch)


def load_x2face(config: Any, checkpoint: Any, dev: torch.device, with_discriminator: bool = False,
               posereg: Any = None, posetobottle: Any = None) -> LoadedModel:
    """The ``x2face`` family's loader (X2Face trains without a discriminator, so ``with_discriminator`` is moot).
    ``config``: None/"x2face" (released architecture; ``LoadedModel.config`` is then the bare
    :class:`X2FaceConfig`), an X2FaceConfig, or an X2Face YAML / bundled name (``LoadedModel.config`` is then an
    :class:`~fomm.models.x2face.config.X2FaceRunConfig`, whose ``image_size`` is the dataset frame size)."""
    from fomm.models.x2face import X2Face, X2FaceConfig, load_x2face
    from fomm.models.x2face.config import X2FaceRunConfig

    run: X2FaceRunConfig | None = None
    arch: X2FaceConfig | None = config if isinstance(config, X2FaceConfig) else None
    if arch is None and not (config is None or str(config) == "x2face"):
        run = X2FaceRunConfig.load(config)
        arch = run.model
    epoch = None
    if checkpoint is None:
        net = X2Face(arch).to(dev).eval()
    else:
        try:
            net = load_x2face(checkpoint, posereg=posereg, posetobottle=posetobottle, config=arch, device=dev)
        except CheckpointError as err:
            raise _wrong_kind_hint(checkpoint, "x2face", err) from None
        ep = load_container(checkpoint, map_location="cpu").get("epoch") if run is not None else None
        epoch = int(ep) if isinstance(ep, (int, float)) else None
    return LoadedModel(config=run if run is not None else net.config, kp_detector=None, generator=net,
                       discriminator=None, device=dev, model="x2face",
                       checkpoint=None if checkpoint is None else str(checkpoint), epoch=epoch)


__all__ = ["MODEL_NAMES", "LoadedModel", "guess_model_kind", "load_fomm", "load_model", "load_monkeynet", "load_x2face",
           "parse_device",
           "matching_bundled_configs", "resolve_device", "state_dict_mismatch"]
