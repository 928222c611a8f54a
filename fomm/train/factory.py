"""Which config loader and objective builder each trainable model family uses (``fomm train --model NAME``).

The baselines' objectives subclass :class:`fomm.train.objectives.TrainingObjective`, so
:mod:`fomm.train.baselines` has to import :mod:`fomm.train.objectives`. A table naming every family's builder
therefore cannot live in either of them without an import cycle; it lives here, in the one module that imports
both, and the trainer asks only this module. Each family keeps a builder function of its own
(:func:`~fomm.train.objectives.build_fomm_objective`, :func:`~fomm.train.baselines.build_monkeynet_objective`,
:func:`~fomm.train.baselines.build_x2face_objective`) so a registry can point at them by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from fomm.errors import ConfigError
from fomm.train.baselines import (
    build_monkeynet_objective,
    build_x2face_objective,
    load_monkeynet_config,
    load_x2face_config,
)
from fomm.train.objectives import TrainingObjective, build_fomm_objective, load_fomm_config


@dataclass(frozen=True)
class ModelFamily:
    """How to read a family's config, and how to build its objective from that config."""

    load_config: Callable[[Any], Any]
    build_objective: Callable[[Any, torch.device], TrainingObjective]


#: model name -> its config loader and objective builder.
FAMILIES: dict[str, ModelFamily] = {
    "fomm": ModelFamily(load_fomm_config, build_fomm_objective),
    # The baselines, each with the losses of its paper (see fomm.train.baselines).
    "monkeynet": ModelFamily(load_monkeynet_config, build_monkeynet_objective),
    "x2face": ModelFamily(load_x2face_config, build_x2face_objective),
}


def model_family(model: str) -> ModelFamily:
    """The loader and builder of ``model``; the one place a model name is resolved for training.

    Raises:
        ConfigError: ``model`` is not a trainable family.
    """
    try:
        return FAMILIES[model]
    except KeyError:
        raise ConfigError(f"unknown model '{model}' for training; choose one of: {', '.join(FAMILIES)}") from None


def load_training_config(model: str, config: Any) -> Any:
    """``config`` (bundled name, YAML path or loaded config) read the way ``model``'s family reads it."""
    return model_family(model).load_config(config)


def build_objective(model: str, config: Any, device: torch.device) -> TrainingObjective:
    """``model``'s training objective (its networks and losses) for ``config``, on ``device``."""
    return model_family(model).build_objective(config, device)


__all__ = ["FAMILIES", "ModelFamily", "build_objective", "load_training_config", "model_family"]
