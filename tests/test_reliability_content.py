"""Content-verified checkpoints: every edit of a checkpoint that still parses is refused on load, in one line
naming the file, instead of resuming a silently different run (``branchspec.checkpoint_content``).

A fuzz test mutates a small real checkpoint (a train-classifier ``RUN/last``) at random — a tensor element, a
value of the state JSON, one bit anywhere in the file, a NaN/inf in a file without hash — ≥ 100 times; each
mutant must be refused by :func:`load_checkpoint` (the gate of every ``--resume``) or load exactly the original.
"""

from __future__ import annotations

import json
import random

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from branchspec.cli import main
from branchspec.checkpoint import CheckpointError, load_checkpoint
from branchspec.checkpoint_content import HASH_KEY, STATE_KEY

RUN = ["train-classifier", "--data", "digits", "--branches", "2", "--width", "1", "--subset", "32", "--batch-size",
       "16", "--epochs", "2", "--engine", "loop", "--threads", "1", "--quiet", "--ema", "0.9"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A resumable checkpoint after 1 of 4 steps: ``(run folder, tensors, metadata, raw bytes)``."""
    out = tmp_path_factory.mktemp("fuzz") / "run"
    n = torch.get_num_threads()
    try:
        assert main(RUN + ["--out", str(out), "--max-steps", "1"]) == 0
    finally:
        torch.set_num_threads(n)
    w = out / "last.safetensors"
    with safe_open(str(w), "pt") as fh:
        tensors, meta = {k: fh.get_tensor(k) for k in fh.keys()}, dict(fh.metadata())
    assert HASH_KEY in meta
    return out, tensors, meta, w.read_bytes()


def _refused(path) -> str:
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path.with_suffix(".safetensors")) in msg, msg
    return msg


def _edit_tensor(tensors, rng):
    name = rng.choice(sorted(k for k, v in tensors.items() if v.numel()))
    t = tensors[name].clone()
    flat = t.view(-1)
    i = rng.randrange(flat.numel())
    if t.is_floating_point():
        flat[i] = flat[i] + rng.choice([1.0, -0.5, 1e-3]) * (1 + abs(float(flat[i])))
    else:
        flat[i] = (int(flat[i]) + 1) % (256 if t.dtype == torch.uint8 else 2**31)
    return {**tensors, name: t}, name


def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list) and obj:
        for i, v in enumerate(obj):
            yield from _leaves(v, path + (i,))
    else:
        yield path


def _edit_state(text, rng):
    state = json.loads(text)
    path = rng.choice(list(_leaves(state)))
    parent = state
    for k in path[:-1]:
        parent = parent[k]
    v = parent[path[-1]]
    if isinstance(v, bool):
        new = not v
    elif isinstance(v, (int, float)):
        new = v + rng.choice([1, -1, 0.5])
    elif isinstance(v, str):
        new = v + "x"
    elif v is None:
        new = 0
    else:  # an empty list or object
        new = [0] if isinstance(v, list) else {"x": 0}
    parent[path[-1]] = new
    return json.dumps(state, indent=2, sort_keys=True), path


def test_fuzz_no_mutant_resumes_silently(run, tmp_path):
    out, tensors, meta, raw = run
    ref_t, ref_s = load_checkpoint(out / "last")
    kinds = {"tensor": 0, "state": 0, "bit": 0, "legacy-nan": 0}
    for i in range(120):
        rng = random.Random(i)
        c = tmp_path / f"m{i}"
        kind = ("tensor", "state", "bit", "legacy-nan")[i % 4]
        kinds[kind] += 1
        w = c.with_suffix(".safetensors")
        if kind == "tensor":  # a tensor element changed, the file rewritten cleanly with the old header
            edited, name = _edit_tensor(tensors, rng)
            save_file(edited, str(w), metadata=meta)
            assert "content_sha256" in _refused(c), name
        elif kind == "state":  # a value of the state JSON changed, canonical format, old hash
            text, path = _edit_state(meta[STATE_KEY], rng)
            save_file(tensors, str(w), metadata={**meta, STATE_KEY: text})
            assert "content_sha256" in _refused(c), path
        elif kind == "bit":  # one bit anywhere: refused, or (header whitespace) exactly the original content
            b = bytearray(raw)
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            w.write_bytes(bytes(b))
            try:
                got_t, got_s = load_checkpoint(c)
            except CheckpointError as e:
                assert "\n" not in str(e)
            else:
                assert got_s == ref_s and got_t.keys() == ref_t.keys()
                assert all(torch.equal(got_t[k], ref_t[k]) for k in got_t)
        else:  # a legacy file (no hash) is still refused when a weight, moment or buffer is NaN/inf
            name = rng.choice(sorted(k for k, v in tensors.items() if v.is_floating_point() and v.numel()))
            t = tensors[name].clone()
            t.view(-1)[rng.randrange(t.numel())] = rng.choice([float("nan"), float("inf"), -float("inf")])
            save_file({**tensors, name: t}, str(w), metadata={k: v for k, v in meta.items() if k != HASH_KEY})
            assert "NaN/inf" in _refused(c)
    assert sum(kinds.values()) >= 100 and min(kinds.values()) >= 25


def test_legacy_checkpoint_without_hash_loads(run, tmp_path):
    _, tensors, meta, _ = run
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={k: v for k, v in meta.items() if k != HASH_KEY})
    t, s = load_checkpoint(tmp_path / "old")
    assert s["step"] == 1 and t.keys() == tensors.keys()


@pytest.mark.parametrize("depth", [100, 100_000])
def test_over_deep_state_is_one_line(tmp_path, depth):
    """Nested 100 deep (json parses it) or 100,000 deep (json's RecursionError): one line either way."""
    save_file({"w": torch.zeros(1)}, str(tmp_path / "d.safetensors"),
              metadata={STATE_KEY: "[" * depth + "]" * depth})
    assert "nested too deeply" in _refused(tmp_path / "d")


def test_resume_of_an_edited_checkpoint_is_refused(run, tmp_path, capsys):
    """The CLI: --resume of a run whose step was edited in the state (file still parses) is one line, nothing
    trained; the same run unedited resumes."""
    import shutil

    out, tensors, meta, _ = run
    shutil.copytree(out, tmp_path / "run")
    state = json.loads(meta[STATE_KEY])
    state["step"] = 0
    save_file(tensors, str(tmp_path / "run" / "last.safetensors"),
              metadata={**meta, STATE_KEY: json.dumps(state, indent=2, sort_keys=True)})
    capsys.readouterr()
    n = torch.get_num_threads()
    try:
        rc = main(RUN + ["--out", str(tmp_path / "run"), "--resume"])
    finally:
        torch.set_num_threads(n)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "last.safetensors" in err and "content_sha256" in err, err
