"""Training the branched CIFAR-10 classifier of §6, with exact resume.

The step is the paper's algorithm: f = Σ_k v_k(x) (eq. 1), loss =
H(p, softmax(clamp(f, −1, 1))) (§6, eq. 3) — or plain one-hot CE with
``clamp=False`` — and one optimiser step on all branches together.

Everything the next step depends on is a pure function of saved state, so
``resume=True`` continues bit-for-bit: weights and BatchNorm statistics,
optimiser moments, the global step (the learning rate is a function of it:
:func:`lr_at`), and the position inside the epoch (the data order and the
augmentation of batch i of epoch e are seeded by (seed, e, i), see
:mod:`branchspec.data.imageset`). The torch RNG state is saved too.

A checkpoint ``RUN/last`` (safetensors + JSON, atomic) is written at the end
of every epoch and every ``save_every`` steps; a non-finite loss (or weights)
stops the run with :class:`NonFiniteLoss` *before* anything is overwritten.

Example:
    >>> cfg = TrainConfig(data="digits", out="/tmp/run", num_branches=2, width=2, epochs=1)  # doctest: +SKIP
    >>> summary = train(cfg)                                                                  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from branchspec.branched import as_branched
from branchspec.compiling import compile_after_warmup
from branchspec.data.imageset import ImageSet, load_source
from branchspec.errors import ConfigError, NonFiniteLoss
from branchspec.models.resnet import ClassifierConfig, build_classifier
from branchspec.io import atomic_write_json
from branchspec.checkpoint import (
    CheckpointError, check_runtime, checkpoint_exists, kept_note, load_checkpoint, load_weights, optimizer_from_tensors,
    ResumeMismatch, refresh_state_copy, restore_rng_state, unprefixed,
)
from branchspec.classifier.runfiles import check_resume, epoch_logs, progress_from, save_run, write_epoch_files
from branchspec.classifier.config import TrainConfig
from branchspec.train.distributed import DistContext
from branchspec.train.ema import WeightEMA
from branchspec.classifier.evaluate import branch_grad_norms, evaluate, grad_norm_summary, make_tracker
from branchspec.classifier.recipe import (
    alternate_flip_batches,
    decay_weights,
    loss_reached,
    schedule_factor,
)
from branchspec.train.export import refuse_weights_only
from branchspec.losses import soft_target_floor, training_loss
from branchspec.train.memory import check_classifier_training

CSV_FIELDS = ["epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_time_s", "images_per_s",
              "train_clamped", "train_dead", "test_clamped", "test_dead", "grad_norm_min", "grad_norm_median",
              "grad_norm_max", "active", "silent", "ema_test_loss", "ema_test_acc", "tta_test_acc"]


GRAD_NORM_EVERY = 10
"""Per-branch gradient norms (the CSV's grad_norm_* columns) are sampled on the first batch of an epoch and every
10th step: taken on every step as M·|layers| separate reductions, they were one of the three per-step costs that
held the trainer at half the bare packed step's speed on a GPU (docs/notebook/2026-11-26-gpu-leases.md)."""


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of global step ``step`` (the whole scheduler state is the step)."""
    total = cfg.epochs * steps_per_epoch
    return cfg.peak_lr * schedule_factor(cfg.schedule, step, total, cfg.warmup_epochs * steps_per_epoch)


@functools.lru_cache(maxsize=4)
def decay_exponents(cfg: TrainConfig, steps_per_epoch: int) -> tuple[float, ...]:
    """D(e) at the end of every epoch e = 1 … ``cfg.epochs``: a weight on which only weight decay acts (its
    loss gradient zero, as for a branch whose samples all sit at the clamp on the right side: eq. 10's
    collaborative factor vanishes, §4) ends epoch e at θ(0)·exp(−D(e)).

    Per step t: lr_t·wd/(1 − μ) for coupled SGD with momentum μ (the momentum buffer of the decay term
    settles at wd·θ/(1 − μ)), lr_t·wd for AdamW's own (decoupled) decay, wd·lr_t/peak lr for
    :func:`~branchspec.classifier.recipe.decay_weights`. D grows with the number of steps, not epochs: 200 epochs of
    2,500 images decay a weight 20× less (in the exponent) than 200 epochs of 50,000. Cached: the trainer
    reads it at every epoch's end.

    Example:
        >>> cfg = TrainConfig(data="digits", out="o", optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
        ...                   schedule="constant", epochs=2)
        >>> [round(d, 6) for d in decay_exponents(cfg, steps_per_epoch=10)]
        [0.005, 0.01]
    """
    if cfg.weight_decay_mode == "decoupled":
        per_lr = cfg.wd / cfg.peak_lr
    else:
        per_lr = cfg.wd / (1.0 - cfg.momentum) if cfg.optimizer == "sgd" else cfg.wd
    out, d = [], 0.0
    for step in range(cfg.epochs * steps_per_epoch):
        d += per_lr * lr_at(cfg, step, steps_per_epoch)
        if (step + 1) % steps_per_epoch == 0:
            out.append(d)
    return tuple(out)


def make_optimizer(cfg: TrainConfig, model) -> torch.optim.Optimizer:
    """Nesterov SGD (momentum ``cfg.momentum``) or AdamW; with decoupled weight decay the
    optimiser's own decay is 0 and :func:`decay_weights` shrinks the weights in the step."""
    wd = cfg.wd if cfg.weight_decay_mode == "coupled" else 0.0
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.peak_lr, momentum=cfg.momentum, nesterov=True, weight_decay=wd)
    return torch.optim.AdamW(model.parameters(), lr=cfg.peak_lr, weight_decay=wd)


def load_data(cfg: TrainConfig) -> tuple[ImageSet, ImageSet]:
    """Training set (first ``subset`` images) and test set normalised with the training statistics."""
    train_set = load_source(cfg.data, train=True, img_size=cfg.img_size)
    skipped = train_set.skipped
    if cfg.subset is not None:
        train_set = train_set.subset(cfg.subset)
    train_set.skipped = skipped
    test = load_source(cfg.data, train=False, img_size=cfg.img_size)
    test_set = ImageSet(test.images_hwc, test.labels_np, test.class_names, train_set.mean, train_set.std)
    return train_set, test_set


def lineage_seed(mcfg: ClassifierConfig, state: dict) -> ClassifierConfig:
    """``mcfg`` with the initialisation seed of the checkpoint whose weights a fine-tune started from: the model
    spec then rebuilds the initialisation the weights descend from (the "at initialisation" Hessian, Fig. 5)."""
    return replace(mcfg, seed=ClassifierConfig.from_dict(state["model"]["config"]).seed)


def _finite_params(model) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def _epoch_batches(cfg: TrainConfig, data: ImageSet, epoch: int, start: int, drop_last: bool):
    if cfg.augment and cfg.flip == "alternate":
        return alternate_flip_batches(data, cfg.batch_size, epoch, cfg.seed, start=start, drop_last=drop_last)
    if cfg.augment and cfg.flip == "none":
        return alternate_flip_batches(data, cfg.batch_size, epoch, cfg.seed, start=start, drop_last=drop_last,
                                      flips=False)
    return data.batches(cfg.batch_size, epoch, cfg.seed, augment=cfg.augment, shuffle=True, start=start,
                        drop_last=drop_last)


def _new_sums(m: int) -> dict:
    return {"loss": 0.0, "acc": 0.0, "n": 0, "time": 0.0, "clamped": 0.0, "dead": 0.0, "steps": 0,
            "grad_norm": [0.0] * m, "grad_steps": 0}


def train(cfg: TrainConfig, resume: bool = False, max_steps: int | None = None, progress: bool = True, log=print) -> dict:
    """Train (or resume) a run; returns the last metrics row plus ``"stopped_early"``.

    ``max_steps`` stops after that many global steps (checkpointing there),
    e.g. to time-box a run that ``resume=True`` continues later. Under
    ``torchrun`` the processes share each batch (:mod:`.distributed`).
    """
    ctx = DistContext.setup(cfg.device)
    try:
        return _train(cfg, ctx, resume, max_steps, progress and ctx.main, log if ctx.main else (lambda s: None))
    finally:
        ctx.close()


def _resume_or_start(cfg: TrainConfig, resume: bool, ckpt: Path, model, mcfg: ClassifierConfig, opt, ema, spe: int,
                     log) -> tuple[ClassifierConfig, dict | None, tuple[int, int, int, dict]]:
    """The model config, the checkpoint's state (None for a new run) and (step, epoch, batch, epoch sums).

    With ``resume`` the weights, optimiser, EMA and RNG come back from ``ckpt``; a new run refuses a
    folder that already holds one and seeds torch.
    """
    m = cfg.num_branches
    if not resume:
        if checkpoint_exists(ckpt):
            raise ConfigError("out", f"{ckpt.parent} already holds a run; pass `resume` to continue it or choose "
                                     "another folder")
        torch.manual_seed(cfg.seed)
        return mcfg, None, (0, 0, 0, _new_sums(m))
    tensors, state = load_checkpoint(ckpt)
    refuse_weights_only(state, ckpt)
    check_resume(state.get("train_config"), cfg)
    check_runtime(state)
    mcfg = lineage_seed(mcfg, state) if cfg.init_from else mcfg
    step, epoch, batch, saved_sums = progress_from(state, spe)
    load_weights(model, unprefixed("model", tensors), ckpt)
    optimizer_from_tensors(opt, unprefixed("optim", tensors), state.get("optimizer") or {})
    if ema is not None:
        if "ema.__updates__" not in tensors:
            raise ResumeMismatch(f"{ckpt} was trained without `ema`; resume it without `ema`")
        ema.load_tensors(unprefixed("ema", tensors))
    restore_rng_state(tensors)
    sums = {**_new_sums(m), "grad_steps": saved_sums.get("steps", 0), **saved_sums}  # older runs: every step
    log(f"resumed {ckpt}.json at epoch {epoch}, batch {batch}, step {step}")
    return mcfg, state, (step, epoch, batch, sums)


def _train(cfg: TrainConfig, ctx: DistContext, resume: bool, max_steps: int | None, progress: bool, log) -> dict:
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "last"
    check_classifier_training(cfg)  # model, batch and CIFAR-10 within the memory budget before anything is read
    train_set, test_set = load_data(cfg)
    mcfg = cfg.model_config(train_set.num_classes)
    model = build_classifier(mcfg).to(ctx.device)
    if cfg.init_from and not resume:  # before the EMA copies the weights; a resumed run has its own
        init_tensors, init_state = load_checkpoint(cfg.init_from)
        load_weights(model, unprefixed("model", init_tensors), cfg.init_from)
        mcfg = lineage_seed(mcfg, init_state)
    model.train()
    opt = make_optimizer(cfg, model)
    ema = WeightEMA(model, cfg.ema) if cfg.ema > 0 else None
    drop_last = len(train_set) > cfg.batch_size
    spe = train_set.num_batches(cfg.batch_size, drop_last=drop_last)
    m = cfg.num_branches
    mcfg, state, (step, epoch, batch, sums) = _resume_or_start(cfg, resume, ckpt, model, mcfg, opt, ema, spe, log)
    net = ctx.wrap(model)  # DDP around the model under torchrun, else the model
    floor = soft_target_floor(train_set.num_classes) if cfg.clamp else 0.0
    if ctx.main:
        atomic_write_json(out / "config.json", {
            **asdict(cfg), "departures": cfg.departures(), "resolved_lr": cfg.peak_lr, "resolved_weight_decay": cfg.wd, "loss_floor": floor,
            "model": mcfg.to_dict(), "train_images": len(train_set), "test_images": len(test_set),
            "world_size": ctx.world})
    rows, diag = epoch_logs(state, out, epoch)  # the checkpoint's, whatever the files hold
    last_row: dict = rows[-1] if rows else {}
    info = lambda: {"step": step, "epoch": epoch, "batch": batch, "epoch_sums": dict(sums), "metrics": last_row,  # noqa: E731
                    "rows": rows, "diagnostics": diag}
    if resume and ctx.main:  # a kill after the checkpoint's rename left them behind it: write them from it
        refresh_state_copy(ckpt)
        write_epoch_files(out, rows, diag, CSV_FIELDS, ema if batch == 0 and epoch > 0 else None,
                          (cfg, mcfg, train_set, info()))
    tracker = make_tracker(cfg.track_every, model, test_set, out, step, ctx.device) if ctx.main else None
    forward = net  # torch.compile'd at the first step with cfg.compile
    autocast = lambda x: torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")  # noqa: E731

    while epoch < cfg.epochs and not loss_reached(cfg.stop_loss, floor, last_row):
        bar = tqdm(total=spe, initial=batch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0, leave=False)
        t0 = time.perf_counter()
        for x, y in _epoch_batches(cfg, train_set, epoch, batch, drop_last):
            lr = lr_at(cfg, step, spe)
            tot, gn, forward = _train_step(cfg, ctx, model, net, forward, autocast, opt, ema, tracker, x, y, lr,
                                           sample_grads=batch == 0 or step % GRAD_NORM_EVERY == 0,
                                           at=f"at epoch {epoch + 1}, step {step + 1}", ckpt=ckpt)
            logs = {"loss": tot[0] / tot[4], "acc": tot[1] / tot[4]}
            step, batch = step + 1, batch + 1
            for k, v in zip(("loss", "acc", "clamped", "dead", "n"), tot):
                sums[k] += int(v) if k == "n" else v
            sums["steps"] += 1
            if gn is not None:  # (M,) ‖∂L/∂θ_k‖, sampled
                sums["grad_norm"] = [a + g for a, g in zip(sums["grad_norm"], gn)]
                sums["grad_steps"] += 1
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.3f}", acc=f"{logs['acc']:.2f}", lr=f"{lr:.3g}", refresh=False)
            stop = max_steps is not None and step >= max_steps
            if stop or (cfg.save_every and step % cfg.save_every == 0):
                sums["time"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                _guarded_save(ckpt, model, opt, cfg, mcfg, train_set, info(), ema, ctx)
            if stop:
                bar.close()
                return {**last_row, "stopped_early": True, "step": step}
        bar.close()
        sums["time"] += time.perf_counter() - t0
        if not ctx.main:  # rank 0 evaluates and writes; all ranks hold the same all-reduced loss (--stop-loss)
            last_row = {"train_loss": round(sums["loss"] / max(1, sums["n"]), 5)}
            epoch, batch, sums = epoch + 1, 0, _new_sums(m)
            ctx.barrier()
            continue
        last_row, epoch_diag = _end_epoch(cfg, model, ema, test_set, sums, epoch, step, spe, ckpt)
        rows.append(last_row)
        diag.append(epoch_diag)
        epoch, batch = epoch + 1, 0
        sums = _new_sums(m)
        _guarded_save(ckpt, model, opt, cfg, mcfg, train_set, info(), ema, ctx)  # carries rows, diag and EMA
        write_epoch_files(out, rows, diag, CSV_FIELDS, ema, (cfg, mcfg, train_set, info()))
        extra = f" | ema acc {last_row['ema_test_acc']:.4f}" if ema is not None else ""
        extra += f" | tta acc {last_row['tta_test_acc']:.4f}" if cfg.tta else ""
        log(f"epoch {last_row['epoch']}/{cfg.epochs}: train loss {last_row['train_loss']:.4f} (floor {floor:.4f}) "
            f"acc {last_row['train_acc']:.4f} | test loss {last_row['test_loss']:.4f} acc {last_row['test_acc']:.4f}{extra} | "
            f"clamped {last_row['test_clamped']:.3f} dead {last_row['test_dead']:.3f} | "
            f"{last_row['active']} active {last_row['silent']} silent | {last_row['epoch_time_s']} s")
        ctx.barrier()
    return {**last_row, "stopped_early": False, "step": step, "loss_reached": loss_reached(cfg.stop_loss, floor, last_row)}


def _end_epoch(cfg: TrainConfig, model, ema, test_set: ImageSet, sums: dict, epoch: int, step: int, spe: int,
               ckpt: Path) -> tuple[dict, dict]:
    """Evaluate after epoch ``epoch`` (0-based): its metrics row (the CSV's) and its diagnostics entry."""
    ev = evaluate(model, test_set, cfg.clamp, cfg.eval_batch_size, branches=True, precision=cfg.precision)
    if not math.isfinite(ev["test_loss"]):
        raise NonFiniteLoss(f"non-finite test loss after epoch {epoch + 1}; stopped, {kept_note(ckpt)}")
    n = max(1, sums["n"])
    gmean = torch.tensor(sums["grad_norm"]) / max(1, sums["grad_steps"])  # (M,) mean over the sampled steps
    branched = as_branched(model)
    last_row = {"epoch": epoch + 1, "step": step, "lr": round(lr_at(cfg, step - 1, spe), 6),
                "train_loss": round(sums["loss"] / n, 5), "train_acc": round(sums["acc"] / n, 5),
                "test_loss": round(ev["test_loss"], 5), "test_acc": round(ev["test_acc"], 5),
                "epoch_time_s": round(sums["time"], 1), "images_per_s": round(sums["n"] / max(sums["time"], 1e-9), 1),
                "train_clamped": round(sums["clamped"] / n, 5), "train_dead": round(sums["dead"] / n, 5),
                "test_clamped": round(ev["test_clamped"], 5), "test_dead": round(ev["test_dead"], 5),
                **{k: round(v, 6) for k, v in grad_norm_summary(gmean).items()},
                "active": ev["active"], "silent": ev["silent"]}
    if ema is not None:
        with ema.applied(model):
            e = evaluate(model, test_set, cfg.clamp, cfg.eval_batch_size, tta=cfg.tta, precision=cfg.precision)
            if cfg.tta:
                last_row["tta_test_acc"] = round(e["test_acc"], 5)
                e = evaluate(model, test_set, cfg.clamp, cfg.eval_batch_size, precision=cfg.precision)
        last_row.update(ema_test_loss=round(e["test_loss"], 5), ema_test_acc=round(e["test_acc"], 5))
    elif cfg.tta:
        last_row["tta_test_acc"] = round(evaluate(model, test_set, cfg.clamp, cfg.eval_batch_size, tta=True,
                                                  precision=cfg.precision)["test_acc"], 5)
    return last_row, {"epoch": epoch + 1, "branch_grad_norm": gmean.tolist(), "branch_norm": ev["branch_norm"],
                      "branch_weight_norm": branched.branch_weight_norms(), "branch_head_norm": branched.branch_weight_norms("head."),
                      "weight_decay_exponent": decay_exponents(cfg, spe)[epoch], "test_saturated": ev["test_saturated"]}


def _train_step(cfg: TrainConfig, ctx: DistContext, model, net, forward, autocast, opt, ema, tracker, x, y, lr: float, *,
                sample_grads: bool, at: str, ckpt: Path):
    """One optimiser step on all branches at learning rate ``lr``.

    Returns the step's statistics summed over ranks (loss, acc, clamped, dead, n: one host sync), the
    per-branch gradient norms when ``sample_grads`` (else None) and the forward for the next step
    (``net``, torch.compile'd at the first step with ``cfg.compile``).
    """
    for g in opt.param_groups:
        g["lr"] = lr
    x, y = ctx.shard(x, y)  # this process's part of the batch
    with autocast(x):
        if cfg.compile and forward is net:  # at the first step: pack eagerly, then compile
            forward = compile_after_warmup(net, model, x, compile_mode=cfg.compile_mode)
        f = forward(x)  # (B, C) = Σ_k v_k(x)
    loss, stats = training_loss(f, y, cfg.clamp, cfg.clamp_grad)  # fp32 loss; (4,) statistics
    b = len(y)
    tot = ctx.sum(torch.cat([stats * b, stats.new_tensor([b])]))  # Σ ranks; the step's one host sync
    mean_loss = tot[0] / tot[4]
    if not math.isfinite(mean_loss):
        raise NonFiniteLoss(f"non-finite loss ({mean_loss}) {at} (lr {lr:.3g}); stopped, {kept_note(ckpt)}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if tracker is not None:  # every N steps: eval-mode measures, gradient norms from .grad (RNG restored)
        tracker.step(model, (x, y))
    gn = branch_grad_norms(model).tolist() if sample_grads else None
    if cfg.weight_decay_mode == "decoupled":
        decay_weights(model.parameters(), cfg.wd, lr / cfg.peak_lr)
    opt.step()
    if ema is not None:
        ema.update(model)
    return tot, gn, forward


def _guarded_save(ckpt, model, opt, cfg, mcfg, data, progress, ema=None, ctx=None) -> None:
    if not _finite_params(model):
        raise NonFiniteLoss(f"non-finite weights at step {progress['step']}; stopped, {kept_note(ckpt)}")
    if ctx is None or ctx.main:
        save_run(ckpt, model, opt, cfg, mcfg, data, progress, ema)


__all__ = ["TrainConfig", "train", "evaluate", "lr_at", "NonFiniteLoss", "load_data", "CheckpointError",
           "make_optimizer", "CSV_FIELDS"]
