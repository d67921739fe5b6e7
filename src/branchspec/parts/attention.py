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
* :class:`ConcatHeads` — a hand-written attention layer (nanoGPT's
  ``CausalSelfAttention``, a Llama-style block), given its output projection
  ``nn.Linear`` whose input is the concatenated heads, and the number of
  heads; head h depends on its columns h·d:(h+1)·d of the projection and,
  when ``qkv`` names the q/k/v projections — one fused ``nn.Linear`` whose
  output is q | k | v (nanoGPT's ``c_attn``) or three ``nn.Linear`` —
  on their rows h·d:(h+1)·d (weights and biases), as for ``Heads``.

Example:
    >>> import torch, torch.nn as nn
    >>> mha = nn.MultiheadAttention(8, 2, batch_first=True)
    >>> spec = heads(mha)
    >>> spec.num_parts, [s.name for s in spec.param_slices(1)][:2]
    (2, ['in_proj_weight', 'in_proj_weight'])
    >>> c_attn, c_proj = nn.Linear(8, 24), nn.Linear(8, 8)      # nanoGPT: q | k | v, then W_O
    >>> [(s.name, s.start, s.stop) for s in heads(c_proj, 2, qkv=c_attn).param_slices(1)][:3]
    [('weight', 4, 8), ('weight', 12, 16), ('weight', 20, 24)]
"""

from __future__ import annotations

from collections.abc import Sequence
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

    def split(self, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Split:
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


QKV = nn.Linear | Sequence[nn.Linear]  # one fused q | k | v projection, or the three


def _qkv_rows(qkv: QKV | None, width: int) -> list[tuple[nn.Linear, int]]:
    """``(projection, first row)`` of q, k and v, each ``width`` = H·d rows wide (head-major)."""
    if qkv is None:
        return []
    if isinstance(qkv, nn.Linear):
        if qkv.out_features != 3 * width:
            raise BranchspecError(f"a fused qkv projection must give 3 x {width} features (q | k | v), "
                                  f"this one gives {qkv.out_features}")
        return [(qkv, i * width) for i in range(3)]
    mods = list(qkv)
    if len(mods) != 3 or not all(isinstance(m, nn.Linear) for m in mods):
        raise BranchspecError("qkv must be one fused nn.Linear or three nn.Linear (q, k, v)")
    bad = [m.out_features for m in mods if m.out_features != width]
    if bad:
        raise BranchspecError(f"the q, k and v projections must give {width} features each (one row block per "
                              f"head; shared key/value heads have no per-head block), got {bad[0]}")
    return [(m, 0) for m in mods]


class ConcatHeads(PartSpec):
    """Heads of a hand-written attention layer, read at its output projection ``nn.Linear``.

    The projection's input ``(B, ..., H·d)`` is the concatenation of H head
    outputs; contributions are ``(H, B, ..., E_out)`` and R is its bias.
    ``qkv`` (optional) names the q/k/v projections, so that head h's
    parameters also hold its rows of them (module docstring).
    """

    kind = "heads"

    def __init__(self, out_proj: nn.Linear, num_heads: int, qkv: QKV | None = None) -> None:
        if num_heads < 1 or out_proj.in_features % num_heads:
            raise BranchspecError(f"{out_proj.in_features} input features do not split into {num_heads} heads")
        self.module = self.linear = out_proj
        self.num_parts = num_heads
        self.head_dim = out_proj.in_features // num_heads
        self.qkv_rows = _qkv_rows(qkv, out_proj.in_features)

    def split(self, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Split:
        x = args[0] if args else next(iter(kwargs.values()))  # (B, ..., H·d)
        w = self.linear.weight  # (E, H·d)
        xh = x.reshape(*x.shape[:-1], self.num_parts, self.head_dim)  # (B, ..., H, d)
        wh = w.reshape(w.shape[0], self.num_parts, self.head_dim)  # (E, H, d)
        parts = torch.einsum("...hd,ehd->h...e", xh, wh)  # (H, B, ..., E)
        return Split(parts, expand_rest(self.linear.bias, output), output)

    def param_slices(self, k: int) -> list[ParamSlice]:
        a, z = k * self.head_dim, (k + 1) * self.head_dim
        out = [ParamSlice("weight", 0, r + a, r + z, owner=m) for m, r in self.qkv_rows]
        out += [ParamSlice("bias", 0, r + a, r + z, owner=m) for m, r in self.qkv_rows if m.bias is not None]
        out.append(ParamSlice("weight", 1, a, z))
        return out


def heads(module: nn.Module, num_heads: int | None = None, *, qkv: QKV | None = None) -> PartSpec:
    """The heads of an attention layer as parts (module docstring).

    ``module``: an ``nn.MultiheadAttention``, or the output projection
    ``nn.Linear`` of a hand-written attention layer together with
    ``num_heads`` (its input must be the H heads concatenated, head-major)
    and optionally ``qkv``: its fused q | k | v ``nn.Linear`` or its three
    q, k, v ``nn.Linear`` (then each head's gradient and Hessian block
    cover its q/k/v rows too, not only its W_O columns).
    """
    if isinstance(module, nn.MultiheadAttention):
        if num_heads not in (None, module.num_heads):
            raise BranchspecError(f"the attention layer has {module.num_heads} heads, not {num_heads}")
        if qkv is not None:
            raise BranchspecError("qkv is for hand-written attention; nn.MultiheadAttention's projections are known")
        return Heads(module)
    if isinstance(module, nn.Linear):
        if num_heads is None:
            raise BranchspecError("heads(linear) needs num_heads: the linear layer's input is H heads concatenated")
        return ConcatHeads(module, num_heads, qkv)
    raise BranchspecError(
        f"heads() takes an nn.MultiheadAttention or the output nn.Linear of an attention layer, got {type(module).__name__}")
