"""Training curves of a GAN run (paper §7, App. E), drawn from ``RUN/log.jsonl`` only.

Each log line holds the means of the losses over the last ``log_every`` steps
(``branchspec.train.gan``): d/real = E softplus(−D(x, y)), d/fake = E softplus(D(G(x, ỹ), ỹ)),
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
