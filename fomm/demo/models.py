"""Which models the demo offers, and loading them lazily (once each) when a job first needs them.

Three sources, in this order in the model picker:

* the shipped models whose weights are installed (:func:`fomm.pretrained.list_pretrained`);
* models the user configured: ``fomm demo --config NAME --checkpoint PATH`` and/or a YAML file
  (``fomm demo --models models.yaml``) holding a list of ``{name, config, checkpoint, model}`` entries;
* models injected by the caller of :func:`fomm.demo.build_app` (tests pass random-weight 64x64 models).

A model that fails to load (missing file, wrong config) is reported as a :class:`~fomm.errors.FommError` when it is
picked, not when the app starts, so one bad entry does not take the whole demo down.

Every entry carries what it is for (``subject``: faces, bodies, shapes, objects) and its resolution when known:
the page shows them, the gallery offers the examples of that subject, and the demo starts on a face model when
one is installed (:func:`default_choice`). Every family is offered: the animator gives each frame's keypoints
(:class:`fomm.animate.FrameOutputs`), so the preview needs no detector of its own, and a family without keypoints
(X2Face) simply gets no overlay.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fomm.api import LoadedModel, load_model
from fomm.demo.webcam import on_device
from fomm.errors import ConfigError, FommError

Loader = Callable[[], LoadedModel]


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the model picker: a label shown to the user and a function that loads the model."""

    label: str
    loader: Loader
    description: str = ""
    subject: str | None = None  # faces | bodies | shapes | objects; None: unknown (all examples are offered)
    resolution: int | None = None

    @property
    def summary(self) -> str:
        """What the page shows under the picker."""
        what = [self.subject or "any subject"]
        if self.resolution:
            what.append(f"{self.resolution}x{self.resolution}")
        return f"**{self.label}**: for {', '.join(what)}" + (f". {self.description}" if self.description else "")


def shipped_choices(device: str = "cpu") -> list[ModelChoice]:
    """The installed named models: those shipped with fomm and those `fomm download` put in the cache."""
    from fomm.pretrained import list_pretrained, load_pretrained

    return [ModelChoice(m.name, (lambda name=m.name: load_pretrained(name, device=device)), m.description,
                        m.subject, m.resolution)
            for m in list_pretrained()]


def default_choice(choices: Iterable[ModelChoice]) -> ModelChoice | None:
    """The model the page starts on: the first face model (faces are what people try first), else the first."""
    choices = list(choices)
    return next((c for c in choices if c.subject == "faces"), choices[0] if choices else None)


def _config_facts(config: str) -> tuple[str | None, int | None]:
    """(subject, resolution) of a bundled config name the registry knows (vox-256 -> faces, 256)."""
    from fomm.pretrained import REGISTRY

    entry = next((m for m in REGISTRY.values() if m.config == str(config)), None)
    return (entry.subject, entry.resolution) if entry else (None, None)


def checkpoint_choice(config: str, checkpoint: str | os.PathLike | None, *, name: str | None = None,
                      model: str = "fomm", device: str = "cpu") -> ModelChoice:
    """A picker entry for ``config`` + ``checkpoint`` (``checkpoint=None``: random weights, for smoke tests)."""
    if checkpoint is None:
        label = name or f"{config} (random weights)"
        desc = "untrained: shows the pipeline working, not a meaningful animation"
    else:
        label = name or f"{Path(str(config)).stem}: {Path(checkpoint).name}"
        desc = f"{config} + {checkpoint}"
    subject, resolution = _config_facts(config) if model == "fomm" else (None, None)
    return ModelChoice(label, lambda: load_model(config, checkpoint, device=device, model=model), desc, subject,
                       resolution)


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
        self._moved: dict[tuple[str, str], LoadedModel] = {}
        self._lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        return list(self._choices)

    @property
    def choices(self) -> list[ModelChoice]:
        return list(self._choices.values())

    def choice(self, label: str | None) -> ModelChoice | None:
        return self._choices.get(label) if label is not None else None

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
                self._loaded[label] = model
            return self._loaded[label]

    def get_on(self, label: str | None, device: str) -> LoadedModel:
        """The model called ``label`` on ``device``: the loaded one when it is there already, else a copy moved
        there once and kept (the webcam tab runs on the fastest device while jobs use ``--device``; copying
        vox-256 per frame took 692 ms)."""
        model = self.get(label)
        if not isinstance(model, LoadedModel) or model.device.type == torch.device(device).type:
            return model  # already there, or a backend model (ONNX) that chose its device when it was opened
        key = (str(label), str(device))
        with self._lock:
            if key not in self._moved:
                self._moved[key] = on_device(model, device)
            return self._moved[key]


def as_choices(models: Iterable[ModelChoice] | Mapping[str, Any] | None) -> list[ModelChoice]:
    """Normalise what callers pass to ``build_app(models=...)``: ModelChoice objects, or a mapping of label ->
    LoadedModel / zero-argument loader."""
    if models is None:
        return []
    if isinstance(models, Mapping):
        out = []
        for label, value in models.items():
            if isinstance(value, ModelChoice):
                out.append(value)
            elif isinstance(value, LoadedModel):
                out.append(ModelChoice(str(label), (lambda v=value: v)))
            elif callable(value):
                out.append(ModelChoice(str(label), value))
            else:
                raise TypeError(f"model '{label}': expected a LoadedModel or a loader function, got {type(value)}")
        return out
    return list(models)
