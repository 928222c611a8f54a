"""Training losses: perceptual (VGG19 / pyramid L1), equivariance Transform, LSGAN and feature matching."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fomm.errors import ConfigError, FommError
from fomm.train.losses import (
    ImagePyramid,
    PerceptualLoss,
    PyramidL1Loss,
    Transform,
    VGG19Features,
    build_reconstruction_loss,
    discriminator_gan_loss,
    equivariance_jacobian_loss,
    equivariance_value_loss,
    feature_matching_loss,
    generator_gan_loss,
    ssim,
)

# Convolution positions in torchvision's vgg19().features (the pooling/ReLU layers have no weights).
TV_CONVS = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


def _torchvision_layout_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A random VGG19 state dict in the key layout of torchvision's vgg19-dcbb9e9d.pth (incl. classifier)."""
    g = torch.Generator().manual_seed(seed)
    chans = [3, 64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]
    state = {}
    for i, idx in enumerate(TV_CONVS):
        state[f"features.{idx}.weight"] = torch.randn(chans[i + 1], chans[i], 3, 3, generator=g) * 0.05
        state[f"features.{idx}.bias"] = torch.randn(chans[i + 1], generator=g) * 0.01
    state["classifier.0.weight"] = torch.zeros(8, 8)  # stands in for the (huge) classifier; must be ignored
    return state


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save(_torchvision_layout_state(), path)
    return path


def test_vgg_loads_torchvision_layout(vgg_file: Path) -> None:
    vgg = VGG19Features()
    vgg.load_weights(vgg_file)
    ref = _torchvision_layout_state()
    assert torch.equal(vgg.features[28].weight, ref["features.28.weight"])
    assert set(vgg.state_dict()) == {k for k in ref if k.startswith("features.") and int(k.split(".")[1]) <= 28}
    feats = vgg(torch.rand(1, 3, 32, 32))
    assert [f.shape[1:] for f in feats] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]


def test_vgg_missing_and_wrong_files(tmp_path: Path) -> None:
    with pytest.raises(FommError, match="does not exist.*pyramid_l1"):
        VGG19Features().load_weights(tmp_path / "nope.pth")
    state = _torchvision_layout_state()
    del state["features.28.weight"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(FommError, match="features.28.weight"):
        VGG19Features().load_weights(tmp_path / "partial.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(FommError, match="not a readable"):
        VGG19Features().load_weights(tmp_path / "junk.pth")


def test_vgg_url_offline_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(FommError, match="cannot download VGG19 weights.*vgg19_weights"):
        VGG19Features().load_weights("https://example.invalid/vgg19-dcbb9e9d.pth")
    # A file already in the hub cache is used without any download.
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(_torchvision_layout_state(), tmp_path / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth")
    VGG19Features().load_weights("https://example.invalid/vgg19-dcbb9e9d.pth")


def test_perceptual_loss(vgg_file: Path) -> None:
    # 32 px with scale 0.25 also exercises a pyramid level too small for the deepest layers.
    loss = PerceptualLoss([1, 0.5, 0.25], [10, 10, 10, 10, 10], vgg_weights=vgg_file)
    target = torch.rand(1, 3, 32, 32)
    assert float(loss(target, target)) == 0.0
    pred = (target + 0.1 * torch.randn_like(target)).clamp(0, 1).requires_grad_(True)
    value = loss(pred, target)
    assert float(value.detach()) > 0
    value.backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    assert all(p.grad is None for p in loss.vgg.parameters())
    with pytest.raises(ConfigError):
        PerceptualLoss([1], [1, 1], vgg_weights=None)


def test_pyramid_l1_and_ssim() -> None:
    target = torch.rand(2, 3, 64, 64)
    for ssim_weight in (0.0, 1.0):
        loss = PyramidL1Loss([1, 0.5, 0.25], weight=10, ssim_weight=ssim_weight)
        assert float(loss(target, target)) == pytest.approx(0.0, abs=1e-6)
        pred = torch.rand(2, 3, 64, 64, requires_grad=True)
        value = loss(pred, target)
        assert float(value.detach()) > 0
        value.backward()
        assert float(pred.grad.abs().sum()) > 0
    assert float(ssim(target, target)) == pytest.approx(1.0, abs=1e-5)
    assert float(ssim(target, torch.rand_like(target))) < 0.5


def test_build_reconstruction_loss(vgg_file: Path) -> None:
    assert isinstance(build_reconstruction_loss({"perceptual_backend": "pyramid_l1"}), PyramidL1Loss)
    loss = build_reconstruction_loss({"scales": [1, 0.5], "vgg19_weights": str(vgg_file),
                                      "loss_weights": {"perceptual": [1, 1, 1, 1, 1]}})
    assert isinstance(loss, PerceptualLoss) and loss.pyramid.scales == [1, 0.5]
    with pytest.raises(ConfigError):
        build_reconstruction_loss({"perceptual_backend": "lpips"})


def test_image_pyramid_keys() -> None:
    out = ImagePyramid([1, 0.5, 0.25], 3)(torch.rand(1, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "prediction_1": (1, 3, 64, 64), "prediction_0.5": (1, 3, 32, 32), "prediction_0.25": (1, 3, 16, 16)}


# --- equivariance ----------------------------------------------------------------------------------------
def test_identity_transform_is_identity() -> None:
    t = Transform(2, sigma_affine=0.0, sigma_tps=0.0, points_tps=5)
    coords = torch.rand(2, 7, 2) * 2 - 1
    assert torch.allclose(t.warp_coordinates(coords), coords, atol=1e-6)
    img = torch.rand(2, 3, 16, 16)
    assert torch.allclose(t.transform_frame(img), img, atol=1e-5)
    jac = t.jacobian(coords)
    assert torch.allclose(jac, torch.eye(2).expand(2, 7, 2, 2), atol=1e-5)


def test_jacobian_of_affine_is_its_matrix() -> None:
    t = Transform(3, sigma_affine=0.3, generator=torch.Generator().manual_seed(0))
    coords = torch.rand(3, 5, 2) * 2 - 1
    jac = t.jacobian(coords)
    assert torch.allclose(jac, t.theta[:, None, :, :2].expand(3, 5, 2, 2), atol=1e-6)
    warped = t.warp_coordinates(coords)
    expected = torch.einsum("bij,bnj->bni", t.theta[:, :, :2], coords) + t.theta[:, None, :, 2]
    assert torch.allclose(warped, expected, atol=1e-6)


def test_tps_jacobian_matches_finite_differences() -> None:
    t = Transform.from_params(2, {"sigma_affine": 0.05, "sigma_tps": 0.5, "points_tps": 5},
                              generator=torch.Generator().manual_seed(1))
    coords = (torch.rand(2, 4, 2, dtype=torch.float64) * 1.6 - 0.8)
    t.theta = t.theta.double()
    t.control_params = t.control_params.double()
    jac = t.jacobian(coords)
    eps = 1e-6
    for axis in range(2):
        d = torch.zeros_like(coords)
        d[..., axis] = eps
        fd = (t.warp_coordinates(coords + d) - t.warp_coordinates(coords - d)) / (2 * eps)
        assert torch.allclose(jac[..., :, axis], fd, atol=1e-5)
    assert not torch.allclose(jac, t.theta[:, None, :, :2].expand_as(jac))  # TPS part is non-trivial
    with pytest.raises(ConfigError):
        Transform.from_params(1, {"sigma": 1})


def test_transform_frame_moves_content_consistently() -> None:
    """out(p) = frame(warp(p)): a bright pixel at frame position q appears where warp(p) = q."""
    t = Transform(1, sigma_affine=0.0)
    t.theta = torch.tensor([[[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]])  # x' = x + 0.5 (a quarter of the width)
    img = torch.zeros(1, 1, 9, 9)
    img[0, 0, 4, 6] = 1.0  # x = 6/8*2-1 = 0.5
    out = t.transform_frame(img)
    assert out[0, 0, 4, 4] == pytest.approx(1.0)  # p.x = 0 maps to 0.5


def test_equivariance_losses() -> None:
    g = torch.Generator().manual_seed(2)
    t = Transform(2, sigma_affine=0.1, sigma_tps=0.01, points_tps=5, generator=g)
    kp_t = {"value": (torch.rand(2, 10, 2, generator=g) * 1.6 - 0.8).requires_grad_(True),
            "jacobian": (torch.eye(2) + 0.1 * torch.randn(2, 10, 2, 2, generator=g)).requires_grad_(True)}
    # Keypoints of the untransformed frame that are exactly consistent with the transform.
    consistent = {"value": t.warp_coordinates(kp_t["value"]).detach(),
                  "jacobian": torch.matmul(t.jacobian(kp_t["value"]), kp_t["jacobian"]).detach()}
    assert equivariance_value_loss(consistent, kp_t, t).item() < 1e-6
    assert equivariance_jacobian_loss(consistent, kp_t, t).item() < 1e-5
    wrong = {"value": consistent["value"] + 0.1, "jacobian": consistent["jacobian"] * 1.5}
    v = equivariance_value_loss(wrong, kp_t, t)
    j = equivariance_jacobian_loss(wrong, kp_t, t)
    assert v.item() > 0.05 and j.item() > 0.05
    (v + j).backward()
    assert float(kp_t["value"].grad.abs().sum()) > 0 and float(kp_t["jacobian"].grad.abs().sum()) > 0


# --- GAN -------------------------------------------------------------------------------------------------
def _disc_out(pred: float, feats: list[torch.Tensor], scales=("1", "0.5")) -> dict:
    out = {}
    for s in scales:
        out[f"prediction_map_{s}"] = torch.full((2, 1, 4, 4), pred, requires_grad=True)
        out[f"feature_maps_{s}"] = feats
    return out


def test_gan_losses() -> None:
    feats = [torch.rand(2, 4, 8, 8), torch.rand(2, 8, 4, 4)]
    real, fake = _disc_out(1.0, feats), _disc_out(0.0, feats)
    assert generator_gan_loss(real).item() == 0.0
    assert generator_gan_loss(fake).item() == pytest.approx(2.0)  # (1 - 0)^2 at 2 scales
    assert discriminator_gan_loss(real, fake).item() == 0.0
    assert discriminator_gan_loss(fake, real).item() == pytest.approx(4.0)
    half = _disc_out(0.5, feats)
    loss = discriminator_gan_loss(real, half)
    loss.backward()
    assert loss.item() == pytest.approx(0.5) and half["prediction_map_1"].grad is not None
    assert feature_matching_loss(real, fake, [10, 10]).item() == 0.0
    moved = [f.clone().requires_grad_(True) for f in feats]
    fm_fake = _disc_out(0.0, [moved[0] + 0.5, moved[1]])
    value = feature_matching_loss(real, fm_fake, [10, 0])
    assert value.item() == pytest.approx(10 * 0.5 * 2)
    value.backward()
    assert moved[1].grad is None or float(moved[1].grad.abs().sum()) == 0
    assert float(moved[0].grad.abs().sum()) > 0
    with pytest.raises(ValueError):
        generator_gan_loss({"feature_maps_1": feats})


def test_vgg_small_inputs_return_shallow_levels() -> None:
    feats = VGG19Features()(torch.rand(1, 3, 8, 8))
    assert [f.shape[-1] for f in feats] == [8, 4, 2, 1]
