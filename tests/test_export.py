"""``branchspec export``: weights-only checkpoints load and analyse like the original and refuse to resume."""

from __future__ import annotations

import torch
from safetensors import safe_open

from branchspec.cli import main
from branchspec.loading import load_model
from branchspec.checkpoint import checkpoint_state
from branchspec.classifier.train import TrainConfig, train


def _keys(path):
    with safe_open(str(path) + ".safetensors", "pt") as f:
        return list(f.keys())


def test_export_keeps_weights_drops_training_state(tmp_path, capsys):
    run = tmp_path / "run"
    train(TrainConfig(data="digits", out=str(run), num_branches=2, width=1, epochs=1, batch_size=32, subset=64,
                      engine="loop", ema=0.9), progress=False, log=lambda s: None)
    dst = tmp_path / "ship" / "last"
    assert main(["export", "--checkpoint", str(run / "last"), "--out", str(dst)]) == 0
    keys = _keys(dst)
    assert keys and all(k.startswith("model.") for k in keys)
    assert any(k.startswith("optim.") for k in _keys(run / "last"))  # the original had more
    state = checkpoint_state(dst)
    assert state["weights_only"] is True and state["epoch"] == 1 and "optimizer" not in state
    a, _ = load_model(run / "last")
    b, _ = load_model(dst)
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    capsys.readouterr()
    # analysis reads it unchanged
    assert main(["analyze-classifier", "--checkpoint", str(dst), "--data", "digits", "--out", str(tmp_path / "an"),
                 "--hessian-samples", "0"]) == 0
    # resuming it is a one-line refusal, not a missing-optimiser traceback
    rc = main(["train-classifier", "--data", "digits", "--out", str(dst.parent), "--branches", "2", "--width", "1",
               "--epochs", "2", "--batch-size", "32", "--subset", "64", "--engine", "loop", "--ema", "0.9",
               "--resume", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "weights only" in err and len(err.splitlines()) == 1


def test_export_of_a_file_without_weights_is_one_line(tmp_path, capsys):
    from branchspec.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "empty", {"optim.x": torch.zeros(2)}, {"step": 1})
    rc = main(["export", "--checkpoint", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "no model weights" in err and len(err.splitlines()) == 1


def test_export_over_its_own_checkpoint_is_refused(tmp_path, capsys):
    """``export --checkpoint R/last --out R/last`` (or ``last.json`` → ``last.safetensors``, or through a link)
    would replace a resumable checkpoint by a weights-only copy: one line, exit 2, the original unchanged."""
    from branchspec.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "last", {"model.w": torch.ones(2), "optim.0.momentum_buffer": torch.ones(2)},
                    {"model": {"kind": "toy"}, "step": 1})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / "alias").symlink_to(tmp_path)
    pairs = [("last", "last"), ("last.json", "last.safetensors"), ("last.safetensors", "last"),
             ("last", "./sub/../last.json"), ("last", "alias/last")]
    for src, dst in pairs:
        rc = main(["export", "--checkpoint", str(tmp_path / src), "--out", str(tmp_path / dst)])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "--out" in err and len(err.splitlines()) == 1, (src, dst, err)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and not p.is_symlink()} == before
    assert not (tmp_path / "sub").exists()
