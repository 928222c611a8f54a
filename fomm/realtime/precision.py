"""Reduced-precision inference choices and the quality measure used to accept them.

Only the generator's bottleneck and up blocks (about 90% of the generator's per-frame FLOPs at vox-256) run in bf16/fp16 under
autocast; keypoints, the dense-motion network (softmax masks, the deformation field, grid sampling) and the final
7x7 conv stay fp32, so the warp is not quantised and the output is rounded once. On real inputs at vox-256 (random
weights with a calibrated output range) this measured 42 dB PSNR against fp32, against 39 dB with the final conv in
bf16 too and 47 dB with the last up block also fp32 (which costs ~10 GFLOP/frame in fp32). ``benchmarks/realtime.py``
reports it.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ..errors import FommError

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


def low_precision_view(generator: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A generator that shares every module with ``generator`` except the bottleneck and up blocks, whose conv
    weights and biases are stored in ``dtype``.

    Under autocast this computes exactly what the fp32 generator computes (autocast would cast those same tensors on
    every call); storing them once saves a weight copy per conv per batch, which matters at batch 1. BatchNorm
    parameters stay fp32 (autocast runs batch norm in fp32). ``generator`` itself is left unchanged.
    """
    view = copy.copy(generator)
    view._modules = dict(generator._modules)  # copy.copy shares the dict; the swaps below must not touch the original
    for name in ("bottleneck", "up_blocks"):
        part = copy.deepcopy(getattr(generator, name))
        for module in part.modules():
            if isinstance(module, nn.Conv2d):
                module.to(dtype)
        setattr(view, name, part)
    return view


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


__all__ = ["PRECISIONS", "autocast_dtype", "cpu_supports_bf16", "low_precision_view", "psnr"]
