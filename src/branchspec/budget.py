"""One memory budget for every workload, checked before anything large is allocated (bottom floor).

The budget is ``BRANCHSPEC_MEMORY_GB`` gigabytes (10⁹ bytes) when that
environment variable is set, else :data:`DEFAULT_FRACTION` (3/4) of the
memory this process may use: the physical memory, or a smaller cgroup limit.
Each workload estimates, from its configuration alone, the bytes a run would
allocate — parameters, gradients and optimiser state, the activations of one
batch, the data held in memory, the arrays of a decomposition — and calls
:func:`check`, which refuses in one line naming the settings that drive the
estimate, each in backticks (a :class:`MemoryBudgetError`, exit 2; a command shows them as its flags)::

    `batch_size` 100000000 with `img_size` 64 needs ~2.3e+07 GB, over the memory budget of 19 GB (BRANCHSPEC_MEMORY_GB)

The estimates are deliberately on the high side; ``tests/test_reliability_limits.py``
compares them with the peak resident memory of small runs (within
:data:`ESTIMATE_FACTOR`). The estimators live next to their workloads
(:mod:`branchspec.train.memory`, :mod:`branchspec.apps.memory`,
:func:`branchspec.hessian.estimate_bytes`); this module holds what they share:
the budget, :func:`check`, :func:`npz_arrays` (an ``.npz``'s array sizes read
from its headers, nothing inflated), :func:`saved_bytes_per_sample` (the
activations a forward pass keeps for backward, measured on the meta device)
and the thread limit :func:`max_threads`.

Example:
    >>> budget_bytes() > 0
    True
    >>> try:
    ...     check(10**20, "`batch_size` 512")
    ... except MemoryBudgetError as e:
    ...     print(e)
    `batch_size` 512 needs ~1e+11 GB, over the memory budget of ... GB (BRANCHSPEC_MEMORY_GB)
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from branchspec.errors import ConfigError, DataError, UsageError

ENV = "BRANCHSPEC_MEMORY_GB"
DEFAULT_FRACTION = 0.75  # of the physical (or cgroup-limited) memory, when ENV is not set
GB = 10**9
BASELINE_BYTES = 6 * GB // 10  # the interpreter with torch, numpy, matplotlib, its buffers (0.3-0.65 GB measured)
ESTIMATE_FACTOR = 3.0  # tested: measured peak RSS <= estimate <= ESTIMATE_FACTOR x measured peak RSS


class MemoryBudgetError(UsageError):
    """A run would need more memory than the budget: one line naming the settings that drive it (exit 2)."""


def physical_bytes() -> int:
    """The memory this process may use: physical RAM, or a smaller cgroup (v2 or v1) limit."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        total = 8 * GB  # no sysconf: assume a small machine
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return int(total)


def budget_bytes() -> int:
    """The memory budget in bytes: ``BRANCHSPEC_MEMORY_GB`` or :data:`DEFAULT_FRACTION` of :func:`physical_bytes`."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return int(DEFAULT_FRACTION * physical_bytes())
    try:
        gb = float(text)
    except ValueError:
        gb = float("nan")
    if not (math.isfinite(gb) and 0 < gb <= 1e9):
        raise UsageError(f"{ENV} must be a number of gigabytes in (0, 1e9], got {text!r}")
    return int(gb * GB)


def gb(nbytes: float) -> str:
    """``nbytes`` as a short number of gigabytes: ``"77"``, ``"0.31"``, ``"2.3e+07"``."""
    return f"{nbytes / GB:.2g}" if nbytes < 10 * GB else f"{nbytes / GB:.3g}"


def check(need: float, drivers: str) -> int:
    """``need`` (bytes) if within the budget, else a :class:`MemoryBudgetError` naming ``drivers``
    (the settings that drive the estimate, each in backticks as a :class:`~branchspec.errors.ConfigError` names
    them, e.g. ``"`batch_size` 512 with `img_size` 256"``)."""
    budget = budget_bytes()
    if need > budget:
        raise MemoryBudgetError(f"{drivers} needs ~{gb(need)} GB, over the memory budget of {gb(budget)} GB ({ENV})")
    return int(need)


# --------------------------------------------------------------------------- threads
def max_threads() -> int:
    """CPU threads a run may ask for (``threads``): the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(n: int, field: str = "threads") -> int:
    """``n`` if 1 <= n <= :func:`max_threads`, else a ConfigError of ``field`` (torch segfaults on 100 000)."""
    top = max_threads()
    if not 1 <= n <= top:
        raise ConfigError(field, f"must be in 1..{top} (the CPUs of this machine), got {n}")
    return n


# --------------------------------------------------------------------------- .npz sizes from the headers
def npz_arrays(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype)}`` of every array in an ``.npz``, read from the npy headers only.

    A zip directory states each member's size, but a member's npy header may claim any shape
    (1 TiB in a 2 KB file): numpy allocates that shape before reading the data, so the shape is
    read here first. A malformed archive or header is a one-line :class:`DataError`.
    """
    import zipfile

    import numpy as np
    from numpy.lib import format as npf

    path = Path(path)
    out: dict[str, tuple[tuple[int, ...], str]] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as fh:
                    version = npf.read_magic(fh)
                    reader = npf.read_array_header_1_0 if version == (1, 0) else npf.read_array_header_2_0
                    shape, _, dtype = reader(fh, max_header_size=10_000)
                if not all(isinstance(n, int) and n >= 0 for n in shape):
                    raise ValueError(f"bad shape {shape!r:.60}")
                out[info.filename[:-4]] = (tuple(shape), np.dtype(dtype).str)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, TypeError, SyntaxError) as exc:
        raise DataError(f"{path} is not a readable .npz archive ({type(exc).__name__}: {str(exc)[:80]})") from None
    return out


def array_bytes(shape, dtype: str = "<f4") -> int:
    """Bytes of an array of ``shape`` and ``dtype`` (Python ints: no overflow for claimed shapes)."""
    import numpy as np

    return math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize


def npz_bytes(path: str | os.PathLike) -> int:
    """The bytes ``np.load`` would allocate for every array of the ``.npz`` at ``path`` (:func:`npz_arrays`)."""
    return sum(array_bytes(s, d) for s, d in npz_arrays(path).values())


def load_npz(path: str | os.PathLike, keys=None, copies: int = 2) -> dict:
    """The arrays of the ``.npz`` at ``path`` (those ``keys(name)`` accepts, default all) as a dict, after their sizes,
    read from the npy headers (:func:`npz_arrays`), were checked against the budget (``copies`` times:
    what is read, and what the caller makes of it). Every ``.npz`` branchspec reads goes through here."""
    import zipfile

    import numpy as np

    arrays = npz_arrays(path)
    names = [k for k in arrays if keys is None or keys(k)]
    claimed = sum(array_bytes(*arrays[k]) for k in names)
    check(BASELINE_BYTES + copies * claimed, f"{path} (its arrays take {gb(claimed)} GB)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable .npz file ({type(exc).__name__}: {str(exc)[:80]})") from None


# --------------------------------------------------------------------------- activations
def saved_bytes_per_sample(forward, batch: int = 2) -> int:
    """Bytes per sample that ``forward(batch)`` keeps for backward plus its output, on the meta device.

    ``forward`` builds its inputs of ``batch`` samples and runs a model built under
    ``torch.device("meta")``: shapes propagate, nothing is allocated, and every tensor
    autograd saves is counted (views of one tensor more than once: an estimate on the high side).
    """
    import torch

    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward(batch)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    total += sum(o.numel() * o.element_size() for o in outs if isinstance(o, torch.Tensor))
    return -(-total // batch)
