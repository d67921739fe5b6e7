"""Throughputs read back from finished runs, and the plan of the main GPU call (scripts/gpu/session.sh).

    python3 scripts/gpu/rates.py ips RUN          # images/s of a classifier run's last epoch (0 if none)
    python3 scripts/gpu/rates.py gan RUN          # GAN steps/s from RUN/log.jsonl (0 if none)
    python3 scripts/gpu/rates.py plan W SMOKE     # W/plan.json from W/t-* timing runs
    python3 scripts/gpu/rates.py together W       # W/rates.json from lease2.sh's joint timing runs W/t-hard, t-pi, t-g32
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def ips(run: str) -> float:
    try:
        return float(list(csv.DictReader(open(Path(run) / "metrics.csv")))[-1]["images_per_s"])
    except (OSError, IndexError, KeyError, ValueError):
        return 0.0


def gan(run: str) -> float:
    try:
        rows = [json.loads(line) for line in open(Path(run) / "log.jsonl")]
    except (OSError, ValueError):
        return 0.0
    if len(rows) < 2:
        return 0.0
    a, b = rows[0], rows[-1]
    return (b["step"] - a["step"]) / max(1e-9, b["time_s"] - a["time_s"])


def plan(w: str, smoke: bool) -> dict:
    """Epochs for the classifier runs: what the slower of M = 16 / 32 finishes in ``train_s`` seconds if it keeps
    ``share`` of its solo speed beside the other seven processes (an assumption, recorded in the plan)."""
    r16, r32 = ips(f"{w}/t-c16"), ips(f"{w}/t-c32")
    g256 = {p: gan(f"{w}/t-g256-{p}") for p in ("fp32", "bf16")}
    share, train_s = 0.3, 400  # measured 26 Nov 2026: M = 16 kept 0.30 of its solo speed beside 7 other processes
    rates = [r for r in (r16, r32) if r > 0]
    epochs = int(max(6, min(40, 0.85 * train_s * share * min(rates) / 50000))) if rates else 10
    return {"epochs": 1 if smoke else epochs, "subset": 512 if smoke else 0,
            "gan256_precision": "fp32" if g256["fp32"] > 1.2 * g256["bf16"] else "bf16",  # bf16 measured faster
            "train_s": 150 if smoke else train_s, "share_assumed": share,
            "alone": {"c16_images_s": r16, "c32_images_s": r32, "g32_steps_s": gan(f"{w}/t-g32"), "g256_steps_s": g256}}


def together(w: str) -> dict:
    """Rates of the jobs of scripts/gpu/lease2.sh timed side by side (its ``prep`` call)."""
    return {"hard_images_s": ips(f"{w}/t-hard"), "pi_images_s": ips(f"{w}/t-pi"), "gan32_steps_s": gan(f"{w}/t-g32")}


if __name__ == "__main__":
    if sys.argv[1] == "together":
        r = together(sys.argv[2])
        (Path(sys.argv[2]) / "rates.json").write_text(json.dumps(r))
        print("rates, the three jobs together:", json.dumps(r))
    elif sys.argv[1] == "ips":
        print(ips(sys.argv[2]))
    elif sys.argv[1] == "gan":
        print(gan(sys.argv[2]))
    else:
        p = plan(sys.argv[2], sys.argv[3] == "1")
        (Path(sys.argv[2]) / "plan.json").write_text(json.dumps(p, indent=1))
        print("plan", json.dumps(p))
