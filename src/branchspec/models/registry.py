"""Rebuild any branched model the package trains from its checkpoint.

Each model kind registers a builder ``config dict -> nn.Module`` (a
:class:`~branchspec.Branched`, or a module exposing one as ``.branched``).
A checkpoint's JSON state stores ``{"model": {"kind": ..., "config": {...}}}``
and its weights under ``model.*``, so ``branchspec hessian`` and the analysis
commands work on every kind without knowing it in advance.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from branchspec.train.checkpoint import CheckpointError, load_checkpoint, unprefixed

_BUILDERS: dict[str, Callable[[dict[str, Any]], nn.Module]] = {}
# Modules imported on demand so that each kind registers itself.
_PROVIDERS = {
    "toy": "branchspec.models.toy_neuron",
    "classifier": "branchspec.models.resnet",
    "generator": "branchspec.models.generator",
}


def register(kind: str):
    """Decorator: register ``builder(config) -> nn.Module`` under ``kind``."""

    def deco(fn):
        _BUILDERS[kind] = fn
        return fn

    return deco


def build_model(kind: str, config: dict[str, Any]) -> nn.Module:
    """Build an untrained model of ``kind`` from its config dict."""
    if kind not in _BUILDERS and kind in _PROVIDERS:
        importlib.import_module(_PROVIDERS[kind])
    if kind not in _BUILDERS:
        raise CheckpointError(f"unknown model kind {kind!r}; known: {sorted(set(_BUILDERS) | set(_PROVIDERS))}")
    return _BUILDERS[kind](config)


def model_spec(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """The ``"model"`` entry of a checkpoint's JSON state."""
    return {"kind": kind, "config": dict(config)}


def load_model(path, device="cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild and load the model of a checkpoint: ``(model, state)``; model in eval mode."""
    tensors, state = load_checkpoint(path, device=device)
    spec = state.get("model")
    if not isinstance(spec, dict) or "kind" not in spec:
        raise CheckpointError(f"checkpoint {path} does not say which model it holds (no 'model.kind')")
    model = build_model(spec["kind"], spec.get("config", {}))
    weights = unprefixed("model", tensors)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path} does not fit a {spec['kind']} model: {first}") from None
    return model.to(device).eval(), state
