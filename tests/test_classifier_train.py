"""Classifier training: exact resume, non-finite stop, CLI one-line errors."""

import csv
import json

import pytest
import torch

from branchspec.cli import main
from branchspec.loading import load_model
from branchspec.parts import read_records
import branchspec.classifier.train as T
from branchspec.checkpoint import load_checkpoint

TINY = dict(data="digits", num_branches=2, width=1, epochs=2, batch_size=32, subset=96, engine="loop", eval_batch_size=400)
quiet = dict(progress=False, log=lambda s: None)


def test_resume_after_n_steps_equals_uninterrupted_run(tmp_path):
    a = T.train(T.TrainConfig(out=str(tmp_path / "a"), **TINY), **quiet)
    # interrupted mid-epoch 1 (3 steps per epoch), resumed, interrupted again in epoch 2, resumed
    T.train(T.TrainConfig(out=str(tmp_path / "b"), **TINY), max_steps=2, **quiet)
    T.train(T.TrainConfig(out=str(tmp_path / "b"), **TINY), resume=True, max_steps=4, **quiet)
    b = T.train(T.TrainConfig(out=str(tmp_path / "b"), **TINY), resume=True, **quiet)
    ta, sa = load_checkpoint(tmp_path / "a" / "last")
    tb, sb = load_checkpoint(tmp_path / "b" / "last")
    assert sa["step"] == sb["step"] == 6
    assert set(ta) == set(tb)
    for k in ta:
        if k.startswith("rng"):
            continue
        assert torch.equal(ta[k], tb[k]), k  # bitwise: weights, BN statistics, momentum buffers
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert a[key] == b[key]
    rows = list(csv.DictReader(open(tmp_path / "b" / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    assert cfg["num_branches"] == 2 and cfg["model"]["clamp"] is True
    model, state = load_model(tmp_path / "b" / "last.json")
    assert model.num_branches == 2 and state["model"]["kind"] == "classifier"


def test_track_every_records_specialisation_without_changing_the_run(tmp_path):
    T.train(T.TrainConfig(out=str(tmp_path / "a"), **TINY), **quiet)
    b = T.TrainConfig(out=str(tmp_path / "b"), track_every=2, **TINY)
    T.train(b, max_steps=3, **quiet)  # records steps 0 and 2, checkpoint at step 3
    stale = {**read_records(tmp_path / "b")[-1], "step": 4}  # as if killed after measuring step 4, before saving
    with open(tmp_path / "b" / "tracker.jsonl", "a") as fh:
        fh.write(json.dumps(stale) + "\n")
    T.train(b, resume=True, **quiet)
    ta, _ = load_checkpoint(tmp_path / "a" / "last")
    tb, _ = load_checkpoint(tmp_path / "b" / "last")
    for k in ta:
        assert k.startswith("rng") or torch.equal(ta[k], tb[k]), k  # tracking changes nothing
    recs = read_records(tmp_path / "b")
    assert [r["step"] for r in recs] == [0, 2, 4] and all(r["samples"] == 256 for r in recs)
    assert all(r["grad_source"] == ".grad" and len(r["grad_norms"]) == 2 and r["active"] + r["silent"] == 2
               for r in recs)
    rows = list(csv.DictReader(open(tmp_path / "b" / "tracker.csv")))
    assert [r["step"] for r in rows] == ["0", "2", "4"] and float(rows[-1]["grad_norms_1"]) > 0
    assert not (tmp_path / "a" / "tracker.csv").exists()  # off by default


def test_lr_schedules():
    cfg = T.TrainConfig(out="x", data="digits", epochs=2)
    assert T.lr_at(cfg, 0, 10) == pytest.approx(0.002)  # warm-up over one epoch
    assert T.lr_at(cfg, 10, 10) == pytest.approx(0.02)
    assert T.lr_at(cfg, 20, 10) == pytest.approx(0.0, abs=1e-12)
    one = T.TrainConfig(out="x", data="digits", epochs=2, schedule="onecycle", optimizer="adamw")
    assert T.lr_at(one, 0, 10) == pytest.approx(2e-3 / 25)
    assert T.lr_at(one, 6, 10) == pytest.approx(2e-3)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = T.TrainConfig(out=str(tmp_path / "r"), save_every=2, **TINY)
    real = T.training_loss
    calls = {"n": 0}

    def poisoned(f, y, clamp, *rest):
        calls["n"] += 1  # training steps only (evaluation does not use training_loss)
        loss, stats = real(f, y, clamp, *rest)
        if calls["n"] == 4:  # step 4: after the checkpoints at steps 2 and 3
            loss, stats = loss * float("nan"), stats * float("nan")
        return loss, stats

    monkeypatch.setattr(T, "training_loss", poisoned)
    with pytest.raises(T.NonFiniteLoss) as e:
        T.train(cfg, **quiet)
    msg = str(e.value)
    assert "\n" not in msg and "non-finite loss" in msg and "last good checkpoint" in msg
    tensors, state = load_checkpoint(tmp_path / "r" / "last")
    assert state["step"] == 3  # epoch 1 ended at step 3 and was saved; step 4 was refused
    assert all(torch.isfinite(v.float()).all() for k, v in tensors.items() if k.startswith("model."))


def test_huge_lr_stops_cleanly(tmp_path):
    cfg = T.TrainConfig(out=str(tmp_path / "r"), lr=1e30, clamp=False, schedule="constant", **{**TINY, "epochs": 3})
    with pytest.raises(T.NonFiniteLoss):
        T.train(cfg, **quiet)


@pytest.mark.parametrize("argv, needle", [
    (["--data", "/no/such/dir", "--out", "{tmp}/o"], "--data"),
    (["--data", "digits", "--out", "{tmp}/o", "--branches", "0"], "--branches"),
    (["--data", "digits", "--out", "{tmp}/o", "--lr", "-1"], "--lr"),
    (["--data", "digits", "--out", "{tmp}/o", "--sweep", "a,b"], "--sweep"),
    (["--data", "digits", "--out", "{tmp}/o", "--track-every", "-1"], "--track-every"),
])
def test_train_cli_one_line_errors(tmp_path, capsys, argv, needle):
    rc = main(["train-classifier"] + [a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err


def test_cli_wrong_cifar_folder_and_existing_run(tmp_path, capsys):
    (tmp_path / "c").mkdir()
    rc = main(["train-classifier", "--data", str(tmp_path / "c"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "missing data_batch_1" in err
    base = ["train-classifier", "--data", "digits", "--out", str(tmp_path / "r"), "--branches", "2", "--width", "1",
            "--subset", "64", "--batch-size", "32", "--epochs", "1", "--engine", "loop", "--quiet"]
    assert main(base) == 0
    assert main(base) == 2  # refuses to overwrite a run without --resume (bad input)
    assert "--resume" in capsys.readouterr().err
    assert main(base + ["--resume", "--seed", "3"]) == 2  # resume with different settings: invalid argument
    assert "seed" in capsys.readouterr().err.splitlines()[-1]
    rc = main(["analyze-classifier", "--checkpoint", str(tmp_path / "nope.json"), "--data", "digits", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--checkpoint" in err and len(err.splitlines()) == 1
