"""The scripts behind the kuangliu record's numbers and figures rerun on the shipped runs (no ../shared needed).

``scripts/sweep_silence.py`` must give back Fig. 17's counts of the matched-budget sweep (M = 16 and 32 shipped as
``checkpoints/cifar10-m{16,32}-sgd-wd``: 12 / 4 and 14 / 18 at epoch 200, by turned-off weights), and
``scripts/branch_decay.py`` the decay budget D = 19.0 of that recipe on 2,500 images (19 steps an epoch) against
391 on 50,000.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "kuangliu"
SHIPPED = {16: ROOT / "checkpoints" / "cifar10-m16-sgd-wd", 32: ROOT / "checkpoints" / "cifar10-m32-sgd-wd"}


def _script(name: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def _logs(prefix: str) -> dict[str, Path]:
    return {name: RESULTS / f"{prefix}-{name}" for name in ("diagnostics.json", "metrics.csv")}


def _shipped(run: Path) -> dict[str, Path]:
    return {name: run / name for name in ("diagnostics.json", "metrics.csv")}


# The record's runs as committed: finished runs shipped under checkpoints/, the rest as their logs in results/.
RECORD_LOGS = {
    "kl-sweep": {16: _shipped(ROOT / "checkpoints" / "cifar10-m16-sgd"), 32: _logs("kl-m32"), 64: _logs("kl-m64")},
    "kl-sweep-wd": {16: _shipped(SHIPPED[16]), 32: _shipped(SHIPPED[32]), 64: _logs("kl-m64-wd")},
}


def test_sweep_silence_gives_fig17_of_the_shipped_matched_budget_sweep(tmp_path):
    sweep = tmp_path / "wd"
    sweep.mkdir()
    for m, run in SHIPPED.items():  # a --sweep folder: M<m>/ run folders
        (sweep / f"M{m}").symlink_to(run, target_is_directory=True)
    out = tmp_path / "out"
    res = _script("sweep_silence.py", out, "50,200,300", sweep, "--turned-off")
    assert res.returncode == 0, res.stderr[-2000:]
    counts = json.loads((out / "sweep-silence.json").read_text())["wd"]
    assert counts["M"] == [16, 32] and counts["last_epoch"] == [200, 200]
    assert counts["epoch"] == [50, 200]  # epoch 300: reached by no run, left out
    assert counts["active"] == [[15, 22], [12, 14]] and counts["silent"] == [[1, 10], [4, 18]]
    assert counts["rule"].startswith("turned off")
    for png in ("wd-vs-m.png", "silence.png"):
        assert (out / png).stat().st_size > 10_000
    assert _script("sweep_silence.py", out, "200", tmp_path / "out").returncode != 0  # not a sweep folder


def test_branch_decay_gives_the_decay_budget_of_the_shipped_run(tmp_path):
    res = _script("branch_decay.py", tmp_path, SHIPPED[32])
    assert res.returncode == 0, res.stderr[-2000:]
    row = json.loads((tmp_path / "branch-decay.json").read_text())["cifar10-m32-sgd-wd"]
    assert row["steps_per_epoch"] == 19 and row["epoch"] == 200
    assert abs(row["decay_exponent_end"] - 19.0) < 0.05 and abs(row["decay_exponent_50000_images"] - 391.0) < 0.1
    assert (tmp_path / "cifar10-m32-sgd-wd-diagnostics.png").stat().st_size > 10_000


def test_the_record_counts_follow_from_the_committed_logs(tmp_path):
    """results/kuangliu/sweep-silence.json and sweep-wd-turned-off.json — the Fig. 5-left / Fig. 17 counts of both
    sweeps, M = 64 included where its run ended (epoch 176 and 63) — are what the script gives from the logs."""
    for sweep, logs in RECORD_LOGS.items():
        for m, log in logs.items():
            (tmp_path / sweep / f"M{m}").mkdir(parents=True)
            for name, path in log.items():
                (tmp_path / sweep / f"M{m}" / name).symlink_to(path)
    res = _script("sweep_silence.py", tmp_path / "fig4", "10,25,50,75,100,125,150,175,200", tmp_path / "kl-sweep",
                  tmp_path / "kl-sweep-wd", "--window", "10")
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads((tmp_path / "fig4" / "sweep-silence.json").read_text())
    assert got == json.loads((RESULTS / "sweep-silence.json").read_text())
    assert got["kl-sweep"]["last_epoch"] == [200, 200, 176]
    assert got["kl-sweep"]["silent"][-2] == [0, 2, 14] and got["kl-sweep"]["active"][-2] == [16, 30, 50]
    res = _script("sweep_silence.py", tmp_path / "off", "10,25,50,60", tmp_path / "kl-sweep-wd", "--turned-off")
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads((tmp_path / "off" / "sweep-silence.json").read_text())
    assert got == json.loads((RESULTS / "sweep-wd-turned-off.json").read_text())
