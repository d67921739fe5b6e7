"""Fig. 5 (left) / Fig. 17 from §6 M sweeps as they train: the figures and numbers of the kuangliu record.

Each SWEEP is a ``train-classifier --sweep`` folder (``SWEEP/M<m>/`` run folders, finished or not). Writes

* ``OUT/<sweep>-vs-m.png`` — #active and #silent branches vs M at the given epochs (``draw_silence_counts``;
  an epoch a run has not reached is left out of its line);
* ``OUT/silence.png`` — every run's silent fraction, weakest branch and clamped training logits per epoch
  (``draw_silence_over_training``), labelled ``<sweep> M=<m>``;
* ``OUT/sweep-silence.json`` — per sweep: M, the epochs, #active and #silent (null: not reached) and each
  run's last logged epoch.

Usage: python scripts/sweep_silence.py OUT EPOCHS SWEEP [SWEEP ...] [--window W] [--turned-off]   (EPOCHS e.g.
10,50,100,200; W: silent in at least half of the last W epochs, for runs whose per-epoch count flickers;
--turned-off: count the branches whose weights before the last layer are gone, for runs that logged them)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from branchspec.figures.classifier_epochs import draw_silence_counts, draw_silence_over_training, silence_vs_m


def sweep_runs(sweep: Path) -> dict[int, Path]:
    """M -> run folder for the runs of ``sweep`` that have logged an epoch."""
    runs = {int(p.name[1:]): p for p in sweep.glob("M*") if p.name[1:].isdigit() and (p / "diagnostics.json").exists()}
    if not runs:
        sys.exit(f"{sweep}: no M<m>/diagnostics.json under it; not a train-classifier --sweep folder")
    return dict(sorted(runs.items()))


def as_json(s: dict) -> dict:
    """A sweep's :func:`silence_vs_m` counts as JSON: unreached epochs as null."""
    ints = lambda a: [[None if np.isnan(v) else int(v) for v in row] for row in a]  # noqa: E731
    return {"M": s["M"].tolist(), "epoch": s["epoch"].tolist(), "active": ints(s["active"]), "silent": ints(s["silent"]),
            "last_epoch": s["last"].tolist(), "window": s["window"],
            "rule": "turned off (weights before the last layer < 0.01)" if s["rule"] == "weights" else "Fig. 4"}


def main(out: Path, epochs: list[int], sweeps: list[Path], window: int = 1, turned_off: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rule = dict(threshold=1e-2, rule="weights") if turned_off else {}
    table, curves = {}, {}
    for sweep in sweeps:
        runs = sweep_runs(sweep)
        s = silence_vs_m(runs, epochs, window=window, **rule)
        reached = ~np.isnan(s["silent"]).all(axis=1)  # (T,) epochs some run has logged
        s.update(epoch=s["epoch"][reached], active=s["active"][reached], silent=s["silent"][reached])
        draw_silence_counts(s, out / f"{sweep.name}-vs-m.png")
        table[sweep.name] = as_json(s)
        curves.update({f"{sweep.name} M={m}": run for m, run in runs.items()})
    draw_silence_over_training(curves, out / "silence.png")
    lines = ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in table.items())  # a sweep per line
    (out / "sweep-silence.json").write_text("{\n" + lines + "\n}\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("epochs", type=lambda t: [int(e) for e in t.split(",")], help="e.g. 10,50,100,200")
    ap.add_argument("sweeps", type=Path, nargs="+")
    ap.add_argument("--window", type=int, default=1, help="silent in at least half of the last W epochs")
    ap.add_argument("--turned-off", action="store_true",
                    help="count the branches whose weights before the last layer are gone (turned_off), "
                         "not the Fig. 4 rule")
    a = ap.parse_args()
    main(a.out, a.epochs, a.sweeps, a.window, a.turned_off)
