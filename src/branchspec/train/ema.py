"""Exponential moving averages of weights: the classifier's ``--ema`` and the GAN's sampled generator.

One rule for both: e ← d_t·e + (1 − d_t)·θ after every optimiser step, with the
usual warm-up d_t = min(d, (1 + t)/(10 + t)) (:func:`warmup_decay`) so that the
first averages are not dominated by the initialisation, applied by one fused
lerp (:func:`lerp_towards`). What is averaged differs:

* :class:`WeightEMA` (classifier) keeps a shadow copy of the whole floating-point
  state — weights *and* BatchNorm statistics; integer buffers are copied;
* :func:`ema_update` (GAN, App. E) averages the parameters of an EMA module in
  place and copies its buffers; the EMA generator is the one sampled and saved.

Example:
    >>> [round(warmup_decay(0.999, t), 4) for t in (0, 1, 100)]
    [0.1, 0.1818, 0.9182]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import get_ema_multi_avg_fn


def warmup_decay(decay: float, updates: int) -> float:
    """d_t = min(d, (1 + t)/(10 + t)): the decay of the update after ``updates`` earlier ones."""
    return min(decay, (1 + updates) / (10 + updates))


@torch.no_grad()
def lerp_towards(averages: Sequence[Tensor], values: Sequence[Tensor], decay: float) -> None:
    """e ← d·e + (1 − d)·θ for every pair, in place: one fused lerp per dtype and device, not one per tensor."""
    if averages:
        get_ema_multi_avg_fn(decay)(list(averages), list(values), None)


class WeightEMA:
    """Exponential moving average of a model's floating-point state (weights and
    BatchNorm statistics) with the warm-up of :func:`warmup_decay`. Integer buffers
    (BN step counters) are copied.

    Example:
        >>> m = nn.Linear(1, 1, bias=False); _ = nn.init.zeros_(m.weight)
        >>> ema = WeightEMA(m, 0.5); _ = m.weight.data.fill_(1.0); ema.update(m)
        >>> round(ema.shadow["weight"].item(), 4)   # d_0 = min(0.5, 1/10) = 0.1
        0.9
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._floats = [k for k, e in self.shadow.items() if e.is_floating_point()]  # averaged; the rest copied

    def current_decay(self) -> float:
        return warmup_decay(self.decay, self.updates)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        live = model.state_dict()
        lerp_towards([self.shadow[k] for k in self._floats],
                     [live[k].detach().to(self.shadow[k].dtype) for k in self._floats], self.current_decay())
        for k, e in self.shadow.items():
            if not e.is_floating_point():
                e.copy_(live[k])
        self.updates += 1

    def tensors(self) -> dict[str, Tensor]:
        """The shadow state plus the update count, for a checkpoint (exact resume)."""
        return {**self.shadow, "__updates__": torch.tensor(self.updates)}

    def load_tensors(self, tensors: dict[str, Tensor]) -> None:
        self.updates = int(tensors["__updates__"])
        for k in self.shadow:
            self.shadow[k].copy_(tensors[k])

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """``model`` with the EMA state loaded; its own state is restored afterwards."""
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield model
        finally:
            model.load_state_dict(saved)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """θ_ema ← β θ_ema + (1 − β) θ over the parameters of ``ema``; its buffers are copied from ``model``.

    Example:
        >>> a, b = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
        >>> _ = a.weight.data.fill_(0.0), b.weight.data.fill_(1.0)
        >>> ema_update(a, b, 0.75); a.weight.item()
        0.25
    """
    lerp_towards(list(ema.parameters()), [p.detach() for p in model.parameters()], beta)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


__all__ = ["warmup_decay", "lerp_towards", "WeightEMA", "ema_update"]
