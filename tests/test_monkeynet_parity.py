"""Parity with the original Monkey-Net code on the golden mnet_small fixture (README sections 4, 6, 7)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fomm.errors import CheckpointError
from fomm.models.monkeynet import MonkeyNetConfig, load_monkeynet, normalize_kp, transfer_one
from fomm.models.monkeynet import generator as generator_mod
from fomm.models.monkeynet import motion as motion_mod

KP_ATOL = 1e-5  # keypoints, covariances, deformations (README 3.3 / 4)
IMG_ATOL = 5e-5  # video_prediction, video_deformed


@pytest.fixture(scope="module")
def ref(golden_dir: Path) -> dict[str, np.ndarray]:
    with np.load(golden_dir / "mnet_small_ref.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def model(golden_dir: Path):
    config = MonkeyNetConfig.from_yaml(golden_dir / "mnet_small.yaml")
    kp_detector, generator, _ = load_monkeynet(config, golden_dir / "mnet_small_cpk.pth.tar")
    return config, kp_detector, generator


def _close(got: torch.Tensor, want: np.ndarray, atol: float, name: str) -> None:
    got_np = got.detach().cpu().numpy()
    assert got_np.shape == want.shape, f"{name}: shape {got_np.shape} != {want.shape}"
    err = float(np.abs(got_np - want).max())
    assert err <= atol, f"{name}: max abs diff {err:.3g} > {atol}"


def _inputs(ref):
    return torch.from_numpy(ref["source"]), torch.from_numpy(ref["driving"])


def test_config_reads_original_yaml(model) -> None:
    config, _, _ = model
    mp = config.model_params
    assert mp.common_params.num_kp == 10 and mp.common_params.kp_variance == "matrix"
    assert mp.kp_detector_params.scale_factor == 0.5 and mp.kp_detector_params.clip_variance == 0.001
    dm = mp.generator_params.dense_motion_params
    assert dm.num_group_blocks == 2 and dm.mask_embedding_params.use_difference is True
    assert mp.generator_params.interpolation_mode == "nearest"
    assert config.normalization_params.move_location is False
    assert config.image_shape == (128, 128, 3)
    assert config.raw["train_params"]["num_epochs"] == 750


def test_absolute_transfer_matches_reference(model, ref) -> None:
    config, kp_detector, generator = model
    source, driving = _inputs(ref)
    out = transfer_one(generator, kp_detector, source, driving, config.normalization_params)
    _close(out["kp_source"]["mean"], ref["kp_source_mean"], KP_ATOL, "kp_source_mean")
    _close(out["kp_source"]["var"], ref["kp_source_var"], KP_ATOL, "kp_source_var")
    _close(out["kp_driving"]["mean"], ref["kp_driving_mean"], KP_ATOL, "kp_driving_mean")
    _close(out["kp_driving"]["var"], ref["kp_driving_var"], KP_ATOL, "kp_driving_var")
    _close(out["kp_norm"]["mean"], ref["kp_norm_mean"], KP_ATOL, "kp_norm_mean")
    _close(out["kp_norm"]["var"], ref["kp_norm_var"], KP_ATOL, "kp_norm_var")
    _close(out["deformation"], ref["deformations_absolute"], KP_ATOL, "deformations_absolute")
    _close(out["video_prediction"], ref["video_prediction"], IMG_ATOL, "video_prediction")
    _close(out["video_deformed"], ref["video_deformed"], IMG_ATOL, "video_deformed")


def test_relative_transfer_matches_reference(model, ref) -> None:
    _, kp_detector, generator = model
    source, driving = _inputs(ref)
    norm = {"move_location": True, "movement_mult": False, "adapt_variance": False}
    out = transfer_one(generator, kp_detector, source, driving, norm)
    _close(out["kp_norm"]["mean"], ref["rel_kp_norm_mean"], KP_ATOL, "rel_kp_norm_mean")
    _close(out["kp_norm"]["var"], ref["rel_kp_norm_var"], KP_ATOL, "rel_kp_norm_var")
    _close(out["deformation"], ref["rel_deformations_absolute"], KP_ATOL, "rel_deformations_absolute")
    _close(out["video_prediction"], ref["rel_video_prediction"], IMG_ATOL, "rel_video_prediction")
    _close(out["video_deformed"], ref["rel_video_deformed"], IMG_ATOL, "rel_video_deformed")
    # Relative mode really moves the keypoints: frame 0 lands exactly on the source keypoints.
    torch.testing.assert_close(out["kp_norm"]["mean"][:, 0], out["kp_source"]["mean"][:, 0], rtol=0, atol=1e-6)


def test_movement_mult_matches_reference(ref) -> None:
    kp_driving = {"mean": torch.from_numpy(ref["kp_driving_mean"]), "var": torch.from_numpy(ref["kp_driving_var"])}
    kp_source = {"mean": torch.from_numpy(ref["kp_source_mean"]), "var": torch.from_numpy(ref["kp_source_var"])}
    out = normalize_kp(kp_driving, kp_source, move_location=True, movement_mult=True)
    _close(out["mean"], ref["rel_movement_mult_kp_norm_mean"], KP_ATOL, "rel_movement_mult_kp_norm_mean")
    plain = normalize_kp(kp_driving, kp_source, move_location=True)
    assert float((out["mean"] - plain["mean"]).abs().max()) > 1e-4  # the scale is not 1 on this fixture
    assert kp_driving["mean"].data_ptr() != out["mean"].data_ptr()  # inputs untouched


def test_align_corners_false_would_not_match(model, ref, monkeypatch) -> None:
    _, kp_detector, generator = model
    source, driving = _inputs(ref)

    def wrong(inp: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    monkeypatch.setattr(motion_mod, "grid_sample", wrong)
    monkeypatch.setattr(generator_mod, "grid_sample", wrong)
    out = transfer_one(generator, kp_detector, source, driving, {"move_location": False})
    err = float(np.abs(out["video_prediction"].numpy() - ref["video_prediction"]).max())
    assert err > 1e-2, f"align_corners=False unexpectedly matches (max diff {err:.3g})"


def test_checkpoint_reload_is_deterministic(model, golden_dir: Path) -> None:
    config, kp_detector, generator = model
    kp2, gen2, disc2 = load_monkeynet(config, golden_dir / "mnet_small_cpk.pth.tar", with_discriminator=True)
    for a, b in ((kp_detector, kp2), (generator, gen2)):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert ka == kb and torch.equal(va, vb)
    cpk = torch.load(golden_dir / "mnet_small_cpk.pth.tar", map_location="cpu", weights_only=True)
    for k, v in cpk["discriminator"].items():
        assert torch.equal(disc2.state_dict()[k], v)


def test_wrong_checkpoint_raises_checkpoint_error(model, golden_dir: Path, tmp_path: Path) -> None:
    config, _, _ = model
    with pytest.raises(CheckpointError, match="kp_detector.*(missing|unexpected|shape)"):
        load_monkeynet(config, golden_dir / "fomm_small_main_cpk.pth.tar")
    other = MonkeyNetConfig.from_dict({**config.raw, "model_params": {
        **config.raw["model_params"], "common_params": {"num_kp": 5, "kp_variance": "matrix", "num_channels": 3}}})
    with pytest.raises(CheckpointError, match=r"shape mismatch.*predictor\.decoder\.conv\.weight"):
        load_monkeynet(other, golden_dir / "mnet_small_cpk.pth.tar")
    junk = tmp_path / "junk.pth.tar"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_monkeynet(config, junk)
    with pytest.raises(CheckpointError, match="not found"):
        load_monkeynet(config, tmp_path / "missing.pth.tar")
    torch.save({"generator": {}}, tmp_path / "partial.pth.tar")
    with pytest.raises(CheckpointError, match="no 'kp_detector'"):
        load_monkeynet(config, tmp_path / "partial.pth.tar")
