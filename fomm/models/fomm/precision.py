"""Reduced-precision inference choices and the quality measure used to accept them.

What runs in bf16/fp16 (weights stored in that dtype, batch norms folded, no autocast: each region casts its own
input): the generator's bottleneck and up blocks (about 90% of the generator's per-frame FLOPs at vox-256), the two
hourglass trunks (the dense-motion network's and the keypoint detector's) and the final 7x7 conv, on its input minus
a per-channel centre (:class:`CenteredLowPrecisionConv`). What stays fp32: the heads that turn the trunks into
numbers the warp depends on (keypoint heatmaps and their softargmax, jacobians, the softmax masks and the occlusion
map), the deformation field and every grid sample, and the residual streams.

Measured on real inputs at vox-256 (random weights with a calibrated output range; ``benchmarks/realtime.py``):
42.8 dB PSNR against fp32 for all of the above. The final conv in plain bf16 took it to 39 dB (below the 40 dB bar);
centred, it costs no measurable PSNR and half the time of the fp32 conv.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from fomm.errors import FommError
from fomm.models.fomm.fuse import ConvReLU2d, FoldedResBlock2d, PolyphaseUpBlock2d, fused_view, shallow_view

PRECISIONS = ("fp32", "bf16", "fp16")


def cpu_supports_bf16() -> bool:
    """True when oneDNN has native bf16 kernels on this CPU (AVX512-BF16 / AMX); elsewhere bf16 is emulated and
    slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (``None`` for fp32).

    Raises:
        FommError: unknown precision, fp16 on CPU, or bf16 on a CPU without bf16 kernels.
    """
    dev = torch.device(device)
    if precision not in PRECISIONS:
        raise FommError(f"unknown precision '{precision}'; choose one of: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "fp16":
        if dev.type != "cuda":
            raise FommError("--precision fp16 needs a CUDA device (on CPU use bf16 where supported, or fp32)")
        return torch.float16
    if dev.type == "cpu" and not cpu_supports_bf16():
        raise FommError("--precision bf16: this CPU has no native bf16 support (AVX512-BF16/AMX); use fp32")
    return torch.bfloat16


class LowPrecision(nn.Module):
    """Runs ``module`` in ``dtype``: a :func:`~fomm.models.fomm.fuse.fused_view` of it (batch norms folded) whose conv
    weights are stored in ``dtype``. The fused blocks cast their inputs to that dtype themselves, so no autocast is
    needed (autocast would wrap each remaining op in casts); residual streams keep the dtype they arrive in.
    ``[B, C, H, W]`` in; the output in fp32 (``float_output``, for an fp32 consumer) or as computed (for another
    low-precision block). ``module`` is unchanged.

    Raises:
        ValueError: ``module`` holds convs that are not part of a fusable block (they would receive fp32 inputs).
    """

    def __init__(self, module: nn.Module, dtype: torch.dtype, float_output: bool = True) -> None:
        super().__init__()
        fused = copy.deepcopy(fused_view(module))
        fused_convs = {id(m.conv) for m in fused.modules() if isinstance(m, (ConvReLU2d, PolyphaseUpBlock2d))}
        fused_convs |= {id(c) for m in fused.modules() if isinstance(m, FoldedResBlock2d) for c in (m.conv1, m.conv2)}
        loose = [name for name, m in fused.named_modules() if isinstance(m, nn.Conv2d) and id(m) not in fused_convs]
        if loose:
            raise ValueError(f"LowPrecision: convs outside FOMM's conv-BN blocks cannot run in {dtype}: {loose}")
        for m in fused.modules():
            if isinstance(m, nn.Conv2d):
                m.to(dtype)
        self.module = fused
        self.dtype = dtype
        self.float_output = float_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.module(x)
        return out.float() if self.float_output else out


class CenteredLowPrecisionConv(nn.Module):
    """A conv run in ``dtype`` on its input minus a per-channel centre, plus the fp32 conv of the centre:
    ``conv(x) == conv_lowp(x - c) + conv_fp32(c)`` in exact arithmetic (the zero padding included, since the
    centre's map is convolved with the same padding).

    Why: rounding the weights to bf16 perturbs every output by ``sum(dw * x)``. For the generator's final 7x7 conv
    the input is a ReLU output with a large per-channel mean, so that sum is dominated by ``sum(dw * mean)``, a
    constant that shows up as a colour shift (measured at vox-256: the final conv in plain bf16 takes the frame to
    39 dB). Convolving only the deviations from the mean removes that term: +23 dB for this conv alone.

    The centre is the per-channel mean of the first input seen after :meth:`reset` (the animator calibrates it on
    an identity decode of the source, so it depends on the source only). ``[B, C, H, W]`` in (any float dtype), fp32
    ``[B, Cout, H', W']`` out. ``conv`` is shared, not copied.
    """

    def __init__(self, conv: nn.Conv2d, dtype: torch.dtype) -> None:
        super().__init__()
        self.conv = conv
        self.dtype = dtype
        fmt = (torch.channels_last if conv.weight.is_contiguous(memory_format=torch.channels_last)
               and not conv.weight.is_contiguous() else torch.contiguous_format)
        self.register_buffer("weight_lowp", conv.weight.detach().to(dtype).contiguous(memory_format=fmt))
        self.center: torch.Tensor | None = None  # [1, C, 1, 1] in ``dtype``
        self._center_map: dict[tuple, torch.Tensor] = {}  # (H, W, device) -> fp32 conv of the centre, bias included

    def reset(self) -> None:
        """Forget the centre; the next input sets it."""
        self.center = None
        self._center_map.clear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if self.center is None:
            self.center = x.float().mean(dim=(0, 2, 3), keepdim=True).to(self.dtype)
        key = (x.shape[-2], x.shape[-1], x.device)
        base = self._center_map.get(key)
        if base is None:
            flat = self.center.float().expand(1, -1, *x.shape[-2:])
            base = F.conv2d(flat, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
            self._center_map[key] = base
        # Subtract before rounding to ``dtype`` (an fp32 input would otherwise lose its low bits to the mean).
        dev = torch.sub(x, self.center) if x.dtype == self.dtype else torch.sub(x, self.center.to(x.dtype))
        dev = dev.to(self.dtype)
        out = F.conv2d(dev, self.weight_lowp, None, conv.stride, conv.padding, conv.dilation, conv.groups)
        return out.float().add_(base)


def low_precision_kp_detector(kp_detector: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A keypoint detector whose hourglass trunk (``predictor``) runs in ``dtype``; the heatmap and jacobian heads
    and the softargmax stay fp32. Shares every other module with ``kp_detector``."""
    if getattr(kp_detector, "predictor", None) is None:
        return kp_detector
    return shallow_view(kp_detector, predictor=LowPrecision(kp_detector.predictor, dtype))


def low_precision_view(generator: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A generator whose bottleneck, up blocks and dense-motion hourglass trunk run in ``dtype``
    (:class:`LowPrecision`: batch norms folded, conv weights stored in ``dtype``) and everything else in fp32: the
    dense-motion heads (masks, occlusion), the deformation and every warp, and the final conv, so the warp is not
    quantised and the output is rounded once. Call ``decode`` as usual, without autocast. Shares every other module
    with ``generator``, which is left unchanged."""
    parts: dict[str, nn.Module] = {"bottleneck": LowPrecision(generator.bottleneck, dtype)}
    # The up blocks hand ``dtype`` to each other and to the centred final conv.
    parts["up_blocks"] = nn.ModuleList([LowPrecision(b, dtype, float_output=False) for b in generator.up_blocks])
    parts["final"] = CenteredLowPrecisionConv(generator.final, dtype)
    dense = getattr(generator, "dense_motion_network", None)
    if dense is not None and getattr(dense, "hourglass", None) is not None:
        parts["dense_motion_network"] = shallow_view(dense, hourglass=LowPrecision(dense.hourglass, dtype))
    return shallow_view(generator, **parts)


@torch.inference_mode()
def calibrate_low_precision(view: nn.Module, encoding, kp_source: dict[str, torch.Tensor]) -> None:
    """Set the centres of ``view``'s :class:`CenteredLowPrecisionConv` layers (a :func:`low_precision_view`) from an
    identity decode of the encoded source (driving keypoints = source keypoints), so they depend on the source
    only. Call after encoding a new source."""
    centred = [m for m in view.modules() if isinstance(m, CenteredLowPrecisionConv)]
    if not centred:
        return
    for m in centred:
        m.reset()
    view.decode(encoding, kp_source=kp_source, kp_driving=kp_source, with_deformed=False)


def psnr(estimate: torch.Tensor, reference: torch.Tensor, peak: float | None = None) -> float:
    """PSNR in dB of ``estimate`` against ``reference`` (same shape).

    ``peak`` defaults to the reference's peak-to-peak range, which makes the figure independent of the signal's
    scale: with random weights the generator's outputs span a tiny range around 0.5 and a fixed peak of 1 would
    report a flattering PSNR. ``inf`` when the two are identical.
    """
    ref = reference.detach().double()
    est = estimate.detach().double()
    if peak is None:
        peak = float(ref.max() - ref.min())
    mse = float(((est - ref) ** 2).mean())
    if mse == 0.0:
        return math.inf
    if peak <= 0.0:
        return -math.inf
    return 10.0 * math.log10(peak * peak / mse)


__all__ = ["PRECISIONS", "CenteredLowPrecisionConv", "LowPrecision", "autocast_dtype", "calibrate_low_precision",
           "cpu_supports_bf16", "low_precision_kp_detector", "low_precision_view", "psnr"]
