"""Keep freed C-heap memory for the next training step (glibc's ``mallopt``; bottom floor).

glibc's ``malloc`` serves every request above its mmap threshold (dynamic, at most 32 MiB on 64-bit Linux)
with a fresh ``mmap`` and hands it back to the kernel on ``free``. A packed network keeps all M branches'
channels in one tensor — (B, M·C, H, W), 42 MB for the §6 classifier at M = 16, batch 128, 32² — so every step
maps, faults in and zero-fills hundreds of megabytes it held a moment before. On a 2-core AVX2 CPU that is a
fifth to a third of a packed training run spent in the kernel (``benchmarks/bench_heap.py``; the loop engine's
per-branch tensors stay under the threshold and never pay it). PyTorch's CPU tuning guide suggests preloading
jemalloc or tcmalloc for this; :func:`keep_freed_memory` gets the same reuse from glibc itself: large blocks
come from the heap (``M_MMAP_MAX`` = 0) and the heap's top is not given back (``M_TRIM_THRESHOLD`` at its
maximum), so a freed activation is the next step's. The price is resident memory that stays near the run's
peak instead of falling between steps.

The commands call it once as they start (:func:`branchspec.cli.main`, and each ``--sweep-procs`` worker);
a script that trains with the library may call it too. It changes nothing, and says why, off glibc, where the
environment already chooses (glibc's ``MALLOC_*_`` variables, a malloc tunable in ``GLIBC_TUNABLES``, an
allocator in ``LD_PRELOAD``), or when ``BRANCHSPEC_HEAP=system``. Numerics are untouched: only where freed
memory goes.

Example:
    >>> environment_choice({"BRANCHSPEC_HEAP": "system"})
    'BRANCHSPEC_HEAP=system'
    >>> environment_choice({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"}) is None
    True
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

ENV = "BRANCHSPEC_HEAP"  # "system": leave malloc as it is
M_TRIM_THRESHOLD = -1  # mallopt parameters (glibc malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: the largest top of heap kept unreturned (2 GiB)
GLIBC_VARIABLES = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
PRELOADED_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")

_applied: str | None = None  # the outcome of the first call in this process: mallopt is process-wide


def glibc() -> bool:
    """True if this process runs on glibc (whose ``mallopt`` :func:`keep_freed_memory` calls)."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # no such confstr name: not glibc
        return False


def environment_choice(env: Mapping[str, str]) -> str | None:
    """Why ``env``'s own allocator settings win over :func:`keep_freed_memory`, or ``None``."""
    if env.get(ENV, "").strip().lower() == "system":
        return f"{ENV}=system"
    for name in GLIBC_VARIABLES:
        if name in env:
            return f"{name} is set"
    if "glibc.malloc." in env.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES sets malloc"
    preload = env.get("LD_PRELOAD", "")
    for name in PRELOADED_ALLOCATORS:
        if name in preload:
            return f"{name} is preloaded"
    return None


def keep_freed_memory() -> str:
    """Make glibc keep freed large blocks for reuse (module docstring); the outcome as a short phrase.

    ``"kept"`` when applied, else ``"left to the system: <why>"``. Once per process: ``mallopt`` is
    process-wide, so later calls return the first outcome.
    """
    global _applied
    if _applied is not None:
        return _applied
    why = environment_choice(os.environ)
    if why is None and not glibc():
        why = "not glibc"
    if why is None:
        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        why = None if ok else "mallopt refused"
    _applied = "kept" if why is None else f"left to the system: {why}"
    return _applied
