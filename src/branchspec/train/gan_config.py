"""The configuration of one GAN training run (paper §7, App. E): :class:`GanTrainConfig`.

A frozen dataclass, written to ``RUN/config.json`` and into every checkpoint;
``--resume`` compares it field by field (:func:`resume_mismatch`).

Example:
    >>> cfg = GanTrainConfig(img_size=32, precision="bf16", keep_last=2)
    >>> cfg.generator_config(4).num_domains, cfg.precision, cfg.init
    (4, 'bf16', 'he')
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from branchspec.models.discriminator import DiscriminatorConfig
from branchspec.models.generator import GeneratorConfig
from branchspec.train.checkpoint import CheckpointError, checkpoint_state

from branchspec.precision import PRECISIONS, resolve_precision
# Config fields that may change when resuming (they do not change the trajectory).
# "device" is not among them: CPU and CUDA kernels round differently, so a resume there would not be exact.
RESUMABLE_CHANGES = {"steps", "sample_every", "ckpt_every", "log_every", "keep_last"}
# What a checkpoint written before a field existed was trained with (default: the field's default).
LEGACY_VALUES = {"init": "torch", "precision": "fp32", "padding": "zeros"}


@dataclass(frozen=True)
class GanTrainConfig:
    """One GAN training run (App. E). Written to RUN/config.json and into every checkpoint."""

    data: str = "embedded"  # "embedded", an image-folder ROOT (ROOT/train/<domain>/) or a CIFAR-10 folder
    img_size: int = 32  # image side (power of two; paper 256, CPU 32-64)
    num_branches: int = 9  # M (§7)
    steps: int = 1000  # optimisation steps (D step + G step each)
    batch_size: int = 8  # images per step and per process
    lr: float = 1e-4  # Adam learning rate for G (and D unless d_lr is set; StarGAN-v2: 1e-4)
    d_lr: float | None = None  # Adam learning rate for D (None: lr); a larger one is the TTUR departure
    beta1: float = 0.0  # Adam β1 (StarGAN-v2: 0)
    beta2: float = 0.99  # Adam β2 (StarGAN-v2: 0.99)
    weight_decay: float = 1e-4  # Adam weight decay (StarGAN-v2: 1e-4)
    r1: float = 1.0  # λ of the R1 penalty on real images
    r1_every: int = 1  # lazy R1 (StyleGAN2): the penalty, scaled by N, on every N-th step only (1: every step, the paper)
    ema: float = 0.999  # EMA decay of the sampled generator (warm-up: min(ema, (1+t)/(10+t)))
    residual: str = "gaussian"  # R: "gaussian" or learnt "diffusion" (App. E) or "none"
    sigma: float | None = None  # Gaussian σ in pixels (None: max(1, img_size/32))
    base_width: int = 32  # generator branch width after from_rgb
    max_width: int = 128  # generator branch widest layer
    num_down: int | None = None  # generator down-sampling blocks (None: bottleneck at 16², as StarGAN-v2)
    style_dim: int = 64  # style code size
    d_base_width: int = 32  # discriminator width after from_rgb
    d_max_width: int = 256  # discriminator widest layer
    padding: str = "reflect"  # G's 3×3 convs: "reflect" (no border frame) or "zeros" (StarGAN-v2; runs before 2026-12-05)
    init: str = "he"  # weights of G's branches and D: StarGAN-v2's "he" init or PyTorch's "torch" defaults
    engine: str = "auto"  # Branched engine, one of branchspec.branched.ENGINES
    precision: str = "auto"  # "fp32", "bf16" (autocast; fp32 weights, optimiser state, losses) or "auto" (resolved here)
    compile: bool = False  # torch.compile the generator's training forward (minutes to compile, faster steps)
    seed: int = 0  # initialisation and data-order seed
    flip: bool = True  # random horizontal flips
    n_per_domain: int = 64  # crops per domain of the embedded data
    holdout: int = 0  # per domain, the last N images (file-name order) are held out of training
    same_domain: float = 0.0  # probability that the target ỹ is the source domain y (0: uniform ỹ, the paper)
    cls_weight: float = 0.0  # λ of the AC-GAN domain-classification losses (0: none, the paper; a departure)
    rec_weight: float = 0.0  # λ of the L1 re-generation loss on samples with ỹ = y (0: none, the paper; a departure)
    source_aware: bool = False  # G's style from (source y, target ỹ) pairs (False: from ỹ alone, the paper; a departure)
    sample_every: int = 500  # write a sample grid every N steps (0: only at the end)
    ckpt_every: int = 1000  # write a checkpoint every N steps (0: only at the end)
    keep_last: int = 0  # keep only the newest N checkpoints/step-* (0: keep all); "last" is always kept
    log_every: int = 10  # append losses to log.jsonl every N steps
    amp: bool = False  # deprecated alias of precision="bf16" (kept for old scripts)
    device: str = "auto"  # "auto" (cuda if available), "cpu" or "cuda"

    def __post_init__(self) -> None:
        for name in ("num_branches", "steps", "batch_size", "r1_every", "base_width", "max_width", "style_dim",
                     "d_base_width", "d_max_width", "n_per_domain", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("sample_every", "ckpt_every", "holdout", "keep_last"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.cls_weight < 0 or self.rec_weight < 0:
            raise ValueError(f"cls_weight and rec_weight must be >= 0, got {self.cls_weight}, {self.rec_weight}")
        if not 0 <= self.same_domain <= 1:
            raise ValueError(f"same_domain must be in [0, 1], got {self.same_domain}")
        if self.d_lr is not None and self.d_lr <= 0:
            raise ValueError(f"d_lr must be > 0, got {self.d_lr}")
        if self.lr <= 0 or self.r1 < 0 or not 0 <= self.ema < 1:
            raise ValueError(f"need lr > 0, r1 >= 0, 0 <= ema < 1; got lr={self.lr}, r1={self.r1}, ema={self.ema}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision == "auto":  # the run records what "auto" meant on this machine
            object.__setattr__(self, "precision", resolve_precision("auto", self.device))
        if self.amp:  # the old flag: same as precision="bf16", recorded as such
            object.__setattr__(self, "precision", "bf16")
            object.__setattr__(self, "amp", False)
        self.generator_config(2)  # validates img_size, residual, sigma, engine, init

    def generator_config(self, num_domains: int) -> GeneratorConfig:
        return GeneratorConfig(
            img_size=self.img_size, num_domains=num_domains, num_branches=self.num_branches,
            base_width=self.base_width, max_width=self.max_width, style_dim=self.style_dim, num_down=self.num_down,
            residual=self.residual, sigma=self.sigma, engine=self.engine, seed=self.seed, init=self.init,
            source_aware=self.source_aware, padding=self.padding,
        )

    def discriminator_config(self, num_domains: int) -> DiscriminatorConfig:
        return DiscriminatorConfig(self.img_size, num_domains, 3, self.d_base_width, self.d_max_width, self.init,
                                   domain_head=self.cls_weight > 0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resume_mismatch(saved: dict[str, Any], now: GanTrainConfig) -> tuple[str, Any, Any] | None:
    """The first field (name, saved value, new value) that ``--resume`` may not change, or None.

    Fields missing from an older checkpoint count as :data:`LEGACY_VALUES` (what
    it was trained with) or else the field's default; a saved ``amp=True`` means bf16.
    """
    fields = GanTrainConfig.__dataclass_fields__
    cur = now.to_dict()
    old = {k: saved.get(k, LEGACY_VALUES.get(k, fields[k].default)) for k in cur}
    if saved.get("amp") and "precision" not in saved:
        old["precision"], old["amp"] = "bf16", False
    for k in sorted(cur):
        if k not in RESUMABLE_CHANGES and old[k] != cur[k]:
            return k, old[k], cur[k]
    return None


def saved_precision(checkpoint) -> str:
    """The precision a run's checkpoint (``…/last``) was trained with; "fp32" if unreadable."""
    try:
        cfg = checkpoint_state(checkpoint).get("train_config", {})
    except (OSError, ValueError, CheckpointError):
        return "fp32"
    if not isinstance(cfg, dict):
        return "fp32"
    return cfg.get("precision", "bf16" if cfg.get("amp") else LEGACY_VALUES["precision"])
