"""Every original Monkey-Net config builds modules whose state_dict matches the original key for key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fomm.models.monkeynet import MonkeyNetConfig, build_monkeynet

CONFIGS = ["actions", "bair", "moving-gif", "nemo", "shapes", "taichi", "vox", "vox-full"]


def _entries(module: torch.nn.Module) -> list[dict]:
    params = {k for k, _ in module.named_parameters()}
    return [{"key": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""),
             "kind": "parameter" if k in params else "buffer"} for k, v in module.state_dict().items()]


@pytest.mark.parametrize("name", CONFIGS)
def test_state_dict_matches_manifest(golden_dir: Path, name: str) -> None:
    manifest = json.loads((golden_dir / f"mnet_{name}_manifest.json").read_text())
    config = MonkeyNetConfig.from_dict({"model_params": manifest["model_params"]})
    # Meta tensors: full-size shapes without allocating or initialising ~100M parameters.
    with torch.device("meta"):
        modules = dict(zip(["kp_detector", "generator", "discriminator"], build_monkeynet(config), strict=True))
    for part, module in modules.items():
        expected = [{k: e[k] for k in ("key", "shape", "dtype", "kind")} for e in manifest[part]]
        got = _entries(module)
        assert [e["key"] for e in got] == [e["key"] for e in expected], f"{name}/{part}: key order differs"
        assert got == expected, f"{name}/{part}: shapes, dtypes or kinds differ"
        n = sum(p.numel() for p in module.parameters())
        assert n == manifest["num_parameters"][part], f"{name}/{part}: {n} parameters"
