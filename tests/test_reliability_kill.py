"""Crash consistency (issue 13): a training run killed at any instant leaves a checkpoint that loads,
and ``--resume`` from it ends bit for bit where the uninterrupted run ends.

Each run is a forked child running ``branchspec.cli.main``. Kill points are deterministic: the child
counts the renames of :func:`branchspec.io.atomic_write_bytes` (every file a run writes goes through
it) and ``os._exit``s just before or just after the N-th one — the instants inside the save window
where the old code tore a checkpoint (new weights beside an old JSON). A few kill points run in the
default suite; the sweep over every one (≥ 50 for train-classifier, plus train-gan) is marked slow.
"""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest
import torch

from branchspec.train.checkpoint import checkpoint_exists, load_checkpoint

CLS = ["train-classifier", "--data", "digits", "--branches", "2", "--width", "1", "--subset", "48", "--batch-size", "16",
       "--epochs", "3", "--engine", "loop", "--threads", "1", "--save-every", "1", "--quiet"]
GAN = ["train-gan", "--data", "embedded", "--img-size", "16", "--branches", "2", "--steps", "4", "--batch-size", "2",
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


def _final(out, kind):
    tensors, state = load_checkpoint(_ckpt(out, kind))
    return {k: v for k, v in tensors.items()}, state


def _reference(tmp_path_factory, kind):
    out = tmp_path_factory.mktemp(f"ref-{kind}") / "run"
    base = CLS if kind == "cls" else GAN
    assert _run(base + ["--out", str(out)]) == 0
    return out, base


def _crash_and_resume(tmp_path, base, kind, kill_at, ref_tensors) -> bool:
    """Kill at ``kill_at``; check the checkpoint loads; resume; compare. False if the run finished first."""
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
    # the next save of a file removes its stale temporary; a run that had nothing left to save keeps it
    assert set(out.rglob("*.tmp")) <= left, "the resumed run left temporaries of its own"
    return True


@pytest.fixture(scope="module")
def cls_ref(tmp_path_factory):
    out, base = _reference(tmp_path_factory, "cls")
    return base, _final(out, "cls")[0]


# inside the save window of the 3rd checkpoint: just before its unit's rename, and just after it (before the JSON
# copy's rename: where the old code left new weights beside an old JSON)
@pytest.mark.parametrize("kill_at", [6, 7])
def test_kill_inside_save_window_resumes_bit_for_bit(tmp_path, cls_ref, kill_at):
    base, ref = cls_ref
    assert _crash_and_resume(tmp_path, base, "cls", kill_at, ref)


def _kill_sweep(tmp_path, base, kind, ref, at_least: int, limit: int = 200) -> int:
    """Kill at 0, 1, 2, … until the run finishes first; every kill point must resume bit for bit."""
    done = 0
    for kill_at in range(limit):
        if not _crash_and_resume(tmp_path, base, kind, kill_at, ref):
            break
        done += 1
    assert done >= at_least, f"only {done} kill points"
    return done


@pytest.mark.slow
def test_kill_sweep_classifier(tmp_path, cls_ref):
    base, ref = cls_ref
    _kill_sweep(tmp_path, base, "cls", ref, at_least=50)


@pytest.mark.slow
def test_kill_sweep_gan(tmp_path, tmp_path_factory):
    out, base = _reference(tmp_path_factory, "gan")
    _kill_sweep(tmp_path, base, "gan", _final(out, "gan")[0], at_least=20)
