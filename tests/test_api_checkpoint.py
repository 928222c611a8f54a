"""Public API, config parsing and safe checkpoint loading/saving."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import fomm
from fomm.checkpoint import load_container, save_checkpoint
from fomm.errors import CheckpointError, ConfigError


def test_load_model_api_shapes(golden_dir):
    model = fomm.load_model(str(golden_dir / "fomm_small_main.yaml"), golden_dir / "fomm_small_main_cpk.pth.tar")
    assert model.image_size == (128, 128)
    assert not model.kp_detector.training and not model.generator.training
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        kp = model.kp_detector(x)
        assert kp["value"].shape == (2, 10, 2) and kp["jacobian"].shape == (2, 10, 2, 2)
        assert kp["value"].abs().max() <= 1
        out = model.generator(x, kp_source=kp, kp_driving=kp)
    for key in ("prediction", "mask", "occlusion_map", "sparse_deformed", "deformed", "deformation"):
        assert key in out
    assert out["deformation"].shape == (2, 32, 32, 2)
    assert 0 <= out["prediction"].min() and out["prediction"].max() <= 1


def test_original_container_is_loaded_with_weights_only(golden_dir, monkeypatch):
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    data = load_container(golden_dir / "fomm_small_main_cpk.pth.tar")
    assert calls and all(c.get("weights_only") is True for c in calls)
    assert {"generator", "kp_detector", "discriminator", "optimizer_generator", "epoch"} <= set(data)
    # cuda:0-tagged storages land on the CPU.
    assert data["generator"]["final.weight"].device.type == "cpu"


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"generator": Evil()}, fh, protocol=2)  # the protocol torch.save uses
    with pytest.raises(CheckpointError, match="refusing"):
        load_container(path)


@pytest.mark.parametrize("content", [b"", b"hello, this is not a checkpoint", b"PK\x03\x04garbage"])
def test_non_checkpoint_files(tmp_path, content):
    path = tmp_path / "x.pth.tar"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        fomm.load_model("vox-256", path)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        fomm.load_model("vox-256", tmp_path / "nope.pth.tar")


def test_checkpoint_for_another_config_names_keys_and_fitting_config(golden_dir):
    with pytest.raises(CheckpointError) as err:
        fomm.load_model("vox-256", golden_dir / "fomm_small_main_cpk.pth.tar")
    msg = str(err.value)
    assert "kp_detector" in msg and "shape" in msg and "\n" not in msg


def test_wrong_config_hint_names_bundled_config(tmp_path):
    # A checkpoint made for mgif-256 (single jacobian map) loaded with vox-256 must point at mgif-256.
    mgif = fomm.load_model("mgif-256")
    path = save_checkpoint(tmp_path / "mgif.pth.tar", {"generator": mgif.generator, "kp_detector": mgif.kp_detector})
    with pytest.raises(CheckpointError, match="mgif-256"):
        fomm.load_model("vox-256", path)
    assert fomm.load_model("mgif-256", path).epoch == 0


def test_save_roundtrip_is_original_container(tmp_path, golden_dir):
    model = fomm.load_model(golden_dir / "fomm_small_main.yaml", golden_dir / "fomm_small_main_cpk.pth.tar",
                            with_discriminator=True)
    opt = torch.optim.Adam(model.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    path = save_checkpoint(tmp_path / "00000001-checkpoint.pth.tar",
                           {"generator": model.generator, "kp_detector": model.kp_detector,
                            "discriminator": model.discriminator}, {"generator": opt}, epoch=7)
    data = load_container(path)
    assert {"generator", "kp_detector", "discriminator", "optimizer_generator", "epoch"} <= set(data)
    assert data["epoch"] == 7
    again = fomm.load_model(golden_dir / "fomm_small_main.yaml", path)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        a, b = model.kp_detector(x)["value"], again.kp_detector(x)["value"]
    assert torch.equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))


def test_unknown_config_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="unknown config"):
        fomm.load_config("vox-512")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_params: [1, 2\n")
    with pytest.raises(ConfigError, match="YAML"):
        fomm.load_config(bad)
    notcfg = tmp_path / "x.yaml"
    notcfg.write_text("a: 1\n")
    with pytest.raises(ConfigError, match="model_params"):
        fomm.load_config(notcfg)


def test_config_roundtrip_keeps_unknown_keys(golden_dir):
    import yaml

    raw = yaml.safe_load((golden_dir / "fomm_small_main.yaml").read_text())
    raw["model_params"]["kp_detector_params"]["future_option"] = 3
    cfg = fomm.load_config(raw)
    assert cfg.model_params.kp_detector_params.extra == {"future_option": 3}
    assert cfg.to_dict()["model_params"]["kp_detector_params"]["future_option"] == 3
    assert cfg.image_size == (128, 128)
    assert cfg.normalization.use_relative_movement is True


def test_normalize_kp_absolute_passthrough_and_missing_jacobian():
    kp_s = {"value": torch.rand(1, 5, 2)}
    kp_d = {"value": torch.rand(3, 5, 2)}
    out = fomm.normalize_kp(kp_s, kp_d, {"value": kp_d["value"][:1]})
    assert torch.equal(out["value"], kp_d["value"])
    # A jacobian-free model with relative jacobians requested does not crash (the original raised KeyError).
    out = fomm.normalize_kp(kp_s, kp_d, {"value": kp_d["value"][:1]}, use_relative_movement=True,
                            use_relative_jacobian=True)
    np.testing.assert_allclose(out["value"][0].numpy(), kp_s["value"][0].numpy(), atol=1e-7)


def test_load_model_baselines_and_cross_model_hints(golden_dir):
    mnet = fomm.load_model(golden_dir / "mnet_small.yaml", golden_dir / "mnet_small_cpk.pth.tar", model="monkeynet")
    assert mnet.model == "monkeynet" and mnet.kp_detector is not None and not mnet.generator.training
    x2 = fomm.load_model(None, golden_dir / "x2face_small_model.pth", model="x2face")
    assert x2.model == "x2face" and x2.image_size == (256, 256) and x2.kp_detector is None
    with pytest.raises(CheckpointError, match="monkeynet"):
        fomm.load_model("vox-256", golden_dir / "mnet_small_cpk.pth.tar")
    with pytest.raises(CheckpointError, match="x2face"):
        fomm.load_model("vox-256", golden_dir / "x2face_small_model.pth")
    with pytest.raises(fomm.FommError, match="unknown model"):
        fomm.load_model("vox-256", model="tps")


def test_atomic_writes_get_the_permissions_a_plain_open_gives(tmp_path):
    """mkstemp makes 0600 files; checkpoints and eval reports must not end up unreadable to the group/others."""
    import os
    import stat

    from fomm.checkpoint import atomic_save
    from fomm.io.atomic import write_text_atomic

    old = os.umask(0o022)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        atomic_save({"w": torch.zeros(1)}, tmp_path / "c.pth.tar")
        write_text_atomic(tmp_path / "m.md", "x")
    finally:
        os.umask(old)
    want = stat.S_IMODE(plain.stat().st_mode)
    assert want == 0o644
    for name in ("c.pth.tar", "m.md"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name


def test_atomic_save_onto_a_folder_is_one_error_and_leaves_nothing(tmp_path):
    from fomm.checkpoint import atomic_save
    from fomm.errors import OutputError

    (tmp_path / "out").mkdir()
    with pytest.raises(OutputError, match="cannot write checkpoint to .*out: Is a directory"):
        atomic_save({"w": torch.zeros(1)}, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not any((tmp_path / "out").iterdir())
