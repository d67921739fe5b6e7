"""What a training run will allocate, estimated from its config and checked against the memory budget.

:func:`classifier_training_bytes` (§6) and :func:`gan_training_bytes` (§7)
add up, in bytes:

* the interpreter with its libraries (:data:`branchspec.budget.BASELINE_BYTES`);
* the parameters with their gradients and optimiser state (SGD momentum or
  AdamW's two moments; the GAN's Adam for G and D and G's EMA copy) and the
  EMA weights when ``ema`` > 0, counted on models built on the meta device
  (no memory);
* the checkpoint being written (its bytes are assembled in memory: twice the state);
* the activations of one batch: what a forward pass keeps for backward, per
  sample, measured on the meta device (:func:`branchspec.budget.saved_bytes_per_sample`)
  times the batch. The GAN adds a quarter to G's for the gradient buffers of
  backward (measured: 0.8-1.1 times G's saved bytes per sample in all) and
  counts D four times: on reals and fakes, the R1 gradient's double backward,
  and again in G's step;
* the data sets held in memory (CIFAR-10's 50 000 + 10 000 images and their
  copies; image folders check their own size when listed,
  :func:`branchspec.data.folders.check_data_size`).

:func:`check_classifier_training` / :func:`check_gan_training` raise the
budget's one-line error naming the arguments that drive the estimate. The
estimate is compared with measured peak resident memory in
``tests/test_reliability_limits.py``.

Example:
    >>> from branchspec.gan.config import GanTrainConfig
    >>> small = gan_training_bytes(GanTrainConfig(img_size=16, batch_size=2, base_width=4, max_width=8))
    >>> large = gan_training_bytes(GanTrainConfig(img_size=16, batch_size=200, base_width=4, max_width=8))
    >>> 0 < small < large
    True
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import torch

from branchspec import budget
from branchspec.models.discriminator import Discriminator
from branchspec.models.generator import build_generator, generator_labels
from branchspec.models.resnet import build_classifier

FP32 = 4
CIFAR_BYTES = 60_000 * 3 * 32 * 32 * 6  # train + test uint8, their channel-first copies and the float statistics


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _in_m(sizes, m: int) -> tuple[int, ...]:
    """``sizes(M)`` for M branches from ``sizes(1)`` and ``sizes(2)``: parameters and activations grow by one
    branch's share per branch (building 4096 branches, even on the meta device, would take minutes)."""
    one, two = sizes(1), sizes(2)
    return tuple(a + (m - 1) * max(b - a, 0) for a, b in zip(one, two))


@lru_cache(maxsize=16)
def _classifier_sizes(mcfg, side: int, m: int) -> tuple[int, int]:
    """(parameters, activation bytes per training sample) of the classifier ``mcfg`` with ``m`` branches on
    ``side``² images."""

    def sizes(k):
        with torch.device("meta"):
            model = build_classifier(replace(mcfg, num_branches=k))
        model.train()
        return _params(model), budget.saved_bytes_per_sample(lambda b: model(torch.zeros(b, 3, side, side, device="meta")))

    return _in_m(sizes, m)


def classifier_training_bytes(cfg, num_classes: int = 10, side: int | None = None) -> int:
    """Bytes a §6 training run of ``cfg`` (a :class:`~branchspec.classifier.train.TrainConfig`) allocates;
    ``side``: the image side (``cfg.img_size`` for image folders, 32 for CIFAR-10 and digits)."""
    from branchspec.data.imageset import is_image_folder

    folders = is_image_folder(cfg.data)
    side = side or (cfg.img_size if folders else 32)
    params, per_sample = _classifier_sizes(replace(cfg.model_config(num_classes), num_branches=1), side, cfg.num_branches)
    slots = 4 if cfg.optimizer == "sgd" else 5  # weights, gradients, momentum (AdamW: two moments), a spare copy
    state = params * FP32 * (slots + (1 if cfg.ema > 0 else 0))
    evaluation = min(cfg.eval_batch_size, 10_000) * per_sample // 8  # no-grad forward: a few layers alive at once
    data = CIFAR_BYTES if not folders and cfg.data != "digits" else 0
    return budget.BASELINE_BYTES + 3 * state + cfg.batch_size * per_sample + evaluation + data


def check_classifier_training(cfg, num_classes: int = 10) -> int:
    """:func:`classifier_training_bytes` within the budget, else one line naming the driving arguments."""
    need = classifier_training_bytes(cfg, num_classes)
    side = f" and `img_size` {cfg.img_size}" if cfg.img_size != 32 else ""
    return budget.check(need, f"`batch_size` {cfg.batch_size} with `num_branches` {cfg.num_branches}, "
                              f"`width` {cfg.width:g}{side}")


@lru_cache(maxsize=16)
def generator_sizes(gcfg) -> tuple[int, int]:
    """(parameters, activation bytes per training sample) of the generator ``gcfg``, from its one- and
    two-branch versions on the meta device (σ and source-awareness do not change the sizes)."""
    s = gcfg.img_size

    def sizes(k):
        with torch.device("meta"):
            g = build_generator(replace(gcfg, num_branches=k, sigma=None, source_aware=False))

        def run(b):
            x = torch.zeros(b, gcfg.channels, s, s, device="meta")
            y = torch.zeros(b, dtype=torch.long, device="meta")
            return g(x, generator_labels(g, y, y))

        return _params(g), budget.saved_bytes_per_sample(run)

    return _in_m(sizes, gcfg.num_branches)


@lru_cache(maxsize=16)
def _discriminator_sizes(dcfg) -> tuple[int, int]:
    with torch.device("meta"):
        d = Discriminator(dcfg)
    s = dcfg.img_size

    def run(b):
        x = torch.zeros(b, 3, s, s, device="meta", requires_grad=True)
        return d(x, torch.zeros(b, dtype=torch.long, device="meta"))

    return _params(d), budget.saved_bytes_per_sample(run)


def gan_training_bytes(cfg, num_domains: int = 2, data_bytes: int = 0) -> int:
    """Bytes a §7 training run of ``cfg`` (a :class:`~branchspec.gan.config.GanTrainConfig`) allocates
    with ``num_domains`` domains and ``data_bytes`` of images in memory."""
    pg, act_g = generator_sizes(cfg.generator_config(num_domains))
    pd, act_d = _discriminator_sizes(cfg.discriminator_config(num_domains))
    state = FP32 * (5 * pg + 4 * pd)  # G: weights, grads, Adam m, v, EMA copy; D: weights, grads, Adam m, v
    return budget.BASELINE_BYTES + 3 * state + cfg.batch_size * (5 * act_g // 4 + 4 * act_d) + data_bytes


def check_gan_training(cfg, num_domains: int = 2, data_bytes: int = 0) -> int:
    """:func:`gan_training_bytes` within the budget, else one line naming the driving arguments."""
    need = gan_training_bytes(cfg, num_domains, data_bytes)
    data = f" and {data_bytes / budget.GB:.2g} GB of images" if data_bytes > budget.GB else ""
    return budget.check(need, f"`batch_size` {cfg.batch_size} with `img_size` {cfg.img_size}, `num_branches` "
                              f"{cfg.num_branches}, `max_width` {cfg.max_width}{data}")
