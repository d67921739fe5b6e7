"""Training throughput as a user sees it: ``images_per_s`` of ``branchspec train-classifier``.

Every number comes from the command users run: one process per configuration, 2 epochs on the first 2,560
CIFAR-10 training images of ``../shared/data/cifar-10-batches-py`` (the embedded digits when that folder is
absent), batch 128, 2 threads; the row is the ``images_per_s`` column of the **second** epoch in the run's
``metrics.csv`` (training only: the test pass is timed apart, and ``--compile``'s compilation falls in the first
epoch). Configurations:

* the §6 model, M = 16 branches of width 5.4, ``--engine packed`` — eager and ``--compile``;
* the dense reference of equal FLOPs through the same trainer: **M = 1 of width 21.6** (FLOPs grow as width²,
  so one branch 4× as wide has the 16 branches' multiply-adds), eager and ``--compile``;
* ``--engine loop --precision fp32``, and packed fp32, the settings of the trainer before ``--precision auto``.

``--precision auto`` resolves per machine (bf16 with AVX512-BF16 / AMX or CUDA, fp32 otherwise); the rows name
what it resolved to. The ratios the packed engine is judged by are packed / dense in the same precision and
mode. ``BRANCHSPEC_BENCH_BEFORE=SRC`` adds the rows of another checkout's ``src`` (e.g. a worktree of an earlier
commit), run the same way, for before / after claims.

    python benchmarks/run.py cli [--quick]
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar-10-batches-py"


def _run(data: str, subset: int, flags: list[str], src: str | None = None) -> tuple[float, str]:
    """``(images/s of the last epoch, resolved precision)`` of one train-classifier run."""
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "branchspec", "train-classifier", "--data", data, "--epochs", "2",
               "--subset", str(subset), "--threads", "2", "--out", out, "--quiet", *flags]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
        with open(Path(out) / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        precision = json.loads((Path(out) / "config.json").read_text()).get("precision", "?")
        return float(rows[-1]["images_per_s"]), str(precision)


def rows(quick: bool) -> list[dict]:
    data = str(CIFAR) if CIFAR.is_dir() else "digits"
    subset, w = (256, 2.0) if quick else (2560, 5.4)
    note = f"{Path(data).name}, {subset} images, epoch 2 of 2, batch 128, 2 threads"
    configs = {  # name: flags
        "M=16 packed": ["--branches", "16", "--width", str(w), "--engine", "packed"],
        "M=16 packed --compile": ["--branches", "16", "--width", str(w), "--engine", "packed", "--compile"],
        "dense M=1 (equal FLOPs)": ["--branches", "1", "--width", str(4 * w), "--engine", "packed"],
        "dense M=1 (equal FLOPs) --compile": ["--branches", "1", "--width", str(4 * w), "--engine", "packed",
                                              "--compile"],
        "M=16 packed fp32": ["--branches", "16", "--width", str(w), "--engine", "packed", "--precision", "fp32"],
        "M=16 loop fp32": ["--branches", "16", "--width", str(w), "--engine", "loop", "--precision", "fp32"],
    }
    ips: dict[str, float] = {}
    out = []
    for name, flags in configs.items():
        ips[name], prec = _run(data, subset, flags)
        out.append({"name": f"train-classifier {name}", "value": round(ips[name], 1), "unit": "images/s",
                    "note": f"precision {prec}; {note}"})
    before = os.environ.get("BRANCHSPEC_BENCH_BEFORE")
    if before:
        flags = ["--branches", "16", "--width", str(w), "--engine", "packed", "--precision", "fp32"]
        ips["before"], prec = _run(data, subset, flags, src=before)
        out.append({"name": "train-classifier M=16 packed fp32, earlier checkout", "value": round(ips["before"], 1),
                    "unit": "images/s", "note": f"{before}; precision {prec}; {note}"})
        best = max(ips["M=16 packed"], ips["M=16 packed --compile"])
        out.append({"name": "train-classifier M=16 as run now (best of eager / --compile) / earlier checkout",
                    "value": round(best / ips["before"], 2), "unit": "x", "note": "target >= 1.5"})
    for mode in ("", " --compile"):
        out.append({"name": f"packed M=16 / dense equal FLOPs{mode or ' (eager)'}",
                    "value": round(ips[f"M=16 packed{mode}"] / ips[f"dense M=1 (equal FLOPs){mode}"], 2),
                    "unit": "x", "note": "same precision (auto) and mode; target >= 0.8"})
    return out


if __name__ == "__main__":
    for r in rows("--quick" in sys.argv):
        print(r)
