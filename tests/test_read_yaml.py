"""Every YAML the toolkit reads (FOMM, Monkey-Net and X2Face configs, the demo's models list) fails the same way:
one ConfigError line for a missing, binary or malformed file."""

from __future__ import annotations

import pytest

from fomm.config import FommConfig, read_yaml
from fomm.errors import ConfigError
from fomm.models.monkeynet.config import MonkeyNetConfig
from fomm.models.x2face.config import X2FaceRunConfig


def _readers():
    from fomm.demo.models import choices_from_file

    return [FommConfig.from_yaml, MonkeyNetConfig.from_yaml, X2FaceRunConfig.from_yaml, choices_from_file]


@pytest.mark.parametrize("content, message", [(b"\x89PNG\x00\xff\xfe", "not a text file"),
                                              (b"a: [1, 2\n", "not valid YAML")])
def test_bad_yaml_is_one_config_error(tmp_path, content, message):
    pytest.importorskip("gradio")
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    for reader in _readers():
        with pytest.raises(ConfigError, match=message):
            reader(path)


def test_missing_file_names_what_it_was_for(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the X2Face config file"):
        read_yaml(tmp_path / "nope.yaml", "X2Face config")
    assert read_yaml(_write(tmp_path, "a: 1\n"), "config") == {"a": 1}


def _write(tmp_path, text):
    p = tmp_path / "ok.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("section,key,value,message", [
    ("generator_params", "align_deformation", "maybe", "align_deformation must be true or false, got 'maybe'"),
    ("generator_params", "estimate_occlusion_map", 1, "estimate_occlusion_map must be true or false, got 1"),
    ("common_params", "num_kp", "ten", "num_kp must be an integer, got 'ten'"),
    ("kp_detector_params", "temperature", True, "temperature must be a number, got True"),
])
def test_wrong_scalar_types_are_one_config_error(section, key, value, message):
    """A wrong type used to be truthy (bools) or fail inside torch with a traceback; it must be named up front."""
    with pytest.raises(ConfigError, match=message):
        FommConfig.from_dict({"model_params": {section: {key: value}}})
    # The right types of the same keys load.
    good = {"align_deformation": True, "estimate_occlusion_map": False, "num_kp": 10, "temperature": 1}[key]
    FommConfig.from_dict({"model_params": {section: {key: good}}})


def test_a_model_animates_at_the_image_shape_it_trained_at():
    """The dataset falls back to ``image_shape`` when there is no ``frame_shape``; the model's size must too (it
    used to animate at 256 whatever the config trained at)."""
    cfg = FommConfig.from_dict({"model_params": {}, "dataset_params": {"image_shape": [64, 96, 3]}})
    assert cfg.frame_shape == (64, 96, 3) and cfg.image_size == (64, 96)
    both = FommConfig.from_dict({"model_params": {},
                                 "dataset_params": {"frame_shape": [128, 128, 3], "image_shape": [64, 96, 3]}})
    assert both.frame_shape == (128, 128, 3)
    assert FommConfig.from_dict({"model_params": {}}).frame_shape == (256, 256, 3)
