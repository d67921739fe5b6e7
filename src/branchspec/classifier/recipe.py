"""Recipe pieces for training the §6 classifier fast, each a small pure piece.

In the spirit of fast CIFAR-10 training (Keller Jordan's airbench): a
learning-rate schedule that is a pure function of the step (warm-up, then
cosine / linear-to-zero / one-cycle), decoupled weight decay, derandomised
("alternating") horizontal flips with the random-crop translation of
:mod:`branchspec.data.imageset` and flip test-time augmentation; the
exponential moving average (EMA) of the weights is :mod:`branchspec.train.ema`. None of
these changes the loss of §6; they change how it is minimised.

Example:
    >>> schedule_factor("linear", step=0, total=100, warmup=10)
    0.1
    >>> schedule_factor("linear", step=55, total=100, warmup=10)
    0.5
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from branchspec.data.imageset import flip_where, prefetched, translate
from branchspec.seeds import sequence_seed

SCHEDULES = ("cosine", "onecycle", "constant", "linear", "flat")
FLIPS = ("random", "alternate", "none")
FLIP_STREAM = 7919  # sequence_seed key of the alternating flips' coins (kept: stage 1 of the shipped model used it)
CROP_STREAM = 31  # sequence_seed key of an alternate-flip batch's crop offsets (likewise)


def loss_reached(stop_loss: float | None, floor: float, row: dict) -> bool:
    """Whether a metrics row's epoch train loss lies within ``stop_loss`` of the floor H(p) (§6).

    The stopping rule of ``--stop-loss``: every run of a sweep trained to the
    same criterion instead of the same number of epochs. ``row``
    is a metrics.csv row (numbers or the strings read back from the CSV); an
    empty row (no epoch yet) or ``stop_loss=None`` never stops.

    Example:
        >>> loss_reached(0.05, 1.8949, {"train_loss": "1.93"}), loss_reached(0.05, 1.8949, {"train_loss": 1.96})
        (True, False)
    """
    return stop_loss is not None and bool(row) and float(row["train_loss"]) <= floor + stop_loss


def schedule_factor(schedule: str, step: int, total: int, warmup: float) -> float:
    """lr(step) / peak lr, for ``total`` steps with a linear warm-up of ``warmup`` steps.

    * ``"cosine"`` — warm-up, then half a cosine to 0;
    * ``"linear"`` — warm-up, then a straight line to 0 at ``total`` (airbench);
    * ``"onecycle"`` — 30 % linear ramp from 1/25, then cosine to 1e-4 (``warmup`` ignored);
    * ``"constant"`` — 1 (``warmup`` ignored);
    * ``"flat"`` — warm-up, then 1: a rate that does not depend on ``total``, for runs that stop at a
      train-loss criterion (``--stop-loss``) — the warm-up keeps the first Adam steps, which move every
      weight by about the peak lr whatever M, from driving all logits past the §6 clamp (where the
      gradient is 0, eq. 10) at large M.

    Example:
        >>> schedule_factor("cosine", 10, 20, 10)
        1.0
    """
    total = max(1, total)
    if schedule == "constant":
        return 1.0
    if schedule == "onecycle":
        t, up = min(step, total) / total, 0.3
        if t < up:
            return 1 / 25 + (1 - 1 / 25) * t / up
        return 1e-4 + (1 - 1e-4) * 0.5 * (1 + math.cos(math.pi * (t - up) / (1 - up)))
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "flat":
        return 1.0
    t = min(1.0, (step - warmup) / max(1.0, total - warmup))
    if schedule == "linear":
        return 1.0 - t
    return 0.5 * (1 + math.cos(math.pi * t))


def decay_weights(params, wd: float, factor: float) -> None:
    """Decoupled weight decay (SGDW/AdamW style, Loshchilov & Hutter): θ ← θ·(1 − wd·factor),
    with ``factor`` = lr(step)/peak lr, so ``wd`` is the per-step shrink at the peak and does
    not change when the learning rate does.

    Example:
        >>> p = torch.ones(2)
        >>> decay_weights([p], 0.1, 0.5); p.tolist()
        [0.949999988079071, 0.949999988079071]
    """
    with torch.no_grad():
        for p in params:
            p.mul_(1.0 - wd * factor)


def alternating_flips(n: int, epoch: int, seed: int) -> Tensor:
    """Derandomised flips (airbench): image i is flipped in epoch e iff b_i XOR (e odd),
    with b_i one fair coin per image drawn once from ``seed``. Every image is seen
    flipped and unflipped in every two consecutive epochs — labels are unchanged
    (a horizontal flip preserves every CIFAR-10 class). ``(n,)`` bool.

    Example:
        >>> a, b = alternating_flips(6, 0, 0), alternating_flips(6, 1, 0)
        >>> bool((a ^ b).all())
        True
    """
    gen = torch.Generator().manual_seed(sequence_seed(seed, FLIP_STREAM))
    base = torch.rand(n, generator=gen) < 0.5  # (n,)
    return base ^ bool(epoch % 2)


def alternate_flip_batches(data, batch_size: int, epoch: int, seed: int, pad: int = 4, start: int = 0,
                           drop_last: bool = False, flips: bool = True) -> Iterator[tuple[Tensor, Tensor]]:
    """Training batches of an :class:`~branchspec.data.imageset.ImageSet` with alternating
    flips (none if ``flips`` is False) and random translation; batch i of epoch e is a pure
    function of (seed, e, i), so resume stays exact. The next batch is built in a worker thread."""
    order = data.order(epoch, seed, True)  # (N,)
    flip_mask = alternating_flips(len(data), epoch, seed) & flips  # (N,)
    nb = data.num_batches(batch_size, drop_last)

    def build(i: int) -> tuple[Tensor, Tensor]:
        idx = order[i * batch_size:(i + 1) * batch_size]
        gen = torch.Generator().manual_seed(sequence_seed(seed, epoch, i, CROP_STREAM))
        x = flip_where(translate(data.images[idx], gen, pad), flip_mask[idx])  # (B, 3, H, W) uint8
        return data.normalize(x), data.labels[idx]

    yield from prefetched(build, start, nb)


def tta_logits(model: nn.Module, x: Tensor) -> Tensor:
    """Flip test-time augmentation: (f(x) + f(flip(x)))/2 of the *unclamped* sum f,
    ``(B, C)``; the §6 prediction is then argmax clamp(·)."""
    return 0.5 * (model(x) + model(x.flip(3)))


__all__ = ["SCHEDULES", "FLIPS", "schedule_factor", "decay_weights", "alternating_flips", "translate",
           "flip_where", "alternate_flip_batches", "tta_logits"]
