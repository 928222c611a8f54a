"""Which models the demo offers, and loading them lazily (once each) when a job first needs them.

Three sources, in this order in the model picker:

* the shipped models whose weights are installed (:func:`fomm.pretrained.list_pretrained`);
* models the user configured: ``fomm demo --config NAME --checkpoint PATH`` and/or a YAML file
  (``fomm demo --models models.yaml``) holding a list of ``{name, config, checkpoint, model}`` entries;
* models injected by the caller of :func:`fomm.demo.build_app` (tests pass random-weight 64x64 models).

A model that fails to load (missing file, wrong config) is reported as a :class:`~fomm.errors.FommError` when it is
picked, not when the app starts, so one bad entry does not take the whole demo down.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fomm.api import LoadedModel, load_model
from fomm.errors import ConfigError, FommError
from fomm.families import FAMILIES, get_family

Loader = Callable[[], LoadedModel]


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model picker: a label shown to the user and a function that loads the model."""

    label: str
    loader: Loader
    description: str = ""


def shipped_choices(device: str = "cpu") -> list[ModelChoice]:
    """The installed shipped models (empty until their weights are part of the package)."""
    from fomm.pretrained import list_pretrained, load_pretrained

    return [ModelChoice(m.name, (lambda name=m.name: load_pretrained(name, device=device)), m.description)
            for m in list_pretrained()]


def checkpoint_choice(config: str, checkpoint: str | os.PathLike | None, *, name: str | None = None,
                      model: str = "fomm", device: str = "cpu") -> ModelChoice:
    """A picker entry for ``config`` + ``checkpoint`` (``checkpoint=None``: random weights, for smoke tests)."""
    if checkpoint is None:
        label = name or f"{config} (random weights)"
        desc = "untrained: shows the pipeline working, not a meaningful animation"
    else:
        label = name or f"{Path(str(config)).stem}: {Path(checkpoint).name}"
        desc = f"{config} + {checkpoint}"
    return ModelChoice(label, lambda: load_model(config, checkpoint, device=device, model=model), desc)


def choices_from_file(path: str | os.PathLike, device: str = "cpu") -> list[ModelChoice]:
    """Entries of a models YAML file: a list of mappings with ``config`` (required), ``checkpoint``, ``name`` and
    ``model`` (``fomm`` by default). Relative checkpoint/config paths are taken relative to the file."""
    from fomm.config import read_yaml

    p = Path(path)
    data = read_yaml(p, "models")
    if isinstance(data, Mapping) and "models" in data:
        data = data["models"]
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{p}: expected a list of models, each with 'config' and 'checkpoint' "
                          f"(e.g. '- {{name: mine, config: vox-256, checkpoint: vox-cpk.pth.tar}}')")
    out = []
    for i, entry in enumerate(data):
        if not isinstance(entry, Mapping) or "config" not in entry:
            raise ConfigError(f"{p}: entry {i + 1} has no 'config' (each entry needs config and checkpoint)")
        unknown = set(entry) - {"name", "config", "checkpoint", "model"}
        if unknown:
            raise ConfigError(f"{p}: entry {i + 1} has unknown keys {sorted(unknown)}; "
                              f"use name, config, checkpoint, model")
        config = str(entry["config"])
        if config.endswith((".yaml", ".yml")) and not Path(config).is_absolute():
            config = str(p.parent / config)
        ckpt = entry.get("checkpoint")
        if ckpt is not None and not Path(str(ckpt)).is_absolute():
            ckpt = p.parent / str(ckpt)
        out.append(checkpoint_choice(config, ckpt, name=entry.get("name"), model=str(entry.get("model", "fomm")),
                                     device=device))
    return out


class ModelPool:
    """Picker labels -> lazily loaded models, each loaded at most once (thread-safe: jobs run concurrently)."""

    def __init__(self, choices: Iterable[ModelChoice]) -> None:
        self._choices: dict[str, ModelChoice] = {}
        for c in choices:
            if c.label in self._choices:
                raise ConfigError(f"two demo models are called '{c.label}'; give them different names")
            self._choices[c.label] = c
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        return list(self._choices)

    def description(self, label: str) -> str:
        c = self._choices.get(label)
        return c.description if c else ""

    def get(self, label: str | None) -> LoadedModel:
        """The model called ``label``.

        Raises:
            FommError: no such model, or it failed to load (the message says why; nothing is cached, so fixing
                the file and picking it again works).
        """
        if not self._choices:
            raise FommError("no model is configured: start the demo with --config NAME --checkpoint PATH, "
                            "--models FILE or --random-weights")
        if label not in self._choices:
            raise FommError(f"unknown model '{label}'; choose one of: {', '.join(self._choices)}")
        with self._lock:
            if label not in self._loaded:
                try:
                    model = self._choices[label].loader()
                except FommError as err:
                    raise FommError(f"model '{label}' failed to load: {err}") from None
                except Exception as err:  # a broken third-party file must not take the server down
                    raise FommError(f"model '{label}' failed to load ({type(err).__name__}: {err})") from None
                family = get_family(getattr(model, "model", "fomm"))
                if not family.keypoints:
                    keypoint_families = ", ".join(f.name for f in FAMILIES.values() if f.keypoints)
                    raise FommError(f"model '{label}' is a {family.name} model without keypoints; the demo needs a "
                                    f"keypoint model ({keypoint_families})")
                self._loaded[label] = model
            return self._loaded[label]


def as_choices(models: Iterable[ModelChoice] | Mapping[str, Any] | None) -> list[ModelChoice]:
    """Normalise what callers pass to ``build_app(models=...)``: ModelChoice objects, or a mapping of label ->
    LoadedModel / zero-argument loader."""
    if models is None:
        return []
    if isinstance(models, Mapping):
        out = []
        for label, value in models.items():
            if isinstance(value, LoadedModel):
                out.append(ModelChoice(str(label), (lambda v=value: v)))
            elif callable(value):
                out.append(ModelChoice(str(label), value))
            else:
                raise TypeError(f"model '{label}': expected a LoadedModel or a loader function, got {type(value)}")
        return out
    return list(models)
