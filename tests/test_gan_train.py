"""train-gan: checkpoints, exact resume, non-finite stop, DDP on gloo, CLI errors."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from branchspec.cli import main
from branchspec.data.embedded import embedded_domains
from branchspec.loading import load_model
import branchspec.gan.losses as gan_losses
from branchspec.checkpoint import load_checkpoint
from branchspec.gan.train import GanTrainConfig, GanTrainer, NonFiniteLossError, run_training, train_gan

TINY = dict(img_size=16, num_branches=2, batch_size=3, base_width=4, max_width=8, style_dim=4, d_base_width=4,
            d_max_width=8, n_per_domain=3, engine="loop", sample_every=0, ckpt_every=2)




@pytest.fixture(scope="module")
def data():
    return embedded_domains(16, n_per_domain=3)


def test_checkpoint_is_sampling_ready(tmp_path, data):
    last = train_gan(GanTrainConfig(**TINY, steps=2, holdout=1), tmp_path, progress=False, data=data)
    model, state = load_model(last)
    assert state["held_out"]["labels"] == [0, 1] and state["data"]["images"] == 4
    assert state["step"] == 2 and state["domains"] == ["cat", "other"] and state["img_size"] == 16
    tensors, _ = load_checkpoint(last)
    assert {k.split(".")[0] for k in tensors} >= {"model", "gen", "disc", "opt_g", "opt_d"}
    x, y = data.batch(torch.arange(2))
    f, v = model(x, y, return_branches=True)
    assert v.shape == (2, 2, 3, 16, 16) and torch.isfinite(f).all()
    assert (tmp_path / "samples" / "step-000002.png").is_file()
    assert (tmp_path / "checkpoints" / "step-000002.json").is_file()
    logs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logs[-1]["step"] == 2 and {"d/loss", "d/r1", "g/adv"} <= set(logs[-1])


def test_resume_equals_uninterrupted(tmp_path, data):
    full = train_gan(GanTrainConfig(**TINY, steps=4), tmp_path / "a", progress=False, data=data)
    train_gan(GanTrainConfig(**TINY, steps=2), tmp_path / "b", progress=False, data=data)
    resumed = train_gan(GanTrainConfig(**TINY, steps=4), tmp_path / "b", progress=False, resume=True, data=data)
    ta, sa = load_checkpoint(full)
    tb, sb = load_checkpoint(resumed)
    assert sa["step"] == sb["step"] == 4
    for k in ta:
        if k.startswith("rng."):
            continue
        assert torch.equal(ta[k], tb[k]), k
    # and training did move the weights
    t0, _ = load_checkpoint(tmp_path / "b" / "checkpoints" / "step-000002")
    assert not torch.equal(t0["gen.branches.0.to_rgb.weight"], ta["gen.branches.0.to_rgb.weight"])


def test_resume_rejects_changed_config(tmp_path, data):
    train_gan(GanTrainConfig(**TINY, steps=2), tmp_path, progress=False, data=data)
    with pytest.raises(Exception, match="lr"):
        train_gan(GanTrainConfig(**TINY, steps=3, lr=1e-3), tmp_path, progress=False, resume=True, data=data)


def test_resume_rejects_changed_data(tmp_path, data):
    """6 images (3 per domain) trained, 11 given on --resume: a one-line refusal (exit 2), not a silent change
    of the data set half-way through a run."""
    from branchspec.checkpoint import ResumeMismatch

    train_gan(GanTrainConfig(**TINY, steps=2), tmp_path, progress=False, data=data)
    more = embedded_domains(16, n_per_domain=6)
    more = more.subset(torch.arange(11))
    with pytest.raises(ResumeMismatch, match="`data` now gives 11") as e:
        train_gan(GanTrainConfig(**TINY, steps=3), tmp_path, progress=False, resume=True, data=more)
    assert "\n" not in str(e.value) and "6 images" in str(e.value)


def test_non_finite_loss_stops_keeping_last_good(tmp_path, data, monkeypatch):
    cfg = GanTrainConfig(**TINY, steps=6)
    trainer = GanTrainer(cfg, tmp_path, progress=False, data=data)
    real = gan_losses.generator_loss

    def poisoned(logits):
        loss, logs = real(logits)
        if trainer.step >= 3:  # the 4th step goes wrong
            return loss * float("nan"), {"g/adv": float("nan")}
        return loss, logs

    monkeypatch.setattr(gan_losses, "generator_loss", poisoned)
    good = (tmp_path / "checkpoints" / "last.safetensors")
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 4") as e:
        run_training(trainer)
    assert "\n" not in str(e.value) and "last good checkpoint kept:" in str(e.value) and "last.json" in str(e.value)
    # one error class for both trainers (errors.NonFiniteLoss), still importable under the GAN's old name
    from branchspec.errors import NonFiniteLoss
    from branchspec.classifier.train import NonFiniteLoss as ClassifierNonFinite

    assert type(e.value) is NonFiniteLoss and NonFiniteLossError is NonFiniteLoss is ClassifierNonFinite
    _, state = load_checkpoint(tmp_path / "checkpoints" / "last")
    assert state["step"] == 2 and good.is_file()
    tensors, _ = load_checkpoint(tmp_path / "checkpoints" / "last")
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if t.is_floating_point())


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out, result_dir):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        cfg = GanTrainConfig(**{**TINY, "batch_size": 2}, steps=2)
        trainer = GanTrainer(cfg, out, progress=False, data=embedded_domains(16, n_per_domain=3))
        first = trainer.batch_indices(0).tolist()
        run_training(trainer)
        flat = torch.cat([p.detach().flatten() for p in trainer.G.parameters()])
        torch.save({"flat": flat, "first": first}, os.path.join(result_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_two_cpu_processes(tmp_path):
    """DistributedDataParallel on gloo: ranks see different batches, keep identical weights."""
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "run"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))  # our own files from this test
    assert set(r0["first"]).isdisjoint(r1["first"])
    torch.testing.assert_close(r0["flat"], r1["flat"], rtol=0, atol=0)
    _, state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last")
    assert state["world_size"] == 2 and state["step"] == 2 and state["runtime"]["world_size"] == 2
    from branchspec.checkpoint import ResumeMismatch

    with pytest.raises(ResumeMismatch, match="`world_size` 2"):  # one process now: refused
        GanTrainer(GanTrainConfig(**{**TINY, "batch_size": 2}, steps=3), tmp_path / "run", progress=False,
                   resume=True, data=embedded_domains(16, n_per_domain=3))


@pytest.mark.slow
def test_torchrun_cli(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "branchspec", "train-gan", "--out", str(tmp_path), "--steps", "2", "--img-size", "16",
           "--branches", "2", "--base-width", "4", "--max-width", "8", "--batch-size", "2", "--engine", "loop",
           "--no-progress"]
    subprocess.run(cmd, check=True, env=env, timeout=300)
    _, state = load_checkpoint(tmp_path / "checkpoints" / "last")
    assert state["world_size"] == 2


def test_cli_errors(tmp_path, capsys):
    assert main(["train-gan", "--out", str(tmp_path), "--img-size", "24"]) == 2
    assert "--img-size" in capsys.readouterr().err
    assert main(["train-gan", "--out", str(tmp_path), "--data", str(tmp_path / "nope")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["train-gan", "--out", str(tmp_path / "new"), "--resume"]) == 2
    assert "--resume" in capsys.readouterr().err
    (tmp_path / "d" / "train").mkdir(parents=True)
    assert main(["train-gan", "--out", str(tmp_path / "r"), "--data", str(tmp_path / "d"), "--img-size", "16"]) == 2  # bad data is bad input (README: exit 2)
    err = capsys.readouterr().err
    assert "no domain" in err and err.count("\n") == 1


def test_bf16_precision_runs_and_resumes(tmp_path, data):
    """--precision bf16: autocast on CPU, fp32 weights and Adam state, recorded; resume keeps it."""
    cfg = GanTrainConfig(**TINY, steps=2, precision="bf16")
    last = train_gan(cfg, tmp_path, progress=False, data=data)
    tensors, state = load_checkpoint(last)
    assert state["train_config"]["precision"] == "bf16"
    assert json.loads((tmp_path / "config.json").read_text())["train"]["precision"] == "bf16"
    assert all(t.dtype == torch.float32 for k, t in tensors.items() if k.split(".")[0] in ("gen", "disc", "opt_g"))
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    with pytest.raises(Exception, match="precision"):
        train_gan(GanTrainConfig(**TINY, steps=3, precision="fp32"), tmp_path, progress=False, resume=True, data=data)
    # the CLI without --precision keeps the run's bf16
    from branchspec.gan.config import saved_precision
    assert saved_precision(last) == "bf16"
    assert GanTrainConfig(**TINY, amp=True).precision == "bf16"


def test_bf16_autocast_is_used(data, monkeypatch):
    """The D and G passes run in bfloat16 under precision=bf16, and in fp32 otherwise."""
    seen = []
    orig = torch.nn.Conv2d.forward

    def spy(self, x):
        out = orig(self, x)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", spy)
    for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        seen.clear()
        GanTrainer(GanTrainConfig(**TINY, steps=1, precision=precision), "unused", progress=False, data=data).train_step()
        assert seen and all(d == dtype for d in seen), (precision, set(seen))


def test_keep_last_rotates_step_checkpoints(tmp_path, data):
    train_gan(GanTrainConfig(**{**TINY, "ckpt_every": 1}, steps=4, keep_last=2), tmp_path, progress=False, data=data)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["last.json", "last.safetensors", "step-000003.json", "step-000003.safetensors",
                     "step-000004.json", "step-000004.safetensors"]
    # keep_last may change on resume
    train_gan(GanTrainConfig(**{**TINY, "ckpt_every": 1}, steps=5, keep_last=1), tmp_path, progress=False,
              resume=True, data=data)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith("step")) == [
        "step-000005.json", "step-000005.safetensors"]


def test_cli_engine_precision_keep_last(tmp_path, capsys):
    from branchspec.branched import ENGINES

    common = ["train-gan", "--out", str(tmp_path), "--img-size", "16", "--branches", "2", "--base-width", "4",
              "--max-width", "8", "--batch-size", "2", "--no-progress", "--threads", "1"]
    with pytest.raises(SystemExit) as e:
        main(common + ["--engine", "warp"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and all(repr(x) in err for x in ENGINES), err
    assert main(common + ["--keep-last", "-1"]) == 2
    assert "--keep-last" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(common + ["--precision", "fp16"])
    assert main(common + ["--steps", "1", "--precision", "bf16", "--keep-last", "1", "--engine", "loop"]) == 0
    assert main(common + ["--steps", "2", "--resume", "--engine", "loop", "--keep-last", "1"]) == 0
    _, state = load_checkpoint(tmp_path / "checkpoints" / "last")
    assert state["step"] == 2 and state["train_config"]["precision"] == "bf16"


def test_training_curves_from_log(tmp_path, drawn):
    from branchspec.figures.gan import read_log, training_curves

    log = tmp_path / "log.jsonl"
    rows = [{"step": s, "d/real": 0.6, "d/fake": 0.7, "d/acc_real": 0.6, "d/acc_fake": 0.55, "d/r1": 0.02,
             "g/adv": 0.8} for s in (10, 20, 20, 30)]
    rows[2]["d/real"] = 0.5  # a resumed run rewrote step 20: the last line wins
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    got = read_log(log)
    assert [r["step"] for r in got] == [10, 20, 30] and got[1]["d/real"] == 0.5
    png = training_curves(log, tmp_path / "c.png")
    (fig,) = drawn
    fig.check_png(png)
    (x_real, y_real), (_, y_fake) = fig.lines[0][:2]  # D-loss panel: d/real, d/fake (then the chance line)
    assert x_real.tolist() == [10, 20, 30] and y_real.tolist() == [0.6, 0.5, 0.6] and y_fake.tolist() == [0.7] * 3


def test_num_down_and_d_lr_reach_the_models(tmp_path, data):
    """--num-down sets the generator's bottleneck (16² -> 2² at img 16, num_down 3), --d-lr only D's Adam."""
    cfg = GanTrainConfig(**TINY, steps=1, num_down=3, d_lr=4e-4)
    trainer = GanTrainer(cfg, tmp_path, progress=False, data=data)
    assert [g["lr"] for g in trainer.opt_d.param_groups] == [4e-4]
    assert [g["lr"] for g in trainer.opt_g.param_groups] == [cfg.lr]
    last = train_gan(cfg, tmp_path, progress=False, data=data)
    model, state = load_model(last)
    assert state["train_config"]["num_down"] == 3 and state["train_config"]["d_lr"] == 4e-4
    default, _ = load_model(train_gan(GanTrainConfig(**TINY, steps=1), tmp_path / "d", progress=False, data=data))
    assert sum(p.numel() for p in model.parameters()) != sum(p.numel() for p in default.parameters())
    x, y = data.batch(torch.arange(2))
    assert model(x, y).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="d_lr"):
        GanTrainConfig(**TINY, d_lr=0.0)
    with pytest.raises(ValueError, match="num_down"):
        GanTrainConfig(**TINY, num_down=4)


def test_cli_num_down_d_lr_errors(tmp_path, capsys):
    common = ["train-gan", "--out", str(tmp_path), "--img-size", "16", "--no-progress"]
    assert main(common + ["--num-down", "4"]) == 2
    err = capsys.readouterr().err
    assert "--num-down" in err and err.count("\n") == 1
    assert main(common + ["--d-lr", "-1"]) == 2
    assert "--d-lr" in capsys.readouterr().err
