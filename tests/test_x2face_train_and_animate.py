"""X2Face gradients (for photometric training) and the any-resolution animate_frame helper."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fomm.errors import InputError
from fomm.models.x2face import X2Face, X2FaceConfig, load_x2face


def _pair(seed: int, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # Smooth random images: photometric L1 between random pixels would give near-random gradients.
    low = torch.rand(2 * batch, 3, 16, 16, generator=g)
    imgs = torch.nn.functional.interpolate(low, size=(256, 256), mode="bilinear", align_corners=False)
    return imgs[:batch], imgs[batch:]


def test_backward_reaches_every_parameter_and_l1_step_helps() -> None:
    torch.manual_seed(0)
    model = X2Face(X2FaceConfig(ngf=4)).train()
    source, driver = _pair(1)

    def loss_fn() -> torch.Tensor:
        return (model(driver, source) - driver).abs().mean()

    loss = loss_fn()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    opt.step()
    # Same batch, so BatchNorm batch statistics are unchanged and a small step must lower the loss.
    with torch.no_grad():
        assert loss_fn() < loss


def test_pose_edit_is_detached(golden_dir: Path) -> None:
    """As in the original, the image loss does not reach the pose heads or the driving encoder on the pose path."""
    model = load_x2face(golden_dir / "x2face_small_model.pth", posereg=golden_dir / "x2face_small_posereg.pth",
                        posetobottle=golden_dir / "x2face_small_posetobottle.pth")
    source, driver = _pair(2, batch=1)
    out = model.forward_pose(driver, torch.tensor([[0.1, -0.2, 0.35]]), source)
    out.mean().backward()
    level = model._bottleneck_level()
    for p in list(level.posefrombottle.parameters()) + list(level.bottlefrompose.parameters()) \
            + list(level.down.parameters()):
        assert p.grad is None
    assert level.up[2].weight.grad is not None and level.up[2].weight.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def model(golden_dir: Path) -> X2Face:
    return load_x2face(golden_dir / "x2face_small_model.pth")


def test_animate_frame_at_256_is_forward(model: X2Face) -> None:
    source, driver = _pair(3)
    with torch.no_grad():
        assert torch.equal(model.animate_frame(source, driver), model(driver, source))


@pytest.mark.parametrize(("src_size", "drv_size"), [((128, 128), (128, 128)), ((300, 200), (64, 64))])
def test_animate_frame_resizes(model: X2Face, src_size: tuple[int, int], drv_size: tuple[int, int]) -> None:
    g = torch.Generator().manual_seed(4)
    source = torch.rand(2, 3, *src_size, generator=g)
    driver = torch.rand(2, 3, *drv_size, generator=g)
    out = model.animate_frame(source, driver)
    assert out.shape == (2, 3, *src_size)
    assert out.min() >= 0 and out.max() <= 1
    # Equivalent to animating at 256 and resizing the prediction back.
    ref = model(torch.nn.functional.interpolate(driver, size=(256, 256), mode="bilinear", align_corners=False),
                torch.nn.functional.interpolate(source, size=(256, 256), mode="bilinear", align_corners=False,
                                                antialias=src_size[0] > 256 or src_size[1] > 256))
    ref = torch.nn.functional.interpolate(ref, size=src_size, mode="bilinear", align_corners=False,
                                          antialias=src_size[0] < 256 or src_size[1] < 256)
    assert (out - ref.clamp(0, 1)).abs().max() < 1e-5


def test_bad_inputs_raise_input_error(model: X2Face) -> None:
    x = torch.rand(1, 3, 128, 128)
    with pytest.raises(InputError, match="256x256"):
        model(x, x)
    with pytest.raises(InputError, match=r"\[B, 3, H, W\]"):
        model.animate_frame(torch.rand(3, 64, 64), torch.rand(1, 3, 64, 64))
    with pytest.raises(InputError, match="batch sizes differ"):
        model.animate_frame(torch.rand(2, 3, 64, 64), torch.rand(1, 3, 64, 64))
    y = torch.rand(1, 3, 256, 256)
    with pytest.raises(InputError, match="no pose branch"):
        model.forward_pose(y, torch.zeros(1, 3), y)
    with pytest.raises(InputError, match="at least one source"):
        model(y)
