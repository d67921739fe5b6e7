"""Smaller promises: no silent empty GAN domain, a fine-tune resumes without its source, GAN logs and RNG state
are the same whether a run was interrupted or not, and every bad input — a flag, a checkpoint — is one line
with exit 2 that says what is wrong."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from branchspec.cli import main
from branchspec.data import cifar
from branchspec.data.embedded import embedded_domains
from branchspec.errors import BranchspecError, CheckpointError, ConfigError, DataError, UsageError
from branchspec.checkpoint import NonFiniteCheckpoint, ResumeMismatch, load_checkpoint
from branchspec.gan.train import GanTrainConfig, train_gan

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
GAN = ["--img-size", "16", "--branches", "2", "--steps", "1", "--batch-size", "2", "--base-width", "4",
       "--max-width", "8", "--threads", "1", "--no-progress"]


def _one_line(capsys, rc, *needles, code=2):
    err = capsys.readouterr().err.strip()
    assert rc == code, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


@pytest.fixture
def cifar_dir(tmp_path):
    """A CIFAR-10 folder whose images are of classes cat, dog, airplane and automobile only (no bird)."""
    d = tmp_path / "cifar"
    d.mkdir()
    imgs = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        cifar.write_batch(d / name, imgs, [3, 5, 3, 5, 0, 1])
    cifar.write_batch(d / "batches.meta", None, None, meta_names=CLASSES)
    return d


# ----------------------------------------------------------------------------- GAN domains without images
@pytest.mark.parametrize("classes, domain", [("cat,cat", "cat"), ("cat,bird", "bird")])
def test_a_gan_domain_without_images_is_one_line_naming_data(tmp_path, capsys, cifar_dir, classes, domain):
    rc = main(["train-gan", "--data", f"{cifar_dir}:{classes}", "--out", str(tmp_path / "run")] + GAN)
    _one_line(capsys, rc, "--data", f"'{domain}'")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_an_empty_folder_domain_is_one_line_naming_data(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "train" / "cat").mkdir(parents=True)
    (root / "train" / "dog").mkdir()
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(root / "train" / "cat" / "a.png")
    rc = main(["train-gan", "--data", str(root), "--out", str(tmp_path / "run")] + GAN)
    _one_line(capsys, rc, "--data", "'dog'")


# ----------------------------------------------------------------------------- a fine-tune resumes without its source
TINY_CLS = ["--data", "digits", "--branches", "2", "--width", "1", "--subset", "64", "--batch-size", "32",
            "--engine", "loop", "--quiet", "--threads", "1"]


def test_fine_tune_resumes_after_its_init_from_source_moved(tmp_path, capsys):
    src = tmp_path / "src"
    assert main(["train-classifier", "--out", str(src), "--epochs", "1"] + TINY_CLS) == 0
    tune = ["train-classifier", "--epochs", "2", "--init-from", str(src / "last")] + TINY_CLS
    assert main(tune + ["--out", str(tmp_path / "full")]) == 0
    assert main(tune + ["--out", str(tmp_path / "cut"), "--max-steps", "3"]) == 0
    shutil.move(src, tmp_path / "moved")  # the source is gone: its weights are in the run's own checkpoint
    capsys.readouterr()
    assert main(tune + ["--out", str(tmp_path / "cut"), "--resume"]) == 0, capsys.readouterr().err
    ta, sa = load_checkpoint(tmp_path / "full" / "last")
    tb, sb = load_checkpoint(tmp_path / "cut" / "last")
    assert sa["step"] == sb["step"] == 4
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k  # the resumed fine-tune ends where the uninterrupted one does
    # a new fine-tune from the moved source still needs it
    rc = main(tune + ["--out", str(tmp_path / "new")])
    _one_line(capsys, rc, "--init-from")


# ----------------------------------------------------------------------------- GAN log line and RNG across a resume
GAN_TINY = dict(img_size=16, num_branches=2, batch_size=3, base_width=4, max_width=8, style_dim=4, d_base_width=4,
                d_max_width=8, n_per_domain=3, engine="loop", sample_every=0, ckpt_every=3, log_every=4)


def _log(run: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return {r["step"]: {k: v for k, v in r.items() if k != "time_s"} for r in rows}


def test_gan_log_line_spanning_a_resume_averages_the_same_steps(tmp_path):
    data = embedded_domains(16, n_per_domain=3)
    torch.manual_seed(1)  # the process's global RNG before the run: must not matter
    full = train_gan(GanTrainConfig(**GAN_TINY, steps=8), tmp_path / "a", progress=False, data=data)
    torch.manual_seed(2)
    train_gan(GanTrainConfig(**GAN_TINY, steps=3), tmp_path / "b", progress=False, data=data)  # stops mid-window
    torch.manual_seed(3)
    resumed = train_gan(GanTrainConfig(**GAN_TINY, steps=8), tmp_path / "b", progress=False, resume=True, data=data)
    a, b = _log(tmp_path / "a"), _log(tmp_path / "b")
    assert sorted(a) == [4, 8] and sorted(b) == [3, 4, 8]  # step 3: the end of the first, shorter run
    assert a[4] == b[4] and a[8] == b[8]  # steps 1-4 and 5-8, whatever the interruption
    ta, sa = load_checkpoint(full)
    tb, sb = load_checkpoint(resumed)
    for k in ta:  # rng.cpu included: deterministic, and restored on resume
        assert torch.equal(ta[k], tb[k]), k
    assert sa["log_window"] == sb["log_window"] == {}


def test_gan_rng_state_is_the_same_in_two_uninterrupted_runs(tmp_path):
    data = embedded_domains(16, n_per_domain=3)
    states = []
    for i in range(2):
        torch.manual_seed(100 + i)  # two processes start from different global RNG states
        last = train_gan(GanTrainConfig(**GAN_TINY, steps=2), tmp_path / str(i), progress=False, data=data)
        states.append(load_checkpoint(last)[0]["rng.cpu"])
    assert torch.equal(states[0], states[1])


def test_a_malformed_log_window_is_one_line(tmp_path):
    from safetensors.torch import load_file, save_file

    from branchspec.checkpoint_content import HASH_KEY, STATE_KEY, content_sha256

    data = embedded_domains(16, n_per_domain=3)
    last = train_gan(GanTrainConfig(**GAN_TINY, steps=3), tmp_path, progress=False, data=data)
    w = last.with_suffix(".safetensors")
    from safetensors import safe_open

    with safe_open(str(w), "pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(w))
    state = json.loads(meta[STATE_KEY])
    state["log_window"] = {"d/loss": ["x"]}
    text = json.dumps(state, indent=2, sort_keys=True)
    save_file(tensors, str(w), metadata={**meta, STATE_KEY: text, HASH_KEY: content_sha256(tensors, text)})
    with pytest.raises(CheckpointError, match="log_window") as e:
        train_gan(GanTrainConfig(**GAN_TINY, steps=6), tmp_path, progress=False, resume=True, data=data)
    assert len(str(e.value).splitlines()) == 1


# ----------------------------------------------------------------------------- exit codes and what a checkpoint lacks
def test_every_bad_input_error_exits_2_and_a_failed_run_1():
    for cls in (UsageError, DataError, CheckpointError, ResumeMismatch):
        assert cls("x").exit_code == 2, cls
    assert ConfigError("f", "r").exit_code == 2 and ConfigError("f", "r", usage=False).exit_code == 1
    assert BranchspecError("x").exit_code == 1 and NonFiniteCheckpoint("x").exit_code == 1


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cls") / "run"
    assert main(["train-classifier", "--out", str(run), "--epochs", "1"] + TINY_CLS) == 0
    return run


def test_pairs_out_of_range_names_the_flag(tmp_path, capsys, classifier_run):
    rc = main(["analyze-classifier", "--checkpoint", str(classifier_run / "last"), "--data", "digits",
               "--out", str(tmp_path / "a"), "--pairs", "99:99", "--hessian-samples", "0"])
    _one_line(capsys, rc, "--pairs", "out of range", "2 branches")


def test_a_torn_checkpoint_exits_2(tmp_path, capsys, classifier_run):
    shutil.copytree(classifier_run, tmp_path / "run")
    w = tmp_path / "run" / "last.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    rc = main(["analyze-classifier", "--checkpoint", str(tmp_path / "run" / "last"), "--data", "digits",
               "--out", str(tmp_path / "a")])
    _one_line(capsys, rc, "last.safetensors")


def test_a_folder_in_place_of_the_checkpoint_says_so(tmp_path, capsys):
    (tmp_path / "c.safetensors").mkdir()
    rc = main(["analyze-classifier", "--checkpoint", str(tmp_path / "c"), "--data", "digits",
               "--out", str(tmp_path / "a")])
    err = _one_line(capsys, rc, "c.safetensors", "not a regular file")
    assert "No such file" not in err


def test_an_unreadable_checkpoint_says_permission_denied(tmp_path, capsys, monkeypatch, classifier_run):
    """chmod 000 does not stop root, who runs these tests: the refusal is simulated at os.open."""
    victim = (classifier_run / "last.safetensors").resolve()
    real = os.open

    def fake(path, *a, **k):
        if Path(os.fsdecode(path)).resolve() == victim:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(os, "open", fake)
    for argv in (["analyze-classifier", "--data", "digits"], ["export"]):
        rc = main(argv + ["--checkpoint", str(classifier_run / "last"), "--out", str(tmp_path / argv[0])])
        err = _one_line(capsys, rc, "last.safetensors", "permission denied")
        assert "No such file" not in err
