"""Attention heads as parts: MHA output = Σ_h W_O^h · head_h + b_O (eq. 1 with R = b_O).

Multi-head attention concatenates H head outputs and applies one output
projection; splitting W_O by columns, head h's contribution is
v_h = head_h · (W_O[:, h·d:(h+1)·d])ᵀ and the output bias b_O is the rest R.
So the heads of an attention layer are the branches of the paper, their
contributions summed with no further mixing (§1, eq. 1) — every metric of
:mod:`branchspec.metrics` applies to the ``(H, B, L, E)`` tensor of them.

* :class:`Heads` — an ``nn.MultiheadAttention`` (``batch_first`` or not):
  the concatenated heads are recomputed in the hook with W_O = I, b_O = 0.
  Head h depends on rows h·d:(h+1)·d of the q, k and v projections (weights
  and biases) and on columns h·d:(h+1)·d of W_O (its Hessian block, §5.2).
* :class:`ConcatHeads` — a hand-written attention layer, given its output
  projection ``nn.Linear`` whose input is the concatenated heads; head h
  depends on its columns of the projection (the q/k/v projections are the
  user's code and are not named).

Example:
    >>> import torch, torch.nn as nn
    >>> mha = nn.MultiheadAttention(8, 2, batch_first=True)
    >>> spec = heads(mha)
    >>> spec.num_parts, [s.name for s in spec.param_slices(1)][:2]
    (2, ['in_proj_weight', 'in_proj_weight'])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from branchspec.errors import BranchspecError
from branchspec.parts.spec import ParamSlice, PartSpec, Split, bind, expand_rest, first_tensor, replace_first


class Heads(PartSpec):
    """The H heads of an ``nn.MultiheadAttention`` (contributions ``(H, B, L, E)``, batch first)."""

    kind = "heads"

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        self.module = self.mha = mha
        self.num_parts = mha.num_heads
        self.head_dim = mha.embed_dim // mha.num_heads

    def _to_batch_first(self, out: Tensor) -> Tensor:
        if out.dim() == 2:  # unbatched (L, E)
            return out[None]
        return out if self.mha.batch_first else out.transpose(0, 1)  # (B, L, E)

    def _from_batch_first(self, f: Tensor, like: Tensor) -> Tensor:
        if like.dim() == 2:
            return f[0]
        return f if self.mha.batch_first else f.transpose(0, 1)

    def split(self, args: tuple, kwargs: dict[str, Any], output: Any) -> Split:
        mha = self.mha
        call = bind(mha, args, kwargs)
        call["need_weights"] = False
        w = mha.out_proj.weight  # (E, E)
        swap = {"out_proj.weight": torch.eye(w.shape[1], dtype=w.dtype, device=w.device)}
        if mha.out_proj.bias is not None:
            swap["out_proj.bias"] = torch.zeros_like(mha.out_proj.bias)
        concat = self._to_batch_first(functional_call(mha, swap, (), call)[0])  # (B, L, H·d)
        b, l, _ = concat.shape
        h, d = self.num_parts, self.head_dim
        wo = w.reshape(w.shape[0], h, d)  # (E, H, d): column block h of W_O
        parts = torch.einsum("blhd,ehd->hble", concat.reshape(b, l, h, d), wo)  # (H, B, L, E)
        f = self._to_batch_first(first_tensor(output))  # (B, L, E)
        return Split(parts, expand_rest(mha.out_proj.bias, f), f)

    def replace_output(self, output: Any, f: Tensor) -> Any:
        return replace_first(output, self._from_batch_first(f, first_tensor(output)))

    def param_slices(self, k: int) -> list[ParamSlice]:
        mha, d, e = self.mha, self.head_dim, self.mha.embed_dim
        a, z = k * d, (k + 1) * d
        if mha.in_proj_weight is not None:
            out = [ParamSlice("in_proj_weight", 0, i * e + a, i * e + z) for i in range(3)]
        else:
            out = [ParamSlice(f"{n}_proj_weight", 0, a, z) for n in "qkv"]
        if mha.in_proj_bias is not None:
            out += [ParamSlice("in_proj_bias", 0, i * e + a, i * e + z) for i in range(3)]
        out += [ParamSlice(n, 2, a, z) for n in ("bias_k", "bias_v") if getattr(mha, n) is not None]
        out.append(ParamSlice("out_proj.weight", 1, a, z))
        return out


class ConcatHeads(PartSpec):
    """Heads of a hand-written attention layer, read at its output projection ``nn.Linear``.

    The projection's input ``(B, ..., H·d)`` is the concatenation of H head
    outputs; contributions are ``(H, B, ..., E_out)`` and R is its bias.
    """

    kind = "heads"

    def __init__(self, out_proj: nn.Linear, num_heads: int) -> None:
        if out_proj.in_features % num_heads:
            raise BranchspecError(f"{out_proj.in_features} input features do not split into {num_heads} heads")
        self.module = self.linear = out_proj
        self.num_parts = num_heads
        self.head_dim = out_proj.in_features // num_heads

    def split(self, args: tuple, kwargs: dict[str, Any], output: Any) -> Split:
        x = args[0] if args else next(iter(kwargs.values()))  # (B, ..., H·d)
        w = self.linear.weight  # (E, H·d)
        xh = x.reshape(*x.shape[:-1], self.num_parts, self.head_dim)  # (B, ..., H, d)
        wh = w.reshape(w.shape[0], self.num_parts, self.head_dim)  # (E, H, d)
        parts = torch.einsum("...hd,ehd->h...e", xh, wh)  # (H, B, ..., E)
        return Split(parts, expand_rest(self.linear.bias, output), output)

    def param_slices(self, k: int) -> list[ParamSlice]:
        return [ParamSlice("weight", 1, k * self.head_dim, (k + 1) * self.head_dim)]


def heads(module: nn.Module, num_heads: int | None = None) -> PartSpec:
    """The heads of an attention layer as parts (module docstring).

    ``module``: an ``nn.MultiheadAttention``, or the output projection
    ``nn.Linear`` of a hand-written attention layer together with
    ``num_heads`` (its input must be the H heads concatenated, head-major).
    """
    if isinstance(module, nn.MultiheadAttention):
        if num_heads not in (None, module.num_heads):
            raise BranchspecError(f"the attention layer has {module.num_heads} heads, not {num_heads}")
        return Heads(module)
    if isinstance(module, nn.Linear):
        if num_heads is None:
            raise BranchspecError("heads(linear) needs num_heads: the linear layer's input is H heads concatenated")
        return ConcatHeads(module, num_heads)
    raise BranchspecError(
        f"heads() takes an nn.MultiheadAttention or the output nn.Linear of an attention layer, got {type(module).__name__}")
