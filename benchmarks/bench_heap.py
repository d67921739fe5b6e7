"""Whole commands with freed large blocks kept on the heap (``branchspec.heap``, the default) against glibc's
default (``BRANCHSPEC_HEAP=system``): speed, kernel time and peak resident memory.

Each configuration runs as users run it, one process per measurement, the two settings in turn (A B A B …)
``PAIRS`` times; the rows give medians. ``train-classifier`` (the §6 model, M = 16 packed and loop, and the dense
M = 1 of equal FLOPs, 2,560 CIFAR-10 images, batch 128, 2 threads): images/s of the second epoch.
``train-gan`` (the cat ↔ dog recipe at 64², M = 9, batch 8, 2 threads, ``--precision auto``): seconds per step
over steps 6–30 from its log. Kernel (sys) seconds and peak RSS per process come from ``os.wait4``.

    python benchmarks/bench_heap.py [--quick]
    python benchmarks/run.py heap            # as rows of the benchmark table
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
PAIRS = 2


def _process(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``cmd``; ``(kernel seconds, peak RSS in MiB)`` of that process (Linux ``ru_maxrss`` is KiB)."""
    with tempfile.TemporaryFile() as err:
        pid = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env).pid
        _, status, usage = os.wait4(pid, 0)  # reaps it, with its own resource usage
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd[2:4])} exited {code}: {err.read()[-500:]!r}")
    return usage.ru_stime, usage.ru_maxrss / 1024


def _classifier(flags: list[str], quick: bool, env: dict[str, str]) -> dict[str, float]:
    data = SHARED / "cifar-10-batches-py"
    data_arg = str(data) if data.is_dir() and not quick else "digits"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "branchspec", "train-classifier", "--data", data_arg, "--epochs", "2",
               "--subset", "256" if quick else "2560", "--threads", "2", "--quiet", "--out", str(out), *flags]
        sys_s, rss = _process(cmd, env)
        with open(out / "metrics.csv", newline="") as f:
            speed = float(list(csv.DictReader(f))[-1]["images_per_s"])
    return {"speed": speed, "sys": sys_s, "rss": rss}


def _gan(quick: bool, env: dict[str, str]) -> dict[str, float] | None:
    data = SHARED / "catdog-128"
    if not data.is_dir() and not quick:
        return None
    steps = 4 if quick else 30
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        recipe = ROOT / "recipes" / "gan-catdog-64.toml"
        cmd = [sys.executable, "-m", "branchspec", "train-gan", "--config", str(recipe), "--steps", str(steps),
               "--threads", "2", "--out", str(out), "--log-every", "1", "--sample-every", str(10 * steps),
               "--precision", "auto"]  # the recipe pins the bf16 of an AMX CPU
        if quick:
            cmd += ["--data", "embedded", "--img-size", "32"]
        sys_s, rss = _process(cmd, env)
        logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if line.strip()]
        stamps = [r["time_s"] for r in logged if "time_s" in r]
    first = 1 if quick else 5
    per_step = (stamps[-1] - stamps[first]) / (len(stamps) - 1 - first) if len(stamps) > first + 1 else float("nan")
    return {"speed": per_step, "sys": sys_s, "rss": rss}


def rows(quick: bool) -> list[dict]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "BRANCHSPEC_HEAP"}
    settings = {"kept": base, "system": {**base, "BRANCHSPEC_HEAP": "system"}}
    configs = {
        "train-classifier M=16 packed": lambda env: _classifier(["--branches", "16", "--width", "5.4",
                                                                 "--engine", "packed"], quick, env),
        "train-classifier M=16 loop": lambda env: _classifier(["--branches", "16", "--width", "5.4",
                                                               "--engine", "loop"], quick, env),
        "train-classifier dense M=1 (equal FLOPs)": lambda env: _classifier(["--branches", "1", "--width", "21.6"],
                                                                            quick, env),
        "train-gan cat-dog 64², M=9": lambda env: _gan(quick, env),
    }
    out = []
    for name, run in configs.items():
        got: dict[str, list[dict]] = {"kept": [], "system": []}
        for _ in range(1 if quick else PAIRS):
            for setting, env in settings.items():
                r = run(env)
                if r is not None:
                    got[setting].append(r)
        if not got["kept"]:
            continue
        med = {s: {k: statistics.median(r[k] for r in rs) for k in ("speed", "sys", "rss")} for s, rs in got.items()}
        gan = name.startswith("train-gan")
        unit, better = ("s/step", med["system"]["speed"] / med["kept"]["speed"]) if gan else (
            "images/s", med["kept"]["speed"] / med["system"]["speed"])
        n = len(got["kept"])
        for s in ("kept", "system"):
            out.append({"name": f"{name}, heap {s}", "value": round(med[s]["speed"], 3 if gan else 1), "unit": unit,
                        "note": f"median of {n}; kernel {med[s]['sys']:.1f} s, peak RSS {med[s]['rss']:.0f} MiB"})
        out.append({"name": f"{name}: speed, heap kept / system", "value": round(better, 2), "unit": "x",
                    "note": f"peak RSS {med['kept']['rss'] / med['system']['rss']:.2f}x"})
    return out


if __name__ == "__main__":
    for r in rows("--quick" in sys.argv):
        print(r)
