"""Typed view of an original Monkey-Net YAML config (``model_params``, ``transfer_params``, ...).

The YAML files of the original repository load unchanged: every key the original constructors accept is a
field here with the same name and default, and an unknown key inside ``model_params`` is a :class:`ConfigError`
(the original would fail with an unexpected-keyword TypeError). Sections this package does not interpret
(``train_params``, ``prediction_params``, ``visualizer_params``, ...) are kept verbatim in ``MonkeyNetConfig.raw``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fomm.config import check_dataset_params, check_fields, check_run_sections, check_train_params, read_yaml
from fomm.errors import ConfigError

# 'matrix' (full 2x2 covariance) or a fixed float variance. The original's 'single' (one scalar per keypoint) is
# used by no released config and is not supported.
KpVariance = str | float
# A number the heatmaps are divided by, or "sum" (normalise each heatmap to sum 1).
NormConst = str | float


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from mapping ``data``, rejecting unknown keys with a clear message."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}; check the Monkey-Net YAML")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {unknown}; allowed keys are {sorted(names)}")
    # Types and ranges first: the dataclass takes any value, and a negative width would fail inside torch.
    check_fields(cls, data, where)
    try:
        return cls(**data)
    except TypeError as err:  # a required key is missing
        raise ConfigError(f"{where}: {err}; check the Monkey-Net YAML") from None


@dataclass
class EmbeddingParams:
    """MovementEmbeddingModule options (``mask_embedding_params`` / ``kp_embedding_params``).

    Per keypoint the embedding has ``use_heatmap`` heatmap channel, ``2 * use_difference`` displacement channels
    (source minus driving keypoint) and ``num_channels * use_deformed_source_image`` channels of the source shifted
    by that displacement.
    """

    use_deformed_source_image: bool = False
    use_difference: bool = False
    use_heatmap: bool = True
    add_bg_feature_map: bool = False
    heatmap_type: str = "gaussian"
    norm_const: NormConst = "sum"
    scale_factor: float = 1

    def __post_init__(self) -> None:
        if self.heatmap_type not in ("gaussian", "difference"):
            raise ConfigError(f"heatmap_type must be 'gaussian' or 'difference', got {self.heatmap_type!r}")
        if int(self.use_heatmap) + int(self.use_difference) + int(self.use_deformed_source_image) < 1:
            raise ConfigError("an embedding needs at least one of use_heatmap, use_difference, "
                              "use_deformed_source_image")
        if isinstance(self.norm_const, str) and self.norm_const != "sum":
            raise ConfigError(f"norm_const must be a number or 'sum', got {self.norm_const!r}")


@dataclass
class KPDetectorParams:
    temperature: float
    block_expansion: int
    max_features: int
    num_blocks: int
    scale_factor: float = 1
    clip_variance: float | None = None


@dataclass
class DenseMotionParams:
    block_expansion: int
    max_features: int
    num_blocks: int
    use_mask: bool
    use_correction: bool
    mask_embedding_params: EmbeddingParams = field(default_factory=EmbeddingParams)
    bg_init: float = 2
    num_group_blocks: int = 0
    scale_factor: float = 1

    def __post_init__(self) -> None:
        if isinstance(self.mask_embedding_params, dict):
            self.mask_embedding_params = _build(EmbeddingParams, self.mask_embedding_params,
                                                "model_params.generator_params.dense_motion_params."
                                                "mask_embedding_params")


@dataclass
class GeneratorParams:
    block_expansion: int
    max_features: int
    num_blocks: int
    num_refinement_blocks: int
    dense_motion_params: DenseMotionParams | None = None
    kp_embedding_params: EmbeddingParams | None = None
    interpolation_mode: str = "nearest"

    def __post_init__(self) -> None:
        if isinstance(self.dense_motion_params, dict):
            self.dense_motion_params = _build(DenseMotionParams, self.dense_motion_params,
                                              "model_params.generator_params.dense_motion_params")
        if isinstance(self.kp_embedding_params, dict):
            self.kp_embedding_params = _build(EmbeddingParams, self.kp_embedding_params,
                                              "model_params.generator_params.kp_embedding_params")
        if self.interpolation_mode not in ("nearest", "trilinear"):
            raise ConfigError(f"interpolation_mode must be 'nearest' or 'trilinear', got {self.interpolation_mode!r}")


@dataclass
class DiscriminatorParams:
    block_expansion: int = 64
    max_features: int = 512
    num_blocks: int = 4
    scale_factor: float = 1
    kp_embedding_params: EmbeddingParams | None = None

    def __post_init__(self) -> None:
        if isinstance(self.kp_embedding_params, dict):
            self.kp_embedding_params = _build(EmbeddingParams, self.kp_embedding_params,
                                              "model_params.discriminator_params.kp_embedding_params")


@dataclass
class CommonParams:
    num_kp: int
    num_channels: int = 3
    kp_variance: KpVariance = "matrix"

    def __post_init__(self) -> None:
        if isinstance(self.kp_variance, str) and self.kp_variance != "matrix":
            raise ConfigError(f"kp_variance must be 'matrix' or a number, got {self.kp_variance!r} "
                              "('single' is not supported: no released Monkey-Net config uses it)")


@dataclass
class ModelParams:
    common_params: CommonParams
    kp_detector_params: KPDetectorParams
    generator_params: GeneratorParams
    discriminator_params: DiscriminatorParams = field(default_factory=DiscriminatorParams)

    @classmethod
    def from_dict(cls, d: dict) -> ModelParams:
        if not isinstance(d, dict):
            raise ConfigError("model_params must be a mapping; check the Monkey-Net YAML")
        allowed = {"common_params", "kp_detector_params", "generator_params", "discriminator_params"}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ConfigError(f"model_params has unknown key(s) {unknown}; allowed keys are {sorted(allowed)}")
        for key in ("common_params", "kp_detector_params", "generator_params"):
            if key not in d:
                raise ConfigError(f"model_params.{key} is missing; this does not look like a Monkey-Net config")
        return cls(
            common_params=_build(CommonParams, d["common_params"], "model_params.common_params"),
            kp_detector_params=_build(KPDetectorParams, d["kp_detector_params"], "model_params.kp_detector_params"),
            generator_params=_build(GeneratorParams, d["generator_params"], "model_params.generator_params"),
            discriminator_params=_build(DiscriminatorParams, d.get("discriminator_params"),
                                        "model_params.discriminator_params"),
        )


@dataclass
class NormalizationParams:
    """Options of ``normalize_kp`` (``transfer_params.normalization_params``); all False = absolute transfer."""

    movement_mult: bool = False
    move_location: bool = False
    adapt_variance: bool = False
    clip_mean: bool = False


@dataclass
class MonkeyNetConfig:
    """A whole Monkey-Net YAML.

    Attributes:
        model_params: typed architecture description.
        normalization_params: ``transfer_params.normalization_params`` (defaults if absent).
        image_shape: ``dataset_params.image_shape`` as ``(H, W, C)`` or None if absent.
        raw: the YAML as loaded (every section, untouched).
    """

    model_params: ModelParams
    normalization_params: NormalizationParams = field(default_factory=NormalizationParams)
    image_shape: tuple[int, ...] | None = None
    raw: dict = field(default_factory=dict)

    # -- the sections the trainer and the dataset read (live views into ``raw``, so overrides are saved) ------
    def _section(self, key: str) -> dict:
        value = self.raw.get(key)
        if not isinstance(value, dict):
            value = self.raw[key] = {}
        return value

    @property
    def train_params(self) -> dict:
        """``train_params`` of the YAML (``lr``, ``loss_weights``, ``num_epochs``, ...), a mutable dict."""
        return self._section("train_params")

    @property
    def dataset_params(self) -> dict:
        """``dataset_params`` of the YAML (``root_dir``, ``image_shape``, ``augmentation_params``), a mutable dict."""
        return self._section("dataset_params")

    @property
    def image_size(self) -> tuple[int, int] | None:
        """``(H, W)`` from ``dataset_params.image_shape`` (None when the YAML has none)."""
        shape = self.dataset_params.get("image_shape", self.image_shape)
        return None if shape is None else (int(shape[0]), int(shape[1]))

    def to_dict(self) -> dict:
        """The YAML as a dict (every section, including CLI overrides made through the properties above)."""
        return copy.deepcopy(self.raw)

    @classmethod
    def load(cls, config: MonkeyNetConfig | dict | str | Path) -> MonkeyNetConfig:
        """From an instance, a dict, a YAML path or a bundled name (``fomm/configs/monkeynet/<name>.yaml``)."""
        if isinstance(config, MonkeyNetConfig):
            return config
        if isinstance(config, dict):
            return cls.from_dict(copy.deepcopy(config))
        if config is None:
            raise ConfigError("Monkey-Net needs a config: a YAML file or a bundled name such as actions-64")
        from fomm.config import resolve_model_config

        return cls.from_yaml(resolve_model_config("monkeynet", config))

    @classmethod
    def from_dict(cls, d: dict) -> MonkeyNetConfig:
        if not isinstance(d, dict) or "model_params" not in d:
            raise ConfigError("a Monkey-Net config needs a 'model_params' section; is this the right YAML?")
        transfer = d.get("transfer_params") or {}
        if not isinstance(transfer, dict):
            raise ConfigError("transfer_params must be a mapping; check the Monkey-Net YAML")
        norm = _build(NormalizationParams, transfer.get("normalization_params"), "transfer_params.normalization_params")
        dataset = d.get("dataset_params") or {}
        if not isinstance(dataset, dict):
            raise ConfigError("dataset_params must be a mapping; check the Monkey-Net YAML")
        check_dataset_params(dataset, "Monkey-Net config")
        shape = dataset.get("image_shape")
        check_train_params(d.get("train_params"), "Monkey-Net config")
        check_run_sections(d, "Monkey-Net config")
        return cls(model_params=ModelParams.from_dict(d["model_params"]), normalization_params=norm,
                   image_shape=tuple(int(s) for s in shape) if shape is not None else None, raw=d)

    @classmethod
    def from_yaml(cls, path: str | Path) -> MonkeyNetConfig:
        path = Path(path)
        data = read_yaml(path, "Monkey-Net config")
        try:
            return cls.from_dict(data)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
