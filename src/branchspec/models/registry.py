"""The one model registry: every branch architecture with its builder, a tiny config and an example input.

:data:`ARCHITECTURES` maps a name to an :class:`ArchSpec`. Two things walk it:

* the architecture test (``tests/test_architectures.py``, STYLE habit 5)
  builds every entry from its tiny config with each engine — forward,
  backward, shapes, no NaN, every engine == the loop engine — and fails if
  an expected name is missing;
* checkpoints: a checkpoint's JSON state stores ``{"model": {"kind": ...,
  "config": {...}}}`` (:func:`model_spec`) and :func:`build_model` rebuilds
  the untrained model from it with the builder of that kind. The kinds are
  the ``kind`` fields of the entries, plus any added with :func:`register`.

This module imports every model module at top level and no model module
imports it, so a broken model file fails loudly here instead of silently
dropping out of the architecture test. Loading a checkpoint's weights into
the rebuilt model is :func:`branchspec.loading.load_model` (one floor up: it
reads checkpoint files).

Example:
    >>> spec = ARCHITECTURES["toy-neuron"]
    >>> model = spec.build({**spec.config, "num_branches": 3})
    >>> model(spec.example_input(4)).shape
    torch.Size([4, 1])
    >>> build_model("toy", {"num_branches": 2}).num_branches
    2
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from branchspec.branched import Branched
from branchspec.errors import BranchspecError
from branchspec.models import generator, resnet, toy_neuron

Builder = Callable[[dict[str, Any]], nn.Module]


@dataclass(frozen=True)
class ArchSpec:
    """A branch architecture: how to build it from a config and how to feed it a tiny batch."""

    build: Builder  # config dict -> Branched model (for a checkpoint kind: that kind's builder)
    config: dict[str, Any]  # a tiny config; the architecture test overrides num_branches, engine and seed
    example_input: Callable[[int], torch.Tensor]  # batch size B -> input (B, ...)
    example_args: Callable[[int], tuple[Any, ...]] = field(default=lambda b: ())  # extra branch inputs, e.g. the domain y
    kind: str | None = None  # the checkpoint "model.kind" built by `build`; None for test-only architectures
    prepare: Callable[[nn.Module], None] | None = None  # test-only tweak after building (None: none)
    tol: float = 1e-4  # engine-vs-loop tolerance of the architecture test


def _plain(make_branch: Callable[[], nn.Module]) -> Builder:
    """Builder of a Branched of ``make_branch`` with no residual (test-only architectures)."""

    def build(config: dict[str, Any]) -> Branched:
        return Branched(make_branch, int(config["num_branches"]), engine=config.get("engine", "packed"),
                        seed=config.get("seed"))

    return build


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))


def _conv_bn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    )


def _nonzero_diffusion_q(model: nn.Module) -> None:
    """The learnt diffusion's CNN q starts at zero (R = heat flow); perturb it so the test exercises q."""
    with torch.no_grad():
        last_conv = list(model.get_submodule("residual.q.convs").children())[-1]
        for p in last_conv.parameters():
            p.normal_(0, 0.05)


def _image(b: int) -> torch.Tensor:
    return torch.randn(b, 3, 16, 16)  # (B, C, H, W)


def _domains(b: int) -> tuple[torch.Tensor]:
    return (torch.arange(b) % 3,)  # target domain y of every image, (B,)


def _domain_pairs(b: int) -> tuple[torch.Tensor]:
    return (torch.stack([torch.arange(b) % 3, (torch.arange(b) + 1) % 3], 1),)  # (source, target) pairs, (B, 2)


# tiny StarGAN-v2-style generator branches (§7, App. D–E) at 16², three domains
_TINY_GENERATOR = dict(img_size=16, num_domains=3, base_width=8, max_width=16, style_dim=8, mapping_width=8,
                       num_down=1, num_bottleneck=1, sigma=1.0, engine="loop")

ARCHITECTURES: dict[str, ArchSpec] = {
    "mlp": ArchSpec(_plain(_mlp), {"num_branches": 3}, lambda b: torch.randn(b, 4)),
    "conv-bn": ArchSpec(_plain(_conv_bn), {"num_branches": 3}, lambda b: torch.randn(b, 3, 8, 8)),
    # §4.1: one Leaky-ReLU neuron per branch
    "toy-neuron": ArchSpec(toy_neuron.build_from_config, {"num_branches": 3}, lambda b: torch.randn(b, 1), kind="toy"),
    # §6: slim ResNet18 branches with BatchNorm
    "slim-resnet18": ArchSpec(resnet.build_from_config, {"num_branches": 3, "width": 2}, _image, kind="classifier"),
    # §7: generator with Gaussian R, and with the learnt diffusion R of App. E (per-branch inputs φ_k)
    "generator-gaussian": ArchSpec(generator.build_from_config, {**_TINY_GENERATOR, "residual": "gaussian"},
                                   _image, _domains, kind="generator"),
    "generator-diffusion": ArchSpec(generator.build_from_config,
                                    {**_TINY_GENERATOR, "residual": "diffusion", "diffusion_width": 8},
                                    _image, _domains, kind="generator", prepare=_nonzero_diffusion_q),
    # the source-aware style departure of docs/gan.md: style from (source, target) pairs
    "generator-source-aware": ArchSpec(generator.build_from_config, {**_TINY_GENERATOR, "source_aware": True},
                                       _image, _domain_pairs, kind="generator"),
}

# checkpoint kind -> builder; register() adds more (tests register stand-ins)
_BUILDERS: dict[str, Builder] = {s.kind: s.build for s in ARCHITECTURES.values() if s.kind is not None}


def register(kind: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(config) -> nn.Module`` as the builder of checkpoint ``kind``.

    The builder must accept the config dict it is saved with and build the
    untrained model deterministically from it (:func:`branchspec.loading.save_model`
    / :func:`~branchspec.loading.load_model`; docs/architectures.md).
    """

    def deco(fn: Builder) -> Builder:
        _BUILDERS[kind] = fn
        return fn

    return deco


def kinds() -> list[str]:
    """The checkpoint kinds :func:`build_model` knows, sorted."""
    return sorted(_BUILDERS)


def build_model(kind: str, config: dict[str, Any]) -> nn.Module:
    """Build an untrained model of checkpoint ``kind`` from its config dict (one-line error if unknown)."""
    if kind not in _BUILDERS:
        raise BranchspecError(f"unknown model kind {kind!r}; known: {kinds()}")
    return _BUILDERS[kind](config)


def model_spec(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The ``"model"`` entry of a checkpoint's JSON state."""
    return {"kind": kind, "config": dict(config)}
