"""The branch of the toy problems of §4.1: one scalar Leaky-ReLU neuron (eq. 4).

Example:
    >>> import torch
    >>> toy_model(3, seed=0)(torch.zeros(2, 1)).shape
    torch.Size([2, 1])
"""

from __future__ import annotations

import torch
from torch import nn

from branchspec.branched import Branched
from branchspec.packed import PerChannel, register_packer


class ToyNeuron(nn.Module):
    """One branch of the toy problems: v(x) = LeakyReLU(w·x + b) (eq. 4).

    ``w`` and ``b`` are scalars; inputs are ``(B, 1)``, outputs ``(B, 1)``.

    Example:
        >>> n = ToyNeuron()
        >>> n(torch.zeros(3, 1)).shape
        torch.Size([3, 1])
    """

    def __init__(self, negative_slope: float = 0.01, init_scale: float = 1.0) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.weight = nn.Parameter(torch.empty(()).uniform_(-init_scale, init_scale))
        self.bias = nn.Parameter(torch.empty(()).uniform_(-init_scale, init_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.leaky_relu(self.weight * x + self.bias, self.negative_slope)


# Packed engine: the M scalar weights and biases stacked into (M,) vectors; v (B, M) (branchspec.packed).
register_packer(ToyNeuron)(PerChannel)


def toy_model(num_branches: int, negative_slope: float = 0.01, init_scale: float = 1.0, seed: int | None = None,
              engine: str = "loop") -> Branched:
    """A :class:`Branched` sum of ``num_branches`` toy neurons (eq. 1 with eq. 4)."""
    return Branched(lambda: ToyNeuron(negative_slope, init_scale), num_branches, engine=engine, seed=seed)


def build_from_config(config: dict) -> Branched:
    """The toy model a checkpoint's ``{"kind": "toy", "config": {...}}`` describes (registry builder)."""
    return toy_model(int(config["num_branches"]), float(config.get("negative_slope", 0.01)),
                     float(config.get("init_scale", 1.0)), config.get("seed"), config.get("engine", "loop"))
