"""Specialisation over training (paper Fig. 2 style), drawn from a tracker's ``tracker.jsonl``.

Four panels against the training step: every part's response norm ‖F_k‖
(one line per part, as Fig. 2 draws each branch's output over training),
the active / silent counts (§4.1, Fig. 4), the mean |correlation| between
parts, and every part's gradient norm (eq. 10), plus the probe estimate of
the Hessian block diagonality (§5.2) where recorded.
"""

from __future__ import annotations

from pathlib import Path

from branchspec.figures.common import new_figure, save
from branchspec.parts.tracker import read_records


def draw_tracking(records: list[dict] | str | Path, path: str | Path, title: str = "") -> Path:
    """Draw the tracker records (a list, or a ``tracker.jsonl`` / its folder) to ``path`` (PNG)."""
    recs = records if isinstance(records, list) else read_records(records)
    if not recs:
        raise ValueError("no tracker records to draw")
    steps = [r["step"] for r in recs]
    fig, axes = new_figure(1, 4, figsize=(16, 3.4))
    m = len(recs[0]["norms"])
    for k in range(m):
        axes[0].plot(steps, [r["norms"][k] for r in recs], lw=1.2, label=f"part {k}")
    axes[0].set(title="part norms ‖F_k‖", xlabel="step")
    if m <= 8:
        axes[0].legend(fontsize=7)
    axes[1].plot(steps, [r["active"] for r in recs], label="active", color="tab:green")
    axes[1].plot(steps, [r["silent"] for r in recs], label="silent", color="tab:gray")
    axes[1].set(title="active / silent parts", xlabel="step", ylim=(-0.5, m + 0.5))
    axes[1].legend(fontsize=7)
    axes[2].plot(steps, [r["mean_abs_corr"] for r in recs], color="tab:purple", label="mean |corr|")
    probe = [(r["step"], r["probe_block_diagonality"]) for r in recs if "probe_block_diagonality" in r]
    if probe:
        axes[2].plot(*zip(*probe), "o--", color="tab:orange", label="Hessian block diag. (probes)")
    axes[2].set(title="mean |correlation| between parts", xlabel="step", ylim=(0, 1.02))
    axes[2].legend(fontsize=7)
    for k in range(m):
        axes[3].plot(steps, [max(r["grad_norms"][k], 1e-12) for r in recs], lw=1)
    axes[3].set(title="gradient norms ‖∂L/∂θ_k‖", xlabel="step", yscale="log")
    if title:
        fig.suptitle(title)
    return save(fig, path)
