"""Conditioned branches (extra per-sample inputs) in gradient factors and Hessians, against autograd."""

import pytest
import torch
from torch import nn

from branchspec import Branched
from branchspec import metrics as M
from branchspec.hessian import blockwise_hessian, exact_hessian, probe_block_norms, select_params


class FiLM(nn.Module):
    """h = tanh(W1 x) · (1 + γ c) + β c, out = W2 h — a branch conditioned on a per-sample scalar c."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(3, 5)
        self.gamma = nn.Linear(1, 5)
        self.beta = nn.Linear(1, 5)
        self.out = nn.Linear(5, 10)

    def forward(self, x, cond=None, *, scale=1.0):
        c = cond.reshape(-1, 1) * scale  # (N, 1)
        return self.out(torch.tanh(self.inp(x)) * (1 + self.gamma(c)) + self.beta(c))


def l2(f, t):
    return 0.5 * ((f - t) ** 2).sum()


@pytest.fixture
def setup():
    m = Branched(FiLM, 3, seed=0)
    x, c, y = torch.randn(6, 3), torch.randn(6), torch.randn(6, 10)
    return m, x, c, y


@pytest.mark.parametrize("as_kw", [False, True])
def test_gradient_factors_split_condition_per_sample(setup, as_kw):
    m, x, c, y = setup
    call = {"kwargs": {"cond": c, "scale": 2.0}} if as_kw else {"args": (c,)}
    scale = 2.0 if as_kw else 1.0
    gf = M.gradient_factors(m, x, y, l2, **call)
    assert gf.distributive[0]["out.weight"].shape == (6, 10, 10, 5)
    loss = l2(m(x, cond=c, scale=scale), y)
    for k, b in enumerate(m.branches):
        for name, p in b.named_parameters():
            (g,) = torch.autograd.grad(loss, p, retain_graph=True)
            torch.testing.assert_close(gf.gradient(k, name), g, atol=1e-5, rtol=1e-5)
    # one sample's factor is that sample's Jacobian alone
    j0 = torch.autograd.functional.jacobian(
        lambda w: torch.func.functional_call(m.branches[1], {"out.bias": w}, (x[:1], c[:1]), {"scale": scale}).reshape(-1),
        m.branches[1].out.bias.detach())
    torch.testing.assert_close(gf.distributive[1]["out.bias"][0], j0, atol=1e-6, rtol=0)


def test_hessians_take_conditions(setup):
    m, x, c, y = setup
    sub = select_params(m, "first-layer")
    H = exact_hessian(m, sub, x, y, l2, args=(c,))
    Hk = exact_hessian(m, sub, x, y, l2, kwargs={"cond": c})
    torch.testing.assert_close(H, Hk)
    Hb, _ = blockwise_hessian(m, sub, x, y, l2, args=(c,))
    torch.testing.assert_close(Hb, H, atol=1e-4, rtol=1e-4)
    Hb2, _ = blockwise_hessian(m, sub, x, y, l2, kwargs={"cond": c, "scale": 1.0})
    torch.testing.assert_close(Hb2, H, atol=1e-4, rtol=1e-4)
    # brute force: dense autograd Hessian of the loss in the flat subset vector
    theta = sub.flat(m)

    def loss_of(t):
        return l2(torch.func.functional_call(m, sub.unflatten(t), (x, c)), y)

    torch.testing.assert_close(H, torch.autograd.functional.hessian(loss_of, theta), atol=1e-4, rtol=1e-4)
    est = probe_block_norms(m, sub, x, y, l2, probes=2, kwargs={"cond": c})
    assert est.squared.shape == (3, 3)


def test_per_sample_dims_and_take_samples():
    a, kw = M.take_samples((torch.arange(6), torch.arange(3)), {"c": torch.arange(6)}, 6, slice(2, 4))
    assert a[0].tolist() == [2, 3] and a[1].tolist() == [0, 1, 2] and kw["c"].tolist() == [2, 3]


def test_hessian_factors_chunk_the_condition(setup):
    from branchspec.hessian import hessian_factors

    m, x, c, y = setup
    sub = select_params(m, "last-layer")
    H = exact_hessian(m, sub, x, y, l2, args=(c,))
    fac = hessian_factors(m, sub, x, y, l2, (c,), sample_chunk=4)  # chunks of 4 + 2 samples
    b = sub.boundaries
    torch.testing.assert_close(fac.offblock(0, 2), H[b[0]:b[1], b[2]:b[3]], atol=1e-4, rtol=1e-4)
