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
