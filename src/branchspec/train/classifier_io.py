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
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

from branchspec.errors import BranchspecError
from branchspec.models.registry import model_spec
from branchspec.train.checkpoint import optimizer_to_tensors, prefixed, rng_state_tensors, save_checkpoint


def data_info(cfg, data) -> dict:
    return {"source": cfg.data, "mean": list(data.mean), "std": list(data.std), "class_names": data.class_names}


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


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


def write_rows(path: Path, rows: list[dict], fields: list[str]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, restval="", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def read_diagnostics(path: Path, up_to_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    return [r for r in json.loads(path.read_text()).get("epochs", []) if r["epoch"] <= up_to_epoch]


def write_diagnostics(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"epochs": rows}))
    tmp.replace(path)


RESUME_MAY_CHANGE = {"out", "save_every", "engine", "eval_batch_size", "tta", "device"}


def check_resume(saved: dict, cfg) -> None:
    """Refuse to resume with settings that change the run (one line naming the setting)."""
    diff = [k for k, v in asdict(cfg).items() if k not in RESUME_MAY_CHANGE and saved.get(k, v) != v]
    if diff:
        k = diff[0]
        raise BranchspecError(f"--resume: the run was started with {k}={saved[k]!r}, now {getattr(cfg, k)!r}; use the same settings")
