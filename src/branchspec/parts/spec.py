"""Part specifications: a submodule of an ordinary model that computes a sum of parts.

Many layers of unmodified networks have the form of the paper's eq. 1 —
an output that is a sum of contributions plus a rest,

    f(x) = R(x) + Σ_k v_k(x)                                  (eq. 1 / eq. 15)

(attention heads, experts of a mixture, channel groups of a grouped
convolution, the branches of a :class:`~branchspec.Branched`). A
:class:`PartSpec` names such a submodule and says, from the arguments and
the output the module saw in one forward pass, how to split its output into
the ``(M, B, ...)`` tensor of contributions v_k — branch axis first, as every
function of :mod:`branchspec.metrics` expects — and R. It also names the
parameters each part's contribution depends on (:class:`ParamSlice`), so that
gradients and Hessian blocks can be taken per part without rewriting the model.

The concrete kinds live in :mod:`~branchspec.parts.attention`,
:mod:`~branchspec.parts.experts` and :mod:`~branchspec.parts.groups`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from branchspec.errors import BranchspecError


@dataclass(frozen=True)
class Split:
    """One forward pass of a part module split as f = R + Σ_k v_k (eq. 1).

    ``parts``: ``(M, B, ...)`` contributions v_k; ``rest``: R, ``(B, ...)``
    or ``None``; ``output``: f, ``(B, ...)`` — the module's output in the
    same (batch-first) layout as the parts.
    """

    parts: Tensor
    rest: Tensor | None
    output: Tensor

    def residual_error(self) -> float:
        """max |f − R − Σ_k v_k| relative to max |f| (≈ 1e-7 in float32 when the split is right)."""
        total = self.parts.sum(0) + (0 if self.rest is None else self.rest)
        scale = self.output.abs().max().item() or 1.0
        return (self.output - total).abs().max().item() / scale


@dataclass(frozen=True)
class ParamSlice:
    """The entries ``[start:stop]`` along ``dim`` of one parameter of the part module (or of ``owner``).

    ``name`` is relative to ``owner``, by default the part module
    (``"in_proj_weight"``, ``"out_proj.weight"``, ``"experts.2.0.bias"``);
    ``owner`` names another submodule of the model, e.g. the q/k/v
    projection of a hand-written attention layer whose part module is its
    output projection.
    """

    name: str
    dim: int
    start: int
    stop: int
    owner: nn.Module | None = field(default=None, compare=False, repr=False)

    @property
    def length(self) -> int:
        return self.stop - self.start

    def take(self, p: Tensor) -> Tensor:
        """The slice of ``p`` (a view)."""
        return p.narrow(self.dim, self.start, self.length)

    def numel(self, p: Tensor) -> int:
        """Scalars in the slice of ``p``."""
        return self.take(p).numel()


def whole(name: str, p: Tensor) -> ParamSlice:
    """A :class:`ParamSlice` covering all of parameter ``p``."""
    return ParamSlice(name, 0, 0, p.shape[0] if p.dim() else 1)


class PartSpec:
    """A submodule whose output is R + Σ_k v_k, and how to split it.

    Subclasses set ``kind``, ``module`` (the hooked submodule), ``num_parts``
    and implement :meth:`split`, :meth:`replace_output` and
    :meth:`param_slices`. ``labels`` name the parts in reports.
    """

    kind: str = "parts"
    module: nn.Module
    num_parts: int

    @property
    def labels(self) -> list[str]:
        return [f"{self.kind[:-1] if self.kind.endswith('s') else self.kind} {k}" for k in range(self.num_parts)]

    def split(self, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Split:
        """Split the module's ``output`` for the inputs ``args, kwargs`` of the same call."""
        raise NotImplementedError

    def replace_output(self, output: Any, f: Tensor) -> Any:
        """The module's output structure with its main tensor replaced by ``f`` (batch-first layout)."""
        return f

    def param_slices(self, k: int) -> list[ParamSlice]:
        """The parameters part k's contribution depends on (its Hessian block, §5.2)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, module={type(self.module).__name__}, parts={self.num_parts})"


def bind(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """All arguments of one call of ``module.forward`` by name (defaults left out)."""
    try:
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
    except TypeError as e:
        raise BranchspecError(f"cannot read the call of {type(module).__name__}: {e}") from e
    out = dict(bound.arguments)
    for name, p in inspect.signature(module.forward).parameters.items():
        if p.kind is inspect.Parameter.VAR_KEYWORD and name in out:
            out.update(out.pop(name))
    return out


def module_name(model: nn.Module, module: nn.Module) -> str:
    """The qualified name of ``module`` inside ``model`` (``""`` for the model itself)."""
    for name, m in model.named_modules(remove_duplicate=False):
        if m is module:
            return str(name)
    raise BranchspecError(f"the part module ({type(module).__name__}) is not a submodule of {type(model).__name__}")


def first_tensor(output: Any) -> Tensor:
    """The main tensor of a module output (itself, or the first element of a tuple / list)."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise BranchspecError(f"a part module must return a tensor or a tuple starting with one, got {type(output).__name__}")


def replace_first(output: Any, f: Tensor) -> Any:
    """``output`` with its main tensor (see :func:`first_tensor`) replaced by ``f``."""
    if isinstance(output, Tensor):
        return f
    return type(output)([f, *output[1:]]) if isinstance(output, list) else (f, *output[1:])


def expand_rest(bias: Tensor | None, like: Tensor, dim: int = -1) -> Tensor | None:
    """A bias vector broadcast to ``like`` along ``dim`` (channels), or ``None``."""
    if bias is None:
        return None
    shape = [1] * like.dim()
    shape[dim] = -1
    return bias.reshape(shape).expand_as(like)


def check_split(sp: Split, spec: PartSpec, tol: float) -> None:
    """Raise a one-line error when f ≠ R + Σ_k v_k beyond ``tol`` (relative)."""
    err = sp.residual_error()
    if not err <= tol:
        raise BranchspecError(
            f"{spec.kind} of {type(spec.module).__name__}: f − R − Σ_k v_k is {err:.3g} of max |f| "
            f"(tolerance {tol:g}); the module does not compute the sum this spec describes")

