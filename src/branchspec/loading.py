"""Rebuild a trained model from its checkpoint: the registry's builder plus the saved weights.

A checkpoint (safetensors + JSON, :mod:`branchspec.train.checkpoint`) stores
``{"model": {"kind": ..., "config": {...}}}`` in its JSON state and the
weights under ``model.*``; :func:`load_model` rebuilds the untrained model
with :func:`branchspec.models.registry.build_model` and loads the weights, so
``branchspec hessian``, ``decompose`` and the analyses work on every kind
without knowing it in advance. It sits above ``models/`` because it reads
checkpoint files, which the model registry never does.

Example:
    >>> from branchspec.loading import load_model
    >>> model, state = load_model("run/checkpoints/last")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from torch import nn

from branchspec.models.registry import build_model
from branchspec.train.checkpoint import CheckpointError, load_checkpoint, unprefixed


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
