"""Crash consistency (issue 13): a training run killed at any instant leaves a checkpoint that loads,
and ``--resume`` from it ends bit for bit where the uninterrupted run ends.

Each run is a forked child running ``branchspec.cli.main``. Kill points are deterministic: the child
counts the renames of :func:`branchspec.io.atomic_write_bytes` (every file a run writes goes through
it) and ``os._exit``s just before or just after the N-th one — the instants inside the save window
where the old code tore a checkpoint (new weights beside an old JSON). The resumed run must end with the
same *files* as the uninterrupted one — checkpoints (tensors and state), ``RUN/ema``, ``metrics.csv``,
``diagnostics.json``, ``config.json``, the experiment's JSON — up to wall-clock timings and the run folder's
path. A few kill points run in the default suite, among them every instant of the epoch-end window (the
checkpoint renamed, ``RUN/ema`` and the side files not yet); the sweep over every one (≥ 50 for
train-classifier and for train-gan, comparing every file) is marked slow.
"""

from __future__ import annotations

import csv
import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest
import torch

from branchspec.checkpoint import checkpoint_exists, load_checkpoint

CLS = ["train-classifier", "--data", "digits", "--branches", "2", "--width", "1", "--subset", "48", "--batch-size", "16",
       "--epochs", "3", "--engine", "loop", "--threads", "1", "--save-every", "1", "--ema", "0.9", "--quiet"]
GAN = ["train-gan", "--data", "embedded", "--img-size", "16", "--branches", "2", "--steps", "12", "--batch-size", "2",
       "--base-width", "4", "--max-width", "8", "--engine", "loop", "--threads", "1", "--ckpt-every", "1",
       "--sample-every", "0", "--device", "cpu", "--no-progress"]


def _child(argv: list[str], kill_at: int | None) -> None:
    import sys

    log = argv[argv.index("--out") + 1] + (".resume.log" if "--resume" in argv else ".log")
    sys.stdout = sys.stderr = open(log, "a")  # read back in assertion messages
    torch.set_num_threads(1)
    if kill_at is not None:
        real, count = os.replace, [0]

        def replace(src, dst):  # event 2i: just before rename i; event 2i + 1: just after
            if count[0] == kill_at:
                os._exit(137)
            real(src, dst)
            count[0] += 1
            if count[0] == kill_at:
                os._exit(137)
            count[0] += 1

        os.replace = replace
    from branchspec.cli import main

    os._exit(main(argv))


def _warm() -> None:
    """Import and load in the parent what every child needs, so that forks start in milliseconds."""
    import branchspec.cli  # noqa: F401  (all commands)
    from branchspec.data.digits import load_digits_images

    for train in (True, False):
        load_digits_images(train)
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # imports torch._dynamo once


def _run(argv: list[str], kill_at: int | None = None) -> int:
    _warm()
    p = mp.get_context("fork").Process(target=_child, args=(argv, kill_at))
    p.start()
    p.join(300)
    return p.exitcode


def _tail(out) -> str:
    p = out.with_name(out.name + ".resume.log")
    return p.read_text()[-500:] if p.is_file() else "(no log)"


def _ckpt(out, kind: str):
    return out / "last" if kind == "cls" else out / "checkpoints" / "last"


# wall-clock timings differ per run; experiment.json records whether the command was a --resume
NOT_COMPARED = {"epoch_time_s", "images_per_s", "time", "seconds", "elapsed_s", "steps_per_s", "resume", "time_s"}


def _untimed(obj):
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if k not in NOT_COMPARED}
    if isinstance(obj, list):
        return [_untimed(v) for v in obj]
    return obj


def _files(out: Path) -> dict:
    """Every file under ``out`` (temporaries aside) as comparable content: tensors, JSON (the safetensors state
    too) and CSV rows without :data:`NOT_COMPARED`, the run folder's path replaced by ``OUT``; other files as bytes."""
    from safetensors import safe_open

    got = {}
    for p in sorted(q for q in out.rglob("*") if q.is_file() and not q.name.endswith(".tmp")):
        rel = str(p.relative_to(out))
        if p.suffix == ".safetensors":
            with safe_open(str(p), "pt") as fh:
                meta = {k: json.loads(v.replace(str(out), "OUT")) if k == "branchspec_state" else v
                        for k, v in (fh.metadata() or {}).items() if k != "content_sha256"}
                got[rel] = ({k: fh.get_tensor(k) for k in fh.keys()}, _untimed(meta))
        elif p.suffix == ".json":
            got[rel] = _untimed(json.loads(p.read_text().replace(str(out), "OUT")))
        elif p.suffix == ".jsonl":  # a log: one JSON object a line
            got[rel] = [_untimed(json.loads(line)) for line in p.read_text().splitlines()]
        elif p.suffix == ".csv":
            got[rel] = _untimed(list(csv.DictReader(p.read_text().splitlines())))
        else:
            got[rel] = p.read_bytes()
    return got


def _same_files(got: dict, ref: dict, where: str) -> None:
    assert got.keys() == ref.keys(), f"{where}: files differ: {sorted(got.keys() ^ ref.keys())}"
    for name, v in ref.items():
        if isinstance(v, tuple):  # safetensors: (tensors, metadata)
            (gt, gm), (rt, rm) = got[name], v
            assert gt.keys() == rt.keys(), f"{where}: {name}: tensor names differ"
            diff = [k for k in gt if not torch.equal(gt[k], rt[k])]
            assert not diff, f"{where}: {name}: {len(diff)} tensors differ after resume (first {diff[0]})"
            assert gm == rm, f"{where}: {name}: state differs after resume"
        else:
            assert got[name] == v, f"{where}: {name} differs after resume"


def _final(out, kind):
    tensors, state = load_checkpoint(_ckpt(out, kind))
    return {k: v for k, v in tensors.items()}, state


def _reference(tmp_path_factory, kind):
    out = tmp_path_factory.mktemp(f"ref-{kind}") / "run"
    base = CLS if kind == "cls" else GAN
    assert _run(base + ["--out", str(out)]) == 0
    return out, base


def _crash_and_resume(tmp_path, base, kind, kill_at, ref_tensors, ref_files: dict | None = None) -> bool:
    """Kill at ``kill_at``; check the checkpoint loads; resume; compare the last checkpoint's tensors (and, with
    ``ref_files``, every file of the run). False if the run finished first."""
    out = tmp_path / f"k{kill_at}"
    rc = _run(base + ["--out", str(out)], kill_at)
    if rc == 0:
        return False  # fewer events than kill_at
    assert rc == 137
    left = set(out.rglob("*.tmp"))  # the killed writer's temporary, if any
    if checkpoint_exists(_ckpt(out, kind)):
        load_checkpoint(_ckpt(out, kind))  # always loads (raises on a torn or half-written file)
        rc = _run(base + ["--out", str(out), "--resume"])
        assert rc == 0, f"kill point {kill_at}: resume failed: {_tail(out)}"
    else:
        assert _run(base + ["--out", str(out)]) == 0  # killed before the first checkpoint: start again
    got, _ = _final(out, kind)
    assert got.keys() == ref_tensors.keys()
    diff = [k for k in got if not torch.equal(got[k], ref_tensors[k])]
    assert not diff, f"kill point {kill_at}: {len(diff)} tensors differ after resume (first {diff[0]})"
    if ref_files is not None:
        _same_files(_files(out), ref_files, f"kill point {kill_at}")
    # the next save of a file removes its stale temporary; a run that had nothing left to save keeps it
    assert set(out.rglob("*.tmp")) <= left, "the resumed run left temporaries of its own"
    return True


@pytest.fixture(scope="module")
def cls_ref(tmp_path_factory):
    out, base = _reference(tmp_path_factory, "cls")
    return base, _final(out, "cls")[0], _files(out)


# Renames of the classifier run (3 epochs of 3 steps, a checkpoint every step, --ema): 0 config.json; per step
# last.safetensors, last.json; at an epoch end after its checkpoint ema.safetensors, ema.json, metrics.csv,
# diagnostics.json (epoch 1: renames 7–12, epoch 3: 31–36); last experiment.json, summary.json (37, 38).
# 6, 7: inside the save window of the 3rd checkpoint, just before its unit's rename and just after it (before the
# JSON copy's rename: where the old code left new weights beside an old JSON). 15–23 and 63–71: after the epoch-end
# checkpoint's renames, before RUN/ema and the side files were all written (the old code lost epoch 1's rows and
# left RUN/ema one epoch stale). 75: before summary.json.
@pytest.mark.parametrize("kill_at", [6, 7, 15, 17, 19, 21, 23, 63, 65, 67, 69, 71, 75])
def test_kill_inside_save_window_resumes_bit_for_bit(tmp_path, cls_ref, kill_at):
    base, ref, files = cls_ref
    assert _crash_and_resume(tmp_path, base, "cls", kill_at, ref, files)


@pytest.mark.parametrize("kill_at", [15, 23])
def test_stop_loss_kill_at_epoch_end_stops_where_the_run_stops(tmp_path, tmp_path_factory, kill_at):
    """``--stop-loss`` reached at epoch 1, killed after epoch 1's checkpoint but before metrics.csv: the old code
    read the CSV on resume, missed the row that met the floor, and trained a 2nd epoch."""
    base = CLS + ["--stop-loss", "10"]  # any train loss is within 10 of the floor: the run stops after epoch 1
    out = tmp_path_factory.mktemp("ref-stop") / "run"
    assert _run(base + ["--out", str(out)]) == 0
    ref_tensors, ref_state = _final(out, "cls")
    assert ref_state["epoch"] == 1
    assert _crash_and_resume(tmp_path, base, "cls", kill_at, ref_tensors, _files(out))


def _kill_sweep(tmp_path, base, kind, ref, at_least: int, limit: int = 200, files: dict | None = None) -> int:
    """Kill at 0, 1, 2, … until the run finishes first; every kill point must resume bit for bit."""
    done = 0
    for kill_at in range(limit):
        if not _crash_and_resume(tmp_path, base, kind, kill_at, ref, files):
            break
        done += 1
    assert done >= at_least, f"only {done} kill points"
    return done


@pytest.mark.slow
def test_kill_sweep_classifier(tmp_path, cls_ref):
    base, ref, files = cls_ref
    _kill_sweep(tmp_path, base, "cls", ref, at_least=50, files=files)


@pytest.mark.slow
def test_kill_sweep_gan(tmp_path, tmp_path_factory):
    out, base = _reference(tmp_path_factory, "gan")
    _kill_sweep(tmp_path, base, "gan", _final(out, "gan")[0], at_least=50, files=_files(out))
