"""Run-folder files of a §6 classifier run: checkpoints, metrics.csv, diagnostics.json.

* ``RUN/last.{json,safetensors}`` — weights under ``model.*`` (loadable by
  :func:`branchspec.models.registry.load_model`), optimiser moments, RNG, the
  EMA shadow under ``ema.*`` when an EMA is kept, and the position in the run.
* ``RUN/ema.{json,safetensors}`` — the EMA weights alone, as a model
  checkpoint of the same kind (weights only, no optimiser state).
* ``RUN/metrics.csv`` — one row per epoch (:data:`CSV_FIELDS` of the trainer).
* ``RUN/diagnostics.json`` — per epoch, the per-branch lists behind the CSV's
  summaries: mean gradient norm ‖∂L/∂θ_k‖ over the epoch's steps and the
  branch norm ‖F_k‖ on the test set (Fig. 4's activity rule).

The checkpoint is the truth: its state carries every finished epoch's
metrics row and diagnostics (``rows``, ``diagnostics``) beside its EMA, and
the three side files are written from it after each epoch's checkpoint
(:func:`write_epoch_files`) *and again on resume* (:func:`epoch_logs`), so a
kill between the checkpoint's rename and the side files' writes loses no row,
leaves no stale ``RUN/ema`` and cannot make ``--stop-loss`` miss the epoch
that reached the floor.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict
from pathlib import Path

from branchspec.errors import ConfigError
from branchspec.io import atomic_write_json, atomic_write_text
from branchspec.models.registry import model_spec
from branchspec.checkpoint import (
    CheckpointError, ResumeMismatch, optimizer_to_tensors, prefixed, rng_state_tensors, save_checkpoint, state_int,
)


def data_info(cfg, data) -> dict:
    return {"source": cfg.data, "mean": list(data.mean), "std": list(data.std), "class_names": data.class_names,
            "img_size": int(data.images_hwc.shape[1]), "skipped": data.skipped}


def save_run(path: Path, model, opt, cfg, mcfg, data, progress: dict, ema=None) -> None:
    """The resumable checkpoint ``RUN/last`` (see module doc)."""
    otensors, ometa = optimizer_to_tensors(opt)
    tensors = {**prefixed("model", model.state_dict()), **prefixed("optim", otensors), **rng_state_tensors()}
    if ema is not None:
        tensors.update(prefixed("ema", ema.tensors()))
    state = {"model": model_spec("classifier", mcfg.to_dict()), "train_config": asdict(cfg), "optimizer": ometa,
             "data": data_info(cfg, data), **progress}
    save_checkpoint(path, tensors, state)


def save_ema(path: Path, ema, cfg, mcfg, data, progress: dict) -> None:
    """``RUN/ema``: the EMA weights as a weights-only model checkpoint."""
    state = {"model": model_spec("classifier", mcfg.to_dict()), "train_config": asdict(cfg), "data": data_info(cfg, data),
             "ema_decay": cfg.ema, "step": progress["step"], "epoch": progress["epoch"], "metrics": progress["metrics"]}
    save_checkpoint(path, prefixed("model", ema.shadow), state)


def write_epoch_files(out: Path, rows: list[dict], diag: list[dict], fields: list[str], ema=None, ema_args=()) -> None:
    """``RUN/ema`` (when ``ema`` is given; ``ema_args`` = ``(cfg, mcfg, data, progress)`` of :func:`save_ema`),
    ``metrics.csv`` and ``diagnostics.json`` of the finished epochs, as the checkpoint just saved holds them."""
    if ema is not None:
        save_ema(out / "ema", ema, *ema_args)
    write_rows(out / "metrics.csv", rows, fields)
    write_diagnostics(out / "diagnostics.json", diag)


def epoch_logs(state: dict | None, out: Path, epoch: int) -> tuple[list[dict], list[dict]]:
    """``(rows, diagnostics)`` of the ``epoch`` finished epochs: from the checkpoint's ``state`` when it carries
    them, else (a fresh run, or a checkpoint of an earlier version) read back from the side files."""
    if state is None or "rows" not in state:
        return read_rows(out / "metrics.csv", epoch), read_diagnostics(out / "diagnostics.json", epoch)
    rows, diag = state.get("rows"), state.get("diagnostics")
    for name, v in (("rows", rows), ("diagnostics", diag)):
        if (not isinstance(v, list) or len(v) != epoch
                or any(not isinstance(r, dict) or r.get("epoch") != i + 1 for i, r in enumerate(v))):
            raise CheckpointError(f"checkpoint: {name} must hold one object per finished epoch (1..{epoch}), "
                                  f"got {v!r:.80}")
    return rows, diag


def read_rows(path: Path, up_to_epoch: int | None = None) -> list[dict]:
    """The rows of metrics.csv (up to ``up_to_epoch``); a corrupt file is a one-line error."""
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        return [r for r in rows if up_to_epoch is None or int(r["epoch"]) <= up_to_epoch]
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as exc:
        raise ConfigError("resume", f"{path} is corrupt ({type(exc).__name__}: {str(exc)[:100]}); "
                                    "restore it or delete it to resume without the earlier rows") from None


def write_rows(path: Path, rows: list[dict], fields: list[str]) -> None:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fields, restval="", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_diagnostics(path: Path, up_to_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    try:
        return [r for r in json.loads(path.read_text()).get("epochs", []) if r["epoch"] <= up_to_epoch]
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, KeyError, TypeError) as exc:
        raise ConfigError("resume", f"{path} is corrupt ({type(exc).__name__}); restore or delete it") from None


def write_diagnostics(path: Path, rows: list[dict]) -> None:
    atomic_write_json(path, {"epochs": rows})


def progress_from(state: dict, spe: int) -> tuple[int, int, int, dict]:
    """``(step, epoch, batch, epoch_sums)`` of a checkpoint, each checked (one-line CheckpointError)."""
    step, epoch, batch = (state_int(state, k, "last") for k in ("step", "epoch", "batch"))
    if batch > spe:
        raise CheckpointError(f"checkpoint: batch {batch} is past the {spe} batches of an epoch")
    sums = state.get("epoch_sums")
    keys = ("loss", "acc", "n", "time")
    if not isinstance(sums, dict) or any(not isinstance(sums.get(k), (int, float)) or isinstance(sums.get(k), bool)
                                         or not math.isfinite(sums[k]) for k in keys):
        raise CheckpointError(f"checkpoint: epoch_sums must hold finite numbers {list(keys)}, got {sums!r:.100}")
    return step, epoch, batch, sums


# Config fields that may change on resume: they do not change the trajectory. The engine and the
# device do (loop, vmap and packed sum in different orders; CPU and CUDA kernels round differently).
RESUME_MAY_CHANGE = {"out", "save_every", "eval_batch_size", "tta", "stop_loss", "track_every"}


def check_resume(saved: dict, cfg) -> None:
    """Refuse to resume with settings that change the run (one line naming the setting)."""
    if not isinstance(saved, dict):
        raise CheckpointError("checkpoint: train_config is missing or not an object; not a train-classifier checkpoint")
    diff = [k for k, v in asdict(cfg).items() if k not in RESUME_MAY_CHANGE and saved.get(k, v) != v]
    if diff:
        k = diff[0]
        raise ResumeMismatch(f"the run was started with {k}={saved[k]!r}, now {getattr(cfg, k)!r}; "
                             "use the same settings")
