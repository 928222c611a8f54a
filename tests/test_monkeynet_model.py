"""Monkey-Net code beyond the fixture: other sizes/widths/num_kp, training-mode gradients, helpers, errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from fomm.errors import ConfigError, InputError
from fomm.models.monkeynet import (
    MonkeyNetConfig,
    build_monkeynet,
    check_frame_size,
    gaussian2kp,
    kp2gaussian,
    load_monkeynet,
    normalize_kp,
    transfer_one,
)
from fomm.models.monkeynet.keypoints import smallest_singular

BASE = {
    "dataset_params": {"image_shape": [64, 64, 3]},
    "model_params": {
        "common_params": {"num_kp": 4, "kp_variance": "matrix", "num_channels": 3},
        "kp_detector_params": {"temperature": 0.1, "block_expansion": 4, "max_features": 16, "num_blocks": 4,
                               "scale_factor": 0.5},
        "generator_params": {
            "interpolation_mode": "trilinear", "block_expansion": 4, "max_features": 16, "num_blocks": 3,
            "num_refinement_blocks": 2,
            "dense_motion_params": {"block_expansion": 4, "max_features": 16, "num_blocks": 4, "use_mask": True,
                                    "use_correction": True, "scale_factor": 0.5,
                                    "mask_embedding_params": {"use_heatmap": True, "use_deformed_source_image": True,
                                                              "heatmap_type": "difference", "norm_const": "sum"}},
            "kp_embedding_params": {"scale_factor": 0.25, "use_heatmap": True, "norm_const": "sum",
                                    "heatmap_type": "difference"}},
        "discriminator_params": {"kp_embedding_params": {"norm_const": "sum"}, "block_expansion": 4,
                                 "max_features": 16, "num_blocks": 3},
    },
    "transfer_params": {"normalization_params": {"move_location": True, "clip_mean": True}},
}


def _cfg(**common) -> MonkeyNetConfig:
    d = copy.deepcopy(BASE)
    d["model_params"]["common_params"].update(common)
    return MonkeyNetConfig.from_dict(d)


def _randomize_bn(*modules: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in modules:
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm3d):
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
        # The dense-motion head starts at zero (identity motion); perturb it so masks depend on the input.
        for name, p in m.named_parameters():
            if name.endswith("hourglass.decoder.conv.weight"):
                p.data.normal_(0, 0.05, generator=g)


@pytest.mark.parametrize("num_kp,kp_variance", [(4, "matrix"), (7, 0.01)])
def test_train_mode_forward_backward(num_kp: int, kp_variance) -> None:
    torch.manual_seed(0)
    kp_detector, generator, discriminator = build_monkeynet(_cfg(num_kp=num_kp, kp_variance=kp_variance))
    _randomize_bn(generator)
    b, d = 2, 2
    source = torch.rand(b, 3, 1, 64, 64)
    driving = torch.rand(b, 3, d, 64, 64)
    kp_s = kp_detector(source)
    kp_d = kp_detector(driving)
    assert kp_d["mean"].shape == (b, d, num_kp, 2)
    assert ("var" in kp_d) == (kp_variance == "matrix")
    out = generator(source, kp_driving=kp_d, kp_source=kp_s)
    assert out["video_prediction"].shape == (b, 3, d, 64, 64)
    assert out["video_deformed"].shape == (b, 3, d, 64, 64)
    assert out["deformation"].shape == (b, d, 32, 32, 3)
    maps = discriminator(out["video_prediction"], kp_d, kp_s)
    assert [tuple(m.shape) for m in maps] == [(b, 3, d, 64, 64), (b, 8, d, 30, 30), (b, 16, d, 13, 13),
                                              (b, 16, d, 5, 5), (b, 1, d, 5, 5)]
    loss = (out["video_prediction"] - driving).abs().mean() + maps[-1].mean()
    loss.backward()
    for name, module in (("kp_detector", kp_detector), ("generator", generator),
                         ("discriminator", discriminator)):
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads, f"{name} received no gradient"
        assert all(torch.isfinite(g).all() for g in grads), f"{name} has non-finite gradients"
        assert any(g.abs().sum() > 0 for g in grads), f"{name} gradients are all zero"


def test_eval_transfer_shapes_and_relative_normalisation() -> None:
    torch.manual_seed(1)
    config = _cfg()
    kp_detector, generator, _ = build_monkeynet(config)
    _randomize_bn(kp_detector, generator)
    kp_detector.eval(), generator.eval()
    source, driving = torch.rand(2, 3, 1, 64, 64), torch.rand(2, 3, 3, 64, 64)
    out = transfer_one(generator, kp_detector, source, driving, config.normalization_params)
    assert out["video_prediction"].shape == (2, 3, 3, 64, 64)
    assert out["deformation"].shape == (2, 3, 32, 32, 3)
    assert torch.all(out["deformation"][..., 2] == 0)
    assert 0 < float(out["video_prediction"].min()) and float(out["video_prediction"].max()) < 1
    assert float(out["kp_norm"]["mean"].abs().max()) <= 1  # clip_mean
    torch.testing.assert_close(out["kp_norm"]["mean"][:, 0], out["kp_source"]["mean"][:, 0].clamp(-1, 1))
    # Frame-by-frame transfer equals one batched call (frames are independent: all kernels are (1, k, k)).
    whole = generator(source, kp_driving=out["kp_norm"], kp_source=out["kp_source"])
    torch.testing.assert_close(whole["video_prediction"], out["video_prediction"], atol=1e-5, rtol=0)


def test_gaussian_moments_round_trip() -> None:
    mean = torch.tensor([[[[0.3, -0.2], [-0.5, 0.4]]]])  # [1, 1, 2, 2]
    var = torch.tensor([[[[[0.02, 0.005], [0.005, 0.01]], [[0.01, 0.0], [0.0, 0.03]]]]])
    heat = kp2gaussian({"mean": mean, "var": var}, (96, 96), "matrix")  # [1, 1, 2, 96, 96]
    assert heat.shape == (1, 1, 2, 96, 96) and float(heat.max()) <= 1
    heat = heat / heat.sum(dim=(-1, -2), keepdim=True)
    kp = gaussian2kp(heat.permute(0, 2, 1, 3, 4))  # detector layout [B, K, D, H, W]
    torch.testing.assert_close(kp["mean"], mean, atol=2e-3, rtol=0)
    torch.testing.assert_close(kp["var"], var, atol=1e-3, rtol=0)


def test_clip_variance_bounds_smallest_singular_value() -> None:
    heat = torch.zeros(1, 3, 1, 32, 32)
    heat[0, 0, 0, 5, 7] = 1  # a collapsed heatmap has (almost) zero covariance
    heat[0, 1, 0, 10:12, 3:20] = 1 / 34  # thin horizontal bar: one tiny singular value
    heat[0, 2] = 1 / 1024
    kp = gaussian2kp(heat, clip_variance=0.001)
    sv = torch.linalg.svdvals(kp["var"])
    assert float(sv.min()) >= 0.001 * (1 - 1e-4)
    unclipped = gaussian2kp(heat)["var"]
    torch.testing.assert_close(kp["var"][0, 0, 2], unclipped[0, 0, 2])  # wide maps are left alone
    torch.testing.assert_close(smallest_singular(unclipped).squeeze(-1), torch.linalg.svdvals(unclipped)[..., -1],
                               atol=1e-6, rtol=1e-4)


def test_normalize_kp_adapt_variance_first_frame_gets_source_variance() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.randn(1, 3, 4, 2, 2, generator=g)
    var_d = a @ a.transpose(-1, -2) + 0.1 * torch.eye(2)
    b = torch.randn(1, 1, 4, 2, 2, generator=g)
    var_s = b @ b.transpose(-1, -2) + 0.1 * torch.eye(2)
    kp_d = {"mean": torch.rand(1, 3, 4, 2, generator=g) * 2 - 1, "var": var_d}
    kp_s = {"mean": torch.rand(1, 1, 4, 2, generator=g) * 2 - 1, "var": var_s}
    out = normalize_kp(kp_d, kp_s, adapt_variance=True)
    torch.testing.assert_close(out["var"][:, 0], var_s[:, 0], atol=1e-5, rtol=1e-5)
    assert torch.equal(out["mean"], kp_d["mean"])  # absolute: locations unchanged
    assert torch.equal(normalize_kp(kp_d, kp_s)["var"], var_d)


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model_params"):
        MonkeyNetConfig.from_dict({"dataset_params": {}})
    bad = copy.deepcopy(BASE)
    bad["model_params"]["generator_params"]["dense_motion_params"]["foo"] = 1
    with pytest.raises(ConfigError, match=r"dense_motion_params has unknown key\(s\) \['foo'\]"):
        MonkeyNetConfig.from_dict(bad)
    with pytest.raises(ConfigError, match="single"):
        _cfg(kp_variance="single")
    bad = copy.deepcopy(BASE)
    del bad["model_params"]["kp_detector_params"]["temperature"]
    with pytest.raises(ConfigError, match="temperature"):
        MonkeyNetConfig.from_dict(bad)
    p = tmp_path / "bad.yaml"
    p.write_text("model_params: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        MonkeyNetConfig.from_yaml(p)
    with pytest.raises(ConfigError, match="cannot read"):
        MonkeyNetConfig.from_yaml(tmp_path / "nope.yaml")


def test_input_errors() -> None:
    kp_detector, generator, _ = load_monkeynet(_cfg())
    with pytest.raises(InputError, match=r"\[B, C, D, H, W\]"):
        transfer_one(generator, kp_detector, torch.rand(1, 3, 64, 64), torch.rand(1, 3, 2, 64, 64))
    with pytest.raises(InputError, match="exactly one frame"):
        transfer_one(generator, kp_detector, torch.rand(1, 3, 2, 64, 64), torch.rand(1, 3, 2, 64, 64))
    with pytest.raises(InputError, match="must agree"):
        transfer_one(generator, kp_detector, torch.rand(1, 3, 1, 64, 64), torch.rand(1, 3, 2, 32, 32))
    with pytest.raises(InputError, match="divisible by 16"):
        check_frame_size(kp_detector, generator, 48, 64)
    check_frame_size(kp_detector, generator, 96, 64)
