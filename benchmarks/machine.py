"""What the benchmark scripts record about the machine they ran on (imported as ``benchmarks.machine``)."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def device_name(device: str | torch.device = "cpu") -> str:
    """The GPU's name for a CUDA device, else the CPU's model name (``/proc/cpuinfo``; ``platform`` elsewhere)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
