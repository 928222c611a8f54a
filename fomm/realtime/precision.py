"""Reduced-precision inference choices and the quality measure used to accept them.

What runs in bf16/fp16 (under autocast, weights stored in that dtype): the generator's bottleneck and up blocks
(about 90% of the generator's per-frame FLOPs at vox-256), and the two hourglass trunks, the dense-motion network's
and the keypoint detector's. What stays fp32: the heads that turn those trunks into numbers the warp depends on
(keypoint heatmaps and their softargmax, jacobians, the softmax masks and the occlusion map), the deformation
field and every grid sample, and the final 7x7 conv, so the warp is not quantised and the output is rounded once.

Measured on real inputs at vox-256 (random weights with a calibrated output range; ``benchmarks/realtime.py``):
42.1 dB PSNR against fp32 for the bottleneck + up blocks in bf16; the hourglass trunks in bf16 too leave it at
42.2 dB while taking ~13% off the frame time (they are ~10 GFLOP of fp32 work per frame otherwise). The final conv in
bf16 drops it to 39 dB (below the 40 dB bar), so it stays fp32.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..errors import FommError
from .fuse import shallow_view

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
    """Runs ``module`` under autocast to ``dtype`` (its conv weights stored in ``dtype``) and returns fp32, even
    when called inside a region where autocast is disabled (the fp32 islands of
    :meth:`~fomm.models.fomm.generator.OcclusionAwareGenerator.decode`). Takes a copy; ``module`` is unchanged.
    ``[B, C, H, W]`` in, the wrapped module's output (a tensor) in fp32 out."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = copy.deepcopy(module)
        self.dtype = dtype
        for m in self.module.modules():
            if isinstance(m, nn.Conv2d):
                m.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype):
            out = self.module(x)
        return out.float()


def low_precision_kp_detector(kp_detector: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A keypoint detector whose hourglass trunk (``predictor``) runs in ``dtype``; the heatmap and jacobian heads
    and the softargmax stay fp32. Shares every other module with ``kp_detector``."""
    if getattr(kp_detector, "predictor", None) is None:
        return kp_detector
    return shallow_view(kp_detector, predictor=LowPrecision(kp_detector.predictor, dtype))


def low_precision_view(generator: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A generator that shares every module with ``generator`` except the bottleneck and up blocks, whose conv
    weights and biases are stored in ``dtype``, and the dense-motion network's hourglass trunk, which runs in
    ``dtype`` (:class:`LowPrecision`) inside the otherwise fp32 dense-motion network.

    Under autocast this computes exactly what the fp32 generator computes (autocast would cast those same tensors on
    every call); storing them once saves a weight copy per conv per batch, which matters at batch 1. BatchNorm
    parameters stay fp32 (autocast runs batch norm in fp32). ``generator`` itself is left unchanged.
    """
    parts: dict[str, nn.Module] = {}
    for name in ("bottleneck", "up_blocks"):
        part = copy.deepcopy(getattr(generator, name))
        for module in part.modules():
            if isinstance(module, nn.Conv2d):
                module.to(dtype)
        parts[name] = part
    dense = getattr(generator, "dense_motion_network", None)
    if dense is not None and getattr(dense, "hourglass", None) is not None:
        parts["dense_motion_network"] = shallow_view(dense, hourglass=LowPrecision(dense.hourglass, dtype))
    return shallow_view(generator, **parts)


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


__all__ = ["PRECISIONS", "LowPrecision", "autocast_dtype", "cpu_supports_bf16", "low_precision_kp_detector",
           "low_precision_view", "psnr"]
