"""Save a model as a checkpoint and rebuild it: the registry's builder plus the saved weights.

A checkpoint (safetensors + JSON, :mod:`branchspec.checkpoint`) stores
``{"model": {"kind": ..., "config": {...}}}`` in its state and the weights
under ``model.*``; :func:`save_model` writes one, :func:`load_model` checks
the entry against the weights (:func:`check_spec`, shapes on the meta
device), rebuilds the untrained model with
:func:`branchspec.models.registry.build_model` and loads the weights, so
``branchspec hessian``, ``decompose`` and the analyses work on every kind
without knowing it in advance — a new architecture only needs a builder
registered with :func:`branchspec.models.registry.register` (docs/architectures.md).
It sits a floor above ``models/`` because it reads checkpoint files, which
the model registry never does.

Example:
    >>> import tempfile, torch
    >>> from branchspec.models.registry import build_model
    >>> path = tempfile.mkdtemp() + "/toy"
    >>> model = build_model("toy", {"num_branches": 3, "seed": 0})
    >>> _ = save_model(path, model, "toy", {"num_branches": 3, "seed": 0}, step=0)
    >>> again, state = load_model(path)
    >>> torch.equal(again(torch.ones(2, 1)), model(torch.ones(2, 1))), state["step"]
    (True, 0)
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from branchspec.errors import BranchspecError, CheckpointError
from branchspec.models.registry import build_model, kinds, model_spec
from branchspec.checkpoint import load_checkpoint, prefixed, save_checkpoint, unprefixed
from branchspec.checkpoint_content import non_finite_tensors

PathLike = str | os.PathLike[str]

_BRANCH_KEY = re.compile(r"(?:^|\.)branches\.(\d+)\.")


def check_spec(spec: Any, weights: dict[str, torch.Tensor], path: PathLike) -> tuple[str, dict[str, Any]]:
    """``(kind, config)`` of a checkpoint's ``"model"`` entry, checked against its weights *before* any
    model is built: types, finite numbers, and ``num_branches`` = the branches the weights hold (a
    config claiming 10⁹ branches is refused in one line instead of building them)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str):
        raise CheckpointError(f"checkpoint {path} does not say which model it holds (no string 'model.kind')")
    if spec["kind"] not in kinds():
        raise CheckpointError(f"checkpoint {path}: unknown model kind {spec['kind']!r}; known: {kinds()}")
    config = spec.get("config", {})
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path}: model.config must be an object, got {type(config).__name__}")
    for k, v in config.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise CheckpointError(f"checkpoint {path}: model.config.{k} is not finite ({v})")
    nb = config.get("num_branches")
    if nb is not None:
        if not isinstance(nb, int) or isinstance(nb, bool) or nb < 1:
            raise CheckpointError(f"checkpoint {path}: model.config.num_branches must be an integer >= 1, got {nb!r}")
        held = {int(m.group(1)) for k in weights for m in [_BRANCH_KEY.search(k)] if m}
        if held and (len(held) != nb or max(held) != nb - 1):  # never materialise range(nb): nb may be 10⁹
            raise CheckpointError(f"checkpoint {path}: model.config.num_branches is {nb} but its weights hold "
                                  f"{len(held)} branch(es); refused")
    return spec["kind"], config


def _check_shapes(kind: str, config: dict[str, Any], weights: dict[str, torch.Tensor], path: PathLike) -> None:
    """Build the model on the meta device (no memory) and compare every shape with the weights."""
    try:
        with torch.device("meta"):
            meta = build_model(kind, config)
    except BranchspecError:  # unknown kind, or a CheckpointError of the builder
        raise
    except Exception:  # a builder that cannot run on meta: the real build checks below
        return
    want = meta.state_dict()
    bad = [k for k, v in want.items() if k in weights and tuple(weights[k].shape) != tuple(v.shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(f"checkpoint {path}: its config gives {k} the shape {tuple(want[k].shape)}, "
                              f"its weights {tuple(weights[k].shape)}; refused")
    need = sum(v.numel() for v in want.values())
    have = sum(v.numel() for v in weights.values())
    if need > 2 * have + 1_000_000:
        raise CheckpointError(f"checkpoint {path}: its config builds a model of {need} values but the weights hold "
                              f"{have}; refused")


def save_model(path: PathLike, model: nn.Module, kind: str, config: dict[str, Any], **state: Any) -> Path:
    """Save ``model`` as a checkpoint that :func:`load_model` rebuilds; returns the JSON path.

    ``kind`` must be registered (:func:`branchspec.models.registry.register`)
    and ``build_model(kind, config)`` must build a model of the same shapes
    (checked on the meta device before anything is written). ``state``: any
    other JSON-ready entries (``step=…``, ``domains=[…]``). Weights under
    ``model.*``; the file is atomic and content-hashed like every checkpoint.
    """
    if kind not in kinds():
        raise BranchspecError(f"unknown model kind {kind!r}; register its builder first (known: {kinds()})")
    weights = model.state_dict()
    _check_shapes(kind, config, weights, path)
    return save_checkpoint(path, prefixed("model", weights), {**state, "model": model_spec(kind, config)})


def load_model(path: PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild and load the model of a checkpoint: ``(model, state)``; model in eval mode.

    Every malformed field is a one-line :class:`CheckpointError`, checked
    before the model is built (:func:`check_spec`).
    """
    tensors, state = load_checkpoint(path, device=device)
    weights = unprefixed("model", tensors)
    kind, config = check_spec(state.get("model"), weights, path)
    bad = non_finite_tensors(weights)
    if bad:  # e.g. inf BatchNorm running_var saved by an older version: results would be meaningless
        raise CheckpointError(f"checkpoint {path}: {len(bad)} weight tensor(s) hold NaN/inf (first: {bad[0]}); refused")
    _check_shapes(kind, config, weights, path)
    try:
        model = build_model(kind, config)
    except BranchspecError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        first = str(exc).strip().splitlines()[0][:150] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {path}: cannot build its {kind} model from model.config ({first})") from None
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path} does not fit a {kind} model: {first}") from None
    return model.to(device).eval(), state
