"""Every branch architecture of the package, with a small example input.

The architecture test (``tests/test_architectures.py``) runs over this list:
forward, backward, shapes, no NaN, and fused engine == loop engine, in train
and eval mode. A new branch architecture is added here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class ArchSpec:
    """A branch factory and how to feed it a tiny batch."""

    make_branch: Callable[[], nn.Module]
    example_input: Callable[[int], torch.Tensor]  # batch size -> input
    example_args: Callable[[int], tuple] = field(default=lambda b: ())  # extra branch inputs
    residual: Callable[[], object] | None = None  # optional R factory
    tol: float = 1e-4


def _mlp():
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))


def _conv_bn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )


def architectures() -> dict[str, ArchSpec]:
    """Name -> :class:`ArchSpec` for every branch architecture in the package."""
    specs = {
        "mlp": ArchSpec(_mlp, lambda b: torch.randn(b, 4)),
        "conv-bn": ArchSpec(_conv_bn, lambda b: torch.randn(b, 3, 8, 8)),
    }
    for provider in _PROVIDERS:
        specs.update(provider())
    return specs


def _toy_specs():
    from branchspec.models.toy_neuron import ToyNeuron

    return {"toy-neuron": ArchSpec(ToyNeuron, lambda b: torch.randn(b, 1))}


def _resnet_specs():
    from branchspec.models.resnet import zoo_specs

    return zoo_specs()


def _generator_specs():
    from branchspec.models.generator import zoo_specs

    return zoo_specs()


def _optional(fn):
    def wrapped():
        try:
            return fn()
        except ImportError:  # the part providing it is not built yet
            return {}

    return wrapped


_PROVIDERS = [_optional(_toy_specs), _optional(_resnet_specs), _optional(_generator_specs)]
