"""decay_exponents: the weight-decay budget of a run, against the optimisers themselves.

A parameter whose loss gradient is zero (a branch whose samples all sit at the clamp on the right side:
eq. 10's collaborative factor is 0) is moved by weight decay alone; after the run's steps its norm must be
θ(0)·exp(−D) with D from :func:`decay_exponents`, for each optimiser and decay mode the trainer builds.
"""

from __future__ import annotations

import math

import pytest
import torch

from branchspec.classifier import train as T
from branchspec.classifier.recipe import decay_weights, schedule_factor

STEPS = 30


def _run(cfg: T.TrainConfig) -> float:
    """‖θ‖ after cfg.epochs·STEPS steps of the trainer's optimiser with a zero loss gradient, from ‖θ‖ = 1."""
    p = torch.nn.Parameter(torch.full((4,), 0.5))
    opt = T.make_optimizer(cfg, torch.nn.ParameterList([p]))
    for step in range(cfg.epochs * STEPS):
        lr = T.lr_at(cfg, step, STEPS)
        for g in opt.param_groups:
            g["lr"] = lr
        p.grad = torch.zeros_like(p)
        opt.step()
        if cfg.weight_decay_mode == "decoupled":
            decay_weights([p], cfg.wd, lr / cfg.peak_lr)
    return float(p.norm())


@pytest.mark.parametrize("recipe", [
    dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-3, schedule="cosine", warmup_epochs=1.0),
    dict(optimizer="sgd", lr=0.05, momentum=0.5, weight_decay=0.1, schedule="linear"),
    dict(optimizer="adamw", lr=2e-3, weight_decay=5.0, schedule="cosine"),
    dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-2, weight_decay_mode="decoupled", schedule="cosine"),
])
def test_a_weight_without_gradient_decays_as_predicted(recipe):
    cfg = T.TrainConfig(data="digits", out="unused", epochs=4, **recipe)
    d = T.decay_exponents(cfg, STEPS)
    assert len(d) == cfg.epochs and all(b > a for a, b in zip(d, d[1:]))
    assert d[-1] > 0.3  # a budget large enough that a wrong rate shows
    assert _run(cfg) == pytest.approx(math.exp(-d[-1]), rel=0.02)


def test_the_budget_grows_with_steps_not_epochs():
    """The same 200-epoch schedule on 20 steps per epoch (2,500 images, batch 128) and on 391 (50,000):
    the exponent scales with the steps per epoch."""
    cfg = T.TrainConfig(data="digits", out="unused", optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
                        schedule="cosine", warmup_epochs=5.0, epochs=200)
    small, full = T.decay_exponents(cfg, 20)[-1], T.decay_exponents(cfg, 391)[-1]
    assert full / small == pytest.approx(391 / 20, rel=1e-3)
    mean_factor = sum(schedule_factor("cosine", s, 200 * 20, 5 * 20) for s in range(200 * 20)) / (200 * 20)
    assert small == pytest.approx(200 * 20 * 0.1 * mean_factor * 5e-4 / (1 - 0.9))
