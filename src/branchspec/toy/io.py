"""Saved products of a toy sweep (§4.1): results.json, traces.npz, checkpoints.

Everything the figures need is written here, so :mod:`branchspec.figures.toy`
redraws Figs. 2–4 without retraining:

* ``results.json`` — settings, ``"per_m"`` (success rate, mean active /
  silent per M), a summary, and ten example covariance matrices Cov = F·Fᵀ
  for M = 10 (Fig. 3 right);
* ``traces.npz`` — training dynamics of the traced networks (Fig. 2), final
  response matrices F of the first trials of every M (Fig. 4 left), their
  initial and final parameters, and per-network loss / active / silent.

Example:
    >>> import tempfile
    >>> from branchspec.toy import ToyConfig, train_toy
    >>> run = train_toy(ToyConfig(branches=(2, 10), trials=4, steps=50))
    >>> doc = write_results(run, tempfile.mkdtemp())
    >>> [d["m"] for d in doc["per_m"]]
    [2, 10]
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from branchspec import metrics
from branchspec.budget import load_npz
from branchspec.io import atomic_write_json, atomic_write_npz
from branchspec.toy.problems import PROBLEMS
from branchspec.toy.train import ToyRun

COV_M = 10  # covariance examples for this M (Fig. 3 right) …
COV_EXAMPLES = 10  # … this many of them
EXAMPLE_M = 20  # response example of 20 branches (Fig. 4 left, middle)


def _nearest(ms, target: int) -> int:
    return int(min(ms, key=lambda m: (abs(m - target), m)))


def summarize(per_m: list[dict]) -> dict:
    """The paper's claims as numbers: success for M ≥ 10 (Fig. 3), active band for M ≥ 10 (Fig. 4)."""
    big = [d for d in per_m if d["m"] >= 10]
    out: dict = {}
    if big:
        act = [d["mean_active"] for d in big]
        out["min_success_rate_m_ge_10"] = min(d["success_rate"] for d in big)
        out["mean_active_min_m_ge_10"] = min(act)
        out["mean_active_max_m_ge_10"] = max(act)
        out["mean_active_band_m_ge_10"] = max(act) - min(act)
        out["mean_silent_at_m"] = {str(big[0]["m"]): big[0]["mean_silent"], str(big[-1]["m"]): big[-1]["mean_silent"]}
    rates = [d["success_rate"] for d in per_m]
    out["success_rate_first_last"] = [rates[0], rates[-1]]
    return out


def write_results(run: ToyRun, out_dir: str | os.PathLike) -> dict:
    """Write ``results.json`` and ``traces.npz`` of ``run`` under ``out_dir``; returns the JSON document."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = run.config
    ms = cfg.branches
    cov_m = _nearest(ms, COV_M)
    covs, corr = [], []
    for t in range(min(COV_EXAMPLES, cfg.trials)):
        F = torch.from_numpy(run.response(run.network(cov_m, t))).double()  # (M, N)
        covs.append(metrics.covariance(F).tolist())  # (M, M) Cov = F·Fᵀ (§4.1)
        corr.append(metrics.mean_abs_offdiag(metrics.correlation(F)))
    per_m = run.per_m()
    x, y = PROBLEMS[cfg.problem]
    doc = {
        "problem": cfg.problem,
        "x": list(x),
        "y": list(y),
        "settings": cfg.to_dict(),
        "seconds": round(run.seconds, 3),
        "torch_threads": torch.get_num_threads(),
        "per_m": per_m,
        "summary": summarize(per_m),
        "covariance_examples": {"m": cov_m, "matrices": covs, "mean_abs_offdiag_correlation": corr},
        "example_m": _nearest(ms, EXAMPLE_M),
        "traces_file": "traces.npz",
    }
    arrays = {
        "x": np.asarray(x), "y": np.asarray(y), "trace_steps": run.trace_steps,
        "net_m": run.net_m, "net_trial": run.net_trial, "loss": run.loss, "active": run.active, "silent": run.silent,
    }
    for key, tr in run.traces.items():
        arrays[f"trace_{key}"] = tr  # (S, M, N) branch outputs during training (Fig. 2)
    for m in ms:
        keep = min(cfg.keep_responses, cfg.trials)
        arrays[f"F_m{m}"] = np.stack([run.response(run.network(m, t)) for t in range(keep)]) if keep else np.zeros((0, m, len(x)))
        g = run.network(m, 0)
        arrays[f"w_m{m}"], arrays[f"b_m{m}"] = run.params(g)
        arrays[f"w0_m{m}"], arrays[f"b0_m{m}"] = run.params(g, initial=True)
    atomic_write_npz(out / "traces.npz", arrays)
    atomic_write_json(out / "results.json", doc, indent=1)
    return doc


def load_results(out_dir: str | os.PathLike) -> tuple[dict, dict]:
    """``(results.json document, traces.npz arrays)`` of a toy output folder."""
    out = Path(out_dir)
    doc = json.loads((out / "results.json").read_text())
    arrays = load_npz(out / doc.get("traces_file", "traces.npz"))
    return doc, arrays


def save_models(run: ToyRun, out_dir: str | os.PathLike, ms=None, trial: int = 0) -> dict[int, dict[str, Path]]:
    """Checkpoint the init and trained model of trial ``trial`` for each M (default: every M).

    Files: ``out_dir/m{M}_init`` and ``out_dir/m{M}_trained`` (safetensors + JSON), weights under
    ``model.*`` exactly as ``toy_model(M).state_dict()``; rebuild with
    :func:`branchspec.loading.load_model`. Returns ``{M: {"init": path, "trained": path}}``.
    """
    from branchspec.models.registry import model_spec
    from branchspec.checkpoint import prefixed, save_checkpoint

    cfg = run.config
    out = Path(out_dir)
    paths: dict[int, dict[str, Path]] = {}
    for m in (cfg.branches if ms is None else ms):
        g = run.network(m, trial)
        spec = model_spec("toy", {"num_branches": int(m), "negative_slope": cfg.negative_slope,
                                  "init_scale": cfg.init_scale})
        paths[int(m)] = {}
        for tag, initial in (("init", True), ("trained", False)):
            w, b = run.params(g, initial=initial)
            sd = {}
            for k in range(m):
                sd[f"branches.{k}.weight"] = torch.tensor(float(w[k]))
                sd[f"branches.{k}.bias"] = torch.tensor(float(b[k]))
            # "data" / "loss" tell `branchspec hessian` which batch and loss to use.
            state = {"model": spec, "problem": cfg.problem, "data": cfg.problem, "loss": "l2", "trial": trial,
                     "step": 0 if initial else cfg.resolved_steps, "settings": cfg.to_dict()}
            if not initial:
                state["final_loss"] = float(run.loss[g])
            save_checkpoint(out / f"m{m}_{tag}", prefixed("model", sd), state)
            paths[int(m)][tag] = out / f"m{m}_{tag}"
    return paths
