"""The configuration of one GAN training run (paper §7, App. E): :class:`GanTrainConfig`.

A frozen dataclass, the one definition of every ``train-gan`` option (default, help, choices,
validation; the flags are generated from it by :mod:`branchspec.options`), written to
``RUN/config.json`` (with its active departures from the paper) and into every checkpoint;
``--resume`` compares it field by field (:func:`resume_mismatch`).

Example:
    >>> cfg = GanTrainConfig(img_size=32, precision="bf16", keep_last=2, rec_weight=10.0)
    >>> cfg.generator_config(4).num_domains, cfg.precision, cfg.init, cfg.departures()
    (4, 'bf16', 'he', ['rec_weight'])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from branchspec.compiling import compile_mode_option
from branchspec.engines import ENGINE_HELP, ENGINES
from branchspec.errors import ConfigError
from branchspec.models.discriminator import DiscriminatorConfig
from branchspec.models.generator import RESIDUALS, GeneratorConfig
from branchspec.models.layers import INITS, PADDINGS
from branchspec.options import check_fields, departures, option
from branchspec.precision import PRECISIONS, precision_option, resolve_precision  # PRECISIONS: re-exported
from branchspec.checkpoint import CheckpointError, checkpoint_state

# Config fields that may change when resuming (they do not change the trajectory).
# "device" is not among them: CPU and CUDA kernels round differently, so a resume there would not be exact.
RESUMABLE_CHANGES = {"steps", "sample_every", "ckpt_every", "log_every", "keep_last", "track_every"}
# What a checkpoint written before a field existed was trained with (default: the field's default).
LEGACY_VALUES = {"init": "torch", "precision": "fp32", "padding": "zeros"}
DEVICES = ("auto", "cpu", "cuda")
DATA, MODEL, OPT, RUN = "data", "model", "optimisation", "run"  # --help groups


@dataclass(frozen=True)
class GanTrainConfig:
    """One GAN training run (App. E). Written to RUN/config.json and into every checkpoint; each field is one
    ``train-gan`` flag."""

    data: str = option("embedded", "ROOT with ROOT/train/<domain>/*.jpg|*.png (AFHQ / CelebA-HQ layout), a CIFAR-10 "
                                    "python folder (optionally FOLDER:cat,dog), or 'embedded' (scikit-image photographs)",
                       group=DATA)
    img_size: int = option(32, "image side, power of two (paper 256; CPU 32-64)", group=DATA)
    num_branches: int = option(9, "number of branches M (§7)", flag="--branches", group=MODEL)
    steps: int = option(1000, "training steps (a D step and a G step each)", group=OPT)
    batch_size: int = option(8, "images per step per process", group=OPT)
    lr: float = option(1e-4, "Adam learning rate of G, and of D unless --d-lr (StarGAN-v2: 1e-4)", group=OPT)
    d_lr: float | None = option(None, "discriminator Adam learning rate; a larger one is the two-time-scale "
                                      "departure (TTUR), not the paper's", default_help="--lr", departure=True)
    beta1: float = option(0.0, "Adam β1 (StarGAN-v2: 0)", group=OPT)
    beta2: float = option(0.99, "Adam β2 (StarGAN-v2: 0.99)", group=OPT)
    weight_decay: float = option(1e-4, "Adam weight decay (StarGAN-v2: 1e-4)", group=OPT)
    r1: float = option(1.0, "weight λ of the R1 penalty on real images", group=OPT)
    r1_every: int = option(1, "lazy R1 (StyleGAN2): the penalty, scaled by N, on every N-th step only (1: every "
                              "step, the paper)", group=OPT)
    ema: float = option(0.999, "EMA decay of the sampled generator (warm-up: min(ema, (1+t)/(10+t)))", group=OPT)
    residual: str = option("gaussian", "R: Gaussian smoothing or the learnt nonlinear diffusion of App. E, or none",
                           choices=RESIDUALS, group=MODEL)
    sigma: float | None = option(None, "Gaussian sigma in pixels", default_help="max(1, img_size/32)", group=MODEL)
    base_width: int = option(32, "generator branch width after from_rgb", group=MODEL)
    max_width: int = option(128, "generator branch widest layer", group=MODEL)
    num_down: int | None = option(None, "generator down-sampling blocks, 1..log2(img-size)-1",
                                  default_help="max(1, log2(img-size)-4): the bottleneck at 16x16, as StarGAN-v2",
                                  group=MODEL)
    style_dim: int = option(64, "style code size", group=MODEL)
    d_base_width: int = option(32, "discriminator width after from_rgb", group=MODEL)
    d_max_width: int = option(256, "discriminator widest layer", group=MODEL)
    padding: str = option("reflect", "padding of G's 3x3 convolutions: reflect (no border frame in the components) "
                                     "or zeros (StarGAN-v2; generators trained before 2026-12-05)",
                          choices=PADDINGS, group=MODEL)
    init: str = option("he", "initialisation of G's branches and D: StarGAN-v2's he_init or torch's defaults",
                       choices=INITS, group=MODEL)
    engine: str = option("packed", ENGINE_HELP, choices=ENGINES, group=MODEL)
    precision: str = precision_option(RUN)
    compile: bool = option(False, "torch.compile G's training forward (compiles for about a minute; pays with "
                                  "--padding zeros)", group=RUN)
    compile_mode: str = compile_mode_option(RUN)
    seed: int = option(0, "seed of initialisation and data order", group=OPT)
    flip: bool = option(True, "no random horizontal flips", group=DATA)
    n_per_domain: int = option(64, "crops per domain of the embedded data", group=DATA)
    holdout: int = option(0, "hold the last N images (file-name order) of every domain out of training (listed in "
                             "the checkpoint)", group=DATA)
    same_domain: float = option(0.0, "probability that the target domain is the image's own (0: a uniform target, "
                                     "class transfer as in the paper; 1: re-generation only)", departure=True)
    cls_weight: float = option(0.0, "weight of an AC-GAN domain classifier in D that G's outputs must satisfy (0: the "
                                     "paper's adversarial-only loss; docs/gan.md)", departure=True)
    rec_weight: float = option(0.0, "weight of an L1 loss between G(x, y) and x on own-domain samples (0: the paper; "
                                     "docs/gan.md)", departure=True)
    source_aware: bool = option(False, "G's style from (source, target) domain pairs, so it knows re-generation from "
                                       "transfer (off: from the target alone, the paper; docs/gan.md)", departure=True)
    sample_every: int = option(500, "sample grid every N steps (0: at the end)", group=RUN)
    ckpt_every: int = option(1000, "checkpoint every N steps (0: at the end)", group=RUN)
    keep_last: int = option(0, "keep only the newest N step checkpoints (0: all; checkpoints/last is always kept)",
                            group=RUN)
    log_every: int = option(10, "append the mean losses to log.jsonl every N steps", group=RUN)
    track_every: int = option(0, "every N steps record the branches' active / silent counts, mean |corr|, norms "
                                 "and gradient norms on 16 fixed training images sent to the next domain to "
                                 "RUN/tracker.csv, .jsonl (parts.Tracker; 0: off; the trained weights are the "
                                 "same with and without)", metavar="N", group=RUN)
    amp: bool = option(False, "same as --precision bf16 (kept for old scripts; recorded as precision bf16)", group=RUN)
    device: str = option("auto", "device (auto: cuda if available)", choices=DEVICES, group=RUN)

    def __post_init__(self) -> None:
        check_fields(self)  # choices, finite floats
        for name in ("num_branches", "steps", "batch_size", "r1_every", "base_width", "max_width", "style_dim",
                     "d_base_width", "d_max_width", "n_per_domain", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("sample_every", "ckpt_every", "holdout", "keep_last", "track_every"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        if self.img_size < 8 or self.img_size & (self.img_size - 1):
            raise ConfigError("img_size", f"must be a power of two >= 8, got {self.img_size}")
        for name in ("cls_weight", "rec_weight", "r1", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "d_lr", "sigma"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConfigError(name, f"must be > 0, got {getattr(self, name)}")
        for name, hi in (("same_domain", "1]"), ("ema", "1)"), ("beta1", "1)"), ("beta2", "1)")):
            v = getattr(self, name)
            if not (0 <= v <= 1 if hi == "1]" else 0 <= v < 1):
                raise ConfigError(name, f"must be in [0, {hi}, got {v}")
        if self.num_down is not None and not 1 <= self.num_down <= self.img_size.bit_length() - 2:
            raise ConfigError("num_down", f"must be in 1..{self.img_size.bit_length() - 2} for img_size "
                                          f"{self.img_size}, got {self.num_down}")
        if self.precision == "auto":  # the run records what "auto" meant on this machine
            object.__setattr__(self, "precision", resolve_precision("auto", self.device))
        if self.amp:  # the old flag: same as precision="bf16", recorded as such
            object.__setattr__(self, "precision", "bf16")
            object.__setattr__(self, "amp", False)
        try:
            self.generator_config(2)  # what else the generator refuses (max_width < base_width, a too large sigma)
        except ConfigError:
            raise
        except ValueError as exc:
            msg = str(exc)
            name = next((f for f in sorted(self.__dataclass_fields__, key=len, reverse=True) if msg.startswith(f)),
                        None)
            if name is None:
                raise
            raise ConfigError(name, msg[len(name):].lstrip() if msg[len(name):].startswith(" must") else msg) from None

    def departures(self) -> list[str]:
        """The departures from the paper's §7 objective this run switched on (recorded in RUN/config.json)."""
        return departures(self)

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
