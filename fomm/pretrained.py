"""Models trained by the fomm project and shipped inside the package (``fomm/weights``).

A small registry in the spirit of timm: every entry names its architecture (``model``), the bundled config it
was built from, the weights file, and what it was trained on. ``fomm animate`` and the demo use
:data:`DEFAULT_MODEL` when no checkpoint is given.

The shipped files hold only the networks needed for inference (no optimizer state), in the original
first-order-model container, so the authors' ``load_checkpoints`` could read the FOMM ones too.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from fomm.errors import InputError

if TYPE_CHECKING:
    from fomm.api import LoadedModel


@dataclass(frozen=True)
class PretrainedModel:
    """One shipped model. ``path`` is where its weights live inside the installed package."""

    name: str
    model: str  # "fomm" | "monkeynet" | "x2face"
    config: str  # bundled config name (fomm/configs) or, for baselines, a path relative to fomm/configs
    filename: str
    dataset: str
    description: str
    example_source: str = "source.png"  # files in fomm/assets/examples used by `fomm animate --example`
    example_driving: str = "driving.mp4"

    @property
    def path(self) -> Path:
        return Path(str(resources.files("fomm.weights").joinpath(self.filename)))

    @property
    def available(self) -> bool:
        return self.path.is_file()


REGISTRY: dict[str, PretrainedModel] = {
    m.name: m
    for m in (
        PretrainedModel("actions-64", "fomm", "actions-64", "fomm-actions-64.pth.tar", "actions",
                        "FOMM, 64x64 full bodies (Weizmann actions, leak-free split)",
                        "body-source.png", "body-driving.mp4"),
        PretrainedModel("shapes-64", "fomm", "shapes-64", "fomm-shapes-64.pth.tar", "shapes",
                        "FOMM, 64x64 moving shapes (Monkey-Net/MoCoGAN shapes)",
                        "shapes-source.png", "shapes-driving.mp4"),
        # The two baselines, trained on the same split with the same single-core CPU time as actions-64's first,
        # 40-epoch schedule (the shipped actions-64 trained longer), for the README's comparison table (and
        # `fomm animate --pretrained NAME`).
        PretrainedModel("monkeynet-actions-64", "monkeynet", "monkeynet/actions-64", "monkeynet-actions-64.pth.tar",
                        "actions", "Monkey-Net baseline, 64x64 full bodies (Weizmann actions, leak-free split)",
                        "body-source.png", "body-driving.mp4"),
        PretrainedModel("x2face-actions-64", "x2face", "x2face/actions-64", "x2face-actions-64.pth.tar", "actions",
                        "X2Face baseline, 64x64 full bodies (Weizmann actions, leak-free split)",
                        "body-source.png", "body-driving.mp4"),
    )
}
DEFAULT_MODEL = "actions-64"


def register(entry: PretrainedModel) -> None:
    """Add (or replace) a registry entry; used for the baselines' shipped models."""
    REGISTRY[entry.name] = entry


def list_pretrained(available_only: bool = True) -> list[PretrainedModel]:
    """Registry entries, in registration order (only those whose weights file is installed, by default)."""
    return [m for m in REGISTRY.values() if m.available or not available_only]


def get_pretrained(name: str) -> PretrainedModel:
    """The entry called ``name``; :class:`~fomm.errors.InputError` naming the choices when unknown or missing."""
    entry = REGISTRY.get(name)
    if entry is None:
        raise InputError(f"unknown shipped model '{name}'; choose one of: {', '.join(REGISTRY)}")
    if not entry.available:
        raise InputError(f"shipped model '{name}' is not installed ({entry.path} is missing); reinstall fomm or "
                         f"pass --config and --checkpoint")
    return entry


def load_pretrained(name: str = DEFAULT_MODEL, device: str = "cpu") -> LoadedModel:
    """Load a shipped model by name (see :data:`REGISTRY`)."""
    from fomm.api import load_model

    entry = get_pretrained(name)
    loaded = load_model(entry.config, entry.path, device=device, model=entry.model)
    loaded.meta["pretrained"] = entry.name
    return loaded


__all__ = ["DEFAULT_MODEL", "REGISTRY", "PretrainedModel", "get_pretrained", "list_pretrained", "load_pretrained",
           "register"]
