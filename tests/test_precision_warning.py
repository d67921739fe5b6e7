"""bf16 that the CPU only emulates is named in one warning line before a run starts (precision.emulated_bf16)."""

from __future__ import annotations

from branchspec import precision
from branchspec.cli import main
from branchspec.precision import emulated_bf16


def test_only_bf16_on_a_cpu_without_it_warns(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: False)
    assert "emulated" in emulated_bf16("bf16", "cpu")
    assert emulated_bf16("fp32", "cpu") is None and emulated_bf16("bf16", "cuda") is None
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: True)
    assert emulated_bf16("bf16", "cpu") is None


def test_train_classifier_says_it_once_and_runs(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: False)
    run = tmp_path / "run"
    assert main(["train-classifier", "--data", "digits", "--out", str(run), "--branches", "2", "--width", "1",
                 "--epochs", "1", "--subset", "64", "--precision", "bf16", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("train-classifier: warning: bf16 on a CPU without native bf16") == 1, err
    assert (run / "metrics.csv").exists()
    assert main(["train-classifier", "--data", "digits", "--out", str(tmp_path / "fp32"), "--branches", "2",
                 "--width", "1", "--epochs", "1", "--subset", "64", "--precision", "fp32", "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err
