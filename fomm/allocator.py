"""Keep freed tensor memory in the process instead of handing it back to the kernel after every op.

glibc's ``malloc`` serves a large block (128 KiB at first, adapting up to 32 MiB) with a fresh ``mmap`` and unmaps
it on ``free``, and it returns the top of its heap to the kernel once more than 128 KiB there is free. A torch CPU
op on a 512x512 frame allocates a few MiB for its result, so each such op pays for mapping, zeroing and faulting in
new pages, and on the virtual machines fomm is tested on a page fault is dear: a 4 MiB ``empty + fill_`` took 0.8 to
1.4 ms, against 0.07 ms with the memory kept. The compositing stage (swing parallax + SBS stereo at 512x512, about
sixty such results per frame) went from 43 to 25 ms per frame; the model's forward pass, compute-bound, did not
change (``fomm live`` bf16: 292 and 306 ms per frame, within noise).

:func:`keep_freed_memory` sets glibc's two thresholds with ``mallopt`` (a block up to 32 MiB comes from the heap;
up to 256 MiB of free heap stays mapped), so a block freed by one op is reused by the next. The ``fomm`` command
calls it once at start; library users decide for their own process. It does nothing off glibc, and nothing when
the user has tuned malloc already (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, or ``glibc.malloc`` in
``GLIBC_TUNABLES``): their settings win.

Both thresholds must move together: a trim threshold set alone also switches off glibc's adaptive mmap threshold,
so every block over 128 KiB is mapped afresh, and the same stage took 110 ms per frame.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: ``mallopt`` parameter numbers from glibc's ``malloc.h``.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap (glibc's ceiling for the mmap threshold on 64-bit).
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory at the top of the heap kept mapped, up to this much.
TRIM_THRESHOLD = 256 * 1024 * 1024

_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def user_tuned_malloc(environ: dict[str, str] | None = None) -> bool:
    """Whether the environment already sets glibc malloc's thresholds (then fomm leaves them alone)."""
    env = os.environ if environ is None else environ
    return any(name in env for name in _USER_SETTINGS) or "glibc.malloc" in env.get("GLIBC_TUNABLES", "")


def _on_glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # musl and other C libraries do not answer
        return False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (see the module docstring).

    Returns:
        True when both were set; False off Linux/glibc, when the user tuned malloc already, or when ``mallopt``
        refused a value.
    """
    if not _on_glibc() or user_tuned_malloc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: glibc is loaded already
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # The mmap threshold first: setting it is what stops glibc adapting it (see the module docstring).
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


__all__ = ["keep_freed_memory", "user_tuned_malloc"]
