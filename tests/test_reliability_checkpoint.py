"""Checkpoints that cannot tear, finite-only saves, exact resume or refusal, atomic writes (issue 13)."""

from __future__ import annotations

import errno
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from branchspec.cli import main
from branchspec.errors import BranchspecError
from branchspec.io import DiskFullError, atomic_write_bytes, atomic_write_json, probe_writable
from branchspec import checkpoint as ck
from branchspec.checkpoint import (
    CheckpointError, NonFiniteCheckpoint, check_runtime, load_checkpoint, restore_runtime, save_checkpoint,
)


def test_state_lives_in_the_weights_file_so_a_stale_json_cannot_tear(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "last", {"w": torch.zeros(3)}, {"step": 1})
    # a crash after the unit's rename, before the JSON copy's: the JSON still says step 1
    monkeypatch.setattr(ck, "atomic_write_text", lambda *a, **k: (_ for _ in ()).throw(SystemExit(137)))
    with pytest.raises(SystemExit):
        save_checkpoint(tmp_path / "last", {"w": torch.ones(3)}, {"step": 2})
    assert json.loads((tmp_path / "last.json").read_text())["step"] == 1
    t, s = load_checkpoint(tmp_path / "last.json")
    assert s["step"] == 2 and t["w"].tolist() == [1.0, 1.0, 1.0]  # weights and state of the same save


def test_copied_checkpoint_loads_its_own_weights(tmp_path):
    save_checkpoint(tmp_path / "last", {"w": torch.zeros(2)}, {"step": 1})
    for ext in ("json", "safetensors"):
        shutil.copy(tmp_path / f"last.{ext}", tmp_path / f"best.{ext}")
    save_checkpoint(tmp_path / "last", {"w": torch.ones(2)}, {"step": 2})
    t, s = load_checkpoint(tmp_path / "best.json")
    assert s["step"] == 1 and t["w"].tolist() == [0.0, 0.0]


def test_written_files_get_the_mode_open_would_give(tmp_path):
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    p = atomic_write_bytes(tmp_path / "a.bin", b"x")  # not mkstemp's 0600: readable by the group/others umask allows
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask
    ref = tmp_path / "ref.bin"
    ref.write_bytes(b"x")
    assert stat.S_IMODE(p.stat().st_mode) == stat.S_IMODE(ref.stat().st_mode)


def test_stale_temporaries_are_removed(tmp_path):
    stale = tmp_path / ".last.safetensors.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    save_checkpoint(tmp_path / "last", {"w": torch.zeros(1)}, {})
    assert not stale.exists() and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("where", ["model.bn.running_var", "optim.0.momentum_buffer", "model.w"])
def test_non_finite_anywhere_is_refused_and_previous_kept(tmp_path, where):
    good = {"model.w": torch.ones(2), "model.bn.running_var": torch.ones(2), "optim.0.momentum_buffer": torch.zeros(2)}
    save_checkpoint(tmp_path / "last", good, {"step": 1})
    bad = dict(good)
    bad[where] = torch.tensor([1.0, float("inf")])
    with pytest.raises(NonFiniteCheckpoint, match=where.replace(".", r"\.")) as e:
        save_checkpoint(tmp_path / "last", bad, {"step": 2})
    assert "\n" not in str(e.value) and "previous checkpoint kept" in str(e.value)
    t, s = load_checkpoint(tmp_path / "last")
    assert s["step"] == 1 and torch.isfinite(t[where]).all()


def test_non_finite_first_save_says_none_written(tmp_path):
    with pytest.raises(NonFiniteCheckpoint, match="no checkpoint written yet"):
        save_checkpoint(tmp_path / "c", {"w": torch.tensor([float("nan")])}, {})
    assert not list(tmp_path.iterdir())


def test_previous_format_still_loads(tmp_path):
    save_file({"w": torch.arange(3.0)}, str(tmp_path / "old.safetensors"))
    (tmp_path / "old.json").write_text(json.dumps({"step": 7, "weights_file": "old.safetensors"}))
    t, s = load_checkpoint(tmp_path / "old")
    assert s["step"] == 7 and t["w"].tolist() == [0.0, 1.0, 2.0]


def test_runtime_threads_recorded_checked_and_restored(tmp_path):
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        save_checkpoint(tmp_path / "c", {"w": torch.zeros(1)}, {})
        _, s = load_checkpoint(tmp_path / "c")
        assert s["runtime"]["threads"] == 1
        torch.set_num_threads(2)
        with pytest.raises(CheckpointError, match="`threads` 1") as e:
            check_runtime(s)
        assert "\n" not in str(e.value)
        restore_runtime(tmp_path / "c")
        assert torch.get_num_threads() == 1
        check_runtime(s)
    finally:
        torch.set_num_threads(n)


def test_resume_with_other_threads_or_engine_is_refused(tmp_path, capsys):
    base = ["train-classifier", "--data", "digits", "--out", str(tmp_path / "r"), "--branches", "2", "--width", "1",
            "--subset", "32", "--batch-size", "16", "--epochs", "2", "--engine", "loop", "--quiet", "--threads", "1",
            "--max-steps", "1"]
    n = torch.get_num_threads()
    try:
        assert main(base) == 0
        rc = main(base[:-4] + ["--threads", "2", "--resume"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and "--threads" in err[-1]
        rc = main([a if a != "loop" else "packed" for a in base[:-2]] + ["--resume"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and "engine" in err[-1]
    finally:
        torch.set_num_threads(n)


def test_full_disk_is_one_line_naming_the_folder(tmp_path, monkeypatch):
    import tempfile

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", full)
    with pytest.raises(DiskFullError) as e:
        atomic_write_bytes(tmp_path / "x.bin", b"0" * 2_000_000)
    assert str(tmp_path) in str(e.value) and "2.0 MB" in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, BranchspecError)


def test_write_probe_writes_real_bytes(tmp_path, monkeypatch):
    import os

    sizes = []
    real = os.fsync

    def spy(fd):
        sizes.append(os.fstat(fd).st_size)
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    probe_writable(tmp_path)
    assert sizes and sizes[0] > 0 and not list(tmp_path.iterdir())


def test_atomic_json_round_trip(tmp_path):
    p = atomic_write_json(tmp_path / "a" / "r.json", {"x": [1, 2]})
    assert json.loads(p.read_text()) == {"x": [1, 2]} and not list(p.parent.glob("*.tmp"))
