"""Training's view of the model-family registry: each family's training-config reader and objective builder.

The families, and where each one's parts live, are listed once, in :mod:`fomm.families` (its ``training_config``
and ``objective`` references). This module resolves them for the trainer, with a training-specific error for a
name that is not a family. The baselines' objectives subclass :class:`fomm.train.objectives.TrainingObjective`, so
:mod:`fomm.train.baselines` imports :mod:`fomm.train.objectives` and never the other way round; the registry's
references are resolved on use, which keeps both modules free of a dispatch table and of an import cycle.
"""

from __future__ import annotations

from typing import Any

import torch

from fomm.errors import ConfigError, FommError
from fomm.families import ModelFamily, family_names, get_family
from fomm.train.objectives import TrainingObjective


def model_family(model: str) -> ModelFamily:
    """The registry entry of ``model``; the one place a model name is resolved for training.

    Raises:
        ConfigError: ``model`` is not a registered family.
    """
    try:
        return get_family(model)
    except FommError:
        raise ConfigError(f"unknown model '{model}' for training; choose one of: {', '.join(family_names())}"
                          ) from None


def load_training_config(model: str, config: Any) -> Any:
    """``config`` (bundled name, YAML path or loaded config) read the way ``model``'s family reads it."""
    return model_family(model).resolve("training_config")(config)


def build_objective(model: str, config: Any, device: torch.device) -> TrainingObjective:
    """``model``'s training objective (its networks and losses) for ``config``, on ``device``."""
    return model_family(model).resolve("objective")(config, device)


__all__ = ["build_objective", "load_training_config", "model_family"]
