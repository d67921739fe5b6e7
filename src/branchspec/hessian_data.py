"""Which data and loss a Hessian is taken on, per model kind (for ``branchspec hessian``).

* ``"toy"`` (§4.1): the toy set X, Y and the square loss L = ½ Σ_j (f(x_j) − y_j)².
  The data are read from the checkpoint's JSON state when present —
  ``state["data"] = {"x": [...], "y": [...]}`` or ``state["data"] = "toy1"`` /
  ``"toy2"`` (also accepted: ``state["problem"]``) — else Toy1,
  X = {−1, 0, 0, 1}, Y = {1, 0.5, 0.5, 1}. ``state["loss"]`` may say ``"l2"``
  (the only toy loss). ``--batch`` larger than the set takes the whole set.
* ``"classifier"`` (§6): the first ``--batch`` images of CIFAR-10's
  ``test_batch`` (``data_batch_1`` if absent) when ``--data`` names a
  ``cifar-10-batches-py`` folder, else scikit-learn's bundled digits (8×8,
  bilinearly upsampled to 32×32, repeated to the branch's input channels);
  pixels in [0, 1], normalised with ``state["normalization"] = {"mean", "std"}``
  when the checkpoint has it, else the usual CIFAR-10 channel statistics.
  Loss: f clamped to [−1, 1], cross-entropy between softmax of the ±1
  class-indicating target and softmax(f), summed over samples (§6).

The losses here are plain scalar functions of ``(f, y)`` (not the house
``(loss, {name: float})`` pair) because they run inside torch.func
transforms, where Python floats cannot be taken.

Any other kind raises a one-line :class:`~branchspec.errors.BranchspecError`.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from branchspec.errors import BranchspecError

TOY_SETS = {  # §4.1
    "toy1": ([-1.0, 0.0, 0.0, 1.0], [1.0, 0.5, 0.5, 1.0]),
    "toy2": ([-1.0, 0.0, 1.0, 2.0], [1.0, 0.25, 0.5, 0.75]),
}
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def l2_sum(f: Tensor, y: Tensor) -> Tensor:
    """L = ½ Σ_j ‖f(x_j) − y_j‖² (§4.1, eq. 2)."""
    return 0.5 * ((f - y) ** 2).sum()


def clamped_ce_sum(f: Tensor, labels: Tensor) -> Tensor:
    """§6: Σ_j CE(p_j, softmax(clamp(f_j, −1, 1))), p_j = softmax(+1 at the label, −1 elsewhere).

    Example:
        >>> f = torch.tensor([[5.0, -5.0]])   # clamped to [1, -1] = the target logits
        >>> round(clamped_ce_sum(f, torch.tensor([0])).item(), 4)   # = entropy of p = softmax([1, -1])
        0.3653
    """
    c = f.shape[-1]
    target = nn.functional.one_hot(labels.long(), c).to(f.dtype) * 2 - 1  # (N, C), ±1
    p = torch.softmax(target, dim=-1)
    logq = torch.log_softmax(f.clamp(-1.0, 1.0), dim=-1)
    return -(p * logq).sum()


@dataclass(frozen=True)
class HessianData:
    """A batch and the loss a Hessian is taken on."""

    x: Tensor  # (N, ...) inputs
    y: Tensor  # targets for loss_fn
    loss_fn: object  # loss_fn(f, y) -> scalar
    loss: str  # short description for the JSON
    data: str  # where the batch came from

    def __post_init__(self):
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError("x and y hold different numbers of samples")
        if self.x.shape[0] < 1:
            raise BranchspecError("the batch is empty")


def toy_data(state: dict, batch: int) -> HessianData:
    """Toy data and the L2 loss (see the module docstring for the state keys)."""
    spec = state.get("data", state.get("problem", "toy1"))
    if isinstance(spec, str):
        key = spec.lower().replace(" ", "")
        if key not in TOY_SETS:
            raise BranchspecError(f"checkpoint data {spec!r} is not a toy set; known: {', '.join(TOY_SETS)}")
        xs, ys, name = *TOY_SETS[key], key
    elif isinstance(spec, dict) and "x" in spec and "y" in spec:
        xs, ys, name = spec["x"], spec["y"], "checkpoint data"
    else:
        raise BranchspecError("checkpoint state 'data' must be {'x': [...], 'y': [...]} or 'toy1'/'toy2'")
    loss = str(state.get("loss", "l2")).lower()
    if loss != "l2":
        raise BranchspecError(f"toy checkpoint asks for loss {loss!r}; only 'l2' is supported")
    x = torch.tensor(xs, dtype=torch.float32).reshape(-1, 1)[:batch]  # (N, 1)
    y = torch.tensor(ys, dtype=torch.float32).reshape(-1, 1)[:batch]  # (N, 1)
    return HessianData(x, y, l2_sum, "l2: 0.5*sum_j (f(x_j)-y_j)^2 (paper 4.1)", f"{name}, {x.shape[0]} points")


class _CifarUnpickler(pickle.Unpickler):
    """Admits only what a CIFAR-10 python batch contains (numpy arrays, builtins)."""

    _OK = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
           ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
           ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self._OK:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def cifar_images(folder: Path, n: int) -> tuple[Tensor, Tensor, str]:
    """First n images ``(n, 3, 32, 32)`` in [0, 1] and labels from a cifar-10-batches-py folder."""
    folder = Path(folder)
    for fname in ("test_batch", "data_batch_1"):
        path = folder / fname
        if path.is_file():
            break
    else:
        raise BranchspecError(f"--data: {folder} has neither test_batch nor data_batch_1 (not a cifar-10-batches-py folder)")
    try:
        with open(path, "rb") as fh:
            doc = _CifarUnpickler(fh, encoding="bytes").load()
        data = np.asarray(doc[b"data"], dtype=np.uint8)[:n]
        labels = np.asarray(doc[b"labels"], dtype=np.int64)[:n]
        x = torch.from_numpy(data.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)  # (N, 3, 32, 32)
    except Exception as exc:  # truncated / wrong file
        raise BranchspecError(f"--data: {path} is not a readable CIFAR-10 batch ({exc})") from None
    return x, torch.from_numpy(labels), f"CIFAR-10 {path.name}, first {x.shape[0]} images"


def digits_images(n: int) -> tuple[Tensor, Tensor, str]:
    """First n scikit-learn digits, upsampled to ``(n, 1, 32, 32)`` in [0, 1], and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:n], dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8)
    x = nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)  # (N, 1, 32, 32)
    return x, torch.tensor(d.target[:n]), f"scikit-learn digits (32x32), first {x.shape[0]} images"


def _in_channels(branched) -> int:
    for mod in branched.branches[0].modules():
        if isinstance(mod, nn.Conv2d):
            return mod.in_channels
    return 3


def classifier_data(branched, state: dict, batch: int, data_dir: str | Path | None = None) -> HessianData:
    """A classifier batch and the clamped cross-entropy of §6 (see the module docstring)."""
    if data_dir is not None:
        x, labels, name = cifar_images(Path(data_dir), batch)
    else:
        x, labels, name = digits_images(batch)
    ch = _in_channels(branched)
    if x.shape[1] != ch:
        x = x.mean(1, keepdim=True).repeat(1, ch, 1, 1)  # (N, ch, 32, 32)
    norm = state.get("normalization") or {}
    mean = torch.tensor(norm.get("mean", CIFAR_MEAN[:ch] if ch <= 3 else [0.5] * ch), dtype=torch.float32)
    std = torch.tensor(norm.get("std", CIFAR_STD[:ch] if ch <= 3 else [0.25] * ch), dtype=torch.float32)
    x = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    return HessianData(x, labels, clamped_ce_sum,
                       "cross-entropy(softmax(+-1 target), softmax(clamp(f,-1,1))), summed (paper 6)", name)


def data_for(kind: str, branched, state: dict, batch: int, data_dir=None) -> HessianData:
    """The batch and loss for a checkpoint of model ``kind``."""
    if kind == "toy":
        if data_dir is not None:
            raise BranchspecError("--data is not used for toy checkpoints (their data are in the checkpoint)")
        return toy_data(state, batch)
    if kind == "classifier":
        return classifier_data(branched, state, batch, data_dir)
    raise BranchspecError(f"no Hessian data/loss defined for model kind {kind!r} (supported: toy, classifier)")
