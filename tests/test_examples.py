"""The scripts in examples/ run and print what they found (each < 1 min on one CPU core)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    res = subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_moe_experts():
    out = run_example("moe_experts.py")
    assert "active experts" in out and out.count("expert ") >= 6


@pytest.mark.slow
def test_attention_heads():
    out = run_example("attention_heads.py")
    assert "without head 3" in out and "block diagonality" in out


@pytest.mark.slow
def test_resnext_groups():
    out = run_example("resnext_groups.py")
    assert "group 7: accuracy without it" in out


@pytest.mark.slow
def test_track_training(tmp_path):
    out = run_example("track_training.py", tmp_path)
    assert "step  580" in out and (tmp_path / "tracking.png").stat().st_size > 0
    assert len((tmp_path / "tracker.csv").read_text().splitlines()) == 31  # header + 30 records
