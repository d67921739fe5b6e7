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
from pathlib import Path

import numpy as np

from branchspec.branched import as_branched
from branchspec.classifier.config import RUN_RECORD_KEYS
from branchspec.classifier.train import TrainConfig, decay_exponents
from branchspec.figures.classifier_epochs import draw_epoch_diagnostics, epoch_diagnostics
from branchspec.loading import load_model
from branchspec.options import load_file


def run_config(run: Path) -> tuple[TrainConfig, int]:
    """The run's TrainConfig (its config.json, read as ``--config`` reads it) and its steps per epoch
    (from metrics.csv)."""
    cfg = TrainConfig(**load_file(run / "config.json", TrainConfig, ignore=RUN_RECORD_KEYS), out=str(run))
    with open(run / "metrics.csv") as f:
        first = next(csv.DictReader(f))
    return cfg, int(first["step"]) // int(first["epoch"])


def branch_table(run: Path) -> dict:
    """Per-branch response ratio (last logged epoch), weight norm and head norm of the last checkpoint."""
    model, state = load_model(run / "last")
    branched = as_branched(model)
    weights = np.array(branched.branch_weight_norms())
    head = np.array(branched.branch_weight_norms("head."))
    resp = epoch_diagnostics(run)["response"][-1]  # (M,)
    order = np.argsort(-resp)
    rank = lambda a: np.argsort(np.argsort(a))  # noqa: E731
    rho = float(np.corrcoef(rank(resp), rank(head))[0, 1])
    return {"epoch": int(state["epoch"]), "branches": [
        {"branch": int(k), "response": round(float(resp[k]), 4), "weight_norm": round(float(weights[k]), 3),
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
