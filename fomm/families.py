"""The model-family registry: one place that says which model families fomm knows and where each one's parts live.

A family (``fomm``, ``monkeynet``, ``x2face``) is five parts that live in five layers of the package:

========================  =================================================  ==========================================
part                      what it is                                          layer
========================  =================================================  ==========================================
``config_reader``         YAML / bundled name -> the family's config object  ``fomm.config``, ``fomm.models.*``
``loader``                ``(config, checkpoint, device, ...) -> LoadedModel``  ``fomm.api``
``animator``              streaming animator class (``set_source`` / ...)     ``fomm.animate``
``reconstructor``         eval protocol adapter ``(model, ...) -> fn``        ``fomm.eval``
``objective``             ``(config, device) -> training objective``          ``fomm.train``
========================  =================================================  ==========================================

Before this registry the family names were spelled out three times (``api``, the CLI's ``--model`` choices and
``fomm eval``'s) and dispatch was by ``if kind == ...`` chains in each layer. The registry is *data*: each part is a
``"module:attribute"`` reference resolved with :mod:`importlib` only when asked for, so this module imports nothing
from the layers it names and any layer may consult it (``fomm.api`` uses it to load, ``fomm.animate`` to build
animators) without an import cycle. ``tests/test_families.py`` resolves every reference, so a renamed function fails
there rather than at a user's first run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fomm.errors import FommError

Part = Literal["config_reader", "loader", "animator", "reconstructor", "objective", "training_config"]
PARTS: tuple[Part, ...] = ("config_reader", "loader", "animator", "reconstructor", "objective", "training_config")


@dataclass(frozen=True)
class ModelFamily:
    """One model family. Every ``Part`` field is a ``"package.module:attr[.attr]"`` reference (see
    :meth:`resolve`).

    ``keypoints``: whether the family's motion goes through keypoints (relative motion, keypoint overlays and the
    keypoint metrics apply); X2Face drives the source with the driving frame itself. ``inference_parts``: the
    entries of its checkpoint container that inference needs (what ``fomm average-checkpoints`` keeps;
    discriminators and optimizer states only train).
    """

    name: str
    summary: str
    keypoints: bool
    config_reader: str
    loader: str
    animator: str
    reconstructor: str
    objective: str
    training_config: str
    inference_parts: tuple[str, ...] = ("generator", "kp_detector")

    def resolve(self, part: Part) -> Callable[..., Any]:
        """Import and return the object ``part`` refers to (a class or function)."""
        if part not in PARTS:
            raise ValueError(f"unknown family part {part!r}; one of {', '.join(PARTS)}")
        return resolve_reference(getattr(self, part))


def resolve_reference(ref: str) -> Any:
    """``"pkg.module:attr.sub"`` -> the object (``importlib`` + ``getattr`` along the dotted attribute path)."""
    module_name, _, attr_path = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    return obj


FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (
    ModelFamily(
        name="fomm",
        summary="First Order Motion Model: keypoints with local affine jacobians, dense motion with occlusion",
        keypoints=True,
        config_reader="fomm.config:load_config",
        loader="fomm.api:load_fomm",
        animator="fomm.animate.fomm:Animator",
        reconstructor="fomm.eval.reconstruct:animator_reconstructor",
        objective="fomm.train.objectives:build_fomm_objective",
        training_config="fomm.train.objectives:load_fomm_config",
    ),
    ModelFamily(
        name="monkeynet",
        summary="Monkey-Net baseline (CVPR 2019): keypoints with variances, 3-D (per-frame) networks",
        keypoints=True,
        config_reader="fomm.models.monkeynet:MonkeyNetConfig.load",
        loader="fomm.api:load_monkeynet",
        animator="fomm.animate.monkeynet:MonkeyNetAnimator",
        reconstructor="fomm.eval.reconstruct:animator_reconstructor",
        objective="fomm.train.baselines:build_monkeynet_objective",
        training_config="fomm.train.baselines:load_monkeynet_config",
    ),
    ModelFamily(
        name="x2face",
        summary="X2Face baseline (ECCV 2018): an embedding network and a driving network, no keypoints",
        keypoints=False,
        config_reader="fomm.models.x2face.config:X2FaceRunConfig.load",
        loader="fomm.api:load_x2face",
        animator="fomm.animate.x2face:X2FaceAnimator",
        reconstructor="fomm.eval.reconstruct:animator_reconstructor",
        objective="fomm.train.baselines:build_x2face_objective",
        training_config="fomm.train.baselines:load_x2face_config",
        inference_parts=("state_dict",),
    ),
)}


def family_names() -> tuple[str, ...]:
    """The registered family names, in registration order (``("fomm", "monkeynet", "x2face")``)."""
    return tuple(FAMILIES)


def get_family(name: str) -> ModelFamily:
    """The family called ``name``; a :class:`~fomm.errors.FommError` naming the choices otherwise."""
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise FommError(f"unknown model '{name}'; choose one of: {', '.join(FAMILIES)}") from None


__all__ = ["FAMILIES", "PARTS", "ModelFamily", "family_names", "get_family", "resolve_reference"]
