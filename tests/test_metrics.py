import pytest
import torch
from torch import nn

from branchspec import Branched
from branchspec import metrics as M


def test_response_matrix_and_covariance_match_loops():
    out = torch.randn(4, 6, 3)  # (M, N, C)
    F = M.response_matrix(out, "flatten")
    cov = M.covariance(F)
    ref = torch.zeros(4, 4)
    for i in range(4):
        for k in range(4):
            ref[i, k] = sum((out[i, j] * out[k, j]).sum() for j in range(6))
    torch.testing.assert_close(cov, ref, atol=1e-5, rtol=1e-5)
    Fn = M.response_matrix(out, "norm")
    for i in range(4):
        for j in range(6):
            assert Fn[i, j] == pytest.approx(out[i, j].norm().item(), rel=1e-5)
    corr = M.correlation(F)
    for i in range(4):
        for k in range(4):
            assert corr[i, k] == pytest.approx((cov[i, k] / (cov[i, i] * cov[k, k]).sqrt()).item(), rel=1e-4)


def test_identity_reduction_is_the_papers_F():
    out = torch.randn(3, 4, 1)
    torch.testing.assert_close(M.response_matrix(out), out[..., 0])
    with pytest.raises(ValueError):
        M.response_matrix(torch.randn(3, 4, 2), "identity")


def test_active_silent_by_loop():
    F = torch.randn(10, 5) * torch.tensor([1, 0, 0.05, 3, 0.2, 0, 0, 1, 0.1, 2.0])[:, None]
    a = M.activity(F, 0.1)
    norms = [F[i].norm().item() for i in range(10)]
    ref = [n >= 0.1 * max(norms) for n in norms]
    assert a.mask.tolist() == ref
    assert a.active == sum(ref) and a.silent == 10 - sum(ref)
    assert M.activity(torch.zeros(3, 2)).active == 0


@pytest.mark.parametrize("loss", ["l2", "ce"])
def test_gradient_factorisation_equals_autograd(loss):
    m = Branched(lambda: nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4)), 3, seed=0)
    x = torch.randn(6, 3)
    if loss == "l2":
        y = torch.randn(6, 4)

        def lf(f, t):
            return 0.5 * ((f - t) ** 2).sum()
    else:
        y = torch.randint(0, 4, (6,))

        def lf(f, t):
            return nn.functional.cross_entropy(f, t, reduction="sum")

    gf = M.gradient_factors(m, x, y, lf)
    f = m(x)
    if loss == "l2":  # eq. 2: the collaborative part is f - y
        torch.testing.assert_close(gf.collaborative, (f - y).detach())
    else:  # eq. 3: softmax(f) - p
        p = nn.functional.one_hot(y, 4).float()
        torch.testing.assert_close(gf.collaborative, (f.softmax(-1) - p).detach())
    m.zero_grad()
    lf(m(x), y).backward()
    for k in range(3):
        for n, p in m.branches[k].named_parameters():
            torch.testing.assert_close(gf.gradient(k, n), p.grad, atol=1e-5, rtol=1e-4)


def test_gradient_factorisation_with_per_branch_inputs():
    """A residual returning ResidualSplit (App. E) feeds branch k its own input; eq. 10 still holds."""
    from branchspec import ResidualSplit

    class Split(nn.Module):
        def forward(self, x):  # R = x/2; branch k sees (k + 1)·x
            return ResidualSplit(0.5 * x, torch.stack([x * (k + 1) for k in range(3)]))

    m = Branched(lambda: nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2)), 3, residual=Split(), seed=0)
    x, y = torch.randn(5, 2), torch.randn(5, 2)
    assert m.branch_inputs(x).shape == (3, 5, 2)
    torch.testing.assert_close(m.branch_inputs(x)[2], 3 * x)

    def lf(f, t):
        return 0.5 * ((f - t) ** 2).sum()

    gf = M.gradient_factors(m, x, y, lf)
    m.zero_grad()
    lf(m(x), y).backward()
    for k in range(3):
        for n, p in m.branches[k].named_parameters():
            torch.testing.assert_close(gf.gradient(k, n), p.grad, atol=1e-5, rtol=1e-4)
    assert Branched(lambda: nn.Linear(2, 2), 2, residual=nn.Identity()).branch_inputs(x) is None
