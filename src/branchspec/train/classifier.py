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

import csv
import io
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from branchspec.data.imageset import ImageSet, load_source
from branchspec.errors import BranchspecError
from branchspec.models.registry import model_spec
from branchspec.models.resnet import DEFAULT_WIDTH, ClassifierConfig, build_classifier
from branchspec.io import atomic_write_json, atomic_write_text
from branchspec.train.checkpoint import (
    CheckpointError,
    check_runtime,
    checkpoint_exists,
    load_checkpoint,
    load_weights,
    optimizer_from_tensors,
    optimizer_to_tensors,
    prefixed,
    restore_rng_state,
    rng_state_tensors,
    save_checkpoint,
    state_int,
    unprefixed,
)
from branchspec.train.losses import classifier_loss

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "onecycle", "constant")
CSV_FIELDS = ["epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_time_s", "images_per_s"]


class NonFiniteLoss(BranchspecError):
    """The loss became NaN/inf; the last good checkpoint was left untouched."""


@dataclass(frozen=True)
class TrainConfig:
    """One classifier training run (written to RUN/config.json)."""

    data: str  # "digits" or a cifar-10-batches-py folder
    out: str  # run folder: config.json, metrics.csv, last.{json,safetensors}
    num_branches: int = 16  # M (§6: 16)
    width: float = DEFAULT_WIDTH  # branch base width (≈ 0.08 M parameters per branch)
    clamp: bool = True  # paper loss (clamp f to [-1, 1], ±1 soft target); False = one-hot CE
    engine: str = "auto"  # Branched engine
    epochs: int = 60  # length of the schedule
    batch_size: int = 128
    optimizer: str = "sgd"  # "sgd" (momentum 0.9, Nesterov) or "adamw"
    lr: float | None = None  # peak learning rate; None -> 0.02 (sgd) / 2e-3 (adamw), see peak_lr
    weight_decay: float | None = None  # None -> 5e-4 (sgd) / 0.05 (adamw)
    momentum: float = 0.9  # SGD momentum
    schedule: str = "cosine"  # "cosine" (with warm-up), "onecycle" or "constant"
    warmup_epochs: float = 1.0  # linear warm-up length for "cosine"
    augment: bool = True  # random crop (pad 4) + horizontal flip
    subset: int | None = None  # train on the first N training images
    seed: int = 0  # initialisation, data order and augmentation
    eval_batch_size: int = 500
    save_every: int = 0  # also checkpoint every N steps (0: only at epoch ends)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name in ("num_branches", "epochs", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.subset is not None and self.subset < 1:
            raise ValueError(f"subset must be >= 1, got {self.subset}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    @property
    def peak_lr(self) -> float:
        """Default SGD lr 0.02, not the usual 0.1: all M branches receive the same
        collaborative gradient (eq. 10), so one step moves f about M times as far
        as one branch, and at 0.1 the logits run past the clamp, where the
        gradient is zero (a 40-step CIFAR-10 probe at constant lr 0.1 stayed at
        loss 2.50, above the 2.30 of f = 0)."""
        return self.lr if self.lr is not None else (0.02 if self.optimizer == "sgd" else 2e-3)

    @property
    def wd(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return 5e-4 if self.optimizer == "sgd" else 0.05

    def model_config(self, num_classes: int) -> ClassifierConfig:
        return ClassifierConfig(self.num_branches, self.width, num_classes, 3, self.clamp, self.engine, self.seed)


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of global step ``step`` (the whole scheduler state is the step)."""
    total = max(1, cfg.epochs * steps_per_epoch)
    peak = cfg.peak_lr
    t = min(step, total) / total
    if cfg.schedule == "constant":
        return peak
    if cfg.schedule == "onecycle":  # 30 % linear ramp from peak/25, then cosine to peak/1e4
        up = 0.3
        if t < up:
            return peak / 25 + (peak - peak / 25) * t / up
        return peak / 1e4 + (peak - peak / 1e4) * 0.5 * (1 + math.cos(math.pi * (t - up) / (1 - up)))
    warm = cfg.warmup_epochs * steps_per_epoch
    if step < warm:
        return peak * (step + 1) / warm
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1.0, total - warm)))


def make_optimizer(cfg: TrainConfig, model) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.peak_lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.wd)
    return torch.optim.AdamW(model.parameters(), lr=cfg.peak_lr, weight_decay=cfg.wd)


def load_data(cfg: TrainConfig) -> tuple[ImageSet, ImageSet]:
    """Training set (first ``subset`` images) and test set normalised with the training statistics."""
    train_set = load_source(cfg.data, train=True)
    if cfg.subset is not None:
        train_set = train_set.subset(cfg.subset)
    test = load_source(cfg.data, train=False)
    test_set = ImageSet(test.images_hwc, test.labels_np, test.class_names, train_set.mean, train_set.std)
    return train_set, test_set


@torch.no_grad()
def evaluate(model, data: ImageSet, clamp: bool, batch_size: int = 500) -> dict[str, float]:
    """Test loss and accuracy (argmax of clamp(f)) in eval mode."""
    was = model.training
    model.eval()
    n, loss_sum, correct = 0, 0.0, 0
    for x, y in data.batches(batch_size, augment=False, prefetch=False):
        f = model(x)  # (B, C)
        loss, logs = classifier_loss(f, y, clamp)
        n += len(y)
        loss_sum += logs["loss"] * len(y)
        correct += round(logs["acc"] * len(y))
    model.train(was)
    return {"test_loss": loss_sum / max(1, n), "test_acc": correct / max(1, n)}


def _finite_params(model) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def _save(path: Path, model, opt, cfg, mcfg, data: ImageSet, progress: dict) -> None:
    otensors, ometa = optimizer_to_tensors(opt)
    tensors = {**prefixed("model", model.state_dict()), **prefixed("optim", otensors), **rng_state_tensors()}
    state = {
        "model": model_spec("classifier", mcfg.to_dict()),
        "train_config": asdict(cfg),
        "optimizer": ometa,
        "data": {"source": cfg.data, "mean": list(data.mean), "std": list(data.std), "class_names": data.class_names},
        **progress,
    }
    save_checkpoint(path, tensors, state)


def _read_rows(path: Path, epoch: int) -> list[dict]:
    """The rows of metrics.csv up to ``epoch`` (a corrupt file is a one-line error)."""
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        return [r for r in rows if int(r["epoch"]) <= epoch]
    except (OSError, UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as exc:
        raise BranchspecError(f"--resume: {path} is corrupt ({type(exc).__name__}: {str(exc)[:100]}); "
                              "restore it or delete it to resume without the earlier rows") from None


def _write_rows(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


# Config fields that may change on resume: they do not change the trajectory (the
# engine does: loop and fused sum in different orders, so it is not here).
_RESUME_MAY_CHANGE = {"out", "save_every", "eval_batch_size"}


def _progress_from(state: dict, spe: int) -> tuple[int, int, int, dict]:
    """``(step, epoch, batch, epoch_sums)`` of a checkpoint, each checked (one-line CheckpointError)."""
    step, epoch, batch = (state_int(state, k, "last") for k in ("step", "epoch", "batch"))
    if batch > spe:
        raise CheckpointError(f"checkpoint: batch {batch} is past the {spe} batches of an epoch")
    sums = state.get("epoch_sums")
    keys = ("loss", "acc", "n", "time")
    if not isinstance(sums, dict) or any(not isinstance(sums.get(k), (int, float)) or isinstance(sums.get(k), bool)
                                         or not math.isfinite(sums[k]) for k in keys):
        raise CheckpointError(f"checkpoint: epoch_sums must hold finite numbers {list(keys)}, got {sums!r:.100}")
    return step, epoch, batch, {k: sums[k] for k in keys}


def _check_resume(saved: dict, cfg: TrainConfig) -> None:
    if not isinstance(saved, dict):
        raise CheckpointError("checkpoint: train_config is missing or not an object; not a train-classifier checkpoint")
    diff = [k for k, v in asdict(cfg).items() if k not in _RESUME_MAY_CHANGE and saved.get(k, v) != v]
    if diff:
        k = diff[0]
        raise BranchspecError(f"--resume: the run was started with {k}={saved[k]!r}, now {getattr(cfg, k)!r}; use the same settings")


def train(cfg: TrainConfig, resume: bool = False, max_steps: int | None = None, progress: bool = True, log=print) -> dict:
    """Train (or resume) a run; returns the last metrics row plus ``"stopped_early"``.

    ``max_steps`` stops after that many global steps (checkpointing there),
    e.g. to time-box a run that ``resume=True`` continues later.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "last"
    train_set, test_set = load_data(cfg)
    mcfg = cfg.model_config(train_set.num_classes)
    model = build_classifier(mcfg)
    model.train()
    opt = make_optimizer(cfg, model)
    spe = train_set.num_batches(cfg.batch_size, drop_last=len(train_set) > cfg.batch_size)
    drop_last = len(train_set) > cfg.batch_size
    step, epoch, batch = 0, 0, 0
    sums = {"loss": 0.0, "acc": 0.0, "n": 0, "time": 0.0}
    if resume:
        tensors, state = load_checkpoint(ckpt)
        _check_resume(state.get("train_config"), cfg)
        check_runtime(state)
        step, epoch, batch, sums = _progress_from(state, spe)
        load_weights(model, unprefixed("model", tensors), ckpt)
        optimizer_from_tensors(opt, unprefixed("optim", tensors), state.get("optimizer") or {})
        restore_rng_state(tensors)
        log(f"resumed {ckpt}.json at epoch {epoch}, batch {batch}, step {step}")
    elif checkpoint_exists(ckpt):
        raise BranchspecError(f"--out: {out} already holds a run; pass --resume to continue it or choose another folder")
    else:
        torch.manual_seed(cfg.seed)
    atomic_write_json(out / "config.json", {**asdict(cfg), "resolved_lr": cfg.peak_lr, "resolved_weight_decay": cfg.wd,
                                            "model": mcfg.to_dict(),
                                            "train_images": len(train_set), "test_images": len(test_set)})
    rows = _read_rows(out / "metrics.csv", epoch)
    last_row: dict = rows[-1] if rows else {}
    info = lambda: {"step": step, "epoch": epoch, "batch": batch, "epoch_sums": dict(sums), "metrics": last_row}  # noqa: E731

    while epoch < cfg.epochs:
        bar = tqdm(total=spe, initial=batch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0, leave=False)
        t0 = time.perf_counter()
        for x, y in train_set.batches(cfg.batch_size, epoch, cfg.seed, augment=cfg.augment, shuffle=True,
                                      start=batch, drop_last=drop_last):
            lr = lr_at(cfg, step, spe)
            for g in opt.param_groups:
                g["lr"] = lr
            f = model(x)  # (B, C) = Σ_k v_k(x)
            loss, logs = classifier_loss(f, y, cfg.clamp)
            if not math.isfinite(logs["loss"]):
                raise NonFiniteLoss(f"non-finite loss ({logs['loss']}) at epoch {epoch + 1}, step {step + 1} (lr {lr:.3g}); "
                                    f"stopped, {_kept(ckpt)}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step, batch = step + 1, batch + 1
            sums["loss"] += logs["loss"] * len(y)
            sums["acc"] += logs["acc"] * len(y)
            sums["n"] += len(y)
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.3f}", acc=f"{logs['acc']:.2f}", lr=f"{lr:.3g}", refresh=False)
            stop = max_steps is not None and step >= max_steps
            if stop or (cfg.save_every and step % cfg.save_every == 0):
                sums["time"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                _guarded_save(ckpt, model, opt, cfg, mcfg, train_set, info())
            if stop:
                bar.close()
                return {**last_row, "stopped_early": True, "step": step}
        bar.close()
        sums["time"] += time.perf_counter() - t0
        ev = evaluate(model, test_set, cfg.clamp, cfg.eval_batch_size)
        if not math.isfinite(ev["test_loss"]):
            raise NonFiniteLoss(f"non-finite test loss after epoch {epoch + 1}; stopped, {_kept(ckpt)}")
        n = max(1, sums["n"])
        last_row = {"epoch": epoch + 1, "step": step, "lr": round(lr_at(cfg, step - 1, spe), 6),
                    "train_loss": round(sums["loss"] / n, 5), "train_acc": round(sums["acc"] / n, 5),
                    "test_loss": round(ev["test_loss"], 5), "test_acc": round(ev["test_acc"], 5),
                    "epoch_time_s": round(sums["time"], 1), "images_per_s": round(sums["n"] / max(sums["time"], 1e-9), 1)}
        rows.append(last_row)
        epoch, batch = epoch + 1, 0
        sums = {"loss": 0.0, "acc": 0.0, "n": 0, "time": 0.0}
        _guarded_save(ckpt, model, opt, cfg, mcfg, train_set, info())
        _write_rows(out / "metrics.csv", rows)
        log(f"epoch {last_row['epoch']}/{cfg.epochs}: train loss {last_row['train_loss']:.4f} acc {last_row['train_acc']:.4f} | "
            f"test loss {last_row['test_loss']:.4f} acc {last_row['test_acc']:.4f} | {last_row['epoch_time_s']} s")
    return {**last_row, "stopped_early": False, "step": step}


def _kept(ckpt: Path) -> str:
    return f"last good checkpoint kept: {ckpt}.json" if checkpoint_exists(ckpt) else "no checkpoint written yet"


def _guarded_save(ckpt, model, opt, cfg, mcfg, data, progress) -> None:
    if not _finite_params(model):
        raise NonFiniteLoss(f"non-finite weights at step {progress['step']}; stopped, {_kept(ckpt)}")
    _save(ckpt, model, opt, cfg, mcfg, data, progress)


def run_config(cfg: TrainConfig, **changes) -> TrainConfig:
    """``cfg`` with fields replaced (validated again)."""
    return replace(cfg, **changes)


__all__ = ["TrainConfig", "train", "evaluate", "lr_at", "NonFiniteLoss", "load_data", "CheckpointError", "run_config"]
