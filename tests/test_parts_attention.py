"""Heads of hand-written attention layers (nanoGPT's fused c_attn, Llama-style q/k/v) against hand conversions.

The user names the output projection, the number of heads and the q/k/v projections; contributions,
ablation, gradient norms and Hessian blocks over each head's q/k/v rows and W_O columns must equal those
of the same layer rewritten as a ``Branched`` of one-head branches.
"""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from branchspec import Branched, parts
from branchspec.errors import BranchspecError
from branchspec.hessian import exact_hessian, probe_block_norms, select_params

from test_parts import reference_grad_norms  # per-branch autograd gradient norms of the reference


def l2(f, t):
    return 0.5 * ((f - t) ** 2).sum()


class CausalSelfAttention(nn.Module):
    """nanoGPT's attention (karpathy/nanoGPT model.py), dropout included."""

    def __init__(self, n_embd=8, n_head=4, bias=True):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(0.1)
        self.n_head, self.n_embd = n_head, n_embd

    def forward(self, x):  # (B, T, C)
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c)))


class SplitAttention(nn.Module):
    """Separate q, k, v projections (Llama-style, no biases), bidirectional."""

    def __init__(self, e=8, h=2):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(e, e, bias=False) for _ in range(3))
        self.o_proj = nn.Linear(e, e, bias=False)
        self.h = h

    def forward(self, x):
        b, t, e = x.shape
        q, k, v = (p(x).view(b, t, self.h, e // self.h).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        return self.o_proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, e))


class OneHead(nn.Module):
    """Head h written out on its own: its q/k/v rows, then its W_O columns (parameters in the spec's order)."""

    def __init__(self, qkv_rows, out_proj, h, d, causal):
        super().__init__()
        rows = [(m, r + h * d) for m, r in qkv_rows]
        self.qw, self.kw, self.vw = (nn.Parameter(m.weight.detach()[r:r + d].clone()) for m, r in rows)
        if all(m.bias is not None for m, _ in rows):
            self.qb, self.kb, self.vb = (nn.Parameter(m.bias.detach()[r:r + d].clone()) for m, r in rows)
        else:
            self.qb = self.kb = self.vb = None
        self.ow = nn.Parameter(out_proj.weight.detach()[:, h * d:(h + 1) * d].clone())
        self.causal = causal

    def forward(self, x):  # (B, T, E)
        q, k, v = (F.linear(x, w, b) for w, b in ((self.qw, self.qb), (self.kw, self.kb), (self.vw, self.vb)))
        s = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])  # (B, T, T)
        if self.causal:
            s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
        return (s.softmax(-1) @ v) @ self.ow.T  # (B, T, E)


def hand_branched(spec, causal):
    it = iter(range(spec.num_parts))
    bias = spec.linear.bias
    rest = (lambda x: bias.detach().expand(x.shape)) if bias is not None else None
    return Branched(lambda: OneHead(spec.qkv_rows, spec.linear, next(it), spec.head_dim, causal), spec.num_parts,
                    residual=rest, engine="loop")


CASES = {
    "nanogpt": (lambda: CausalSelfAttention(8, 4), lambda m: parts.heads(m.c_proj, 4, qkv=m.c_attn), True),
    "split-qkv": (lambda: SplitAttention(8, 2), lambda m: parts.heads(m.o_proj, 2, qkv=(m.q_proj, m.k_proj, m.v_proj)),
                  False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hand_written_heads_equal_hand_conversion(case):
    make, spec_of, causal = CASES[case]
    model = make()
    spec = spec_of(model)
    ref = hand_branched(spec, causal)
    x, y = torch.randn(3, 5, 8), torch.randn(3, 5, 8)
    # contributions (eq. 1): H one-head branches, R = b_O
    c = parts.contributions(model, spec, x)
    torch.testing.assert_close(c.parts, ref.branch_outputs(x), atol=1e-5, rtol=0)
    assert c.residual_error < 1e-5 and model.training  # dropout off during the pass, mode restored
    # ablation (§6): silence head 0, keep head 1
    model.eval()
    with parts.silenced(model, spec, 0), ref.silenced([0]):
        torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=0)
    with parts.kept(model, spec, [1]), ref.silenced([k for k in range(spec.num_parts) if k != 1]):
        torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=0)
    # per-head gradient norms over q/k/v rows and W_O columns (eq. 10)
    g = parts.gradient_norms(model, spec, x, y, l2)
    loss = l2(ref(x), y)
    torch.testing.assert_close(g.float(), reference_grad_norms(ref, loss), atol=1e-5, rtol=1e-5)
    # Hessian over the heads' parameters, block by head (§5.2): exact and probes
    H, layout = parts.part_hessian(model, spec, x, y, l2)
    sub = select_params(ref, "all")
    assert layout.boundaries == sub.boundaries and len(layout.names) == (3 if case == "nanogpt" else 4)
    torch.testing.assert_close(H, exact_hessian(ref, sub, x, y, l2), atol=1e-4, rtol=1e-4)
    est = parts.probe_part_blocks(model, spec, x, y, l2, probes=3, seed=1)
    torch.testing.assert_close(est.squared, probe_block_norms(ref, sub, x, y, l2, probes=3, seed=1).squared,
                               atol=1e-3, rtol=1e-4)


def test_qkv_rows_named_inside_a_larger_model_and_refusals():
    model = nn.Sequential(nn.Linear(8, 8), CausalSelfAttention(8, 2))
    attn = model[1]
    lay = parts.part_layout(model, parts.heads(attn.c_proj, 2, qkv=attn.c_attn))
    assert lay.names == ["1.c_attn.weight", "1.c_attn.bias", "1.c_proj.weight"]
    assert lay.labels[:3] == ["1.c_attn.weight[0:4]", "1.c_attn.weight[8:12]", "1.c_attn.weight[16:20]"]
    assert lay.sizes == (3 * 4 * 8 + 3 * 4 + 8 * 4,) * 2
    with pytest.raises(BranchspecError, match="3 x 8"):
        parts.heads(attn.c_proj, 2, qkv=nn.Linear(8, 16))
    with pytest.raises(BranchspecError, match="shared key/value"):  # grouped-query attention
        parts.heads(attn.c_proj, 2, qkv=(nn.Linear(8, 8), nn.Linear(8, 4), nn.Linear(8, 4)))
    with pytest.raises(BranchspecError, match="known"):
        parts.heads(nn.MultiheadAttention(8, 2), qkv=attn.c_attn)
