"""X2Face YAML configs: the architecture (:class:`X2FaceConfig`) plus the dataset and training sections.

The original X2Face release has no config files (its scripts take command-line flags); this schema is fomm's::

    model_params: {ngf: 16, inner_nc: 128}          # X2FaceConfig fields
    dataset_params: {root_dir: ..., frame_shape: [64, 64, 3], augmentation_params: {...}}
    train_params: {num_epochs: ..., lr: ..., batch_size: ..., loss_weights: {photometric: 1}, ...}

Frames of any ``frame_shape`` are used: X2Face itself always runs at 256x256, and
:meth:`X2Face.animate_frame` (and the training objective) resize to and from that size.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fomm.config import check_dataset_params, check_fields, check_run_sections, check_train_params, read_yaml
from fomm.errors import ConfigError
from fomm.models.x2face.model import X2FaceConfig


@dataclass
class X2FaceRunConfig:
    """A whole X2Face YAML.

    Attributes:
        model: the architecture.
        raw: the YAML as loaded; ``dataset_params``/``train_params`` are live views into it.
        name: file stem (or ``"custom"``).
    """

    model: X2FaceConfig = field(default_factory=X2FaceConfig)
    raw: dict[str, Any] = field(default_factory=dict)
    name: str = "custom"

    def _section(self, key: str) -> dict[str, Any]:
        value = self.raw.get(key)
        if not isinstance(value, dict):
            value = self.raw[key] = {}
        return value

    @property
    def train_params(self) -> dict[str, Any]:
        return self._section("train_params")

    @property
    def dataset_params(self) -> dict[str, Any]:
        return self._section("dataset_params")

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the dataset frames (``dataset_params.frame_shape``); 256x256 when absent."""
        shape = self.dataset_params.get("frame_shape", self.dataset_params.get("image_shape"))
        if shape is None:
            return (self.model.image_size, self.model.image_size)
        return (int(shape[0]), int(shape[1]))

    def to_dict(self) -> dict[str, Any]:
        out = copy.deepcopy(self.raw)
        out["model_params"] = {k: v for k, v in dataclasses.asdict(self.model).items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str = "custom") -> X2FaceRunConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{name}: an X2Face config must be a mapping")
        mp = data.get("model_params") or {}
        if not isinstance(mp, dict):
            raise ConfigError(f"{name}: model_params must be a mapping")
        allowed = {f.name for f in dataclasses.fields(X2FaceConfig)}
        unknown = sorted(set(mp) - allowed)
        if unknown:
            raise ConfigError(f"{name}: model_params has unknown key(s) {unknown}; allowed: {sorted(allowed)} "
                              f"(is this an X2Face config?)")
        check_fields(X2FaceConfig, mp, "model_params", name)
        try:
            model = X2FaceConfig(**mp)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name}: model_params: {exc}") from None
        for key in ("dataset_params", "train_params"):
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise ConfigError(f"{name}: {key} must be a mapping")
        check_dataset_params(data.get("dataset_params"), name)
        check_train_params(data.get("train_params"), name)
        check_run_sections(data, name)
        return cls(model=model, raw=copy.deepcopy(data), name=name)

    @classmethod
    def from_yaml(cls, path: str | Path) -> X2FaceRunConfig:
        path = Path(path)
        data = read_yaml(path, "X2Face config")
        return cls.from_dict(data, name=path.stem)

    @classmethod
    def load(cls, config: X2FaceRunConfig | X2FaceConfig | dict | str | Path | None) -> X2FaceRunConfig:
        """From an instance, an :class:`X2FaceConfig`, a dict, a YAML path, a bundled name
        (``fomm/configs/x2face/<name>.yaml``), or ``None``/``"x2face"`` (the released architecture)."""
        if isinstance(config, X2FaceRunConfig):
            return config
        if isinstance(config, X2FaceConfig):
            return cls(model=config)
        if config is None or str(config) == "x2face":
            return cls()
        if isinstance(config, dict):
            return cls.from_dict(config)
        from fomm.config import resolve_model_config

        return cls.from_yaml(resolve_model_config("x2face", config))
