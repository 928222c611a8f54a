"""Every bundled full-size config builds networks whose state_dict equals the original's, key for key."""

from __future__ import annotations

import json

import pytest
import torch

import fomm
from fomm.models.fomm import build_discriminator, build_generator, build_kp_detector

CONFIGS = ["vox-256", "vox-adv-256", "taichi-256", "taichi-adv-256", "bair-256", "fashion-256", "mgif-256", "nemo-256"]


def test_all_original_configs_are_bundled():
    assert set(CONFIGS) <= set(fomm.bundled_configs())


@pytest.mark.parametrize("name", CONFIGS)
def test_state_dict_matches_manifest(golden_dir, name):
    manifest = json.loads((golden_dir / f"fomm_{name}_manifest.json").read_text())
    cfg = fomm.load_config(name)
    with torch.device("meta"):
        nets = {"kp_detector": build_kp_detector(cfg), "generator": build_generator(cfg),
                "discriminator": build_discriminator(cfg)}
    for part, net in nets.items():
        got = [(k, list(v.shape)) for k, v in net.state_dict().items()]
        expected = [(e["key"], e["shape"]) for e in manifest[part]]
        assert got == expected, f"{name}/{part}"
        n_params = sum(p.numel() for p in net.parameters())
        assert n_params == manifest["num_parameters"][part], f"{name}/{part} parameter count"
        buffers = {k for k, _ in net.named_buffers()}
        for entry in manifest[part]:
            assert (entry["key"] in buffers) == (entry["kind"] == "buffer"), entry["key"]


@pytest.mark.parametrize("name", CONFIGS)
def test_bundled_model_params_equal_original(golden_dir, name):
    manifest = json.loads((golden_dir / f"fomm_{name}_manifest.json").read_text())
    import yaml

    raw = yaml.safe_load(fomm.config.bundled_config_path(name).read_text())
    assert raw["model_params"] == manifest["model_params"]
