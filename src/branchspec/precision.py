"""The precision a training run computes in: ``fp32``, ``bf16`` or ``auto`` (a capability rule).

bf16 autocast is fast only where the hardware has native bf16 arithmetic:
on CUDA, and on CPUs with AVX512-BF16 or AMX-BF16 (there it is 2–3× fp32 for
the convolutions of the §6 and §7 networks). On an AVX2-only CPU PyTorch
emulates bf16 and a training step is about 8× *slower* than fp32. ``auto``
therefore resolves to bf16 exactly when the device has it natively, and the
run records the resolved value (``--resume`` keeps it).

Weights, optimiser state and losses stay fp32 in every precision; bf16 only
changes the autocast region of the forward pass.

Example:
    >>> resolve_precision("fp32", "cpu")
    'fp32'
    >>> resolve_precision("auto", "cuda")
    'bf16'
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from branchspec.options import option

PRECISIONS = ("auto", "fp32", "bf16")  # what a user may ask for
_NATIVE_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 arithmetic


def precision_option(group: str) -> Any:
    """The ``--precision`` field of a trainer's config (:func:`branchspec.options.option`): one definition for
    both trainers."""
    return option("auto", "auto (bf16 on CUDA and on CPUs with native bf16, AVX512-BF16/AMX; fp32 otherwise), "
                          "fp32, or bf16 autocast of the forward pass (weights, optimiser state and losses stay "
                          "fp32); recorded resolved", default_help="auto; --resume keeps the run's",
                  choices=PRECISIONS, group=group)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def native_bf16_cpu() -> bool:
    """True if this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16)."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()  # "AVX512", "AVX2", "DEFAULT", …
    return capability.startswith("AVX512") and bool(cpu_flags() & set(_NATIVE_FLAGS))


def resolve_precision(requested: str, device: str) -> str:
    """``requested`` ("auto", "fp32", "bf16") for ``device`` ("cpu", "cuda[:i]", or "auto": CUDA when
    available) → "fp32" or "bf16".

    "auto" is bf16 on CUDA and on a CPU with native bf16 (:func:`native_bf16_cpu`),
    fp32 otherwise. An explicit choice is kept as given.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return requested
    return "bf16" if _on_cuda(device) or native_bf16_cpu() else "fp32"


def _on_cuda(device: str) -> bool:
    """``device`` ("cpu", "cuda[:i]", "auto") means CUDA: named, or "auto" with a GPU present."""
    import torch

    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def emulated_bf16(precision: str, device: str) -> str | None:
    """A one-line warning when ``precision`` (resolved) is bf16 on a CPU without native bf16, else ``None``.

    There autocast emulates bf16 through fp32 conversions: several times slower than fp32 (8x measured on an
    AVX2-only CPU), a surprise for a recipe that pins the bf16 "auto" chose on the machine that made it.

    >>> emulated_bf16("fp32", "cpu") is None
    True
    """
    if precision != "bf16" or _on_cuda(device) or native_bf16_cpu():
        return None
    import torch

    return (f"bf16 on a CPU without native bf16 ({torch.backends.cpu.get_cpu_capability()}) is emulated and several "
            "times slower than fp32; --precision auto picks fp32 here")


def describe() -> str:
    """One line naming the CPU capability and whether it has native bf16 (for benchmark tables)."""
    import torch

    native = [f for f in _NATIVE_FLAGS if f in cpu_flags()]
    return f"{torch.backends.cpu.get_cpu_capability()} ({', '.join(native) if native else 'no native bf16'})"
