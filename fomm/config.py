"""Typed FOMM configuration that reads the original first-order-model YAML files unchanged.

A config is addressed by the name of a bundled file (``"vox-256"``), by a path to a YAML file, or given as a
:class:`FommConfig`. Unknown keys are kept in ``extra`` dicts so that a config round-trips and newer fields of
user configs never make loading fail.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple, Union

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


class Bounds(NamedTuple):
    """The accepted range of a numeric config value (``None``: unbounded on that side)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # ``> low`` rather than ``>= low``

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe(self, kind: str) -> str:
        noun = "an integer" if kind == "int" else "a number"

        def num(v: float) -> str:
            return str(v) if isinstance(v, int) else f"{v:g}"

        if self.low is not None and self.high is not None and not self.low_open:
            return f"{noun} from {num(self.low)} to {num(self.high)}"
        parts = [f"{'>' if self.low_open else '>='} {num(self.low)}"] if self.low is not None else []
        if self.high is not None:
            parts.append(f"<= {num(self.high)}")
        return " ".join([noun, " and ".join(parts)]).strip()


POSITIVE = Bounds(0, None, low_open=True)
AT_LEAST_ONE = Bounds(1)
NON_NEGATIVE = Bounds(0)
#: A down-scaling factor (``scale_factor``, the image pyramids' ``scales``). FOMM's anti-alias filter is a Gaussian
#: kernel about 4/scale pixels wide: scale 1e-6 asked torch for a kernel of 4 million by 4 million. 1/64 takes an
#: 8192-pixel frame down to 128 and is far below any published config (0.125).
PYRAMID_SCALE = Bounds(1 / 64, 1)

#: The accepted range of every numeric model parameter, by key. The names mean the same thing in the FOMM,
#: Monkey-Net and X2Face configs. A negative width or depth used to reach torch (a traceback from a conv layer);
#: the upper bounds are far above any published config and stop a typo from allocating a model no machine holds.
PARAM_RANGES: dict[str, Bounds] = {
    "num_kp": Bounds(1, 256),
    "num_channels": Bounds(1, 4),
    "block_expansion": Bounds(1, 1024),
    "max_features": Bounds(1, 16384),
    "num_blocks": Bounds(1, 16),
    "num_down_blocks": Bounds(0, 8),
    "num_bottleneck_blocks": Bounds(0, 64),
    "num_refinement_blocks": Bounds(0, 64),
    "num_group_blocks": Bounds(0, 64),
    "temperature": POSITIVE,
    "scale_factor": PYRAMID_SCALE,
    "kp_variance": POSITIVE,
    "clip_variance": POSITIVE,
    "norm_const": POSITIVE,
    "pad": Bounds(0, 64),
    "ngf": Bounds(1, 1024),
    "inner_nc": Bounds(1, 16384),
    "input_num_channels": Bounds(1, 4),
}


def check_number(value: Any, kind: str, key: str, where: str, bounds: Bounds | None = None,
                 numeric_strings: bool = False) -> Any:
    """``value`` if it is a ``kind`` (``"bool"``, ``"int"``, ``"float"``) within ``bounds``; else a
    :class:`ConfigError` naming ``where``, the key and the accepted values. Returns the value (a float when
    ``numeric_strings`` let a string such as ``"2e-4"`` through: PyYAML reads exponents without a dot as strings,
    and the trainer always converted them, so such configs keep working)."""
    ok = _SCALAR_CHECKS[kind][0](value)
    if not ok and numeric_strings and kind == "float" and isinstance(value, str):
        try:
            value, ok = float(value), True
        except ValueError:
            pass
    if ok and kind == "float" and not math.isfinite(value):
        ok = False  # nan/inf pass every comparison test below, and are never a sensible setting
    accepted = bounds.describe(kind) if bounds is not None else _SCALAR_CHECKS[kind][1]
    if not ok:
        extra = f" (accepted: {accepted})" if bounds is not None else ""
        raise ConfigError(f"{_at(where, key)} must be {_SCALAR_CHECKS[kind][1]}, got {value!r}{extra}")
    if bounds is not None and not bounds.contains(value):
        raise ConfigError(f"{_at(where, key)} must be {accepted}, got {value!r}")
    return value


def _at(where: str, key: str) -> str:
    """``"where: key"``, or the bare key path when there is no ``where`` (a config given as a dict)."""
    return f"{where}: {key}" if where else key


def check_fields(cls: type, values: dict[str, Any], path: str, where: str = "") -> None:
    """Type- and range-check the scalar fields of dataclass ``cls`` present in ``values`` (the YAML mapping at key
    path ``path``, e.g. ``model_params.kp_detector_params``), by the field's annotation (``int``, ``float``,
    ``bool``, optionally ``| None``) and :data:`PARAM_RANGES`; errors name ``where`` (the file) and the full key
    path. Fields of other types (lists, nested sections, ``str | float`` unions) are left to their own checks,
    except that a number given for a numeric union (Monkey-Net's ``kp_variance: 0.01``) is range-checked too."""
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        value = values[f.name]
        kind = str(f.type)
        if kind.endswith(" | None"):
            if value is None:
                continue
            kind = kind[: -len(" | None")]
        bounds = PARAM_RANGES.get(f.name)
        if kind not in _SCALAR_CHECKS:
            if bounds is None or not _SCALAR_CHECKS["float"][0](value):
                continue
            kind = "float"
        check_number(value, kind, f"{path}.{f.name}" if path else f.name, where, bounds)


def check_shape(value: Any, key: str, where: str) -> tuple[int, int, int]:
    """A frame shape ``[H, W, C]``: sides 16-8192 pixels, 1-4 channels. ``frame_shape: "abc"`` used to end in a
    ValueError from ``int()``; ``[0, 0, 3]`` deep inside a conv layer."""
    if not (isinstance(value, (list, tuple)) and len(value) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ConfigError(f"{_at(where, key)} must be [H, W, C] (three integers, e.g. [256, 256, 3]), got {value!r}")
    h, w, c = value
    if not (16 <= h <= 8192 and 16 <= w <= 8192 and 1 <= c <= 4):
        raise ConfigError(f"{_at(where, key)} must be [H, W, C] with H and W from 16 to 8192 and C from 1 to 4, "
                          f"got {list(value)}")
    return (h, w, c)


def _check_number_list(value: Any, key: str, where: str, kind: str, bounds: Bounds) -> None:
    if not isinstance(value, list):
        raise ConfigError(f"{_at(where, key)} must be a list of numbers ({bounds.describe(kind)} each), got {value!r}")
    for i, v in enumerate(value):
        check_number(v, kind, f"{key}[{i}]", where, bounds)


#: ``train_params`` scalars every trainer reads, with their types and ranges (``lr*`` keys: see check_train_params)
TRAIN_SCALARS: dict[str, tuple[str, Bounds | None]] = {
    "num_epochs": ("int", Bounds(1, 100_000)),
    "num_repeats": ("int", Bounds(1, 1_000_000)),
    "batch_size": ("int", Bounds(1, 65_536)),
    "checkpoint_freq": ("int", AT_LEAST_ONE),
    "ssim_weight": ("float", NON_NEGATIVE),
    "detach_kp_generator": ("bool", None),
    "detach_kp_discriminator": ("bool", None),
}
#: ``train_params.transform_params`` (the equivariance losses' random warps)
TRANSFORM_SCALARS: dict[str, tuple[str, Bounds]] = {
    "sigma_affine": ("float", NON_NEGATIVE),
    "sigma_tps": ("float", NON_NEGATIVE),
    "points_tps": ("int", Bounds(1, 64)),
}


def check_train_params(tp: Any, where: str) -> None:
    """Type- and range-check a config's ``train_params`` where the YAML is read (FOMM, Monkey-Net and X2Face share
    these keys), so ``num_epochs: "many"`` or ``checkpoint_freq: 0`` is one line before a run starts rather than a
    ValueError (or a silently wrong run) inside the trainer. Unknown keys are left alone: newer or model-specific
    options must not make an older config fail. Numeric strings (``lr: 2e-4``) are converted in place."""
    if tp is None:
        return
    if not isinstance(tp, dict):
        raise ConfigError(f"{where}: train_params must be a mapping, got {type(tp).__name__}")
    at = "train_params."
    for key, (kind, bounds) in TRAIN_SCALARS.items():
        if key in tp:
            tp[key] = check_number(tp[key], kind, at + key, where, bounds, numeric_strings=True)
    for key in tp:
        if key == "lr" or key.startswith("lr_"):
            # A learning rate above 10 only ever diverges; 0 trains nothing and hides it.
            tp[key] = check_number(tp[key], "float", at + key, where, Bounds(0, 10, low_open=True),
                                   numeric_strings=True)
    if tp.get("epoch_milestones") is not None:
        _check_number_list(tp["epoch_milestones"], at + "epoch_milestones", where, "int", NON_NEGATIVE)
    if tp.get("scales") is not None:
        _check_number_list(tp["scales"], at + "scales", where, "float", PYRAMID_SCALE)
    weights = tp.get("loss_weights")
    if weights is not None:
        if not isinstance(weights, dict):
            raise ConfigError(f"{_at(where, at + 'loss_weights')} must be a mapping of loss name to weight, "
                              f"got {weights!r}")
        for name, w in weights.items():
            _check_loss_weight(w, name, where)
    transform = tp.get("transform_params")
    if transform is not None:
        if not isinstance(transform, dict):
            raise ConfigError(f"{_at(where, at + 'transform_params')} must be a mapping, got {transform!r}")
        for key, (kind, bounds) in TRANSFORM_SCALARS.items():
            if key in transform:
                check_number(transform[key], kind, f"{at}transform_params.{key}", where, bounds)


#: ``loss_weights`` entries whose shape the objectives rely on: a list (they iterate over it, one weight per layer)
#: or one number (they multiply by it). The other shape was a TypeError in the middle of the first step.
LOSS_WEIGHT_LISTS = {
    "perceptual": "one weight per VGG19 layer, relu1_1..relu5_1",
    "feature_matching": "one weight per discriminator block",
}
LOSS_WEIGHT_SCALARS = ("generator_gan", "discriminator_gan", "equivariance_value", "equivariance_jacobian",
                       "photometric", "reconstruction_deformed")


def _check_loss_weight(w: Any, name: str, where: str) -> None:
    """``train_params.loss_weights.<name>``: every weight a number >= 0, in the shape its loss reads. How many
    weights a list needs depends on the model, so the lengths are checked where the objective is built."""
    key = f"train_params.loss_weights.{name}"
    if name in LOSS_WEIGHT_LISTS and not isinstance(w, list):
        raise ConfigError(f"{_at(where, key)} must be a list of numbers >= 0 ({LOSS_WEIGHT_LISTS[name]}), "
                          f"got {w!r}")
    if name in LOSS_WEIGHT_SCALARS and isinstance(w, list):
        raise ConfigError(f"{_at(where, key)} must be one number >= 0, got the list {w!r}")
    if isinstance(w, list):
        _check_number_list(w, key, where, "float", NON_NEGATIVE)
    else:
        check_number(w, "float", key, where, NON_NEGATIVE)


#: Sections of the authors' configs that drive their reconstruction, animation and visualisation scripts
#: (Monkey-Net calls the animation one ``transfer_params``). fomm drives those with flags, but keeps the sections
#: (every training run, checkpoint and ONNX export saves them), so their values are checked like any other: a
#: config fomm accepted must not hand ``num_videos: -1`` to the next tool that reads it. The counts may be null
#: (the authors' Monkey-Net configs say ``num_videos: null``: every test video).
RUN_SECTION_KEYS: dict[str, dict[str, tuple[str, Bounds | None]]] = {
    "reconstruction_params": {"num_videos": ("int", AT_LEAST_ONE), "format": ("extension", None)},
    "animate_params": {"num_pairs": ("int", AT_LEAST_ONE), "format": ("extension", None)},
    "transfer_params": {"num_pairs": ("int", AT_LEAST_ONE), "format": ("extension", None)},
    "visualizer_params": {"kp_size": ("int", Bounds(1, 64)), "draw_border": ("bool", None),
                          "colormap": ("name", None)},
}


def check_run_sections(data: dict[str, Any], where: str) -> None:
    """Type- and range-check the known keys of the :data:`RUN_SECTION_KEYS` sections of a whole config ``data``
    (absent sections and other keys are left alone)."""
    for section, keys in RUN_SECTION_KEYS.items():
        values = data.get(section)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{_at(where, section)} must be a mapping, got {type(values).__name__}")
        for key, (kind, bounds) in keys.items():
            if key not in values:
                continue
            value, path = values[key], f"{section}.{key}"
            if value is None and kind == "int":
                continue
            if kind == "extension":
                if not (isinstance(value, str) and len(value) > 1 and value.startswith(".")
                        and value[1:].isalnum()):
                    raise ConfigError(f"{_at(where, path)} must be a file extension such as .mp4, got {value!r}")
            elif kind == "name":
                if not (isinstance(value, str) and value.strip()):
                    raise ConfigError(f"{_at(where, path)} must be a colormap name such as gist_rainbow, "
                                      f"got {value!r}")
            else:
                check_number(value, kind, path, where, bounds)


#: ``dataset_params.augmentation_params`` numbers (see :mod:`fomm.datasets.augment`). A zoom ratio of 100 asked
#: for a frame 100 times larger on each side; strings and NaN reached ``float()`` / the random draws.
ZOOM_RATIO = Bounds(0, 4, low_open=True)
ROTATION_DEGREES = Bounds(0, 360)


def _check_pair(value: Any, key: str, where: str, kind: str, bounds: Bounds) -> tuple[float, float]:
    """A ``[min, max]`` list of two ``kind`` numbers within ``bounds``, min <= max."""
    what = "integers" if kind == "int" else "numbers"
    if not (isinstance(value, list) and len(value) == 2):
        raise ConfigError(f"{_at(where, key)} must be [min, max] (two {what}, {bounds.describe(kind)} each), "
                          f"got {value!r}")
    lo = check_number(value[0], kind, f"{key}[0]", where, bounds)
    hi = check_number(value[1], kind, f"{key}[1]", where, bounds)
    if lo > hi:
        raise ConfigError(f"{_at(where, key)} must be [min, max] with min <= max, got {value!r}")
    return lo, hi


def _section(params: dict[str, Any], name: str, key: str, where: str) -> dict[str, Any]:
    value = params.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{_at(where, f'{key}.{name}')} must be a mapping, got {value!r}")
    return value


def check_augmentation_params(params: Any, where: str = "", frame_size: tuple[int, int] | None = None,
                              key: str = "dataset_params.augmentation_params") -> None:
    """Type- and range-check the numbers of an ``augmentation_params`` mapping (unknown sections are left to
    :class:`fomm.datasets.augment.ClipAugmentation`, which refuses them when it is built for training). With
    ``frame_size`` ``(H, W)`` a crop larger than the frame is refused too."""
    if params is None:
        return
    if not isinstance(params, dict):
        raise ConfigError(f"{_at(where, key)} must be a mapping, got {params!r}")
    flip = _section(params, "flip_param", key, where)
    for name in ("horizontal_flip", "time_flip"):
        if name in flip:
            check_number(flip[name], "bool", f"{key}.flip_param.{name}", where)
    jitter = _section(params, "jitter_param", key, where)
    for name in ("brightness", "contrast", "saturation", "hue"):
        value, path = jitter.get(name), f"{key}.jitter_param.{name}"
        if value is None:
            continue
        hue = name == "hue"
        if isinstance(value, list):
            # Explicit factor ranges: a factor below 0 inverts the image, a hue shift beyond half a turn wraps.
            _check_pair(value, path, where, "float", Bounds(-0.5, 0.5) if hue else NON_NEGATIVE)
        else:
            check_number(value, "float", path, where, Bounds(0, 0.5) if hue else NON_NEGATIVE)
    resize = _section(params, "resize_param", key, where)
    if "ratio" in resize:
        _check_pair(resize["ratio"], f"{key}.resize_param.ratio", where, "float", ZOOM_RATIO)
    rotation = _section(params, "rotation_param", key, where)
    if "degrees" in rotation:
        check_number(rotation["degrees"], "float", f"{key}.rotation_param.degrees", where, ROTATION_DEGREES)
    crop = _section(params, "crop_param", key, where)
    if "size" in crop:
        size, path = crop["size"], f"{key}.crop_param.size"
        if not (isinstance(size, list) and len(size) == 2):
            raise ConfigError(f"{_at(where, path)} must be [H, W] (two integers >= 1), got {size!r}")
        for i, v in enumerate(size):
            check_number(v, "int", f"{path}[{i}]", where, AT_LEAST_ONE)
        if frame_size is not None and (size[0] > frame_size[0] or size[1] > frame_size[1]):
            raise ConfigError(f"{_at(where, path)} {list(size)} is larger than the frame size "
                              f"{frame_size[0]}x{frame_size[1]}; give a crop no larger than the frames")


def check_dataset_params(dp: Any, where: str = "") -> None:
    """Type- and range-check the ``dataset_params`` keys :class:`fomm.datasets.frames.FramesDataset` reads (all
    three model families share them); unknown keys are left to the dataset, which refuses them for training."""
    if dp is None:
        return
    if not isinstance(dp, dict):
        raise ConfigError(f"{_at(where, 'dataset_params')} must be a mapping, got {type(dp).__name__}")
    at = "dataset_params."
    shapes = {k: check_shape(dp[k], at + k, where) for k in ("frame_shape", "image_shape") if k in dp}
    # The dataset reads frame_shape, and Monkey-Net's image_shape when there is none.
    shape = shapes.get("frame_shape", shapes.get("image_shape"))
    if "id_sampling" in dp:
        check_number(dp["id_sampling"], "bool", at + "id_sampling", where)
    if "decoded_cache_mb" in dp:
        check_number(dp["decoded_cache_mb"], "float", at + "decoded_cache_mb", where, NON_NEGATIVE)
    for key in ("root_dir", "pairs_list"):
        value = dp.get(key)
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ConfigError(f"{_at(where, at + key)} must be a path, got {value!r}")
    check_augmentation_params(dp.get("augmentation_params"), where, None if shape is None else shape[:2])


def _build(cls: type, data: dict[str, Any] | None, where: str):
    known, extra = _split_known(cls, data, where)
    check_fields(cls, known, where)
    if cls is DiscriminatorParams and known.get("scales") is not None:
        _check_number_list(known["scales"], f"{where}.scales", "", "float", PYRAMID_SCALE)
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
        """``(H, W, C)`` the model was trained at: ``dataset_params.frame_shape``, else ``image_shape`` (which the
        dataset falls back to as well, so a model animates at the size it trained at), else 256x256x3."""
        shape = self.dataset_params.get("frame_shape", self.dataset_params.get("image_shape", [256, 256, 3]))
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
        gen = _build(GeneratorParams, gen_raw, "model_params.generator_params")
        gen.dense_motion_params = None if dm_raw is None else _build(
            DenseMotionParams, dm_raw, "model_params.generator_params.dense_motion_params")
        if gen.blend_deformed and gen.dense_motion_params is None:
            raise ConfigError(f"{source or name}: generator_params.blend_deformed needs dense_motion_params (it blends "
                              "with the source warped by the dense motion); add them or set blend_deformed: false")
        model = ModelParams(
            common_params=_build(CommonParams, mp.get("common_params"), "model_params.common_params"),
            kp_detector_params=_build(KPDetectorParams, mp.get("kp_detector_params"),
                                      "model_params.kp_detector_params"),
            generator_params=gen,
            discriminator_params=_build(DiscriminatorParams, mp.get("discriminator_params"),
                                        "model_params.discriminator_params"),
        )
        sections = {}
        for key in ("dataset_params", "train_params", "reconstruction_params", "animate_params", "visualizer_params"):
            value = data.get(key) or {}
            if not isinstance(value, dict):
                raise ConfigError(f"{source or name}: section '{key}' must be a mapping")
            sections[key] = value
        extra = {k: v for k, v in data.items() if k not in sections and k != "model_params"}
        check_dataset_params(sections["dataset_params"], source or name)
        check_train_params(sections["train_params"], source or name)
        check_run_sections(sections, source or name)
        norm = sections["animate_params"].get("normalization_params")
        if norm is not None:
            known, _ = _split_known(NormalizationParams, norm, "animate_params.normalization_params")
            check_fields(NormalizationParams, known, "animate_params.normalization_params", source or name)
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
        try:
            return cls.from_dict(data, name=path.stem, source=str(path))
        except ConfigError as err:  # messages about one section do not name the file; the user needs to know which
            raise ConfigError(f"{path}: {err}" if str(path) not in str(err) else str(err)) from None

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
