"""``fomm.allocator``: the fomm command keeps freed memory for reuse, and leaves a user's own malloc tuning alone.

Whether glibc serves a block from its heap or from a fresh mapping is visible in ``/proc/self/maps``: each probe runs
in its own interpreter (the thresholds are process-wide), allocates 16 MiB with ``malloc`` and says whether the block
lies inside ``[heap]``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fomm.allocator import keep_freed_memory, user_tuned_malloc

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or
                                not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"),
                                reason="glibc malloc only")

PROBE = """
import ctypes, sys
{setup}
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
p = libc.malloc(16 * 1024 * 1024)
for line in open("/proc/self/maps"):
    if line.rstrip().endswith("[heap]"):
        lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
        if lo <= p < hi:
            print("heap"); break
else:
    print("mapped")
"""


def probe(setup: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES",) and not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True,
                         env={**clean, **env}, check=True)
    return out.stdout.strip()


def test_a_large_block_comes_from_the_heap_once_tuned():
    assert probe("") == "mapped"  # glibc's default: a fresh mapping per large block
    assert probe("from fomm.allocator import keep_freed_memory; assert keep_freed_memory()") == "heap"


def test_the_fomm_command_tunes_malloc_before_running_a_subcommand():
    setup = ("from unittest import mock\nfrom fomm.cli import main as m\n"
             "with mock.patch.object(m, 'build_parser') as bp:\n"
             "    bp.return_value.parse_args.return_value.func = lambda a: 0\n"
             "    assert m.main([]) == 0")
    assert probe(setup) == "heap"


def test_a_users_own_malloc_settings_win():
    assert user_tuned_malloc({"MALLOC_TRIM_THRESHOLD_": "0"})
    assert user_tuned_malloc({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"})
    assert not user_tuned_malloc({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"})
    setup = "from fomm.allocator import keep_freed_memory; assert not keep_freed_memory()"
    assert probe(setup, MALLOC_MMAP_THRESHOLD_="131072") == "mapped"


def test_it_says_whether_it_changed_anything(monkeypatch):
    monkeypatch.setenv("MALLOC_TOP_PAD_", "0")
    assert keep_freed_memory() is False
