"""X2Face's two encoder-decoders: the skip U-Net (embedding network) and the skip-less one (driving network).

Both are 8-level pix2pix-style encoder-decoders over a fixed 256x256 input: every level halves the resolution
with a 4x4 stride-2 convolution, so the innermost feature map is 1x1. Decoders upsample with bilinear
``align_corners=True`` (the torch 0.2 behaviour the released weights were trained with) followed by a 3x3
convolution. Norm layers are BatchNorm and no convolution has a bias.

Attribute names (``netG``, ``model``, ``up``, ``down``, ``submodule``, ``posefrombottle``, ``bottlefrompose``)
and the order in which children are registered reproduce the released checkpoint's ``state_dict`` keys exactly,
so the original files load without any key remapping.
"""

from __future__ import annotations

import torch
from torch import nn

#: Side of the only input size the networks accept (8 stride-2 convolutions down to 1x1).
IMAGE_SIZE = 256
NUM_LEVELS = 8


def _upsample() -> nn.Module:
    # align_corners=True is what torch 0.2 did; False changes the fixture outputs by ~0.65.
    return nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)


def _down_conv(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=4, stride=2, padding=1, bias=False)


def _up_conv(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=1, padding=1, bias=False)


class UNetLevel(nn.Module):
    """One resolution level of the encoder-decoder, wrapping the deeper levels in ``submodule``.

    ``down``: (LeakyReLU 0.2) -> 4x4/2 conv -> (BatchNorm); the outermost level has neither activation nor norm,
    the innermost no norm. ``up``: ReLU -> bilinear x2 -> 3x3 conv -> BatchNorm (outermost: no norm, optional
    Tanh). With ``skip`` the level returns ``cat([up(...), x], 1)`` (decoder output first, then the input), which is why
    the decoder convolutions of skip levels take twice the encoder width.

    Args:
        outer_nc: channels this level returns (before the skip concatenation).
        inner_nc: channels of the level's encoder output.
        input_nc: channels of the level's input (defaults to ``outer_nc``).
        submodule: the next deeper level, ``None`` for the innermost.
        outermost: first/last level (image in, network output out).
        skip: concatenate the input to the output (U-Net); ignored for the outermost level.
        final_tanh: append ``nn.Tanh`` to the outermost decoder (driving network).
    """

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: nn.Module | None = None, outermost: bool = False, skip: bool = True,
                 final_tanh: bool = False) -> None:
        super().__init__()
        input_nc = outer_nc if input_nc is None else input_nc
        innermost = submodule is None
        self.outermost = outermost
        self.skip = skip and not outermost
        # Skip levels below this one return their input concatenated to their output: twice the width.
        up_in = inner_nc if (innermost or not skip) else 2 * inner_nc

        up: list[nn.Module] = [nn.ReLU(), _upsample(), _up_conv(up_in, outer_nc)]
        if outermost:
            down: list[nn.Module] = [_down_conv(input_nc, inner_nc)]
            if final_tanh:
                up.append(nn.Tanh())
        else:
            down = [nn.LeakyReLU(0.2), _down_conv(input_nc, inner_nc)]
            if not innermost:
                down.append(nn.BatchNorm2d(inner_nc))
            up.append(nn.BatchNorm2d(outer_nc))
        # Registration order up, down, submodule fixes the checkpoint key order.
        self.up = nn.Sequential(*up)
        self.down = nn.Sequential(*down)
        if submodule is not None:
            self.submodule = submodule

    def _inner(self, x: torch.Tensor) -> torch.Tensor:
        h = self.down(x)
        if hasattr(self, "submodule"):
            h = self.submodule(h)
        return self.up(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._inner(x)
        if self.skip:
            # The original applies the next level's LeakyReLU in place to x before this concatenation; every
            # concatenation feeds a ReLU, and ReLU(LeakyReLU(x)) == ReLU(x), so plain x gives identical outputs.
            return torch.cat([out, x], 1)
        return out


class BottleneckLevel(nn.Module):
    """Innermost level of the driving network: exposes the 1x1 bottleneck and, for the pose model, its pose heads.

    ``down``: LeakyReLU -> 4x4/2 conv to ``inner_nc`` channels (``[B, inner_nc, 1, 1]``, the bottleneck).
    ``up``: ReLU -> bilinear x2 -> 3x3 conv -> BatchNorm.

    Args:
        outer_nc: channels returned (``8 * ngf``).
        inner_nc: bottleneck width (128 in the release).
        relu_bottleneck: return the bottleneck after ReLU (identity model: its in-place ReLU rewrote the
            tensor before it was returned) instead of the raw conv output (pose model).
        input_pose: add ``posefrombottle`` (Linear inner_nc->3) and ``bottlefrompose``
            (Linear 3->inner_nc without bias, BatchNorm1d) for driving by a head pose vector.
    """

    def __init__(self, outer_nc: int, inner_nc: int, relu_bottleneck: bool, input_pose: bool) -> None:
        super().__init__()
        self.inner_nc = inner_nc
        self.relu_bottleneck = relu_bottleneck
        self.up = nn.Sequential(nn.ReLU(), _upsample(), _up_conv(inner_nc, outer_nc), nn.BatchNorm2d(outer_nc))
        self.down = nn.Sequential(nn.LeakyReLU(0.2), _down_conv(outer_nc, inner_nc))
        self.input_pose = input_pose
        if input_pose:
            self.posefrombottle = nn.Linear(inner_nc, 3)
            self.bottlefrompose = nn.Sequential(nn.Linear(3, inner_nc, bias=False), nn.BatchNorm1d(inner_nc))

    def forward(self, x: torch.Tensor, pose: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, outer_nc, 2, 2]`` -> ``(out [B, outer_nc, 2, 2], code [B, inner_nc, 1, 1])``.

        ``code`` is the bottleneck the decoder ran on. With ``pose [B, 3]`` (target head pose) the image's
        bottleneck is moved along the pose embedding: its own pose is regressed by ``posefrombottle`` and
        ``bottlefrompose(target) - bottlefrompose(estimated)`` is added. As in the original, that edit is
        detached (the image loss does not train the pose heads or, on this path, the encoder).
        """
        bottleneck = self.down(x)
        if self.relu_bottleneck:
            # The identity model's decoder starts with an in-place ReLU that rewrote the returned bottleneck.
            bottleneck = torch.relu(bottleneck)
        if pose is not None:
            frozen = bottleneck.detach()
            estimated = self.posefrombottle(frozen.flatten(1))
            delta = self.bottlefrompose(pose) - self.bottlefrompose(estimated)
            bottleneck = frozen + delta.detach()[:, :, None, None]
        return self.up(bottleneck), bottleneck

    def estimate_pose(self, bottleneck: torch.Tensor) -> torch.Tensor:
        """Head pose regressed from a bottleneck ``[B, inner_nc, 1, 1]`` -> ``[B, 3]`` (pose model only)."""
        return self.posefrombottle(bottleneck.flatten(1))


class DrivingLevel(nn.Module):
    """Non-innermost level of the skip-less driving network; threads the bottleneck and pose through."""

    def __init__(self, outer_nc: int, inner_nc: int, submodule: nn.Module, input_nc: int | None = None,
                 outermost: bool = False) -> None:
        super().__init__()
        input_nc = outer_nc if input_nc is None else input_nc
        up: list[nn.Module] = [nn.ReLU(), _upsample(), _up_conv(inner_nc, outer_nc)]
        if outermost:
            down: list[nn.Module] = [_down_conv(input_nc, inner_nc)]
            up.append(nn.Tanh())
        else:
            down = [nn.LeakyReLU(0.2), _down_conv(input_nc, inner_nc), nn.BatchNorm2d(inner_nc)]
            up.append(nn.BatchNorm2d(outer_nc))
        self.up = nn.Sequential(*up)
        self.down = nn.Sequential(*down)
        self.submodule = submodule

    def forward(self, x: torch.Tensor, pose: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h, bottleneck = self.submodule(self.down(x), pose)
        return self.up(h), bottleneck


class SkipNet(nn.Module):
    """Embedding network: 8-level U-Net ``[B, input_nc, 256, 256] -> [B, output_nc, 256, 256]`` (no final activation).

    Widths per level: ngf, 2ngf, 4ngf, 8ngf x 5.
    """

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 64) -> None:
        super().__init__()
        widths = _level_widths(ngf)
        block = UNetLevel(widths[-1], widths[-1])  # innermost
        for outer, inner in reversed(list(zip(widths[:-1], widths[1:], strict=True))):
            block = UNetLevel(outer, inner, submodule=block)
        self.model = UNetLevel(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NoSkipNet(nn.Module):
    """Driving network: 8-level encoder-decoder without skips and with a ``inner_nc``-wide 1x1 bottleneck.

    ``[B, input_nc, 256, 256] -> (out [B, output_nc, 256, 256] in (-1, 1) (Tanh), bottleneck [B, inner_nc, 1, 1])``.
    """

    def __init__(self, input_nc: int, output_nc: int, ngf: int = 64, inner_nc: int = 128,
                 relu_bottleneck: bool = True, input_pose: bool = False) -> None:
        super().__init__()
        widths = _level_widths(ngf)
        block: nn.Module = BottleneckLevel(widths[-1], inner_nc, relu_bottleneck, input_pose)
        for outer, inner in reversed(list(zip(widths[:-1], widths[1:], strict=True))):
            block = DrivingLevel(outer, inner, submodule=block)
        self.model = DrivingLevel(output_nc, ngf, submodule=block, input_nc=input_nc, outermost=True)

    def forward(self, x: torch.Tensor, pose: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(x, pose)


class Pix2PixWrapper(nn.Module):
    """Holds a generator under ``netG`` (the original wrapper's attribute, part of every checkpoint key)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.netG = net

    def forward(self, *args: torch.Tensor | None):  # noqa: ANN201 - same return as netG
        return self.netG(*args)


def _level_widths(ngf: int) -> list[int]:
    """Encoder widths of levels 1..7 below the outermost: ngf, 2ngf, 4ngf, then 8ngf."""
    return [ngf * min(2 ** i, 8) for i in range(NUM_LEVELS - 1)]
