"""The configuration of one §6 classifier training run: :class:`TrainConfig`.

The one definition of every ``train-classifier`` option — default, help, choices and validation —
from which the command's flags are generated (:mod:`branchspec.options`). Written to
``RUN/config.json`` with what the run resolved (:data:`RUN_RECORD_KEYS`) and the departures from the
paper it switched on (:meth:`TrainConfig.departures`); that file can be read back with
``train-classifier --config RUN/config.json``.

Example:
    >>> cfg = TrainConfig(data="digits", out="/tmp/run", num_branches=2, clamp=False)
    >>> cfg.peak_lr, cfg.wd, cfg.engine, cfg.departures()
    (0.02, 0.0005, 'packed', ['clamp'])
"""

from __future__ import annotations

from dataclasses import dataclass

from branchspec.compiling import compile_mode_option
from branchspec.engines import ENGINE_HELP, ENGINES
from branchspec.errors import ConfigError
from branchspec.models.resnet import DEFAULT_WIDTH, ClassifierConfig
from branchspec.options import check_fields, departures, option
from branchspec.precision import PRECISIONS, precision_option, resolve_precision  # ("auto", "fp32", "bf16")
from branchspec.train.distributed import DEVICES
from branchspec.classifier.recipe import FLIPS, SCHEDULES
from branchspec.losses import CLAMP_GRADS

OPTIMIZERS = ("sgd", "adamw")
WD_MODES = ("coupled", "decoupled")
# What RUN/config.json records besides the fields (a --config file may hold them; they are skipped).
RUN_RECORD_KEYS = ("resolved_lr", "resolved_weight_decay", "loss_floor", "model", "train_images", "test_images",
                   "world_size", "departures")

DATA, MODEL, OPT, RUN = "data", "model", "optimisation", "run"  # --help groups


@dataclass(frozen=True)
class TrainConfig:
    """One classifier training run (written to RUN/config.json); each field is one ``train-classifier`` flag."""

    data: str = option(help="a cifar-10-batches-py folder, an image-folder ROOT with ROOT/train/<class>/ and "
                            "ROOT/val/<class>/ (AFHQ / ImageFolder layout; unreadable images skipped and counted), "
                            "or 'digits' (scikit-learn)", group=DATA)
    out: str = option(help="run folder: config.json, metrics.csv, last.{json,safetensors}", cli_only=True, group=RUN)
    num_branches: int = option(16, "M, number of branches (§6: 16)", flag="--branches", group=MODEL)
    width: float = option(DEFAULT_WIDTH, "branch base width (the default: ≈0.08 M parameters per branch)", group=MODEL)
    clamp: bool = option(True, "plain one-hot cross-entropy on unclamped logits, a comparison (the paper: f clamped "
                               "to [-1, 1], cross-entropy against the softmax of the ±1 class vector)", departure=True)
    engine: str = option("packed", ENGINE_HELP, choices=ENGINES, group=MODEL)
    epochs: int = option(60, "epochs of the schedule", group=OPT)
    batch_size: int = option(128, "images per step (under torchrun the global batch, split over the processes)",
                             group=OPT)
    optimizer: str = option("sgd", "sgd (Nesterov, --momentum) or adamw", choices=OPTIMIZERS, group=OPT)
    lr: float | None = option(None, "peak learning rate", default_help="0.02 sgd / 2e-3 adamw", group=OPT)
    weight_decay: float | None = option(None, "weight decay", default_help="5e-4 sgd / 0.05 adamw; 1e-4 decoupled",
                                        group=OPT)
    momentum: float = option(0.9, "SGD momentum", group=OPT)
    schedule: str = option("cosine", "cosine / linear (to 0) after a linear warm-up, onecycle, constant, or flat "
                                     "(warm-up, then constant)", choices=SCHEDULES, group=OPT)
    warmup_epochs: float = option(1.0, "linear warm-up length in epochs", group=OPT)
    augment: bool = option(True, "no random crop (pad 4) / horizontal flip", group=DATA)
    flip: str = option("random", "horizontal flips: random (a coin per image and epoch), alternate (each image "
                                 "flipped every other epoch, airbench) or none", choices=FLIPS, group=DATA)
    weight_decay_mode: str = option("coupled", "coupled: torch's weight_decay; decoupled: θ ← θ(1 − wd·lr/peak lr) "
                                               "each step, so --lr and --weight-decay are independent",
                                    choices=WD_MODES, group=OPT)
    ema: float = option(0.0, "EMA decay of the weights, e.g. 0.99 (0: off); writes RUN/ema and ema_test_acc", group=OPT)
    tta: bool = option(False, "also report flip test-time-augmented accuracy (tta_test_acc)", group=RUN)
    head_init_scale: float | None = option(None, "scale of each branch head's initial weights", default_help="1/sqrt(M)",
                                           group=MODEL)
    clamp_grad: str = option("hard", "gradient of the §6 clamp: hard (the paper) or pass-inward (same loss value; a "
                                     "clamped logit gets its gradient when descent moves it back into [-1, 1]) — not "
                                     "the paper's training", choices=CLAMP_GRADS, departure=True)
    precision: str = precision_option(RUN)
    device: str = option("cpu", "cpu, cuda or auto; under torchrun: gloo on CPU, nccl on CUDA (one GPU per "
                                "LOCAL_RANK)", choices=DEVICES, group=RUN)
    subset: int | None = option(None, "train on the first N training images", group=DATA)
    img_size: int = option(32, "image side for image-folder data: centre square crop, resized (CIFAR and digits "
                               "keep their own)", group=DATA)
    seed: int = option(0, "seed for initialisation, data order and augmentation", group=OPT)
    eval_batch_size: int = option(500, "images per evaluation batch", group=RUN)
    save_every: int = option(0, "also checkpoint every N steps (0: at epoch ends only)", group=RUN)
    init_from: str | None = option(None, "start from the model weights of this checkpoint (e.g. a shipped, "
                                         "weights-only one; same M and width) with a fresh optimiser, schedule and "
                                         "EMA: fine-tuning", metavar="CKPT", group=OPT)
    stop_loss: float | None = option(None, "stop after the first epoch whose train loss is within DELTA of the floor "
                                           "H(p), e.g. 0.05; --epochs is then the most (pair it with --schedule flat, "
                                           "whose lr does not depend on where the run stops): every M of a --sweep "
                                           "trained to the same criterion", metavar="DELTA", group=OPT)
    compile: bool = option(False, "torch.compile the training forward after one eager step that packs the branches "
                                  "(compiles for a minute or two; inductor fuses the packed network's norms and "
                                  "activations)", group=RUN)
    compile_mode: str = compile_mode_option(RUN)
    track_every: int = option(0, "every N steps record active / silent branches, mean |corr|, every branch's norm "
                                 "and gradient norm on 256 test images to RUN/tracker.csv and RUN/tracker.jsonl "
                                 "(parts.Tracker; 0: off; the trained weights are the same with and without)",
                              metavar="N", group=RUN)

    def __post_init__(self) -> None:
        check_fields(self)  # choices, finite floats
        for name in ("num_branches", "epochs", "batch_size", "eval_batch_size", "width"):
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be >= 1, got {getattr(self, name)}")
        if self.img_size < 8:
            raise ConfigError("img_size", f"must be >= 8, got {self.img_size}")
        if self.subset is not None and self.subset < 1:
            raise ConfigError("subset", f"must be >= 1, got {self.subset}")
        for name in ("lr", "stop_loss"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConfigError(name, f"must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "head_init_scale"):
            if getattr(self, name) is not None and not getattr(self, name) >= 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        for name in ("warmup_epochs", "save_every", "track_every"):
            if not getattr(self, name) >= 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        if self.optimizer == "sgd" and not 0 < self.momentum < 1:
            raise ConfigError("momentum", f"must lie in (0, 1) for Nesterov SGD, got {self.momentum}")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError("ema", f"must lie in [0, 1), got {self.ema}")
        if self.clamp_grad != "hard" and not self.clamp:
            raise ConfigError("clamp_grad", "applies to the clamped loss only (clamp=True); drop it or the plain loss")
        if self.precision == "auto":  # recorded resolved: bf16 only on CUDA or a CPU with native bf16
            object.__setattr__(self, "precision", resolve_precision("auto", self.device))

    def departures(self) -> list[str]:
        """The departures from the paper's §6 training this run switched on (``clamp``: False, ``clamp_grad``)."""
        return departures(self)

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
        """Coupled: torch's weight_decay (5e-4 sgd / 0.05 adamw). Decoupled: the per-step shrink
        at the peak lr, default 1e-4 — about what the coupled defaults give (0.02·5e-4/(1 − 0.9)
        for SGD with momentum, 2e-3·0.05 for AdamW)."""
        if self.weight_decay is not None:
            return self.weight_decay
        if self.weight_decay_mode == "decoupled":
            return 1e-4
        return 5e-4 if self.optimizer == "sgd" else 0.05

    def model_config(self, num_classes: int) -> ClassifierConfig:
        return ClassifierConfig(self.num_branches, self.width, num_classes, 3, self.clamp, self.engine, self.seed,
                                self.head_init_scale)


__all__ = ["TrainConfig", "OPTIMIZERS", "WD_MODES", "RUN_RECORD_KEYS", "PRECISIONS"]
