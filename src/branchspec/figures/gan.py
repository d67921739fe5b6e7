"""Training curves of a GAN run (paper §7, App. E), drawn from ``RUN/log.jsonl`` only.

Each log line holds the means of the losses over the last ``log_every`` steps
(``branchspec.gan.train``): d/real = E softplus(−D(x, y)), d/fake = E softplus(D(G(x, ỹ), ỹ)),
the fractions of reals / fakes D gets right, R1 and g/adv. A discriminator at
chance sits at d/real = d/fake = g/adv = log 2 and accuracies 0.5.

Example:
    >>> training_curves("RUN/log.jsonl", "RUN/curves.png")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from branchspec.apps.components import to_unit
from branchspec.budget import load_npz
from branchspec.figures.common import new_figure, save

PANELS = (
    (("d/real", "d/fake"), "D losses (log 2 = chance)", math.log(2)),
    (("d/acc_real", "d/acc_fake"), "D accuracy on reals / fakes", 0.5),
    (("d/r1",), "R1 penalty ½E‖∇ₓD‖²", None),
    (("g/adv",), "G adversarial loss", math.log(2)),
)
# drawn only when the run used train-gan's departures (--cls-weight, --rec-weight)
DEPARTURE_PANEL = (("d/cls", "g/cls", "g/rec"), "departures: domain CE, re-gen. L1", None)


def read_log(path) -> list[dict]:
    """The JSON lines of ``log.jsonl`` (a resumed run's repeated steps: the last line wins)."""
    rows: dict[int, dict] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[int(row["step"])] = row
    return [rows[k] for k in sorted(rows)]


def training_curves(log_path, out_png, title: str | None = None) -> Path:
    """Four panels over training steps: D losses, D accuracies, R1, g/adv; dashed lines at chance.

    A fifth panel shows d/cls, g/cls and g/rec when the log has any of them.
    """
    rows = read_log(log_path)
    steps = np.array([r["step"] for r in rows])
    panels = PANELS + ((DEPARTURE_PANEL,) if any(k in r for r in rows for k in DEPARTURE_PANEL[0]) else ())
    fig, axes = new_figure(1, len(panels), figsize=(3.0 * len(panels), 2.6))
    for ax, (keys, name, chance) in zip(axes, panels):
        for k in keys:
            vals = np.array([r.get(k, np.nan) for r in rows], float)
            if np.isfinite(vals).any():
                ax.plot(steps, vals, label=k, lw=1.2)
        if chance is not None:
            ax.axhline(chance, color="gray", ls="--", lw=0.8)
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        if len(keys) > 1:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return save(fig, out_png)


def transfer_fidelity(runs: dict[str, list[dict]], out_png, transfer_target: float = 0.6,
                      gain_target: float = 2.0, title: str | None = None) -> Path:
    """Class transfer against own-domain fidelity, one line per run through its judged checkpoints (issue 11).

    ``runs``: run label → judge results (``decomposition.json["judge"]`` of :mod:`branchspec.apps.judge`)
    in step order; each gives x = PSNR of G(x, y) minus PSNR of R alone (dB: what the branches add, §7
    eq. 15) and y = transfer accuracy. The shaded corner is where both targets hold; the last point of a
    run is filled.
    """
    fig, ax = new_figure(figsize=(9.0, 4.6))
    xs = [j["psnr_own"] - j["psnr_residual_only"] for js in runs.values() for j in js]
    ys = [j["transfer_accuracy"] for js in runs.values() for j in js]
    hi_x, hi_y = max(xs + [gain_target]) + 0.7, max(ys + [transfer_target]) + 0.05
    ax.fill_between([gain_target, hi_x], transfer_target, hi_y, color="tab:green", alpha=0.12, lw=0,
                    label=f"targets: ≥ R + {gain_target:g} dB, ≥ {transfer_target:g}")
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    for label, js in runs.items():
        x = [j["psnr_own"] - j["psnr_residual_only"] for j in js]
        y = [j["transfer_accuracy"] for j in js]
        (line,) = ax.plot(x, y, "o-", mfc="none", label=label)
        ax.plot(x[-1:], y[-1:], "o", color=line.get_color())
    chance = next((j.get("chance") for js in runs.values() for j in js if j.get("chance")), None)
    if chance:
        ax.axhline(chance, color="grey", lw=0.8, ls=":")
    ax.set_xlim(min(xs) - 0.7, hi_x)
    ax.set_ylim(min(ys + [chance or 1]) - 0.05, hi_y)
    ax.set_xlabel("own-domain PSNR of G(x, y) minus PSNR of R alone (dB)")
    ax.set_ylabel("transfer accuracy (judge)")
    ax.set_title(title or "class transfer vs what the branches add")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, out_png)


def transfer_grid(examples, domains, out_png, cell: float = 1.0, title: str | None = None) -> Path:
    """Rows = images; columns = the input, then G(x, t) for every target domain t (issue 11's class transfer).

    ``examples``: the dict of :func:`branchspec.apps.judge.transfer_examples` or an ``.npz`` of it. Each
    output is labelled with the judge's call, green when it is the target, red otherwise; the source
    domain's column is the re-generation.
    """
    ex = load_npz(examples) if isinstance(examples, (str, Path)) else examples
    x, f, src, calls = ex["inputs"], ex["outputs"], ex["sources"], ex["judged"]
    vr = tuple(np.asarray(ex.get("value_range", (-1.0, 1.0))).tolist())
    n, nd = f.shape[:2]
    fig, axes = new_figure(n, nd + 1, figsize=(cell * (nd + 1), cell * n + 0.5), squeeze=False)
    for i in range(n):
        for j in range(nd + 1):
            ax = axes[i, j]
            img = to_unit(x[i] if j == 0 else f[i, j - 1], vr)
            ax.imshow(np.moveaxis(img, 0, -1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("input" if j == 0 else f"→ {domains[j - 1]}", fontsize=8)
            if j > 0:
                hit = calls[i, j - 1] == j - 1
                ax.set_xlabel(f"judged {domains[calls[i, j - 1]]}", fontsize=6, color="tab:green" if hit else "tab:red")
        axes[i, 0].set_ylabel(domains[src[i]], fontsize=7)
    fig.suptitle(title or "class transfer G(x, ỹ), judged (green: judged as the target)", fontsize=9)
    return save(fig, out_png)
