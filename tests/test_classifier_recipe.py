"""Recipe pieces and diagnostics of the §6 classifier trainer: schedule, decoupled weight
decay, EMA, flip TTA, alternating flips, translation, the pass-inward clamp gradient."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from branchspec import Branched
from branchspec.cli import main
from branchspec.data.imageset import ImageSet
import branchspec.classifier.train as T
import branchspec.classifier.recipe as R
from branchspec.checkpoint import load_checkpoint
from branchspec.train.ema import WeightEMA
from branchspec.classifier.evaluate import branch_grad_norms, evaluate
from branchspec.losses import ClampPassInward, classifier_loss, logit_diagnostics, soft_target_floor, soft_targets

TINY = dict(data="digits", num_branches=2, width=1, epochs=2, batch_size=32, subset=96, engine="loop", eval_batch_size=400)
quiet = dict(progress=False, log=lambda s: None)


def test_schedule_values():
    f = R.schedule_factor
    assert [f("linear", s, 10, 2) for s in (0, 1, 2, 6, 10)] == pytest.approx([0.5, 1.0, 1.0, 0.5, 0.0])
    assert [f("cosine", s, 10, 2) for s in (0, 2, 6, 10)] == pytest.approx([0.5, 1.0, 0.5, 0.0])
    assert f("linear", 4, 10, 0) == pytest.approx(0.6)  # no warm-up
    assert f("linear", 50, 10, 2) == 0.0  # clipped past the end
    assert f("constant", 7, 10, 2) == 1.0
    assert [f("flat", s, 10, 4) for s in (0, 3, 4, 10, 99)] == pytest.approx([0.25, 1.0, 1.0, 1.0, 1.0])
    assert f("onecycle", 0, 10, 0) == pytest.approx(1 / 25) and f("onecycle", 3, 10, 0) == pytest.approx(1.0)
    cfg = T.TrainConfig(out="x", data="digits", epochs=2, schedule="linear", lr=0.4, warmup_epochs=0.5)
    assert T.lr_at(cfg, 0, 10) == pytest.approx(0.08) and T.lr_at(cfg, 5, 10) == pytest.approx(0.4)
    assert T.lr_at(cfg, 20, 10) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        R.schedule_factor("step", 0, 10, 1)


def test_decoupled_weight_decay_is_independent_of_lr():
    p = torch.full((3,), 2.0)
    R.decay_weights([p], 0.1, 0.25)
    torch.testing.assert_close(p, torch.full((3,), 2.0 * (1 - 0.025)))
    model = nn.Linear(2, 2)
    for lr in (0.01, 1.0):
        cfg = T.TrainConfig(out="x", data="digits", lr=lr, weight_decay_mode="decoupled")
        opt = T.make_optimizer(cfg, model)
        assert opt.param_groups[0]["weight_decay"] == 0.0 and cfg.wd == 1e-4
    coupled = T.make_optimizer(T.TrainConfig(out="x", data="digits"), model)
    assert coupled.param_groups[0]["weight_decay"] == 5e-4 and coupled.param_groups[0]["nesterov"]


def test_ema_update_matches_formula_and_restores():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = WeightEMA(model, 0.9)
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    for t in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        model(torch.randn(4, 2))  # moves BN running statistics
        d = min(0.9, (1 + t) / (10 + t))
        for k, v in model.state_dict().items():
            ref[k] = d * ref[k] + (1 - d) * v if v.is_floating_point() else v.clone()
        ema.update(model)
    for k in ref:
        torch.testing.assert_close(ema.shadow[k], ref[k].to(ema.shadow[k].dtype))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with ema.applied(model):
        torch.testing.assert_close(model[0].weight, ema.shadow["0.weight"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    other = WeightEMA(model, 0.9)
    other.load_tensors(ema.tensors())
    assert other.updates == 5 and torch.equal(other.shadow["0.weight"], ema.shadow["0.weight"])
    with pytest.raises(ValueError):
        WeightEMA(model, 1.0)


def test_tta_averages_the_flipped_pass_and_is_flip_invariant():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    x = torch.randn(2, 3, 6, 6)
    out = R.tta_logits(model, x)
    torch.testing.assert_close(out, (model(x) + model(x.flip(3))) / 2)
    torch.testing.assert_close(R.tta_logits(model, x.flip(3)), out)
    assert not torch.allclose(model(x), out)  # the model itself is not flip-invariant


def test_alternating_flips_derandomised():
    a0, a1, a2 = (R.alternating_flips(1000, e, seed=3) for e in (0, 1, 2))
    assert torch.equal(a0, a2) and torch.equal(a0, ~a1)  # every image alternates
    assert 400 < int(a0.sum()) < 600
    assert torch.equal(a0, R.alternating_flips(1000, 0, seed=3))
    assert not torch.equal(a0, R.alternating_flips(1000, 0, seed=4))


def test_translate_is_a_shifted_window_of_the_padded_image():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5) + 1
    assert torch.equal(R.translate(x, torch.Generator().manual_seed(0), pad=0), x)
    y = R.translate(x, torch.Generator().manual_seed(1), pad=2)
    xp = nn.functional.pad(x, (2, 2, 2, 2))
    for b in range(2):
        windows = [xp[b, :, i:i + 5, j:j + 5] for i in range(5) for j in range(5)]
        assert any(torch.equal(y[b], w) for w in windows)


def test_alternate_flip_batches_reproducible_and_label_preserving():
    rng = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 255, (40, 8, 8, 3), generator=rng, dtype=torch.uint8).numpy()
    data = ImageSet(imgs, (torch.arange(40) % 3).numpy(), ["a", "b", "c"])
    full = list(R.alternate_flip_batches(data, 16, epoch=1, seed=5))
    again = list(R.alternate_flip_batches(data, 16, epoch=1, seed=5, start=1))
    assert len(full) == 3 and torch.equal(full[1][0], again[0][0])
    order = data.order(1, 5, True)
    assert torch.equal(full[0][1], data.labels[order[:16]])
    noflip = list(R.alternate_flip_batches(data, 16, epoch=1, seed=5, pad=0, flips=False))
    torch.testing.assert_close(noflip[0][0], data.normalize(data.images[order[:16]]))


def test_pass_inward_gradient_matches_hand_derived():
    torch.manual_seed(0)
    f = (torch.randn(64, 10) * 2).requires_grad_()  # about 60 % of the logits outside [-1, 1]
    y = torch.randint(0, 10, (64,))
    loss, _ = classifier_loss(f, y, clamp=True, clamp_grad="pass-inward")
    loss.backward()
    # hand-derived: dL/dclamp(f) = (softmax(clamp f) − p)/B (eq. 3); passed inside [-1, 1] and
    # where f > 1 with a positive or f < −1 with a negative derivative (descent moves f inward)
    fd = f.detach()
    g = ((fd.clamp(-1, 1).softmax(1) - soft_targets(y, 10)) / 64)
    keep = ((fd >= -1) & (fd <= 1)) | ((fd > 1) & (g > 0)) | ((fd < -1) & (g < 0))
    torch.testing.assert_close(f.grad, torch.where(keep, g, torch.zeros_like(g)))
    assert ((fd.abs() > 1) & keep).any() and ((fd.abs() > 1) & ~keep).any()
    hard = f.detach().clone().requires_grad_()
    hloss, _ = classifier_loss(hard, y, clamp=True)
    hloss.backward()
    assert hloss.item() == pytest.approx(loss.item())  # same loss value: only the gradient differs
    torch.testing.assert_close(hard.grad, torch.where((fd >= -1) & (fd <= 1), g, torch.zeros_like(g)))


def test_clamp_pass_inward_double_precision_gradcheck_inside():
    f = (torch.rand(5, 4, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    assert torch.autograd.gradcheck(ClampPassInward.apply, (f,))


def test_logit_diagnostics_and_floor_against_loops():
    torch.manual_seed(1)
    f, y = torch.randn(50, 10) * 1.5, torch.randint(0, 10, (50,))
    d = logit_diagnostics(f, y)
    dead = sum(1 for i in range(50) if f[i, y[i]] <= -1 or any(f[i, c] >= 1 for c in range(10) if c != y[i]))
    assert d["dead"] == pytest.approx(dead / 50) and 0 < dead < 50
    assert d["clamped"] == pytest.approx(float((f.abs() > 1).float().mean()))
    best = torch.full((1, 10), -1.0)
    best[0, 3] = 1.0
    assert classifier_loss(best * 5, torch.tensor([3]), clamp=True)[0].item() == pytest.approx(soft_target_floor(10), abs=1e-6)


def test_branch_grad_norms_and_activity_of_a_zeroed_branch():
    model = Branched(lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10)), 3, engine="loop", seed=0)
    x = torch.randn(6, 3, 8, 8)
    model(x).pow(2).sum().backward()
    ref = [torch.cat([p.grad.flatten() for p in b.parameters()]).norm() for b in model.branches]
    torch.testing.assert_close(branch_grad_norms(model), torch.stack(ref))
    data = ImageSet(torch.randint(0, 255, (20, 8, 8, 3), dtype=torch.uint8).numpy(), (torch.arange(20) % 10).numpy(),
                    [str(i) for i in range(10)])
    assert evaluate(model, data, True, branches=True)["silent"] == 0
    with torch.no_grad():
        for p in model.branch_parameters(1).values():
            p.zero_()  # branch 1 now answers 0 everywhere: silent by the Fig. 4 rule
    ev = evaluate(model, data, True, branches=True)
    assert ev["silent"] == 1 and ev["active"] == 2 and ev["branch_norm"][1] == 0.0


def test_evaluate_counts_saturated_samples():
    """``saturated``: samples whose every logit is outside [−1, 1] (zero hard-clamp gradient), by hand."""
    f = torch.tensor([[2.0] * 10, [-3.0] * 9 + [0.5], [1.5, -1.5] * 5, [-2.0] * 9 + [1.0]])  # 1.0 is inside

    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(()))

        def forward(self, x):
            return f[: len(x)] + self.w

    data = ImageSet(torch.zeros(4, 8, 8, 3, dtype=torch.uint8).numpy(), torch.zeros(4, dtype=torch.long).numpy(),
                    [str(i) for i in range(10)])
    ev = evaluate(Fixed(), data, True, batch_size=4)
    assert ev["test_saturated"] == pytest.approx(2 / 4)  # rows 0 and 2
    assert ev["test_clamped"] == pytest.approx((10 + 9 + 10 + 9) / 40)


@pytest.mark.parametrize("recipe", [
    dict(flip="alternate", weight_decay_mode="decoupled", ema=0.9, schedule="linear", clamp_grad="pass-inward"),
    dict(precision="bf16", tta=True, head_init_scale=0.1),
])
def test_recipe_runs_resume_exactly_and_log_diagnostics(tmp_path, recipe):
    a = T.train(T.TrainConfig(out=str(tmp_path / "a"), **TINY, **recipe), **quiet)
    T.train(T.TrainConfig(out=str(tmp_path / "b"), **TINY, **recipe), max_steps=4, **quiet)
    b = T.train(T.TrainConfig(out=str(tmp_path / "b"), **TINY, **recipe), resume=True, **quiet)
    ta, _ = load_checkpoint(tmp_path / "a" / "last")
    tb, _ = load_checkpoint(tmp_path / "b" / "last")
    for k in ta:
        if not k.startswith("rng"):
            assert torch.equal(ta[k], tb[k]), k
    for key in ("train_loss", "train_dead", "grad_norm_max", "test_acc"):
        assert a[key] == b[key]
    assert 0 <= a["train_clamped"] <= 1 and a["active"] + a["silent"] == 2
    assert a["grad_norm_min"] <= a["grad_norm_median"] <= a["grad_norm_max"] and a["grad_norm_max"] > 0
    diag = json.loads((tmp_path / "b" / "diagnostics.json").read_text())["epochs"]
    assert [r["epoch"] for r in diag] == [1, 2] and len(diag[0]["branch_grad_norm"]) == 2
    for r in diag:  # the head is part of each branch: its norm is at most the branch's, and not zero
        assert all(0 < h < w for h, w in zip(r["branch_head_norm"], r["branch_weight_norm"]))
    cfg_b = T.TrainConfig(out=str(tmp_path / "b"), **TINY, **recipe)
    spe = a["step"] // cfg_b.epochs
    assert [r["weight_decay_exponent"] for r in diag] == pytest.approx(T.decay_exponents(cfg_b, spe))
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["loss_floor"] == pytest.approx(soft_target_floor(10))
    for k, v in recipe.items():
        assert cfg[k] == v
    if recipe.get("ema"):
        assert (tmp_path / "a" / "ema.json").is_file() and a["ema_test_acc"] != ""
    if recipe.get("tta"):
        assert 0 <= a["tta_test_acc"] <= 1


def test_stop_loss_ends_the_run_and_resume_keeps_it(tmp_path, capsys):
    """A run stops after the first epoch within stop_loss of the floor, says so, and --resume trains no further."""
    args = ["train-classifier", "--data", "digits", "--out", str(tmp_path / "r"), "--branches", "2", "--width", "1",
            "--subset", "64", "--batch-size", "32", "--epochs", "4", "--engine", "loop", "--quiet", "--stop-loss", "1"]
    assert main(args) == 0
    assert "within 1.0 of the floor" in capsys.readouterr().out
    st = load_checkpoint(tmp_path / "r" / "last")[1]
    assert st["epoch"] == 1 and st["step"] == 2
    assert main(args + ["--resume"]) == 0
    assert load_checkpoint(tmp_path / "r" / "last")[1]["step"] == 2
    with pytest.raises(ValueError, match="stop_loss"):
        T.TrainConfig(out="x", data="digits", stop_loss=-1.0)


def test_cli_precision_recorded_and_kept_on_resume(tmp_path, capsys):
    base = ["train-classifier", "--data", "digits", "--out", str(tmp_path / "r"), "--branches", "2", "--width", "1",
            "--subset", "64", "--batch-size", "32", "--epochs", "2", "--engine", "loop", "--quiet"]
    assert main(base + ["--precision", "bf16", "--max-steps", "1"]) == 0
    assert main(base + ["--resume"]) == 0  # no --precision: the run's bf16 is kept
    assert json.loads((tmp_path / "r" / "config.json").read_text())["precision"] == "bf16"
    assert main(base + ["--resume", "--precision", "fp32"]) == 2  # a changed setting: an invalid argument
    assert "precision" in capsys.readouterr().err.splitlines()[-1]


def test_cli_sweep_keeps_its_precision_on_resume(tmp_path):
    """A sweep resumed without --precision trains its next M in the precision its first runs were started with."""
    base = ["train-classifier", "--data", "digits", "--out", str(tmp_path / "s"), "--width", "1", "--subset", "32",
            "--batch-size", "32", "--epochs", "1", "--engine", "loop", "--quiet"]
    assert main(base + ["--sweep", "1", "--precision", "bf16"]) == 0
    assert main(base + ["--sweep", "1,2", "--resume"]) == 0
    assert json.loads((tmp_path / "s" / "M2" / "config.json").read_text())["precision"] == "bf16"


def test_cli_init_from_starts_at_the_given_weights(tmp_path, capsys):
    """--init-from: the new run's step 0 is the given checkpoint's weights (a weights-only export too); the EMA
    starts there; a checkpoint of another shape or a missing one is a one-line error naming --init-from."""
    from branchspec.loading import load_model

    base = ["--data", "digits", "--branches", "2", "--width", "1", "--subset", "64", "--batch-size", "32",
            "--engine", "loop", "--quiet"]
    assert main(["train-classifier", "--out", str(tmp_path / "a"), "--epochs", "1"] + base) == 0
    assert main(["export", "--checkpoint", str(tmp_path / "a" / "last"), "--out", str(tmp_path / "w")]) == 0
    # lr 1e-12, no weight decay, one epoch (2 steps): the weights (and the EMA) stay the given ones (BatchNorm's running
    # statistics move with the batches: parameters only)
    assert main(["train-classifier", "--out", str(tmp_path / "b"), "--epochs", "1", "--init-from", str(tmp_path / "w"),
                 "--optimizer", "adamw", "--lr", "1e-12", "--weight-decay", "0", "--ema", "0.5", "--seed", "5"]
                + base) == 0
    a, _ = load_model(tmp_path / "w")
    for name in ("b/last", "b/ema"):
        b, _ = load_model(tmp_path / name)
        for (k, pa), pb in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(pb, pa, atol=1e-6, rtol=0, msg=f"{name} {k}")
    saved = json.loads((tmp_path / "b" / "config.json").read_text())
    assert saved["init_from"] == str(tmp_path / "w") and saved["seed"] == 5
    # the model spec names the initialisation the weights descend from (seed 0 of run a), not the fine-tune's seed
    assert saved["model"]["seed"] == 0 and load_checkpoint(tmp_path / "b" / "last")[1]["model"]["config"]["seed"] == 0
    capsys.readouterr()
    base3 = [a if a != "2" else "3" for a in base]  # M = 3: the weights do not fit
    assert main(["train-classifier", "--out", str(tmp_path / "c"), "--init-from", str(tmp_path / "w")] + base3) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "do not fit" in err
    assert main(["train-classifier", "--out", str(tmp_path / "d"), "--init-from", str(tmp_path / "nope")] + base) == 2
    assert "--init-from" in capsys.readouterr().err


@pytest.mark.parametrize("extra, needle", [
    (["--ema", "1.5"], "--ema"),
    (["--head-init-scale", "-1"], "--head-init-scale"),
    (["--no-clamp", "--clamp-grad", "pass-inward"], "--clamp-grad"),
    (["--warmup-epochs", "-1"], "--warmup-epochs"),
    (["--stop-loss", "0"], "--stop-loss"),
    (["--stop-loss", "nan"], "--stop-loss"),
])
def test_cli_recipe_errors(tmp_path, capsys, extra, needle):
    rc = main(["train-classifier", "--data", "digits", "--out", str(tmp_path / "o")] + extra)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out, result_dir, extra=None):
    import os
    from datetime import timedelta

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))  # a hang fails
    try:
        res = T.train(T.TrainConfig(out=out, **{**TINY, "epochs": 1, **(extra or {})}), progress=False,
                      log=lambda s: None)
        torch.save({"res": res}, os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_two_cpu_processes_match_the_global_batch(tmp_path):
    """Two gloo processes, each half of every batch: one checkpoint, written by rank 0, and the
    same training loss as one process on the whole batch up to BatchNorm's per-process statistics."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "run"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))  # files this test wrote
    assert r0["res"]["epoch"] == 1 and r0["res"]["step"] == 3 and r1["res"]["step"] == 3
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["world_size"] == 2
    _, state = load_checkpoint(tmp_path / "run" / "last")
    assert state["step"] == 3 and state["epoch"] == 1
    from branchspec.checkpoint import ResumeMismatch

    with pytest.raises(ResumeMismatch, match="`world_size` 2"):  # resumed by one process: refused
        T.train(T.TrainConfig(out=str(tmp_path / "run"), **{**TINY, "epochs": 1}), resume=True, **quiet)
    single = T.train(T.TrainConfig(out=str(tmp_path / "one"), **{**TINY, "epochs": 1}), **quiet)
    assert r0["res"]["train_loss"] == pytest.approx(single["train_loss"], abs=0.05)
    assert r0["res"]["train_loss"] != single["train_loss"]  # BN statistics over half batches differ


def test_ddp_stop_loss_stops_every_rank(tmp_path):
    """--stop-loss under DDP: every rank stops after the same epoch (rank 0 alone evaluates; the criterion is the
    all-reduced train loss every rank holds), instead of rank 1 training on and waiting for rank 0 forever."""
    import torch.multiprocessing as mp

    extra = {"epochs": 4, "stop_loss": 1.0}  # 2.30 − 1.89 < 1: met after the first epoch
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "run"), str(tmp_path), extra), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["res"]["step"] == r1["res"]["step"] == 3 and r0["res"]["loss_reached"] and r1["res"]["loss_reached"]
    assert load_checkpoint(tmp_path / "run" / "last")[1]["epoch"] == 1


@pytest.mark.slow
def test_torchrun_cli(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "branchspec", "train-classifier", "--data", "digits", "--out", str(tmp_path / "r"), "--branches", "2",
           "--width", "1", "--subset", "64", "--batch-size", "32", "--epochs", "1", "--engine", "loop", "--quiet"]
    subprocess.run(cmd, check=True, env=env, timeout=300)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["world_size"] == 2
    _, state = load_checkpoint(tmp_path / "r" / "last")
    assert state["step"] == 2


def test_recipe_comparison_figure_from_saved_runs(tmp_path, drawn):
    from branchspec.figures.classifier import draw_recipe_comparison
    from branchspec.classifier.runfiles import write_rows

    runs = {}
    for name, ema in (("a", ""), ("b", 0.5)):
        d = tmp_path / name
        d.mkdir()
        rows = [{"epoch": e, "train_loss": 2.3 - 0.1 * e, "test_acc": 0.1 * e, "test_clamped": 0.2, "test_dead": 0.01,
                 "ema_test_acc": ema} for e in (1, 2)]
        write_rows(d / "metrics.csv", rows, T.CSV_FIELDS)
        (d / "config.json").write_text(json.dumps({"loss_floor": 1.8949}))
        runs[name] = d
    out = draw_recipe_comparison(runs, tmp_path / "cmp.png")
    (fig,) = drawn
    fig.check_png(out)
    loss, acc = fig.lines[0], fig.lines[1]  # panels: train loss (+ floor), test accuracy, clamped, dead
    np.testing.assert_allclose([y for _, y in loss[:2]], [[2.2, 2.1], [2.2, 2.1]])
    assert set(np.ravel(loss[2][1])) == {1.8949}  # the floor H(p) from config.json
    np.testing.assert_allclose(acc[0][1], [0.1, 0.2])  # run a: no EMA column, the plain test accuracy
    np.testing.assert_allclose(acc[1][1], [0.5, 0.5])  # run b: the EMA accuracy is drawn


def test_cli_engine_choices_come_from_branched_engines():
    from branchspec import branched
    from branchspec.cli import build_parser

    args = build_parser().parse_args(["train-classifier", "--data", "digits", "--out", "x", "--engine", branched.ENGINES[-1]])
    assert args.engine == branched.ENGINES[-1] and args.precision is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train-classifier", "--data", "digits", "--out", "x", "--engine", "warp"])


def test_branch_norm_ratios_and_figure_from_saved_diagnostics(tmp_path, drawn):
    from branchspec.figures.classifier_epochs import branch_norm_ratios, draw_branch_norms

    run = tmp_path / "run"
    run.mkdir()
    epochs = [{"epoch": 1, "branch_norm": [1.0, 1.0, 1.0]}, {"epoch": 2, "branch_norm": [2.0, 8.0, 4.0]}]
    (run / "diagnostics.json").write_text(json.dumps({"epochs": epochs}))
    np.testing.assert_allclose(branch_norm_ratios(run), [1.0, 0.5, 0.25])  # last epoch, sorted, over the max
    out = draw_branch_norms({"M=3": run}, tmp_path / "norms.png")
    (fig,) = drawn
    fig.check_png(out)
    (x, y), (_, threshold) = fig.lines[0]
    np.testing.assert_allclose(y, [1.0, 0.5, 0.25])
    assert x.tolist() == [1, 2, 3] and set(np.ravel(threshold)) == {0.1}


@pytest.mark.parametrize("clamp,clamp_grad", [(True, "hard"), (True, "pass-inward"), (False, "hard")])
def test_training_loss_equals_classifier_loss_and_diagnostics(clamp, clamp_grad):
    from branchspec.losses import training_loss

    g = torch.Generator().manual_seed(3)
    f0 = 2.0 * torch.randn(32, 10, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    f1, f2 = f0.clone().requires_grad_(), f0.clone().requires_grad_()
    loss, stats = training_loss(f1, y, clamp, clamp_grad)
    ref, logs = classifier_loss(f2, y, clamp, clamp_grad)
    d = logit_diagnostics(f0, y)
    assert loss.item() == ref.item() and stats.dtype == torch.float64
    np.testing.assert_allclose(stats.tolist(), [logs["loss"], logs["acc"], d["clamped"], d["dead"]], rtol=1e-6)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(f1.grad, f2.grad, rtol=0, atol=0)  # the same loss, the same gradient
