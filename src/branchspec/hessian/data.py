"""A batch and the loss a Hessian is taken on (:class:`HessianData`), and the square loss of §4.1.

The losses are plain scalar functions of ``(f, y)`` (not the house
``(loss, {name: float})`` pair) because they run inside torch.func
transforms, where Python floats cannot be taken. Which batch and loss a
checkpoint of each kind gets for ``branchspec hessian`` (the toy set, the
classifier's test images) is chosen one floor up, by
:mod:`branchspec.experiments.hessian_data`, which reads data and trainers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from branchspec.errors import BranchspecError


def l2_sum(f: Tensor, y: Tensor) -> Tensor:
    """L = ½ Σ_j ‖f(x_j) − y_j‖² (§4.1, eq. 2)."""
    return 0.5 * ((f - y) ** 2).sum()


@dataclass(frozen=True)
class HessianData:
    """A batch and the loss a Hessian is taken on."""

    x: Tensor  # (N, ...) inputs
    y: Tensor  # targets for loss_fn
    loss_fn: Callable[[Tensor, Tensor], Tensor]  # loss_fn(f, y) -> scalar
    loss: str  # short description for the JSON
    data: str  # where the batch came from

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError("x and y hold different numbers of samples")
        if self.x.shape[0] < 1:
            raise BranchspecError("the batch is empty")
