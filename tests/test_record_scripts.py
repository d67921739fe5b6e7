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
SHIPPED = {16: ROOT / "checkpoints" / "cifar10-m16-sgd-wd", 32: ROOT / "checkpoints" / "cifar10-m32-sgd-wd"}


def _script(name: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *map(str, args)], capture_output=True,
                          text=True, timeout=300)


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
