"""The training sets of the toy problems of §4.1 (Figs. 2–4).

* Toy1: X = {−1, 0, 0, 1}, Y = {1, .5, .5, 1} (a 1-D XOR, Fig. 2–3);
* Toy2: X = {−1, 0, 1, 2}, Y = {1, .25, .5, .75} (a regression, Fig. 4).

Example:
    >>> toy_data("toy1")[0]
    tensor([-1.,  0.,  0.,  1.])
"""

from __future__ import annotations

import torch

# The training sets of §4.1: name -> (X, Y).
PROBLEMS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "toy1": ((-1.0, 0.0, 0.0, 1.0), (1.0, 0.5, 0.5, 1.0)),
    "toy2": ((-1.0, 0.0, 1.0, 2.0), (1.0, 0.25, 0.5, 0.75)),
}
# Default number of gradient-descent steps per problem (Toy2 converges slower).
DEFAULT_STEPS = {"toy1": 2000, "toy2": 4000}


def toy_data(problem: str, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, Y)`` of a toy problem as 1-D tensors of length N = 4 (§4.1)."""
    if problem not in PROBLEMS:
        raise ValueError(f"problem must be one of {sorted(PROBLEMS)}, got {problem!r}")
    x, y = PROBLEMS[problem]
    return torch.tensor(x, dtype=dtype), torch.tensor(y, dtype=dtype)
