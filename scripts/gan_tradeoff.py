"""Transfer accuracy against own-domain fidelity for judged GAN runs: docs/img/gan-tradeoff.png.

Reads the judge results that results/gan-run*.json hold (one entry per run and step, written from
``branchspec decompose --judge`` outputs) and draws :func:`branchspec.figures.gan.transfer_fidelity`.

Usage:
    python scripts/gan_tradeoff.py OUT.png RESULTS.json [RESULTS.json ...]
    e.g. python scripts/gan_tradeoff.py docs/img/gan-tradeoff.png results/gan-run8.json results/gan-run9.json
"""

from __future__ import annotations

import json
import sys

from branchspec.figures.gan import transfer_fidelity


def main(out: str, paths: list[str]) -> None:
    runs: dict[str, list[dict]] = {}
    for path in paths:
        for key, entry in json.load(open(path))["runs"].items():
            label, _, step = key.rpartition(" step ")
            if label:
                runs.setdefault(label, []).append((int(step), entry["judge"]))
    ordered = {label: [j for _, j in sorted(js, key=lambda t: t[0])] for label, js in runs.items()}
    print(transfer_fidelity(ordered, out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
