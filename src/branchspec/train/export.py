"""Weights-only copies of checkpoints, for shipping trained models (§6 Fig. 5–8 analyses without training).

A training checkpoint (``RUN/last``) holds the weights under ``model.*`` plus
what resuming needs: optimiser moments, RNG states, the EMA shadow. A user who
only analyses the model needs the weights. :func:`export_weights` writes the
``model.*`` tensors and the model spec, data statistics, metrics and run
config — everything ``load_model``, ``analyze-classifier`` and ``hessian``
read — as one checkpoint marked ``"weights_only": true``; resuming it is a
one-line refusal (:func:`refuse_weights_only`).

Example:
    >>> export_weights("RUN/ema", "checkpoints/cifar10-m16/last")   # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from branchspec.errors import ConfigError
from branchspec.checkpoint import (
    CheckpointError, ResumeMismatch, load_checkpoint, prefixed, same_checkpoint, save_checkpoint, unprefixed,
)

KEPT_STATE = ("model", "data", "train_config", "step", "epoch", "metrics", "ema_decay", "img_size", "domains", "held_out")
"""State fields a weights-only copy keeps: what loading and analysis read, and the run's provenance."""


def export_weights(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy ``src``'s ``model.*`` weights and its descriptive state to the checkpoint ``dst``.

    ``dst`` may not name ``src``'s own unit (:func:`refuse_same_unit`): the copy would replace a resumable
    checkpoint by one that cannot be resumed. A ``src`` without model weights is a
    :class:`~branchspec.checkpoint.CheckpointError` naming ``src``.
    """
    refuse_same_unit(src, dst)
    tensors, state = load_checkpoint(src)
    weights = unprefixed("model", tensors)
    if not weights or "model" not in state:
        raise CheckpointError(f"src: {src} holds no model weights (no 'model.*' tensors or model spec)")
    kept = {k: state[k] for k in KEPT_STATE if k in state}
    kept.update(weights_only=True, exported_from=str(Path(src).name))
    return save_checkpoint(dst, prefixed("model", weights), kept)


def refuse_same_unit(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """A :class:`~branchspec.errors.ConfigError` of ``dst`` (exit 2) when ``dst`` resolves to a file of ``src``'s
    checkpoint unit (``RUN/last`` vs ``RUN/last``, ``RUN/last.json`` vs ``RUN/last.safetensors``, a link to either)."""
    if same_checkpoint(src, dst):
        raise ConfigError("dst", f"{dst} is the checkpoint being exported ({src}); exporting over it would "
                                 "destroy its training state — choose another name, e.g. checkpoints/NAME/last")


def refuse_weights_only(state: dict, path) -> None:
    """Resuming a weights-only checkpoint: a one-line :class:`~branchspec.checkpoint.ResumeMismatch` of
    ``resume`` instead of a missing-optimiser traceback."""
    if state.get("weights_only"):
        raise ResumeMismatch(f"{path} holds weights only (exported for analysis); it cannot be "
                             "resumed — train a new run from it or resume the original RUN/last")
