"""Typed FOMM configuration that reads the original first-order-model YAML files unchanged.

A config is addressed by the name of a bundled file (``"vox-256"``), by a path to a YAML file, or given as a
:class:`FommConfig`. Unknown keys are kept in ``extra`` dicts so that a config round-trips and newer fields of
user configs never make loading fail.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

import yaml

from fomm.errors import ConfigError

ConfigLike = Union[str, Path, "FommConfig", dict]


def _split_known(cls: type, data: dict[str, Any] | None, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{where}' must be a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls) if f.name != "extra"}
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    return known, extra


# Scalar fields are checked here, where the YAML is read: a wrong type ("estimate_occlusion_map: maybe") would
# otherwise be truthy and silently change the model, or fail deep inside torch with a traceback.
_SCALAR_CHECKS = {
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "float": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
}


def _build(cls: type, data: dict[str, Any] | None, where: str):
    known, extra = _split_known(cls, data, where)
    for f in dataclasses.fields(cls):
        check = _SCALAR_CHECKS.get(str(f.type))
        if check is not None and f.name in known and not check[0](known[f.name]):
            raise ConfigError(f"config section '{where}': {f.name} must be {check[1]}, got {known[f.name]!r}")
    try:
        obj = cls(**known)
    except TypeError as exc:  # a required key is missing
        raise ConfigError(f"config section '{where}' is incomplete: {exc}") from None
    if hasattr(obj, "extra"):
        obj.extra = extra
    return obj


@dataclass
class CommonParams:
    num_kp: int = 10
    num_channels: int = 3
    estimate_jacobian: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class KPDetectorParams:
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    temperature: float = 0.1
    scale_factor: float = 0.25
    single_jacobian_map: bool = False
    pad: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DenseMotionParams:
    block_expansion: int = 64
    max_features: int = 1024
    num_blocks: int = 5
    scale_factor: float = 0.25
    kp_variance: float = 0.01
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class GeneratorParams:
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 6
    estimate_occlusion_map: bool = True
    # Ours: resize a coarser deformation to the feature size with align_corners=True (see
    # fomm.models.fomm.generator.deform_input). False is the authors' resize, which their checkpoints expect.
    align_deformation: bool = False
    # Ours: blend the output with the source warped at full resolution through a learned per-pixel mask (see
    # fomm.models.fomm.generator.OcclusionAwareGenerator). False is the authors' generator.
    blend_deformed: bool = False
    dense_motion_params: DenseMotionParams | None = field(default_factory=DenseMotionParams)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class DiscriminatorParams:
    scales: list[float] = field(default_factory=lambda: [1])
    block_expansion: int = 32
    max_features: int = 512
    num_blocks: int = 4
    sn: bool = False
    use_kp: bool = False
    kp_variance: float = 0.01
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelParams:
    common_params: CommonParams = field(default_factory=CommonParams)
    kp_detector_params: KPDetectorParams = field(default_factory=KPDetectorParams)
    generator_params: GeneratorParams = field(default_factory=GeneratorParams)
    discriminator_params: DiscriminatorParams = field(default_factory=DiscriminatorParams)


@dataclass
class NormalizationParams:
    adapt_movement_scale: bool = False
    use_relative_movement: bool = True
    use_relative_jacobian: bool = True


@dataclass
class FommConfig:
    """A whole FOMM config file. ``dataset_params``/``train_params``/... stay plain dicts until their consumers
    (datasets, trainer) parse them, so this class reads every original file, including sections it does not use."""

    model_params: ModelParams = field(default_factory=ModelParams)
    dataset_params: dict[str, Any] = field(default_factory=dict)
    train_params: dict[str, Any] = field(default_factory=dict)
    reconstruction_params: dict[str, Any] = field(default_factory=dict)
    animate_params: dict[str, Any] = field(default_factory=dict)
    visualizer_params: dict[str, Any] = field(default_factory=dict)
    name: str = "custom"
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # -- derived values -------------------------------------------------------------------------------------------
    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` the model was trained at (``dataset_params.frame_shape``, default 256x256x3)."""
        shape = self.dataset_params.get("frame_shape", [256, 256, 3])
        return tuple(int(v) for v in shape)  # type: ignore[return-value]

    @property
    def image_size(self) -> tuple[int, int]:
        h, w, _ = self.frame_shape
        return h, w

    @property
    def normalization(self) -> NormalizationParams:
        raw = (self.animate_params or {}).get("normalization_params", {}) or {}
        known, _ = _split_known(NormalizationParams, raw, "animate_params.normalization_params")
        return NormalizationParams(**known)

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str = "custom", source: str | None = None) -> FommConfig:
        if not isinstance(data, dict) or "model_params" not in data:
            raise ConfigError(
                f"{source or name}: not a FOMM config (no 'model_params' section); pass a bundled name "
                f"({', '.join(bundled_configs())}) or a first-order-model YAML file")
        mp = data["model_params"] or {}
        if not isinstance(mp, dict):
            raise ConfigError(f"{source or name}: 'model_params' must be a mapping")
        gen_raw = dict(mp.get("generator_params") or {})
        dm_raw = gen_raw.pop("dense_motion_params", None)
        gen = _build(GeneratorParams, gen_raw, "generator_params")
        gen.dense_motion_params = None if dm_raw is None else _build(DenseMotionParams, dm_raw, "dense_motion_params")
        if gen.blend_deformed and gen.dense_motion_params is None:
            raise ConfigError(f"{source or name}: generator_params.blend_deformed needs dense_motion_params (it blends "
                              "with the source warped by the dense motion); add them or set blend_deformed: false")
        model = ModelParams(
            common_params=_build(CommonParams, mp.get("common_params"), "common_params"),
            kp_detector_params=_build(KPDetectorParams, mp.get("kp_detector_params"), "kp_detector_params"),
            generator_params=gen,
            discriminator_params=_build(DiscriminatorParams, mp.get("discriminator_params"), "discriminator_params"),
        )
        sections = {}
        for key in ("dataset_params", "train_params", "reconstruction_params", "animate_params", "visualizer_params"):
            value = data.get(key) or {}
            if not isinstance(value, dict):
                raise ConfigError(f"{source or name}: section '{key}' must be a mapping")
            sections[key] = value
        extra = {k: v for k, v in data.items() if k not in sections and k != "model_params"}
        cfg = cls(model_params=model, name=name, source=source, extra=extra, **sections)
        h, w, c = cfg.frame_shape
        if c != model.common_params.num_channels:
            raise ConfigError(f"{source or name}: frame_shape has {c} channels but num_channels is "
                              f"{model.common_params.num_channels}")
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> FommConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        data = read_yaml(path, "config")
        return cls.from_dict(data, name=path.stem, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The config in the original YAML schema (extras merged back)."""

        def flat(obj: Any) -> Any:
            if dataclasses.is_dataclass(obj):
                out = {}
                for f in dataclasses.fields(obj):
                    if f.name == "extra":
                        continue
                    out[f.name] = flat(getattr(obj, f.name))
                out.update(getattr(obj, "extra", {}) or {})
                return out
            return obj

        data: dict[str, Any] = {
            "dataset_params": self.dataset_params,
            "model_params": flat(self.model_params),
            "train_params": self.train_params,
            "reconstruction_params": self.reconstruction_params,
            "animate_params": self.animate_params,
            "visualizer_params": self.visualizer_params,
        }
        data.update(self.extra)
        return data


def read_yaml(path: str | Path, what: str) -> Any:
    """Parse a YAML file; every way it can fail (unreadable, not text, not YAML) is one :class:`ConfigError`
    line naming ``what`` the file was meant to be."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not valid YAML (not a text file); pass the {what} YAML file") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]}); fix the {what} file") from None


def bundled_configs() -> list[str]:
    """Names of the configs shipped inside the package (``fomm/configs/*.yaml``)."""
    root = resources.files("fomm.configs")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def bundled_config_path(name: str) -> Path:
    root = resources.files("fomm.configs")
    return Path(str(root.joinpath(f"{name}.yaml")))


def load_config(config: ConfigLike) -> FommConfig:
    """Resolve a config given as a bundled name, a YAML path, a dict or a :class:`FommConfig`."""
    if isinstance(config, FommConfig):
        return config
    if isinstance(config, dict):
        return FommConfig.from_dict(config)
    text = str(config)
    names = bundled_configs()
    if text in names:
        return FommConfig.from_yaml(bundled_config_path(text))
    if text.endswith(".yaml") and Path(text).name[:-5] in names and not Path(text).exists():
        return FommConfig.from_yaml(bundled_config_path(Path(text).name[:-5]))
    path = Path(text)
    if path.is_file():
        return FommConfig.from_yaml(path)
    raise ConfigError(f"unknown config '{text}': not a file and not a bundled config ({', '.join(names)})")


def bundled_model_configs(model: str) -> list[str]:
    """Names of the bundled configs of a baseline (``fomm/configs/<model>/*.yaml``; ``model`` = monkeynet|x2face).

    FOMM's own configs sit directly in ``fomm/configs`` (see :func:`bundled_configs`); the baselines' live in a
    folder each so a FOMM config list never offers a Monkey-Net file."""
    root = resources.files("fomm.configs").joinpath(model)
    if not root.is_dir():
        return []
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve_model_config(model: str, config: str | Path) -> Path:
    """Path of a baseline config given as a YAML path or a bundled name (``"actions-64"``, or with its folder as
    the README writes it, ``"monkeynet/actions-64"``).

    Raises :class:`ConfigError` naming the bundled choices when it is neither."""
    path = Path(config)
    if path.is_file():
        return path
    names = bundled_model_configs(model)
    name = str(config).removeprefix(f"{model}/")
    name = name[:-5] if name.endswith(".yaml") else name
    if name in names:
        return Path(str(resources.files("fomm.configs").joinpath(model, f"{name}.yaml")))
    raise ConfigError(f"unknown {model} config '{config}': not a file and not a bundled {model} config "
                      f"({', '.join(names) or 'none'})")
