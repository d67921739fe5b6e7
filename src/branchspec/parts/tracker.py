"""Specialisation measured during training, from a plain PyTorch loop (the dynamics of Fig. 2).

:class:`Tracker` records, every ``every`` steps, the §4.1 measures of the
parts of a model — active / silent counts, mean |correlation|, the weakest
and strongest part norm ‖F_k‖, every part's norm and gradient norm — to
``tracker.jsonl`` and ``tracker.csv`` (and TensorBoard when asked for and
installed)::

    tracker = Tracker(parts.heads(model.attn), "runs/x")
    for step, (x, y) in enumerate(loader):
        loss = loss_fn(model(x), y); opt.zero_grad(); loss.backward()
        tracker.step(model, (x, y))        # after backward(): gradient norms come from .grad
        opt.step()

A measurement runs in eval mode on ``eval_batches`` (a fixed list, streamed:
F·Fᵀ is accumulated batch by batch with
:class:`~branchspec.metrics.StreamingCovariance`) or on the training batch,
then restores every module's mode and the RNG state, so training with and
without a tracker gives identical weights. Cost: one extra forward pass of
the model per measured batch, the split (for heads and experts a second pass
of that layer) and two file appends — measured on a 1-layer transformer on
the project's shared 2-core CPU (``benchmarks/bench_tracker.py``): one
measurement costs about one training step (4.3–4.9 ms against 3.6–4.4 ms),
i.e. +2 % (wall time, light load) to +9 % (CPU time, heavy load) training
time at the default ``every=20``, and +110–140 % at ``every=1``.
With ``probe_every`` and a ``loss_fn``, the Hessian block diagonality over
the parts' parameters (§5.2) is estimated with ``probes`` random probes per
part: M·probes Hessian-vector products, each ≈ 3 passes, i.e. ≈ M·probes
training steps; its seconds are recorded.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from branchspec import metrics
from branchspec.io import append_text, atomic_write_text
from branchspec.hessian import block_diagonality
from branchspec.parts.core import contributions, eval_mode
from branchspec.parts.curvature import gradient_norms, probe_part_blocks
from branchspec.parts.spec import PartSpec


def default_split(batch: Any) -> tuple[Any, Any]:
    """``(inputs, targets)`` of a batch: ``batch[:2]`` of a tuple / list, else ``(batch, None)``."""
    if isinstance(batch, (tuple, list)):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    return batch, None


@contextlib.contextmanager
def preserved_rng(model: nn.Module) -> Iterator[None]:
    """The CPU (and the model's CUDA devices') RNG state restored after the block."""
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=devices):
        yield


class Tracker:
    """Records the specialisation of ``spec``'s parts every ``every`` steps (module docstring).

    Args:
        spec: the parts, e.g. ``parts.heads(model.attn)`` or ``parts.branches(model)``.
        out: folder for ``tracker.jsonl`` / ``tracker.csv`` (created).
        every: measure on steps 0, every, 2·every, …
        eval_batches: fixed batches to measure on (default: the training batch of the step).
        fraction: active threshold, ‖F_k‖ ≥ fraction · max ‖F‖ (§4.1, Fig. 4).
        reduction: response matrix reduction (:func:`~branchspec.metrics.response_matrix`).
        loss_fn: ``loss_fn(model_output, target)``; gives gradient norms when
            ``.grad`` is empty, and the Hessian probes.
        probe_every / probes: Hessian block-diagonality estimate every
            ``probe_every`` steps (0 = never) with ``probes`` probes per part.
        tensorboard: also write TensorBoard scalars (if installed; else a warning).
        split_batch: ``batch → (inputs, targets)``.
        model_args: ``batch → tuple`` of extra positional inputs of the model (e.g. a conditional
            generator's target labels, ``model(x, y_trg)``); measures and ``.grad`` norms only.
    """

    def __init__(self, spec: PartSpec, out: str | Path, *, every: int = 20,
                 eval_batches: Iterable[Any] | None = None, fraction: float = 0.1, reduction: str = "auto",
                 loss_fn: Callable[[Any, Any], Tensor] | None = None, probe_every: int = 0, probes: int = 4,
                 tensorboard: bool = False, split_batch: Callable[[Any], tuple[Any, Any]] = default_split,
                 model_args: Callable[[Any], tuple[Any, ...]] | None = None) -> None:
        if every < 1 or probe_every < 0 or probes < 1:
            raise ValueError("every and probes must be >= 1, probe_every >= 0")
        if model_args is not None and (probe_every or loss_fn is not None):
            raise ValueError("model_args (extra model inputs) work with the measures and .grad norms only, "
                             "not with loss_fn / Hessian probes")
        if probe_every and loss_fn is None:
            raise ValueError("Hessian probes need a loss_fn")
        self.spec, self.every, self.fraction, self.reduction = spec, every, fraction, reduction
        self.eval_batches = None if eval_batches is None else list(eval_batches)
        self.loss_fn, self.probe_every, self.probes, self.split_batch = loss_fn, probe_every, probes, split_batch
        self.model_args = model_args  # batch -> the model's extra positional inputs (a generator's labels)
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.jsonl, self.csv = self.out / "tracker.jsonl", self.out / "tracker.csv"
        self.records: list[dict[str, Any]] = []
        self.steps = 0
        self.seconds = 0.0  # total time spent measuring
        self._columns: list[str] | None = None
        self._tb = self._tensorboard() if tensorboard else None

    def _tensorboard(self) -> Any:  # a SummaryWriter, or None without tensorboard
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn("tensorboard is not installed: writing JSONL / CSV only", stacklevel=3)
            return None
        return SummaryWriter(str(self.out / "tensorboard"))

    def resume_at(self, step: int) -> None:
        """Continue a run from its global ``step`` (e.g. a resumed checkpoint): records at or after ``step``
        (measured past the checkpoint by the run that stopped) are dropped from the files, and :meth:`step`
        counts on from ``step``. ``resume_at(0)`` starts the files afresh."""
        kept = [r for r in read_records(self.jsonl) if r["step"] < step] if self.jsonl.exists() else []
        columns = list(flatten(kept[0])) if kept else None
        table = io.StringIO()
        if columns is not None:
            csv.writer(table).writerows([columns] + [[flatten(r).get(c, "") for c in columns] for r in kept])
        atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in kept))  # each file whole or not at all
        atomic_write_text(self.csv, table.getvalue())
        self.records, self._columns, self.steps = kept, columns, step

    def step(self, model: nn.Module, batch: Any) -> dict[str, Any] | None:
        """Count one training step; measure and return the record on every ``every``-th (else ``None``)."""
        step = self.steps
        self.steps += 1
        if step % self.every:
            return None
        return self.measure(model, batch, step)

    def measure(self, model: nn.Module, batch: Any, step: int | None = None) -> dict[str, Any]:
        """One measurement now (eval mode, RNG and modes restored); appended to the files."""
        t0 = time.perf_counter()
        step = self.steps if step is None else step
        with preserved_rng(model):
            rec = self._measure(model, batch, step)
        rec["seconds"] = time.perf_counter() - t0
        self.seconds += rec["seconds"]
        self._write(rec)
        return rec

    def _measure(self, model: nn.Module, batch: Any, step: int) -> dict[str, Any]:
        acc = metrics.StreamingCovariance(self.reduction)
        for b in self.eval_batches if self.eval_batches is not None else [batch]:
            x, _ = self.split_batch(b)
            args = self.model_args(b) if self.model_args is not None else ()
            acc.update(contributions(model, self.spec, x, args=args).parts)  # (M, B, ...)
        norms = acc.norms()
        act = acc.activity(self.fraction)
        rec: dict[str, Any] = {"step": step, "samples": acc.samples, "active": act.active, "silent": act.silent,
                     "mean_abs_corr": metrics.mean_abs_offdiag(acc.correlation()),
                     "norm_min": norms.min().item(), "norm_max": norms.max().item(),
                     "weakest": int(norms.argmin()), "strongest": int(norms.argmax()), "norms": norms.tolist()}
        grads = gradient_norms(model, self.spec)  # from .grad: zeros when there is none
        x, y = self.split_batch(batch)
        if not grads.any() and self.loss_fn is not None and y is not None:
            with eval_mode(model):
                grads = gradient_norms(model, self.spec, x, y, self.loss_fn)
            rec["grad_source"] = "loss_fn (eval mode)"
        else:
            rec["grad_source"] = ".grad"
        rec["grad_norms"] = grads.tolist()
        if self.probe_every and step % self.probe_every == 0 and y is not None and self.loss_fn is not None:
            t0 = time.perf_counter()
            est = probe_part_blocks(model, self.spec, x, y, self.loss_fn, probes=self.probes, seed=step)
            rec["probe_block_diagonality"] = block_diagonality(est.norms)
            rec["probe_seconds"] = time.perf_counter() - t0
        return rec

    def _write(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        append_text(self.jsonl, json.dumps(rec) + "\n")
        flat = flatten(rec)
        if self._columns is None:
            self._columns = list(flat)
            if not self.csv.exists() or self.csv.stat().st_size == 0:
                append_text(self.csv, _csv_row(self._columns))
        append_text(self.csv, _csv_row([flat.get(c, "") for c in self._columns]))
        if self._tb is not None:
            for k, v in flat.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(f"parts/{k}", v, rec["step"])

    def close(self) -> None:
        """Flush TensorBoard (the JSONL / CSV files are complete after every record)."""
        if self._tb is not None:
            self._tb.close()


def _csv_row(values: list[Any]) -> str:
    """One CSV line (the csv module's quoting and line ending) as text."""
    import io

    buf = io.StringIO()
    csv.writer(buf).writerow(values)
    return buf.getvalue()


def flatten(rec: dict[str, Any]) -> dict[str, Any]:
    """A record with list values spread into columns ``norms_0``, ``norms_1``, …"""
    out: dict[str, Any] = {}
    for k, v in rec.items():
        if isinstance(v, list):
            out.update({f"{k}_{i}": x for i, x in enumerate(v)})
        else:
            out[k] = v
    return out


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``tracker.jsonl`` (or of the folder holding it)."""
    p = Path(path)
    p = p / "tracker.jsonl" if p.is_dir() else p
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
