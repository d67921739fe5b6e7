"""Limits (a hostile probe's findings): one memory budget checked before allocating, counts with maxima,
and every remaining traceback — overflowing floats, failed writes, unreadable or empty data, odd file
names, a killed sweep worker — a one-line error naming the argument or file."""

from __future__ import annotations

import io
import os
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npf

from branchspec import budget
from branchspec.apps.components import Decomposition
from branchspec.cli import main

from _standin_gen import make_checkpoint

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _err(capsys, rc, want_rc=(2,), names=()):
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "%|" not in line]  # no bars
    assert rc in want_rc and len(err) == 1 and "Traceback" not in err[0], (rc, err)
    for n in (names,) if isinstance(names, str) else names:
        assert n in err[0], err[0]
    return err[0]


def _dec_npz(path, m=4, h=16, compressed=False):
    rng = np.random.default_rng(0)
    v = (rng.random((m, 3, h, h), dtype=np.float32) - 0.5) * 0.2
    r = np.zeros((3, h, h), np.float32)
    (np.savez_compressed if compressed else np.savez)(path, R=r, components=v, output=r + v.sum(0),
                                                     value_range=np.array([-1, 1], np.float32))
    return path


def _claiming(path, shape):
    """A decomposition whose components' npy header claims ``shape`` (float32) over 64 bytes of data."""
    def member(a=None, claim=None):
        buf = io.BytesIO()
        if a is not None:
            npf.write_array(buf, a)
        else:
            npf.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": claim})
            buf.write(b"\0" * 64)
        return buf.getvalue()

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("R.npy", member(np.zeros((3, 8, 8), np.float32)))
        zf.writestr("components.npy", member(claim=shape))
        zf.writestr("output.npy", member(np.zeros((3, 8, 8), np.float32)))
    return path


# ----------------------------------------------------------------------------- row 8: one memory budget
def test_budget_from_env_and_its_errors(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(budget.ENV, "3.5")
    assert budget.budget_bytes() == 3_500_000_000
    for bad in ("x", "-1", "nan", "1e30"):
        monkeypatch.setenv(budget.ENV, bad)
        _err(capsys, main(["train-gan", "--out", str(tmp_path / "o")]), names=budget.ENV)
    monkeypatch.delenv(budget.ENV)
    assert budget.budget_bytes() == int(budget.DEFAULT_FRACTION * budget.physical_bytes())


@pytest.mark.parametrize("cmd", ["manipulate", "segment"])
def test_npy_header_claiming_a_tebibyte_is_refused_before_loading(tmp_path, capsys, cmd):
    p = _claiming(tmp_path / "liar.npz", (40000, 3, 1600, 1600))  # 1.12 TiB in a 2 KB file
    assert budget.npz_bytes(p) > 2**40 and p.stat().st_size < 4000
    _err(capsys, main([cmd, str(p), "--out", str(tmp_path / "o")]), names=("liar.npz", "memory budget"))
    for load in (Decomposition.load, budget.load_npz):  # every .npz branchspec reads (figures, toy traces too)
        with pytest.raises(budget.MemoryBudgetError):
            load(p)


def test_a_small_npz_whose_arrays_are_large_is_refused_by_size_not_file_size(tmp_path, capsys, monkeypatch):
    p = _dec_npz(tmp_path / "z.npz", m=64, h=256, compressed=True)  # 50 MB of arrays in a ~0.1 MB file
    monkeypatch.setenv(budget.ENV, "0.65")
    _err(capsys, main(["segment", str(p), "--out", str(tmp_path / "s")]), names=("z.npz", budget.ENV))


def test_manipulation_is_estimated_before_the_sweeps_are_built(tmp_path, capsys, monkeypatch):
    p = _dec_npz(tmp_path / "d.npz", m=64, h=64)  # loads within 0.7 GB; 64 sweeps × 9 α do not
    monkeypatch.setenv(budget.ENV, "0.7")
    _err(capsys, main(["manipulate", str(p), "--out", str(tmp_path / "o")]), names=("--alphas", "64 component"))
    assert not (tmp_path / "o" / "sweeps.npz").exists()
    monkeypatch.delenv(budget.ENV)
    assert main(["manipulate", str(p), "--component", "0", "--no-gif", "--out", str(tmp_path / "ok")]) == 0


@pytest.mark.parametrize("alphas", ["-1:3:1000000000", "-1:3:5000", ",".join(["0.5"] * 200)])
def test_alpha_counts_have_a_maximum(tmp_path, capsys, alphas):
    p = _dec_npz(tmp_path / "d.npz")
    _err(capsys, main(["manipulate", str(p), f"--alphas={alphas}", "--out", str(tmp_path / "o")]), names="--alphas")


def test_subset_counts_have_a_maximum(tmp_path, capsys):
    p = _dec_npz(tmp_path / "d.npz")
    rc = main(["manipulate", str(p), "--subsets", *["0,1"] * 3000, "--out", str(tmp_path / "o")])
    _err(capsys, rc, names=("--subsets", "3000"))


TOO_BIG = [
    (["train-gan", "--batch-size", "100000000"], ("--batch-size 100000000", "--img-size 32", budget.ENV)),
    (["train-gan", "--img-size", "1024"], ("--img-size 1024",)),
    (["train-gan", "--base-width", "4096", "--max-width", "4096"], ("--max-width 4096",)),
    (["train-gan", "--branches", "4096"], ("--branches 4096",)),
    (["train-classifier", "--data", "digits", "--branches", "4096", "--width", "256"], ("--branches 4096",)),
    (["train-classifier", "--data", "digits", "--batch-size", "100000000"], ("--batch-size 100000000",)),
]


@pytest.mark.parametrize("argv,names", TOO_BIG, ids=[" ".join(a[-2:]) for a, _ in TOO_BIG])
def test_training_over_the_budget_is_refused_before_allocating(tmp_path, capsys, argv, names):
    out = tmp_path / "o"
    _err(capsys, main(argv + ["--out", str(out), "--quiet" if "train-classifier" in argv else "--no-progress"]),
         names=names)
    assert not any(p.is_file() for p in out.rglob("*"))  # nothing written, not even the config


def test_decompose_batch_over_the_budget_is_refused(tmp_path, capsys):
    ckpt = tmp_path / "g" / "last"
    make_checkpoint(ckpt)
    (tmp_path / "cat").mkdir()
    _dec_png(tmp_path / "cat" / "a.png")
    rc = main(["decompose", str(tmp_path / "cat"), "--checkpoint", str(ckpt), "--img-size", "1024",
               "--batch-size", "100000", "--out", str(tmp_path / "o")])
    _err(capsys, rc, names=("--batch-size 100000", "--img-size 1024"))


def _dec_png(path, size=20):
    from PIL import Image
    Image.fromarray((np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)).save(path)


@pytest.mark.parametrize("cmd", [["train-gan"], ["train-classifier", "--data", "digits"],
                                 ["analyze-classifier", "--data", "digits", "--checkpoint", "x"]])
@pytest.mark.parametrize("n", ["100000", "3000000000"])
def test_threads_beyond_the_cpus_are_refused(tmp_path, capsys, cmd, n):
    _err(capsys, main(cmd + ["--threads", n, "--out", str(tmp_path / "o")]), names="--threads")


def _peak_rss(argv) -> int:
    """Peak resident bytes of ``branchspec ARGV`` in a fresh interpreter."""
    code = ("import resource, sys; from branchspec.cli import main; rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024); sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": SRC}
    res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return int(res.stdout.strip().splitlines()[-1])


def _within_factor(estimate: int, measured: int) -> None:
    assert measured <= estimate <= budget.ESTIMATE_FACTOR * measured, (estimate / 1e9, measured / 1e9)


def test_gan_estimate_against_measured_peak(tmp_path):
    from branchspec.gan.config import GanTrainConfig
    from branchspec.train.memory import gan_training_bytes
    argv = ["train-gan", "--img-size", "32", "--batch-size", "16", "--steps", "2", "--threads", "1",
            "--precision", "fp32", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "g")]
    cfg = GanTrainConfig(img_size=32, batch_size=16, steps=2, precision="fp32", device="cpu")
    _within_factor(gan_training_bytes(cfg, 3), _peak_rss(argv))


def test_classifier_estimate_against_measured_peak(tmp_path):
    from branchspec.classifier.train import TrainConfig
    from branchspec.train.memory import classifier_training_bytes
    argv = ["train-classifier", "--data", "digits", "--branches", "8", "--batch-size", "256", "--epochs", "1",
            "--threads", "1", "--precision", "fp32", "--quiet", "--out", str(tmp_path / "c")]
    cfg = TrainConfig(data="digits", out="x", num_branches=8, batch_size=256, epochs=1, precision="fp32")
    _within_factor(classifier_training_bytes(cfg), _peak_rss(argv))


def test_manipulation_estimate_against_measured_peak(tmp_path):
    from branchspec.apps.memory import manipulation_bytes
    p = _dec_npz(tmp_path / "d.npz", m=16, h=128)
    measured = _peak_rss(["manipulate", str(p), "--no-gif", "--out", str(tmp_path / "o")])
    _within_factor(manipulation_bytes(16, (3, 128, 128), 16, 9, 0), measured)


# ----------------------------------------------------------------------------- row 10: no traceback left
OVERFLOW = [(["train-classifier", "--data", "digits", "--weight-decay", "1e300"], "--weight-decay"),
    (["train-gan", "--lr", "1e300"], "--lr"), (["train-gan", "--d-lr", "1e300"], "--d-lr"),
    (["train-gan", "--sigma", "1e300"], "--sigma"), (["train-gan", "--sigma", "1e30"], "sigma"),
    (["toy", "--lr", "1e300"], "--lr"), (["hessian", "--checkpoint", "x", "--max-memory-gb", "1e300"], "--max-memory-gb"),
]


@pytest.mark.parametrize("argv,arg", OVERFLOW, ids=[" ".join(a[-2:]) for a, _ in OVERFLOW])
def test_finite_floats_that_overflow_are_one_line(tmp_path, capsys, argv, arg):
    _err(capsys, main(argv + ["--out", str(tmp_path / "o")]), names=arg)


@pytest.fixture(scope="module")
def toy_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy")
    assert main(["toy", "--branches", "3", "--trials", "2", "--steps", "20", "--no-figures", "--save-model",
                 "--out", str(out)]) == 0
    return out / "models" / "m3_trained"


def test_hessian_memory_cap_never_exceeds_the_budget(tmp_path, toy_ckpt):
    import json
    assert main(["hessian", "--checkpoint", str(toy_ckpt), "--max-memory-gb", "1e38", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "hessian.json").read_text())["memory"]["budget_bytes"] == budget.budget_bytes()


TOY = ["toy", "--branches", "2-3", "--trials", "2", "--steps", "5", "--no-figures"]


def test_a_folder_in_the_way_of_an_output_file(tmp_path, capsys):
    (tmp_path / "results.json").mkdir()
    _err(capsys, main(TOY + ["--out", str(tmp_path)]), names=str(tmp_path / "results.json"))


def test_permission_denied_on_an_output_file(tmp_path, capsys, monkeypatch):
    import errno
    def replace(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", replace)
    _err(capsys, main(TOY + ["--out", str(tmp_path)]), names=("Permission denied", "traces.npz"))


def test_file_size_limit_is_one_line_naming_the_file(tmp_path):
    code = "import sys; from branchspec.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["toy", "--branches", "2-30", "--trials", "200", "--steps", "5", "--no-figures", "--out", str(tmp_path)]
    res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": SRC},
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000)))
    err = [line for line in res.stderr.splitlines() if line.strip() and "%|" not in line]
    assert res.returncode == 1 and len(err) == 1 and "traces.npz" in err[0] and "File too large" in err[0], err


def test_empty_out_and_unwritable_logs(tmp_path, capsys, toy_ckpt):
    from branchspec.io import OutputPathError, append_text
    _err(capsys, main(["export", "--checkpoint", str(toy_ckpt), "--out", ""]), names="--out")
    with pytest.raises(OutputPathError, match="log.jsonl"):
        append_text((tmp_path / "log.jsonl").mkdir() or tmp_path / "log.jsonl", "x\n")


def test_any_os_error_reaching_the_top_is_one_line(tmp_path, capsys, monkeypatch):
    import branchspec.commands.toy as toy_cmd
    def boom(args):
        raise IsADirectoryError(21, "Is a directory", str(tmp_path / "x"))

    monkeypatch.setattr(toy_cmd, "run", boom)
    _err(capsys, main(TOY + ["--out", str(tmp_path)]), want_rc=(1,), names=str(tmp_path / "x"))


def _folders(root, domains=("cat", "dog"), n=2):
    for d in domains:
        (root / "train" / d).mkdir(parents=True)
        for i in range(n):
            _dec_png(root / "train" / d / f"{i}.png")
    return root


def test_an_unreadable_domain_folder(tmp_path, capsys, monkeypatch):
    root = _folders(tmp_path / "data")
    iterdir = Path.iterdir

    def guarded(self):
        if self.name == "dog":
            raise PermissionError(13, "Permission denied", str(self))
        return iterdir(self)

    monkeypatch.setattr(Path, "iterdir", guarded)
    rc = main(["train-gan", "--data", str(root), "--img-size", "16", "--out", str(tmp_path / "o")])
    _err(capsys, rc, names=("dog", "Permission denied"))


def _cifar(root, n_train=8, n_test=8):
    from branchspec.data.cifar import write_batch
    root.mkdir()
    rng = np.random.default_rng(0)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    write_batch(root / "batches.meta", None, None, meta_names=names)
    for f, n in [(f"data_batch_{i}", n_train) for i in range(1, 6)] + [("test_batch", n_test)]:
        write_batch(root / f, rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n))
    return root


def test_unreadable_cifar_meta(tmp_path, capsys, monkeypatch):
    root = _cifar(tmp_path / "c")
    read = Path.read_bytes

    def guarded(self):
        if self.name == "batches.meta":
            raise PermissionError(13, "Permission denied", str(self))
        return read(self)

    monkeypatch.setattr(Path, "read_bytes", guarded)
    rc = main(["train-classifier", "--data", str(root), "--out", str(tmp_path / "o"), "--quiet"])
    _err(capsys, rc, names=("batches.meta", "Permission denied"))


@pytest.fixture(scope="module")
def cls_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("cls")
    assert main(["train-classifier", "--data", "digits", "--subset", "32", "--epochs", "1", "--branches", "2",
                 "--width", "1", "--batch-size", "16", "--engine", "loop", "--quiet", "--out", str(out)]) == 0
    return out / "last"


@pytest.mark.parametrize("cmd", ["train-classifier", "analyze-classifier", "hessian"])
def test_an_empty_cifar_test_split(tmp_path, capsys, cls_ckpt, cmd):
    root = _cifar(tmp_path / "c", n_test=0)
    extra = [] if cmd == "train-classifier" else ["--checkpoint", str(cls_ckpt)]
    extra += ["--quiet"] if cmd == "train-classifier" else []
    _err(capsys, main([cmd, "--data", str(root), *extra, "--out", str(tmp_path / "o")]), names="test_batch")


def test_an_empty_training_split(tmp_path, capsys):
    root = _cifar(tmp_path / "c", n_train=0)
    _err(capsys, main(["train-classifier", "--data", str(root), "--quiet", "--out", str(tmp_path / "o")]),
         names=("data_batch_1", "training split is empty"))


def test_non_utf8_domain_names_in_decompose_figures(tmp_path, capsys):
    ckpt = tmp_path / "g" / "last"
    make_checkpoint(ckpt, domains=("c\udce9t", "dog"))
    folder = tmp_path / "img" / "c\udce9t"
    folder.mkdir(parents=True)
    _dec_png(folder / "a.png")
    assert main(["decompose", str(tmp_path / "img"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "grid.png").stat().st_size > 0


def test_non_utf8_out_under_a_strict_utf8_stream(tmp_path):
    out = os.fsencode(tmp_path) + b"/o\xe9ut"
    code = "import sys; from branchspec.cli import main; sys.exit(main(sys.argv[1:]))"
    res = subprocess.run([sys.executable, "-c", code, *TOY, "--out", out], capture_output=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": SRC, "PYTHONIOENCODING": "utf-8:strict"})
    assert res.returncode == 0 and b"Traceback" not in res.stderr, res.stderr[-1000:]
    assert b"o\\udce9ut" in res.stdout and os.path.isfile(out + b"/results.json")


def test_decompose_judge_must_be_a_classifier(tmp_path, capsys, toy_ckpt):
    ckpt = tmp_path / "g" / "last"
    make_checkpoint(ckpt)
    (tmp_path / "cat").mkdir()
    _dec_png(tmp_path / "cat" / "a.png")
    rc = main(["decompose", str(tmp_path / "cat"), "--checkpoint", str(ckpt), "--judge", str(toy_ckpt),
               "--out", str(tmp_path / "o")])
    _err(capsys, rc, names=("--judge", "toy"))


def test_decompose_img_size_below_the_generators_bottleneck(tmp_path, capsys):
    from branchspec.models.generator import GeneratorConfig, build_generator
    from branchspec.models.registry import model_spec
    from branchspec.checkpoint import prefixed, save_checkpoint
    cfg = GeneratorConfig(img_size=32, num_domains=2, num_branches=2, base_width=4, max_width=8, style_dim=4,
                          mapping_width=4, num_down=3)  # bottleneck at 32 / 8 = 4: needs at least 16
    save_checkpoint(tmp_path / "g" / "last", prefixed("model", build_generator(cfg).state_dict()),
                    {"model": model_spec("generator", cfg.to_dict()), "domains": ["cat", "dog"], "img_size": 32})
    (tmp_path / "cat").mkdir()
    _dec_png(tmp_path / "cat" / "a.png")
    rc = main(["decompose", str(tmp_path / "cat"), "--checkpoint", str(tmp_path / "g" / "last"), "--img-size", "8",
               "--out", str(tmp_path / "o")])
    _err(capsys, rc, names=("--img-size", ">= 16"))


def test_a_killed_sweep_worker_is_named_and_the_other_runs_finish(tmp_path):
    import multiprocessing
    import signal
    import threading
    import time

    from branchspec.errors import BranchspecError
    from branchspec.classifier.train import TrainConfig
    from branchspec.classifier.sweep import train_runs
    cfgs = [TrainConfig(data="digits", out=str(tmp_path / f"M{m}"), num_branches=m, width=1, epochs=e,
                        batch_size=32, subset=64, engine="loop") for m, e in ((1, 2), (4, 10_000))]

    def kill_m4():
        deadline = time.time() + 300
        while time.time() < deadline:
            kids = [p for p in multiprocessing.active_children() if p.name == "sweep-M4"]
            if kids and (tmp_path / "M4" / "config.json").exists():
                os.kill(kids[0].pid, signal.SIGKILL)
                return
            time.sleep(0.2)

    threading.Thread(target=kill_m4, daemon=True).start()
    with pytest.raises(BranchspecError) as e:
        train_runs(cfgs, procs=2, threads=1, progress=False, log=lambda s: None)
    msg = str(e.value)
    assert "\n" not in msg and "M=4" in msg and "SIGKILL" in msg and "M=1" not in msg, msg
    assert (tmp_path / "M1" / "last.json").is_file()  # the sibling's run finished and kept its results
