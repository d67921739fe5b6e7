"""Weight decay's budget against each branch's norms in §6 runs: the figure and the numbers of the record.

For every run folder given (``train-classifier`` output: config.json, metrics.csv, diagnostics.json,
last.{json,safetensors}):

* ``OUT/<name>-diagnostics.png`` — the per-epoch diagnostics with the pure-weight-decay line
  (``draw_epoch_diagnostics``; D(e) from the run's config by ``decay_exponents`` when the run predates the
  logged exponent);
* ``OUT/branch-decay.json`` — per run: D at the end, what 50,000 images would have given, and per branch
  (sorted by response) the response ratio ‖F_k‖ / max ‖F_j‖ of the last epoch, ‖θ_k‖ and the norm of its
  last layer (``head``) read from the checkpoint, and the rank correlation of head norm and response.

Usage: python scripts/branch_decay.py OUT RUN [RUN ...]
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from branchspec.checkpoint import load_checkpoint
from branchspec.classifier.train import TrainConfig, decay_exponents
from branchspec.figures.classifier import draw_epoch_diagnostics, epoch_diagnostics


def run_config(run: Path) -> tuple[TrainConfig, int]:
    """The run's TrainConfig (from config.json) and its steps per epoch (from metrics.csv)."""
    saved = json.loads((run / "config.json").read_text())
    names = {f.name for f in fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in names})
    with open(run / "metrics.csv") as f:
        first = next(csv.DictReader(f))
    return cfg, int(first["step"]) // int(first["epoch"])


def branch_table(run: Path) -> dict:
    """Per-branch response ratio (last logged epoch), weight norm and head norm of the last checkpoint."""
    tensors, state = load_checkpoint(run / "last")
    m = state["model"]["config"]["num_branches"]

    def norm(k: int, part: str) -> float:
        pre = f"model.branches.{k}."
        ps = [t.float() for n, t in tensors.items() if n.startswith(pre + part) and t.is_floating_point()
              and "running_" not in n]
        return float(torch.sqrt(sum((p ** 2).sum() for p in ps)))

    d = epoch_diagnostics(run)
    resp = d["response"][-1]  # (M,)
    head = np.array([norm(k, "head.") for k in range(m)])
    order = np.argsort(-resp)
    rank = lambda a: np.argsort(np.argsort(a))  # noqa: E731
    rho = float(np.corrcoef(rank(resp), rank(head))[0, 1])
    return {"epoch": int(state["epoch"]), "branches": [
        {"branch": int(k), "response": round(float(resp[k]), 4), "weight_norm": round(norm(int(k), ""), 3),
         "head_norm": round(float(head[k]), 4)} for k in order], "rank_corr_head_response": round(rho, 3)}


def main(out: str, *runs: str) -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {}
    for r in map(Path, runs):
        cfg, spe = run_config(r)
        d = decay_exponents(cfg, spe)
        logged = epoch_diagnostics(r)["weight_epoch"]
        name = f"{r.parent.name}-{r.name}" if r.name.startswith("M") else r.name
        draw_epoch_diagnostics(r, out_dir / f"{name}-diagnostics.png", decay=[d[e - 1] for e in logged])
        full = decay_exponents(cfg, -(-50_000 // cfg.batch_size))[-1]
        summary[name] = {"steps_per_epoch": spe, "decay_exponent_end": round(d[-1], 3),
                         "decay_exponent_50000_images": round(full, 3), **branch_table(r)}
        print(f"{name}: D = {d[-1]:.2f} (50,000 images: {full:.2f}); epoch {summary[name]['epoch']}; "
              f"rank corr(head norm, response) = {summary[name]['rank_corr_head_response']}")
    (out_dir / "branch-decay.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__.split("Usage: ")[1])
    main(*sys.argv[1:])
