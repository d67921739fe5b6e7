"""Which data and loss a Hessian is taken on, per checkpoint kind (for ``branchspec hessian``).

* ``"toy"`` (§4.1): the toy set X, Y and the square loss L = ½ Σ_j (f(x_j) − y_j)².
  The data are read from the checkpoint's JSON state when present —
  ``state["data"] = {"x": [...], "y": [...]}`` or ``state["data"] = "toy1"`` /
  ``"toy2"`` (also accepted: ``state["problem"]``) — else Toy1,
  X = {−1, 0, 0, 1}, Y = {1, 0.5, 0.5, 1}. ``state["loss"]`` may say ``"l2"``
  (the only toy loss). ``--batch`` larger than the set takes the whole set.
* ``"classifier"`` (§6): the first ``--batch`` images of the test split —
  CIFAR-10's ``test_batch`` when ``--data`` names a ``cifar-10-batches-py``
  folder, else the embedded scikit-learn digits (32×32) — normalised with the
  training statistics the checkpoint recorded, as in training and analysis.
  Loss: f clamped to [−1, 1], cross-entropy between softmax of the ±1
  class-indicating target and softmax(f), summed over samples (§6).

The result is a :class:`branchspec.hessian.HessianData`; this module sits above
``hessian/`` because it reads data sets and the trainers' losses.

Any other kind raises a one-line :class:`~branchspec.errors.BranchspecError`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from branchspec.data.imageset import test_set_for
from branchspec.errors import BranchspecError, CheckpointError, ConfigError
from branchspec.hessian.data import HessianData, l2_sum
from branchspec.toy import PROBLEMS
from branchspec.losses import loss_value


def toy_data(state: dict[str, Any], batch: int) -> HessianData:
    """Toy data and the L2 loss (see the module docstring for the state keys)."""
    spec = state.get("data", state.get("problem", "toy1"))
    if isinstance(spec, str):
        key = spec.lower().replace(" ", "")
        if key not in PROBLEMS:
            raise CheckpointError(f"checkpoint data {spec!r} is not a toy set; known: {', '.join(PROBLEMS)}")
        xs, ys, name = *PROBLEMS[key], key
    elif isinstance(spec, dict) and "x" in spec and "y" in spec:
        xs, ys, name = spec["x"], spec["y"], "checkpoint data"
    else:
        raise CheckpointError("checkpoint state 'data' must be {'x': [...], 'y': [...]} or 'toy1'/'toy2'")
    loss = str(state.get("loss", "l2")).lower()
    if loss != "l2":
        raise CheckpointError(f"toy checkpoint asks for loss {loss!r}; only 'l2' is supported")
    x = torch.tensor(xs, dtype=torch.float32).reshape(-1, 1)[:batch]  # (N, 1)
    y = torch.tensor(ys, dtype=torch.float32).reshape(-1, 1)[:batch]  # (N, 1)
    return HessianData(x, y, l2_sum, "l2: 0.5*sum_j (f(x_j)-y_j)^2 (paper 4.1)", f"{name}, {x.shape[0]} points")


def classifier_data(branched: nn.Module | None, state: dict[str, Any], batch: int,
                    data_dir: str | Path | None = None) -> HessianData:
    """A classifier batch and the clamped cross-entropy of §6 (see the module docstring).

    The batch is the first ``batch`` images of the test split, read and
    normalised exactly as the classifier's trainer and analysis do
    (:func:`branchspec.data.imageset.test_set_for`).
    """
    source = str(data_dir) if data_dir is not None else "digits"
    test = test_set_for(state, source)
    x, labels = next(iter(test.batches(min(batch, len(test)), augment=False, prefetch=False)))
    name = f"{'CIFAR-10 ' + source if data_dir is not None else 'scikit-learn digits (32x32)'}, first {x.shape[0]} test images"
    clamp = bool(((state.get("model") or {}).get("config") or {}).get("clamp", True))
    what = ("cross-entropy(softmax(+-1 target), softmax(clamp(f,-1,1))), summed (paper 6)" if clamp
            else "one-hot cross-entropy of unclamped f, summed (the run's --no-clamp loss)")
    return HessianData(x, labels, partial(loss_value, clamp=clamp, reduction="sum"), what, name)


def data_for(kind: str, branched: nn.Module, state: dict[str, Any], batch: int,
             data_dir: str | Path | None = None) -> HessianData:
    """The batch and loss for a checkpoint of model ``kind``."""
    if kind == "toy":
        if data_dir is not None:
            raise ConfigError("data", "not used for toy checkpoints (their data are in the checkpoint)")
        return toy_data(state, batch)
    if kind == "classifier":
        return classifier_data(branched, state, batch, data_dir)
    raise CheckpointError(f"no Hessian data/loss defined for model kind {kind!r} (supported: toy, classifier)")
