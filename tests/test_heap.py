"""``branchspec.heap.keep_freed_memory``: large freed blocks come from and go back to the heap, not mmap.

The effect is checked in fresh processes through glibc's own accounting (``mallinfo2().hblks``: chunks mapped
with mmap), then the environment's precedence.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from branchspec.heap import environment_choice, glibc

PROBE = """
import ctypes, sys
from branchspec.heap import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Info
outcome = keep_freed_memory() if sys.argv[1] == "call" else "not called"
malloc, free = ctypes.CDLL(None).malloc, ctypes.CDLL(None).free
malloc.restype, malloc.argtypes, free.argtypes = ctypes.c_void_p, (ctypes.c_size_t,), (ctypes.c_void_p,)
before = mallinfo2().hblks
block = malloc(64 << 20)  # 64 MiB: above any mmap threshold glibc would pick
mapped = mallinfo2().hblks - before
free(block)
print(outcome, mapped)
"""


def _probe(call: bool, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "BRANCHSPEC_HEAP"}
    res = subprocess.run([sys.executable, "-c", PROBE, "call" if call else "skip"], capture_output=True, text=True,
                         env={**environ, **env}, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    outcome, mapped = res.stdout.strip().rsplit(" ", 1)
    return outcome, int(mapped)


@pytest.mark.skipif(not glibc(), reason="glibc's malloc only")
def test_a_large_block_comes_from_the_heap_once_kept():
    assert _probe(call=False) == ("not called", 1)  # glibc's default: a 64 MiB block is its own mapping
    assert _probe(call=True) == ("kept", 0)
    assert _probe(call=True, BRANCHSPEC_HEAP="system") == ("left to the system: BRANCHSPEC_HEAP=system", 1)


@pytest.mark.parametrize("env, why", [
    ({"BRANCHSPEC_HEAP": "System"}, "BRANCHSPEC_HEAP=system"),
    ({"MALLOC_TRIM_THRESHOLD_": "0"}, "MALLOC_TRIM_THRESHOLD_ is set"),
    ({"MALLOC_MMAP_MAX_": "65536"}, "MALLOC_MMAP_MAX_ is set"),
    ({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}, "GLIBC_TUNABLES sets malloc"),
    ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "jemalloc is preloaded"),
])
def test_the_environment_chooses_first(env, why):
    assert environment_choice(env) == why


def test_an_unrelated_environment_does_not_stop_it():
    assert environment_choice({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F", "LD_PRELOAD": "libfoo.so"}) is None
    assert environment_choice({}) is None
