"""Training the branched class-transfer GAN (paper §7, App. E).

One step, as in StarGAN-v2 with only the adversarial and R1 terms (App. E):

1. a batch (x, y) of real images and their domains, a random target domain ỹ;
2. D step: ``discriminator_loss(D(x, y), D(G(x, ỹ), ỹ), x, λ_R1)``;
3. G step: ``generator_loss(D(G(x, ỹ), ỹ))`` with G = R + Σ_k v_k (eq. 15);
4. EMA of G (the sampled generator).

G's branches and D start from StarGAN-v2's ``he_init`` (``init="he"``): under
PyTorch's default initialisation D's logits start at ≈ 0.01–0.04 and D stayed at
chance (d/real = d/fake = log 2) in every run (docs/gan.md). ``precision="bf16"``
runs both passes under ``torch.autocast(bfloat16)`` on CPU or CUDA with fp32
weights, Adam state and losses.

Everything random in a step (batch, flips, ỹ) comes from a generator seeded by (seed, rank, step), so
``resume`` continues exactly; the global torch RNG, unused by a step, is seeded from ``seed`` too, so the
``rng.*`` a checkpoint saves (and a resume restores) is the same in every run of a seed. The log line of
step s (a multiple of ``log_every``) averages the ``log_every`` steps up to s, across a resume too. Under
``torchrun`` (WORLD_SIZE > 1) G and D are wrapped in DistributedDataParallel (gloo on CPU, nccl on GPU)
by the classifier's :class:`~branchspec.train.distributed.DistContext`,
batches come from a :class:`DistributedSampler`, and only rank 0 writes. ``--batch-size`` is per process.

Outputs in RUN/: ``config.json``, ``log.jsonl``, ``samples/step-NNNNNN.png``
(input | re-generation | R) and ``checkpoints/last`` + ``checkpoints/step-NNNNNN``
(safetensors + JSON, atomic). The weights under ``model.*`` are the EMA
generator and the JSON holds ``registry.model_spec("generator", ...)``, so
``branchspec.loading.load_model(RUN/checkpoints/last)`` returns a sampling-ready model;
``gen.*``, ``disc.*``, ``opt_g.*``, ``opt_d.*`` hold the full training state.

Example:
    >>> import tempfile
    >>> cfg = GanTrainConfig(img_size=16, num_branches=2, steps=1, batch_size=2, base_width=4, max_width=8,
    ...                      style_dim=4, d_base_width=4, d_max_width=8, n_per_domain=2, engine="loop")
    >>> path = train_gan(cfg, tempfile.mkdtemp(), progress=False)
    >>> path.name
    'last.json'
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from branchspec.compiling import compile_after_warmup
from branchspec.data.domains import load_domains
from branchspec.data.imageset import flip_where
from branchspec.data.folders import DomainImages
from branchspec.errors import ConfigError, NonFiniteLoss
from branchspec.io import append_text, atomic_write_json
from branchspec.models.discriminator import Discriminator
from branchspec.models.generator import build_generator, generator_labels
from branchspec.models.registry import model_spec
import branchspec.gan.losses as gan_losses
from branchspec.train.ema import ema_update, warmup_decay
from branchspec.train.distributed import DistContext
from branchspec.checkpoint import (
    kept_note, load_checkpoint, load_weights, optimizer_from_tensors, optimizer_to_tensors,
    prefixed, restore_rng_state, rng_state_tensors, save_checkpoint, state_int, unprefixed,
)
from branchspec.train.export import refuse_weights_only
from branchspec.gan.config import PRECISIONS, RESUMABLE_CHANGES, GanTrainConfig
from branchspec.gan.runfiles import (
    check_resume, log_window_from, make_gan_tracker, rotate_checkpoints, save_image_grid, save_sample_grid, trim_log,
)
from branchspec.train.memory import check_gan_training
from branchspec.seeds import derive_seed, sequence_seed

__all__ = ["GanTrainConfig", "GanTrainer", "NonFiniteLossError", "PRECISIONS", "RESUMABLE_CHANGES", "run_training",
           "save_image_grid", "train_gan"]

NonFiniteLossError = NonFiniteLoss  # the name train_gan has always raised (errors.NonFiniteLoss)


def _step_generator(seed: int, rank: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(sequence_seed(seed, rank, step))


class GanTrainer:
    """The training state of one process; :func:`train_gan` drives it."""

    def __init__(self, cfg: GanTrainConfig, out_dir: str | os.PathLike, progress: bool = True,
                 resume: bool = False, data: DomainImages | None = None) -> None:
        self.cfg, self.out = cfg, Path(out_dir)
        self.ctx = DistContext.setup(cfg.device)  # the torchrun process group (if any) and this process's device
        self.world, self.rank, self.device, self.main = self.ctx.world, self.ctx.rank, self.ctx.device, self.ctx.main
        self.bf16 = cfg.precision == "bf16"  # autocast on CPU and CUDA; weights, Adam state, losses stay fp32
        self.progress = progress and self.main
        check_gan_training(cfg)  # model and batch within the memory budget before the data is read …
        if data is None:
            data = load_domains(cfg.data, cfg.img_size, self.progress, cfg.seed, cfg.n_per_domain)
        check_gan_training(cfg, len(data.domains), data.images.numel())  # … and with the data before the models
        self.held_out: DomainImages | None = None
        if cfg.holdout:
            data, self.held_out = data.split_holdout(cfg.holdout)
        self.data = data
        if len(self.data) < self.world:
            raise ConfigError("data", f"{len(self.data)} images cannot be shared by {self.world} processes")
        nd = len(self.data.domains)
        self.gcfg = cfg.generator_config(nd)
        self.G = build_generator(self.gcfg).to(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(cfg.seed, "gan", "discriminator"))
            self.D = Discriminator(cfg.discriminator_config(nd)).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval()
        adam = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
        self.opt_g = torch.optim.Adam(self.G.parameters(), **adam)
        self.opt_d = torch.optim.Adam(self.D.parameters(), **{**adam, "lr": cfg.d_lr or cfg.lr})
        self.step = 0
        self.last_logs: dict[str, float] = {}
        self.log_window: dict[str, list[float]] = {}  # losses since the last multiple of log_every
        self.ckpt_dir = self.out / "checkpoints"
        torch.manual_seed(derive_seed(cfg.seed, "gan", "global"))  # unused by a step; saved, so deterministic
        if resume:
            self.load(self.ckpt_dir / "last")
        self.G_train, self.D_train = self.ctx.wrap(self.G), self.ctx.wrap(self.D)  # DDP when world > 1
        self.channels_last = os.environ.get("BRANCHSPEC_NCHW") is None  # oneDNN's / cuDNN's faster conv layout
        for net in (self.G, self.D, self.G_ema) if self.channels_last else ():
            net.to(memory_format=torch.channels_last)
        self.G_forward = self.G_train  # replaced by its torch.compile'd form at the first step when cfg.compile
        self._epoch_cache: tuple[int, list[int]] | None = None
        self.sample_idx = self._sample_indices()

    def _epoch_indices(self, epoch: int) -> list[int]:
        from torch.utils.data import DistributedSampler

        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            sampler = DistributedSampler(range(len(self.data)), num_replicas=self.world, rank=self.rank,
                                         shuffle=True, seed=self.cfg.seed, drop_last=True)
            sampler.set_epoch(epoch)
            self._epoch_cache = (epoch, list(sampler))
        return self._epoch_cache[1]

    def batch_indices(self, step: int) -> Tensor:
        """The indices of this process's batch at ``step``: consecutive slices of sampler epochs."""
        b = self.cfg.batch_size
        per_epoch = len(self._epoch_indices(0))
        out = []
        for pos in range(step * b, step * b + b):
            out.append(self._epoch_indices(pos // per_epoch)[pos % per_epoch])
        return torch.tensor(out, dtype=torch.int64)

    def _sample_indices(self, per_domain: int = 3) -> Tensor:
        idx = [torch.nonzero(self.data.labels == d).flatten()[:per_domain] for d in range(len(self.data.domains))]
        return torch.cat(idx)

    def _layout(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _reduced(self, logs: dict[str, float]) -> dict[str, float]:
        if self.world == 1:
            return logs
        keys = sorted(logs)
        total = self.ctx.sum(torch.tensor([logs[k] for k in keys], dtype=torch.float64, device=self.device))
        return {k: v / self.world for k, v in zip(keys, total)}

    def _check_finite(self, logs: dict[str, float]) -> None:
        bad = {k: v for k, v in logs.items() if not np.isfinite(v)}
        if bad:
            name, val = next(iter(bad.items()))
            raise NonFiniteLoss(f"non-finite loss at step {self.step + 1} ({name}={val}); stopped, "
                                f"{kept_note(self.ckpt_dir / 'last')}")

    def _step(self, opt: torch.optim.Optimizer, loss: Tensor, logs: dict[str, float]) -> dict[str, float]:
        """Logs averaged over processes and checked finite (before any weight moves), then one optimiser step."""
        logs = self._reduced(logs)
        self._check_finite(logs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return logs

    def train_step(self) -> dict[str, float]:
        """One D step and one G step (App. E), then the EMA update."""
        cfg, dev = self.cfg, self.device
        gen = _step_generator(cfg.seed, self.rank, self.step)
        idx = self.batch_indices(self.step)
        x, y = self.data.batch(idx, dev)  # (B, C, S, S), (B,)
        b = x.shape[0]
        if cfg.flip:
            x = flip_where(x, (torch.rand(b, generator=gen) < 0.5).to(dev))
        y_trg = torch.randint(len(self.data.domains), (b,), generator=gen).to(dev)  # ỹ
        if cfg.same_domain:
            keep = (torch.rand(b, generator=gen) < cfg.same_domain).to(dev)
            y_trg = torch.where(keep, y, y_trg)

        # G(x, ỹ) once: G does not change during the D step, so the D step's (detached) fake and the
        # G step's fake are the same tensor (StarGAN-v2 computes it twice; the values are identical)
        labels = generator_labels(self.G, y, y_trg)  # ỹ (B,), or (y, ỹ) pairs (B, 2) when source-aware
        if self.cfg.compile and self.G_forward is self.G_train:
            with self._autocast():  # packs the branches eagerly, so compile sees the packed net
                self.G_forward = compile_after_warmup(self.G_train, self.G_train, self._layout(x), labels,
                                                      compile_mode=self.cfg.compile_mode)
        with self._autocast():
            x_fake = self.G_forward(self._layout(x), labels)  # (B, C, S, S)

        # D step: real (x, y) vs fake (G(x, ỹ), ỹ), R1 on reals (every r1_every-th step, scaled: lazy R1)
        r1_weight = cfg.r1 * cfg.r1_every if self.step % cfg.r1_every == 0 else 0.0
        x_real = self._layout(x.detach()).requires_grad_(r1_weight > 0)
        with self._autocast():
            out = self.D_train(torch.cat([x_real, x_fake.detach().float()]), torch.cat([y, y_trg]),
                               classes=cfg.cls_weight > 0)
        logits, cls = out if cfg.cls_weight > 0 else (out, None)  # (2B,), (2B, D) domain classes
        logits = logits.float()  # losses in fp32 (the R1 gradient too, see gan_losses)
        d_loss, d_logs = gan_losses.discriminator_loss(logits[:b], logits[b:], x_real, r1_weight)
        if cls is not None:  # AC-GAN departure: D classifies the domain of reals
            d_cls = gan_losses.domain_class_loss(cls[:b], y)
            d_loss = d_loss + cfg.cls_weight * d_cls
            d_logs["d/cls"] = d_cls.item()
        d_logs = self._step(self.opt_d, d_loss, d_logs)

        # G step: non-saturating adversarial loss through a frozen (just updated) D
        self.D.requires_grad_(False)
        try:
            with self._autocast():
                out = self.D(x_fake.float(), y_trg, classes=cfg.cls_weight > 0)
            fake_logits, cls = out if cfg.cls_weight > 0 else (out, None)  # (B,), (B, D)
            g_loss, g_logs = gan_losses.generator_loss(fake_logits.float())
            if cls is not None:  # AC-GAN departure: fakes must be classified as their target ỹ
                g_cls = gan_losses.domain_class_loss(cls, y_trg)
                g_loss = g_loss + cfg.cls_weight * g_cls
                g_logs["g/cls"] = g_cls.item()
            if cfg.rec_weight > 0:  # departure: G(x, y) pulled towards x on own-domain samples
                g_rec = gan_losses.regeneration_loss(x_fake, x, y_trg, y)
                g_loss = g_loss + cfg.rec_weight * g_rec
                g_logs["g/rec"] = g_rec.item()
            g_logs = self._step(self.opt_g, g_loss, g_logs)
        finally:
            self.D.requires_grad_(True)
        ema_update(self.G_ema, self.G, warmup_decay(cfg.ema, self.step))
        self.step += 1
        self.last_logs = {**d_logs, **g_logs}
        return self.last_logs

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        og, og_meta = optimizer_to_tensors(self.opt_g)
        od, od_meta = optimizer_to_tensors(self.opt_d)
        tensors = {
            **prefixed("model", self.G_ema.state_dict()),
            **prefixed("gen", self.G.state_dict()),
            **prefixed("disc", self.D.state_dict()),
            **prefixed("opt_g", og), **prefixed("opt_d", od),
            **rng_state_tensors(),
        }
        state = {
            "model": model_spec("generator", self.gcfg.to_dict()),
            "domains": list(self.data.domains),
            "img_size": self.cfg.img_size,
            "step": self.step,
            "train_config": self.cfg.to_dict(),
            "discriminator": self.cfg.discriminator_config(len(self.data.domains)).to_dict(),
            "opt_g": og_meta, "opt_d": od_meta,
            "data": {"source": self.data.source, "images": len(self.data), "skipped": self.data.skipped,
                     "per_domain": self.data.counts()},
            "world_size": self.world,
            "held_out": self._held_out_record(),
            "losses": self.last_logs,
            "log_window": self.log_window,
        }
        return tensors, state

    def _held_out_record(self) -> dict[str, Any] | None:
        h = self.held_out
        return None if h is None else {"per_domain": self.cfg.holdout, "files": h.files, "labels": h.labels.tolist()}

    def save(self) -> Path:
        """Write checkpoints/last and checkpoints/step-NNNNNN (rank 0 only); returns last.json."""
        tensors, state = self.state()
        save_checkpoint(self.ckpt_dir / f"step-{self.step:06d}", tensors, state)
        last = save_checkpoint(self.ckpt_dir / "last", tensors, state)
        rotate_checkpoints(self.ckpt_dir, self.cfg.keep_last)
        return last

    def load(self, path: str | os.PathLike) -> None:
        """Restore the full training state of a checkpoint written by :meth:`save`."""
        tensors, state = load_checkpoint(path, device=self.device)
        refuse_weights_only(state, path)
        check_resume(state, self.cfg, self.data, path)  # same config, domains, data, runtime
        step = state_int(state, "step", path)
        for net, prefix in ((self.G, "gen"), (self.G_ema, "model"), (self.D, "disc")):
            load_weights(net, unprefixed(prefix, tensors), path)
        optimizer_from_tensors(self.opt_g, unprefixed("opt_g", tensors), state["opt_g"])
        optimizer_from_tensors(self.opt_d, unprefixed("opt_d", tensors), state["opt_d"])
        self.step = step
        losses = state.get("losses")
        self.last_logs = dict(losses) if isinstance(losses, dict) else {}
        self.log_window = log_window_from(state.get("log_window", {}), path, step, self.cfg.log_every)
        restore_rng_state(tensors)

    @torch.no_grad()
    def save_samples(self) -> Path:
        """A PNG grid, one row per sample image: input | re-generation (own domain) | R."""
        x, y = self.data.batch(self.sample_idx, self.device)
        return save_sample_grid(self.G_ema, x, generator_labels(self.G_ema, y, y), self.out, self.step)


def train_gan(cfg: GanTrainConfig, out_dir: str | os.PathLike, progress: bool = True, resume: bool = False,
              data: DomainImages | None = None) -> Path:
    """Train (or, with ``resume``, continue) a branched GAN; returns the last checkpoint's JSON path.

    ``data`` overrides ``cfg.data`` with images already in memory (demo, tests).
    Raises :class:`~branchspec.errors.NonFiniteLoss` (last good checkpoint kept) on NaN/inf.
    """
    trainer = GanTrainer(cfg, out_dir, progress=progress, resume=resume, data=data)
    try:
        return run_training(trainer)
    finally:
        trainer.ctx.close()


def run_training(trainer: GanTrainer) -> Path:
    """Drive ``trainer`` from its current step to ``cfg.steps``; rank 0 writes. Returns last.json."""
    cfg, out = trainer.cfg, trainer.out
    last = out / "checkpoints" / "last.json"
    if trainer.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json",
            {"train": cfg.to_dict(), "departures": cfg.departures(), "generator": trainer.gcfg.to_dict(),
             "domains": trainer.data.domains,
             "data": {"source": trainer.data.source, "images": len(trainer.data), "skipped": trainer.data.skipped,
                      "skipped_files": trainer.data.skipped_files},
             "held_out": trainer._held_out_record(),
             "world_size": trainer.world, "device": str(trainer.device)})
        if trainer.data.skipped:
            print(f"train-gan: skipped {trainer.data.skipped} unreadable image(s)", flush=True)
    bar = None
    if trainer.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=trainer.step, desc="train-gan", unit="step")
    t0 = time.perf_counter()
    saved_at = sampled_at = -1
    log = out / "log.jsonl" if trainer.main else None
    if log:
        trim_log(log, trainer.step)  # a line written after the checkpoint a resumed run starts from goes
    tracker = make_gan_tracker(trainer, cfg.track_every) if trainer.main and cfg.track_every else None
    window = trainer.log_window  # losses since the last log line (restored on resume); the line holds their means
    try:
        while trainer.step < cfg.steps:
            logs = trainer.train_step()
            if tracker is not None:  # eval-mode measures on a fixed batch; gradient norms from G's .grad
                tracker.step(trainer.G, None)
            s = trainer.step
            for k, v in logs.items():
                window.setdefault(k, []).append(v)
            if log and (s % cfg.log_every == 0 or s == cfg.steps):  # the run's last line may fall between
                means = {k: float(np.mean(v)) for k, v in window.items()}
                append_text(log, json.dumps({"step": s, "time_s": round(time.perf_counter() - t0, 3), **means}) + "\n")
            if s % cfg.log_every == 0:  # a window is always the log_every steps up to a multiple of log_every
                window.clear()
            if bar:
                bar.update(1)
                bar.set_postfix({k.split("/")[-1]: f"{v:.3f}" for k, v in logs.items() if k in ("d/loss", "g/adv")})
            if trainer.main and cfg.sample_every and s % cfg.sample_every == 0:
                trainer.save_samples()
                sampled_at = s
            if trainer.main and cfg.ckpt_every and s % cfg.ckpt_every == 0:
                last, saved_at = trainer.save(), s
        if trainer.main and sampled_at != trainer.step:
            trainer.save_samples()
        if trainer.main and saved_at != trainer.step:
            last = trainer.save()
    finally:
        if bar:
            bar.close()
    trainer.ctx.barrier()
    return last
