"""X2Face state dicts against the original constructors' manifests, and checkpoint loading edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fomm.errors import CheckpointError, OutputError
from fomm.models.x2face import X2Face, X2FaceConfig, infer_config, load_x2face, save_x2face


@pytest.fixture(scope="module")
def manifest(golden_dir: Path) -> dict:
    return json.loads((golden_dir / "x2face_manifest.json").read_text())


def _entries(module: torch.nn.Module) -> list[tuple[str, list[int], str]]:
    return [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in module.state_dict().items()]


def _manifest_entries(items: list[dict]) -> list[tuple[str, list[int], str]]:
    return [(e["key"], e["shape"], e["dtype"]) for e in items]


@pytest.mark.parametrize(("section", "input_pose"), [("identity_face_model", False), ("pose_model", True)])
def test_release_state_dict_matches_manifest(manifest: dict, section: str, input_pose: bool) -> None:
    # The meta device builds the 65M-parameter release architecture without allocating or initialising it.
    with torch.device("meta"):
        model = X2Face(X2FaceConfig(ngf=64, inner_nc=128, input_pose=input_pose))
    assert _entries(model) == _manifest_entries(manifest[section]["state_dict"])
    kinds = {e["key"]: e["kind"] for e in manifest[section]["state_dict"]}
    params = {k for k, _ in model.named_parameters()}
    assert {k for k, kind in kinds.items() if kind == "parameter"} == params
    if not input_pose:
        assert sum(p.numel() for p in model.parameters()) == manifest[section]["num_parameters"]


def test_pose_heads_match_manifest(manifest: dict) -> None:
    with torch.device("meta"):
        model = X2Face(X2FaceConfig(input_pose=True))
    level = model._bottleneck_level()
    assert _entries(level.bottlefrompose) == _manifest_entries(manifest["pose_model"]["posetobottle_state_dict"])
    used = manifest["pose_model"]["posereg_state_dict_keys_used"]
    assert {k: list(v.shape) for k, v in level.posefrombottle.state_dict().items()} == \
        {k.split(".", 1)[1]: v for k, v in used.items()}
    identity_keys = {e["key"] for e in manifest["identity_face_model"]["state_dict"]}
    extra = [k for k, *_ in _entries(model) if k not in identity_keys]
    assert extra == manifest["pose_model"]["keys_not_in_identity_model"]


def test_small_fixture_loads_strictly(golden_dir: Path) -> None:
    ckpt = torch.load(golden_dir / "x2face_small_model.pth", map_location="cpu", weights_only=True)
    assert set(ckpt) == {"state_dict", "optimizer"}
    model = X2Face(X2FaceConfig(ngf=4))
    model.load_state_dict(ckpt["state_dict"], strict=True)
    assert list(model.state_dict()) == list(ckpt["state_dict"])
    assert infer_config(ckpt["state_dict"]) == X2FaceConfig(ngf=4, inner_nc=128)
    loaded = load_x2face(golden_dir / "x2face_small_model.pth")
    assert not loaded.training
    loaded_sd = loaded.state_dict()
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(loaded_sd[k], v), k


def test_pose_files_load_into_pose_heads(golden_dir: Path) -> None:
    model = load_x2face(golden_dir / "x2face_small_model.pth", posereg=golden_dir / "x2face_small_posereg.pth",
                        posetobottle=golden_dir / "x2face_small_posetobottle.pth")
    assert model.config.input_pose
    reg = torch.load(golden_dir / "x2face_small_posereg.pth", map_location="cpu", weights_only=True)["state_dict"]
    tob = torch.load(golden_dir / "x2face_small_posetobottle.pth", map_location="cpu", weights_only=True)["state_dict"]
    level = model._bottleneck_level()
    assert torch.equal(level.posefrombottle.weight, reg["posefrombottle.weight"])
    assert torch.equal(level.posefrombottle.bias, reg["posefrombottle.bias"])
    for k, v in tob.items():
        assert torch.equal(level.bottlefrompose.state_dict()[k], v), k


def test_torch02_file_without_num_batches_tracked(golden_dir: Path, tmp_path: Path) -> None:
    ckpt = torch.load(golden_dir / "x2face_small_model.pth", map_location="cpu", weights_only=True)
    stripped = {k: v for k, v in ckpt["state_dict"].items() if not k.endswith("num_batches_tracked")}
    assert len(stripped) < len(ckpt["state_dict"])
    torch.save({"state_dict": stripped, "optimizer": ckpt["optimizer"]}, tmp_path / "old.pth")
    old = load_x2face(tmp_path / "old.pth")
    new = load_x2face(golden_dir / "x2face_small_model.pth")
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(old(x, x), new(x, x))


def test_wrong_files_raise_checkpoint_error_naming_keys(golden_dir: Path, tmp_path: Path) -> None:
    sd = torch.load(golden_dir / "x2face_small_model.pth", map_location="cpu", weights_only=True)["state_dict"]
    bad_key = "pix2pixSampler.netG.model.submodule.down.1.weight"
    broken = {("renamed.weight" if k == bad_key else k): v for k, v in sd.items()}
    torch.save({"state_dict": broken}, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError) as err:
        load_x2face(tmp_path / "broken.pth")
    msg = str(err.value)
    assert bad_key in msg and "renamed.weight" in msg and "\n" not in msg

    with pytest.raises(CheckpointError, match="wrong shape"):
        load_x2face(golden_dir / "x2face_small_model.pth", config=X2FaceConfig(ngf=8))
    with pytest.raises(CheckpointError, match="not an X2Face checkpoint"):
        load_x2face(golden_dir / "mnet_small_cpk.pth.tar")
    with pytest.raises(CheckpointError, match="down.0.weight"):
        load_x2face(golden_dir / "x2face_small_posereg.pth")
    with pytest.raises(CheckpointError, match="posefrombottle.weight"):
        load_x2face(golden_dir / "x2face_small_model.pth", posereg=golden_dir / "x2face_small_posetobottle.pth",
                    posetobottle=golden_dir / "x2face_small_posetobottle.pth")
    with pytest.raises(CheckpointError, match="both"):
        load_x2face(golden_dir / "x2face_small_model.pth", posereg=golden_dir / "x2face_small_posereg.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_x2face(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_x2face(tmp_path / "junk.pth")


def test_save_roundtrip(golden_dir: Path, tmp_path: Path) -> None:
    pose = load_x2face(golden_dir / "x2face_small_model.pth", posereg=golden_dir / "x2face_small_posereg.pth",
                       posetobottle=golden_dir / "x2face_small_posetobottle.pth")
    opt = torch.optim.SGD(pose.parameters(), lr=1e-3, momentum=0.9)
    save_x2face(pose, tmp_path / "pose.pth", opt)
    assert [p.name for p in tmp_path.iterdir()] == ["pose.pth"]  # no temp file left behind
    back = load_x2face(tmp_path / "pose.pth")
    assert back.config == pose.config
    back_sd = back.state_dict()
    for k, v in pose.state_dict().items():
        assert torch.equal(back_sd[k], v), k
    saved = torch.load(tmp_path / "pose.pth", map_location="cpu", weights_only=True)
    assert saved["optimizer"]["param_groups"][0]["momentum"] == 0.9
    with pytest.raises(OutputError):
        save_x2face(pose, tmp_path / "no" / "such" / "dir.pth")
