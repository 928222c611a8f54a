"""Exact inference rewrites of the FOMM generator: the same function with fewer FLOPs.

The decoder's :class:`~fomm.models.fomm.blocks.UpBlock2d` upsamples by nearest neighbour and then runs a 3x3 conv
at the doubled size. Every output pixel of that conv sees a 3x3 window of the upsampled map, which holds only 2x2
distinct input pixels; which taps fall on the same input pixel depends only on the output pixel's phase
``(row % 2, col % 2)``. Summing those taps gives four 2x2 kernels (one per phase) that run on the *input* grid:
16 multiply-adds per input pixel and output channel instead of 36, i.e. 2.25x fewer FLOPs, and no upsampled copy of
the input. The batch norm that follows is folded into the conv (inference statistics), so the block becomes one
conv, an interleave of the four phases, and a ReLU. Results equal the original up to float rounding (~1e-6).

At vox-256 the two up blocks are ~19 of the ~87 GFLOP of the per-frame stage; this makes them ~8.6.

The other batch norms are folded too (:func:`fused_view` rewrites a whole network): conv-BN-ReLU blocks become
conv-ReLU, and the pre-activation residual blocks fold their second norm into the first conv and apply the first as
one multiply-add. The values are unchanged and one pass over the activations per norm goes; the time saved is small
(the convs dominate: the six 256-channel vox-256 bottleneck blocks take ~62 ms in bf16 at batch 1 either way). The
point is what it enables: blocks without batch norms can run in bf16 without autocast (below). The dense-motion
network's mask and occlusion heads, two 7x7 convs on the same input, are merged into one (~1.4 ms saved at vox-256:
such heads are bound by reading their input, not by their few output channels).

Every rewritten block casts its input to its conv weights' dtype, so a region whose weights are stored in bf16/fp16
(:class:`fomm.models.fomm.precision.LowPrecision`) runs in that dtype without autocast. Residual blocks keep the
residual stream in the dtype it arrives in (fp32 in the generator's bottleneck: measured 76 dB against fp32 for six
bf16 blocks, 67 dB with a bf16 stream, at the same speed).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from fomm.models.fomm.blocks import Decoder, DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from fomm.models.fomm.dense_motion import DenseMotionNetwork


def _merge_taps(w: torch.Tensor, dim: int, phase: int) -> torch.Tensor:
    """Collapse a 3-tap axis of ``w`` to the 2 taps seen by output phase ``phase`` of a nearest-x2 upsample.

    Phase 0 (even output rows) sees input rows ``(i-1, i, i)`` under taps 0, 1, 2; phase 1 sees ``(i, i, i+1)``.
    """
    w0, w1, w2 = w.unbind(dim)
    return torch.stack((w0, w1 + w2) if phase == 0 else (w0 + w1, w2), dim)


def _norm_affine(norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` ``[C]`` with ``norm(x) == x * scale + shift`` per channel (inference statistics)."""
    if norm.training or norm.running_var is None or norm.running_mean is None:
        raise ValueError("the batch norm must be in eval mode with running statistics (inference only)")
    weight = norm.weight if norm.weight is not None else torch.ones_like(norm.running_var)
    bias = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_mean)
    scale = weight / torch.sqrt(norm.running_var + norm.eps)
    return scale, bias - norm.running_mean * scale


@torch.no_grad()
def fold_batch_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv equal to ``norm(conv(x))`` (``norm`` in eval mode); same device, dtype and memory format."""
    scale, shift = _norm_affine(norm)
    out = copy.deepcopy(conv)
    out.weight.mul_(scale.view(-1, 1, 1, 1).to(out.weight.dtype))
    bias = conv.bias * scale + shift if conv.bias is not None else shift
    out.bias = nn.Parameter(bias.to(out.weight.dtype))
    return out


@torch.no_grad()
def merge_convs(convs: list[nn.Conv2d]) -> nn.Conv2d:
    """One conv computing ``torch.cat([c(x) for c in convs], 1)``: convs with the same input and geometry."""
    first = convs[0]
    if any(c.in_channels != first.in_channels or c.kernel_size != first.kernel_size or c.padding != first.padding
           or c.stride != first.stride or c.dilation != first.dilation or c.groups != first.groups for c in convs):
        raise ValueError("merge_convs: the convs differ in input channels or geometry")
    out = copy.deepcopy(first)
    out.out_channels = sum(c.out_channels for c in convs)
    out.weight = nn.Parameter(torch.cat([c.weight for c in convs]))
    biases = [c.bias if c.bias is not None else c.weight.new_zeros(c.out_channels) for c in convs]
    out.bias = nn.Parameter(torch.cat(biases))
    return out


class ConvReLU2d(nn.Module):
    """Inference form of :class:`SameBlock2d` (``[B, Cin, H, W] -> [B, Cout, H, W]``), :class:`DownBlock2d`
    (``pool``: then a 2x2 average pool, ``H/2, W/2``) and :class:`UpBlock2d` (``upsample``: nearest x2 first,
    ``2H, 2W``): the conv with its batch norm folded, then ReLU."""

    def __init__(self, conv: nn.Conv2d, pool: bool = False, upsample: bool = False) -> None:
        super().__init__()
        self.conv = conv
        self.pool = pool
        self.upsample = upsample

    @classmethod
    def from_block(cls, block: SameBlock2d | DownBlock2d) -> ConvReLU2d:
        return cls(fold_batch_norm(block.conv, block.norm), pool=isinstance(block, DownBlock2d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.conv.weight.dtype)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        out = torch.relu_(self.conv(x))
        return F.avg_pool2d(out, kernel_size=2) if self.pool else out


class FoldedResBlock2d(nn.Module):
    """Inference form of :class:`ResBlock2d` (pre-activation, BN-ReLU-conv-BN-ReLU-conv + x), ``[B, C, H, W]`` kept:
    the first norm is one multiply-add (``scale``/``shift`` ``[1, C, 1, 1]``, fp32), the second is folded into
    ``conv1``. The convs run in their weights' dtype; the residual sum stays in the input's dtype."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor, conv1: nn.Conv2d, conv2: nn.Conv2d) -> None:
        super().__init__()
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1))
        self.register_buffer("shift", shift.reshape(1, -1, 1, 1))
        self.conv1 = conv1
        self.conv2 = conv2

    @classmethod
    @torch.no_grad()
    def from_res_block(cls, block: ResBlock2d) -> FoldedResBlock2d:
        scale, shift = _norm_affine(block.norm1)
        return cls(scale.clone(), shift.clone(), fold_batch_norm(block.conv1, block.norm2), copy.deepcopy(block.conv2))

    def _apply(self, fn, recurse=True):
        # Keep the norm's scale/shift fp32 when the convs are cast to bf16/fp16 (``module.to(dtype)``): the residual
        # stream they act on is usually fp32.
        scale, shift = self.scale, self.shift
        out = super()._apply(fn, recurse)
        if scale.is_floating_point() and self.scale.dtype != scale.dtype:
            self.scale, self.shift = self.scale.to(scale.dtype), self.shift.to(shift.dtype)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = self.conv1.weight.dtype
        h = torch.relu_(torch.addcmul(self.shift, x, self.scale)).to(dtype)
        h = torch.relu_(self.conv1(h))
        return self.conv2(h).to(x.dtype) + x


class PolyphaseUpBlock2d(nn.Module):
    """Inference form of :class:`UpBlock2d`: ``[B, Cin, H, W] -> [B, Cout, 2H, 2W]``, same values, 2.25x fewer
    FLOPs (see the module docstring). Build it with :meth:`from_up_block` from a block in eval mode.

    ``conv`` is a 2x2 conv with padding 1 and ``4 * Cout`` outputs (channel ``4c + 2a + b`` is output channel ``c``
    at phase ``(a, b)``); its ``(H+1) x (W+1)`` output holds phase ``(a, b)`` at offset ``(a, b)``.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.out_features = out_features
        self.conv = nn.Conv2d(in_features, 4 * out_features, kernel_size=2, padding=1)

    @staticmethod
    def supports(block: UpBlock2d) -> bool:
        """Whether ``block`` has a polyphase form (a 3x3, padding 1, stride 1, ungrouped conv)."""
        conv = block.conv
        return conv.kernel_size == (3, 3) and conv.padding == (1, 1) and conv.stride == (1, 1) and conv.groups == 1

    @classmethod
    @torch.no_grad()
    def from_up_block(cls, block: UpBlock2d) -> PolyphaseUpBlock2d:
        conv, norm = block.conv, block.norm
        if not cls.supports(block):
            raise ValueError("only 3x3, padding 1, stride 1 up blocks have a polyphase form")
        scale, shift = _norm_affine(norm)
        w = conv.weight * scale.view(-1, 1, 1, 1)
        bias = shift + conv.bias * scale
        kernels = [_merge_taps(_merge_taps(w, 2, a), 3, b) for a in (0, 1) for b in (0, 1)]
        out = cls(conv.in_channels, conv.out_channels)
        out.conv.weight.copy_(torch.stack(kernels, 1).reshape(4 * conv.out_channels, conv.in_channels, 2, 2))
        out.conv.bias.copy_(bias.repeat_interleave(4))
        return out.to(device=conv.weight.device, dtype=conv.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        z = self.conv(x.to(self.conv.weight.dtype))
        b, c = z.shape[0], self.out_features
        if torch.onnx.is_in_onnx_export() or torch.jit.is_tracing():
            # Graph form: slices + DepthToSpace; ONNX has no strided in-place writes.
            z5 = z.reshape(b, c, 4, h + 1, w + 1)
            phases = [z5[:, :, 2 * a + p, a:a + h, p:p + w] for a in (0, 1) for p in (0, 1)]
            return F.relu(F.pixel_shuffle(torch.stack(phases, 2).reshape(b, 4 * c, h, w), 2))
        # Eager: write each phase straight into its strided slots of the output (no stacked temporary), keeping
        # the input's memory format (channels-last stays channels-last).
        keep_channels_last = (x.dim() == 4 and not x.is_contiguous()
                              and x.is_contiguous(memory_format=torch.channels_last))
        fmt = torch.channels_last if keep_channels_last else torch.contiguous_format
        out = torch.empty(b, c, 2 * h, 2 * w, dtype=z.dtype, device=z.device, memory_format=fmt)
        slots = out.view(b, c, h, 2, w, 2)
        z5 = z.view(b, c, 4, h + 1, w + 1)
        for a in (0, 1):
            for p in (0, 1):
                slots[:, :, :, a, :, p] = z5[:, :, 2 * a + p, a:a + h, p:p + w]
        return torch.relu_(out)


def shallow_view(parent: nn.Module, **replacements: nn.Module) -> nn.Module:
    """A shallow copy of ``parent`` that shares all its submodules and parameters except the named
    ``replacements``; ``parent`` itself is left unchanged. (``copy.copy`` alone would share the ``_modules`` dict,
    so assigning a submodule on the copy would also change the original.)"""
    view = copy.copy(parent)
    view._modules = dict(parent._modules)
    for name, child in replacements.items():
        setattr(view, name, child)
    return view


def _fused_block(module: nn.Module, polyphase: bool) -> nn.Module | None:
    if isinstance(module, UpBlock2d):
        if polyphase and PolyphaseUpBlock2d.supports(module):
            return PolyphaseUpBlock2d.from_up_block(module)
        return ConvReLU2d(fold_batch_norm(module.conv, module.norm), upsample=True)
    if isinstance(module, ResBlock2d):
        return FoldedResBlock2d.from_res_block(module)
    if isinstance(module, (SameBlock2d, DownBlock2d)):
        return ConvReLU2d.from_block(module)
    return None


def fused_view(module: nn.Module) -> nn.Module:
    """``module`` for inference with every FOMM conv-BN block rewritten (see the module docstring): up blocks in
    polyphase form (outside hourglass decoders, see below), other conv-BN-ReLU blocks as conv-ReLU, residual blocks
    with folded norms, the dense-motion heads merged. Same values up to float rounding (~1e-6). Shares every module
    that has no such block inside with ``module``, which is left unchanged; later changes to the rewritten blocks'
    weights are not seen by the view (build a new one). A module in training
    mode is returned as a plain view (batch statistics cannot be folded)."""
    if module.training:
        return shallow_view(module)
    channels_last = any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
                        for p in module.parameters())

    def rewrite(m: nn.Module, polyphase: bool) -> nn.Module:
        fused = _fused_block(m, polyphase)
        if fused is not None:
            return fused.to(memory_format=torch.channels_last) if channels_last else fused
        # Polyphase kernels hold 16/9 the weights of the 3x3 conv; an hourglass decoder starts from 2x2-4x4 maps
        # with 1-2k channels, where weight traffic dominates and the plain form is faster (measured at vox-256:
        # the dense-motion hourglass in bf16 takes 18 ms plain, 42 ms polyphase).
        polyphase = polyphase and not isinstance(m, Decoder)
        replaced = {name: new for name, child in m.named_children()
                    if (new := rewrite(child, polyphase)) is not child}
        if isinstance(m, DenseMotionNetwork):
            replaced["merged_heads"] = merge_convs([m.mask] + ([m.occlusion] if m.occlusion is not None else []))
            if channels_last:
                replaced["merged_heads"] = replaced["merged_heads"].to(memory_format=torch.channels_last)
        return shallow_view(m, **replaced) if replaced else m

    out = rewrite(module, True)
    return out if out is not module else shallow_view(module)


__all__ = ["ConvReLU2d", "FoldedResBlock2d", "PolyphaseUpBlock2d", "fold_batch_norm", "fused_view", "merge_convs",
           "shallow_view"]
