"""Parts of unmodified models against hand conversions to Branched and explicit loops."""

import math

import pytest
import torch
from torch import nn

from branchspec import Branched, metrics, parts
from branchspec.errors import BranchspecError
from branchspec.hessian import block_norms, exact_hessian, probe_block_norms, select_params


def l2(f, t):
    return 0.5 * ((f - t) ** 2).sum()


class SelfAttention(nn.Module):
    """An ordinary model: self-attention of an MHA layer."""

    def __init__(self, e=8, h=2, batch_first=True):
        super().__init__()
        self.mha = nn.MultiheadAttention(e, h, batch_first=batch_first)

    def forward(self, x):
        return self.mha(x, x, x)[0]


class HeadBranch(nn.Module):
    """Head h of an MHA written out as its own module (the hand conversion); input batch first."""

    def __init__(self, mha, h):
        super().__init__()
        d, e = mha.head_dim, mha.embed_dim
        w, b = mha.in_proj_weight.detach(), mha.in_proj_bias.detach()
        rows = [slice(i * e + h * d, i * e + (h + 1) * d) for i in range(3)]
        self.qw, self.kw, self.vw = (nn.Parameter(w[r].clone()) for r in rows)
        self.qb, self.kb, self.vb = (nn.Parameter(b[r].clone()) for r in rows)
        self.ow = nn.Parameter(mha.out_proj.weight.detach()[:, h * d:(h + 1) * d].clone())

    def forward(self, x):  # (B, L, E)
        q, k, v = (x @ w.T + b for w, b in ((self.qw, self.qb), (self.kw, self.kb), (self.vw, self.vb)))
        a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), -1)  # (B, L, L)
        return (a @ v) @ self.ow.T  # (B, L, E)


def hand_branched(mha):
    it = iter(range(mha.num_heads))
    bias = mha.out_proj.bias.detach()
    return Branched(lambda: HeadBranch(mha, next(it)), mha.num_heads, residual=lambda x: bias.expand(x.shape),
                    engine="loop")


@pytest.mark.parametrize("batch_first", [True, False])
def test_mha_heads_equal_hand_conversion(batch_first):
    model = SelfAttention(8, 2, batch_first)
    xb = torch.randn(3, 5, 8)  # (B, L, E)
    x = xb if batch_first else xb.transpose(0, 1)
    c = parts.contributions(model, parts.heads(model.mha), x)
    ref = hand_branched(model.mha)
    torch.testing.assert_close(c.parts, ref.branch_outputs(xb), atol=1e-5, rtol=0)
    assert c.parts.shape == (2, 3, 5, 8) and c.residual_error < 1e-6
    torch.testing.assert_close(c.output, ref(xb), atol=1e-5, rtol=0)
    for fn in (metrics.covariance, metrics.correlation):
        torch.testing.assert_close(fn(c.response()), fn(metrics.response_matrix(ref.branch_outputs(xb))),
                                   atol=1e-4, rtol=1e-4)
    assert metrics.activity(c.response()).active == 2


def test_mha_ablation_gradients_and_hessian_equal_hand_conversion():
    model = SelfAttention(8, 2)
    ref = hand_branched(model.mha)
    x, y = torch.randn(3, 4, 8), torch.randn(3, 4, 8)
    spec = parts.heads(model.mha)
    with parts.silenced(model, spec, 0), ref.silenced([0]):
        torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=0)
    with parts.kept(model, spec, [1]), ref.silenced([0]):
        torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=0)
    assert not model.mha._forward_hooks  # hooks removed after the block
    g = parts.gradient_norms(model, spec, x, y, l2)
    loss = l2(ref(x), y)
    torch.testing.assert_close(g.float(), reference_grad_norms(ref, loss), atol=1e-5, rtol=1e-5)
    H, layout = parts.part_hessian(model, spec, x, y, l2)
    Href = exact_hessian(ref, select_params(ref, "all"), x, y, l2)
    assert layout.boundaries == select_params(ref, "all").boundaries
    torch.testing.assert_close(H, Href, atol=1e-4, rtol=1e-4)
    est = parts.probe_part_blocks(model, spec, x, y, l2, probes=4, seed=3)
    est_ref = probe_block_norms(ref, select_params(ref, "all"), x, y, l2, probes=4, seed=3)
    torch.testing.assert_close(est.squared, est_ref.squared, atol=1e-3, rtol=1e-4)
    res = parts.block_structure(model, spec, x, y, l2)
    assert res["method"] == "exact" and res["block_diagonality"] == pytest.approx(
        float((block_norms(Href, layout.boundaries) ** 2).diagonal().sum() / Href.pow(2).sum()), rel=1e-4)


def test_transformer_layer_fast_path_is_bypassed():
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
    x = torch.randn(2, 5, 8)
    c = parts.contributions(layer, parts.heads(layer.self_attn), x)
    assert c.parts.shape == (2, 2, 5, 8) and c.residual_error < 1e-5
    assert layer.training  # mode restored
    # the layer calls attention with need_weights=False (fused SDPA kernel): Hessians still work
    H, lay = parts.part_hessian(layer, parts.heads(layer.self_attn), x, torch.randn(2, 5, 8), l2)
    assert H.shape == (lay.num_params,) * 2 and torch.allclose(H, H.T, atol=1e-4)


class HandAttention(nn.Module):
    def __init__(self, e=8, h=4):
        super().__init__()
        self.h = h
        self.qkv = nn.Linear(e, 3 * e)
        self.out_proj = nn.Linear(e, 6)

    def heads(self, x):  # (B, L, E) -> (B, L, H, d)
        b, l, e = x.shape
        q, k, v = self.qkv(x).reshape(b, l, 3, self.h, e // self.h).unbind(2)
        a = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(e // self.h), -1)
        return torch.einsum("bhqk,bkhd->bqhd", a, v)

    def forward(self, x):
        return self.out_proj(self.heads(x).flatten(2))


def test_hand_written_attention_heads_by_loop():
    model = HandAttention()
    x = torch.randn(3, 5, 8)
    c = parts.contributions(model, parts.heads(model.out_proj, num_heads=4), x)
    hd = model.heads(x)  # (B, L, H, d)
    w = model.out_proj.weight
    for h in range(4):
        torch.testing.assert_close(c.parts[h], hd[:, :, h] @ w[:, 2 * h:2 * h + 2].T, atol=1e-6, rtol=0)
    torch.testing.assert_close(c.rest, model.out_proj.bias.expand(3, 5, 6))
    with pytest.raises(BranchspecError):
        parts.heads(model.out_proj)


class MoE(nn.Module):
    def __init__(self, n=4, top=None, shared=False):
        super().__init__()
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)) for _ in range(n))
        self.gate = nn.Linear(5, n)
        self.top = top
        self.shared = nn.Linear(5, 3) if shared else None

    def forward(self, x):
        g = topk_softmax(self.gate(x), self.top) if self.top else self.gate(x).softmax(-1)
        out = sum(g[:, e, None] * ex(x) for e, ex in enumerate(self.experts))
        return out + self.shared(x) if self.shared is not None else out


def topk_softmax(logits, k):
    keep = logits.topk(k, -1).indices
    mask = torch.full_like(logits, float("-inf")).scatter(-1, keep, 0.0)
    return (logits + mask).softmax(-1)


def test_experts_by_loop_topk_rest_and_refusal():
    model = MoE(4, top=2, shared=True)
    x = torch.randn(10, 5)
    spec = parts.experts(model, "experts", "gate", weights=lambda z: topk_softmax(z, 2), rest="shared")
    c = parts.contributions(model, spec, x)
    g = topk_softmax(model.gate(x), 2)
    for e in range(4):
        torch.testing.assert_close(c.parts[e], g[:, e, None] * model.experts[e](x), atol=1e-6, rtol=0)
    assert (c.parts.abs().sum(-1) > 0).sum(0).eq(2).all()  # two experts per sample
    with pytest.raises(BranchspecError, match="does not compute"):  # softmax over all 4 is not what it does
        parts.contributions(model, parts.experts(model, rest="shared"), x)
    y = torch.randn(10, 3)
    H, lay = parts.part_hessian(model, spec, x, y, l2)
    assert [len(p) for p in lay.slices] == [4] * 4 and H.shape == (lay.num_params,) * 2
    with parts.silenced(model, spec, [0, 1, 2, 3]):
        torch.testing.assert_close(model(x), model.shared(x))


def test_groups_by_loop_and_ablation():
    conv = nn.Conv2d(6, 9, 3, padding=1, groups=3)
    x = torch.randn(2, 6, 5, 5)
    c = parts.contributions(conv, parts.groups(conv), x)
    for g in range(3):
        ref = torch.zeros(2, 9, 5, 5)
        ref[:, 3 * g:3 * g + 3] = nn.functional.conv2d(x[:, 2 * g:2 * g + 2], conv.weight[3 * g:3 * g + 3], padding=1)
        torch.testing.assert_close(c.parts[g], ref, atol=1e-5, rtol=0)
    assert metrics.covariance(c.response()).triu(1).abs().max() == 0  # disjoint channels
    assert metrics.correlation(c.response("norm")).shape == (3, 3)
    with parts.kept(conv, parts.groups(conv), [parts.ranking(c)[0]]) as m:
        out = m(x)
    keep = parts.ranking(c)[0]
    torch.testing.assert_close(out, c.parts[keep] + c.rest, atol=1e-5, rtol=0)
    lay = parts.part_layout(conv, parts.groups(conv))
    assert lay.sizes == (3 * 2 * 9,) * 3


def test_branches_spec_equals_branch_outputs():
    inner = Branched(lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), 3, seed=0,
                     residual=nn.Linear(3, 2))
    model = nn.Sequential(inner, nn.Tanh())
    x, y = torch.randn(6, 3), torch.randn(6, 2)
    c = parts.contributions(model, parts.branches(inner), x)
    torch.testing.assert_close(c.parts, inner.branch_outputs(x))
    torch.testing.assert_close(c.rest, inner.residual_output(x))
    g = parts.gradient_norms(model, parts.branches(inner), x, y, l2)
    loss = l2(model(x), y)
    for k, b in enumerate(inner.branches):
        gk = torch.cat([p.reshape(-1) for p in torch.autograd.grad(loss, list(b.parameters()), retain_graph=True)])
        assert g[k].item() == pytest.approx(gk.norm().item(), rel=1e-5)


def test_module_must_run_once():
    conv = nn.Conv1d(2, 2, 1, groups=2)
    with pytest.raises(BranchspecError, match="ran 2 times"):
        parts.contributions(nn.Sequential(conv, conv), parts.groups(conv), torch.randn(1, 2, 3))
    with pytest.raises(BranchspecError, match="not a submodule"):
        parts.part_layout(nn.Linear(1, 1), parts.groups(conv))


def reference_grad_norms(ref, loss):
    """‖∂loss/∂θ_k‖ of every branch of the hand-converted ``Branched`` ``ref``, by autograd, ``(M,)``."""
    return torch.stack([torch.cat([p.reshape(-1) for p in torch.autograd.grad(loss, list(b.parameters()),
                                                                              retain_graph=True)]).norm()
                        for b in ref.branches])
