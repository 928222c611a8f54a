"""Named models: those trained by the fomm project and shipped inside the package (``fomm/weights``), and the
authors' released checkpoints, which ``fomm download NAME`` fetches into a cache folder.

A small registry in the spirit of timm: every entry names its architecture (``model``), the bundled config it
was built from, the weights file, what it was trained on, what it is for (``subject``: faces, bodies, shapes or
objects) and the resolution it works at. ``fomm animate`` and the demo use :data:`DEFAULT_MODEL` when no checkpoint
is given.

The shipped files hold only the networks needed for inference (no optimizer state), in the original
first-order-model container, so the authors' ``load_checkpoints`` could read the FOMM ones too. They are 64x64
models (a few MB each) because the package must stay small; the authors' 256x256 checkpoints are 0.3-0.7 GB each,
so they are never shipped and never fetched behind the user's back: a downloadable entry's weights live in
:func:`cache_dir` (``$FOMM_HOME``, default ``~/.cache/fomm``) once ``fomm download NAME`` has fetched and checked
them, and until then asking for the model says that one command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from fomm.errors import InputError

if TYPE_CHECKING:
    from fomm.api import LoadedModel


#: What a model is for; the demo offers the examples of the same subject (``fomm.demo.examples``).
SUBJECTS = ("faces", "bodies", "shapes", "objects")

#: The GitHub release that serves the authors' checkpoints under their original file names (``vox-cpk.pth.tar``,
#: ``fashion.pth.tar``, ...). ``$FOMM_DOWNLOAD_BASE`` replaces it (a mirror, or a test server on 127.0.0.1).
RELEASE_BASE = "https://github.com/graphemecluster/first-order-model-demo/releases/download/checkpoints"
DOWNLOAD_BASE_ENV = "FOMM_DOWNLOAD_BASE"
HOME_ENV = "FOMM_HOME"


def cache_dir() -> Path:
    """Where downloaded weights live: ``$FOMM_HOME/checkpoints`` (default ``~/.cache/fomm/checkpoints``)."""
    home = os.environ.get(HOME_ENV)
    root = Path(home).expanduser() if home else Path.home() / ".cache" / "fomm"
    return root / "checkpoints"


@dataclass(frozen=True)
class PretrainedModel:
    """One named model. ``path`` is where its weights live: inside the installed package for a shipped model,
    in :func:`cache_dir` for a downloadable one (``downloadable``: it has a remote file name)."""

    name: str
    model: str  # "fomm" | "monkeynet" | "x2face"
    config: str  # bundled config name (fomm/configs) or, for baselines, a path relative to fomm/configs
    filename: str
    dataset: str
    description: str
    example_source: str = "source.png"  # files in fomm/assets/examples used by `fomm animate --example`
    example_driving: str = "driving.mp4"
    subject: str = "bodies"  # one of SUBJECTS
    resolution: int = 64  # the square size the model works at
    remote: str | None = None  # file name under RELEASE_BASE (downloadable entries only)
    sha256: str | None = None  # checked after a download when known

    def __post_init__(self) -> None:
        if self.subject not in SUBJECTS:
            raise ValueError(f"{self.name}: subject must be one of {SUBJECTS}, not {self.subject!r}")
        if not 16 <= self.resolution <= 4096:
            raise ValueError(f"{self.name}: resolution {self.resolution} outside 16..4096")

    @property
    def downloadable(self) -> bool:
        return self.remote is not None

    @property
    def path(self) -> Path:
        if self.downloadable:
            return cache_dir() / self.filename
        return Path(str(resources.files("fomm.weights").joinpath(self.filename)))

    def url(self, base: str | None = None) -> str:
        """The download URL: ``base`` (else ``$FOMM_DOWNLOAD_BASE``, else :data:`RELEASE_BASE`) + the remote name."""
        if self.remote is None:
            raise ValueError(f"{self.name} is shipped with fomm, not downloaded")
        base = base or os.environ.get(DOWNLOAD_BASE_ENV) or RELEASE_BASE
        return f"{base.rstrip('/')}/{self.remote}"

    @property
    def download_command(self) -> str:
        return f"fomm download {self.name}"

    @property
    def summary(self) -> str:
        """One line for pickers and listings: what it is for, its resolution, and what it is."""
        return f"{self.subject}, {self.resolution}x{self.resolution}: {self.description}"

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
                        "shapes-source.png", "shapes-driving.mp4", subject="shapes"),
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


def _released(name: str, dataset: str, subject: str, what: str, remote: str,
              example_source: str = "source.png", example_driving: str = "driving.mp4") -> PretrainedModel:
    return PretrainedModel(name, "fomm", name, remote, dataset, f"FOMM (authors' release), {what}", example_source,
                           example_driving, subject=subject, resolution=256, remote=remote)


# The authors' eight released FOMM checkpoints (first-order-model README), as the release above names them:
# `<model>-cpk.pth.tar`, except `fashion.pth.tar`. The file names come from the download code of
# graphemecluster/first-order-model-demo's notebook, which fetches all eight from that release; no sha256 is
# published for them, so none is checked; the structure check (every tensor of the bundled config, shape for shape)
# is what accepts a download.
for _entry in (
    _released("vox-256", "VoxCeleb", "faces", "talking heads", "vox-cpk.pth.tar"),
    _released("vox-adv-256", "VoxCeleb", "faces", "talking heads with the GAN loss", "vox-adv-cpk.pth.tar"),
    _released("taichi-256", "TaiChiHD", "bodies", "tai-chi full bodies", "taichi-cpk.pth.tar",
              "body-source.png", "body-driving.mp4"),
    _released("taichi-adv-256", "TaiChiHD", "bodies", "tai-chi full bodies with the GAN loss",
              "taichi-adv-cpk.pth.tar", "body-source.png", "body-driving.mp4"),
    _released("nemo-256", "UvA-NEMO", "faces", "smiling faces", "nemo-cpk.pth.tar"),
    _released("mgif-256", "MGif", "shapes", "cartoon animals", "mgif-cpk.pth.tar",
              "shapes-source.png", "shapes-driving.mp4"),
    _released("fashion-256", "Fashion", "bodies", "fashion models", "fashion.pth.tar",
              "body-source.png", "body-driving.mp4"),
    _released("bair-256", "BAIR robot pushing", "objects", "a robot arm", "bair-cpk.pth.tar"),
):
    REGISTRY[_entry.name] = _entry

#: Short names accepted wherever a model name is (``fomm download vox`` = ``fomm download vox-256``).
ALIASES = {n.removesuffix("-256"): n for n, m in REGISTRY.items() if m.downloadable}
DEFAULT_MODEL = "actions-64"


def register(entry: PretrainedModel) -> None:
    """Add (or replace) a registry entry; used for the baselines' shipped models."""
    REGISTRY[entry.name] = entry


def list_pretrained(available_only: bool = True) -> list[PretrainedModel]:
    """Registry entries, in registration order (only those whose weights file is installed, by default)."""
    return [m for m in REGISTRY.values() if m.available or not available_only]


def find_pretrained(name: str) -> PretrainedModel:
    """The entry called ``name`` (or one of its :data:`ALIASES`), installed or not; :class:`InputError` naming the
    choices when unknown."""
    entry = REGISTRY.get(ALIASES.get(name, name))
    if entry is None:
        raise InputError(f"unknown model '{name}'; choose one of: {', '.join(REGISTRY)}")
    return entry


def get_pretrained(name: str) -> PretrainedModel:
    """The entry called ``name`` with its weights present; :class:`~fomm.errors.InputError` naming the choices
    when unknown, and the command that fetches it when it is a downloadable model not in the cache yet."""
    entry = find_pretrained(name)
    if not entry.available:
        if entry.downloadable:
            raise InputError(f"model '{entry.name}' is not downloaded yet ({entry.path} is missing): run "
                             f"`{entry.download_command}` once, or pass --config "
                             f"{entry.config} --checkpoint PATH for a copy you already have")
        raise InputError(f"shipped model '{entry.name}' is not installed ({entry.path} is missing); reinstall fomm or "
                         f"pass --config and --checkpoint")
    return entry


def load_pretrained(name: str = DEFAULT_MODEL, device: str = "cpu") -> LoadedModel:
    """Load a shipped model by name (see :data:`REGISTRY`)."""
    from fomm.api import load_model

    entry = get_pretrained(name)
    loaded = load_model(entry.config, entry.path, device=device, model=entry.model)
    loaded.meta["pretrained"] = entry.name
    return loaded


__all__ = ["ALIASES", "DEFAULT_MODEL", "DOWNLOAD_BASE_ENV", "HOME_ENV", "RELEASE_BASE", "REGISTRY", "SUBJECTS",
           "PretrainedModel", "cache_dir", "find_pretrained", "get_pretrained", "list_pretrained", "load_pretrained",
           "register"]
