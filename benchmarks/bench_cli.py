"""Training throughput as a user sees it: ``images_per_s`` of ``branchspec train-classifier``.

Runs the command once per (engine, precision) on the same data in one
session — one epoch on the first 2,560 CIFAR-10 training images of
``../shared/data/cifar-10-batches-py`` (the embedded digits when that folder
is absent), M = 16, width 5.4, batch 128, 2 threads — and reads the
``images_per_s`` column of the run's ``metrics.csv`` (training only, the test
pass is timed apart). The ratio packed / loop is the target of the packed
engine (≥ 2 with the best precision of the machine).

    python benchmarks/run.py cli [--quick]
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from pathlib import Path

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar-10-batches-py"


def _images_per_s(engine: str, precision: str, data: str, subset: int, width: float) -> float:
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "branchspec", "train-classifier", "--data", data, "--branches", "16",
               "--width", str(width), "--epochs", "1", "--subset", str(subset), "--engine", engine,
               "--precision", precision, "--threads", "2", "--out", out, "--quiet"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(Path(out) / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        return float(rows[-1]["images_per_s"])


def rows(quick: bool) -> list[dict]:
    data = str(CIFAR) if CIFAR.is_dir() else "digits"
    subset, width = (256, 2.0) if quick else (2560, 5.4)
    ips = {}
    out = []
    for engine, precision in (("loop", "fp32"), ("packed", "fp32"), ("packed", "bf16")):
        ips[engine, precision] = _images_per_s(engine, precision, data, subset, width)
        out.append({"name": f"train-classifier --engine {engine} --precision {precision}",
                    "value": round(ips[engine, precision], 1), "unit": "images/s",
                    "note": f"{Path(data).name}, {subset} images, M=16, width {width:g}, batch 128, 2 threads"})
    best = max(ips["packed", "fp32"], ips["packed", "bf16"])
    out.append({"name": "train-classifier packed (best precision) / loop fp32", "value": round(best / ips["loop", "fp32"], 2),
                "unit": "x", "note": "target >= 2"})
    return out


if __name__ == "__main__":
    for r in rows("--quick" in sys.argv):
        print(r)
