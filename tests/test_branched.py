import pytest
import torch
from torch import nn

from branchspec import Branched, ResidualSplit


def lin():
    return nn.Linear(3, 2)


def test_forward_is_sum_of_branches_plus_residual():
    m = Branched(lin, 4, residual=lambda x: x[:, :2] * 10, seed=0)
    x = torch.randn(5, 3)
    f, v = m(x, return_branches=True)
    ref = sum(b(x) for b in m.branches) + x[:, :2] * 10  # explicit loop
    torch.testing.assert_close(f, ref)
    torch.testing.assert_close(v, torch.stack([b(x) for b in m.branches]))


def test_seed_reproducible_and_branches_differ():
    a, b = Branched(lin, 3, seed=7), Branched(lin, 3, seed=7)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)
    w = [br.weight for br in a.branches]
    assert not torch.allclose(w[0], w[1])


def test_seed_does_not_disturb_global_rng():
    torch.manual_seed(3)
    r1 = torch.rand(1)
    torch.manual_seed(3)
    Branched(lin, 3, seed=11)
    assert torch.equal(torch.rand(1), r1)


def test_silencing_and_parameter_helpers():
    m = Branched(lin, 3, seed=0)
    x = torch.randn(4, 3)
    v = m.branch_outputs(x)
    with m.silenced(1):
        torch.testing.assert_close(m(x), v[0] + v[2])
    torch.testing.assert_close(m(x), v.sum(0))
    m.keep_only([2])
    torch.testing.assert_close(m(x), v[2])
    m.unsilence()
    assert m.parameters_per_branch() == [8, 8, 8]
    assert set(m.branch_parameters(1)) == {"weight", "bias"}
    assert m.branch_parameters(1)["weight"] is m.branches[1].weight
    with pytest.raises(IndexError):
        m.silence(5)


def test_residual_split_feeds_each_branch_its_input():
    class Split(nn.Module):
        def forward(self, x):
            return ResidualSplit(x[:, :2] * 0.5, torch.stack([x * (k + 1) for k in range(3)]))

    for engine in ("loop", "packed"):
        m = Branched(lin, 3, residual=Split(), engine=engine, seed=0)
        x = torch.randn(4, 3)
        ref = x[:, :2] * 0.5 + sum(b(x * (k + 1)) for k, b in enumerate(m.branches))
        torch.testing.assert_close(m(x), ref)
    phi = m.branch_inputs(x)  # (M, B, 3)
    torch.testing.assert_close(m.engine_outputs("vmap", phi, per_branch=True),
                               torch.stack([b(phi[k]) for k, b in enumerate(m.branches)]))


def test_extra_branch_arguments_are_shared():
    class Cond(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(3, 2)
            self.lin = nn.Linear(3, 2)

        def forward(self, x, y):
            return self.lin(x) + self.emb(y)

    x, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    a = Branched(Cond, 2, engine="loop", seed=0)
    b = Branched(Cond, 2, engine="packed", seed=0)
    torch.testing.assert_close(a(x, y), b(x, y))
    torch.testing.assert_close(a.branch_outputs(x, y), b.engine_outputs("vmap", x, (y,)))


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_bad_num_branches(bad):
    with pytest.raises(ValueError, match="num_branches"):
        Branched(lin, bad)


@pytest.mark.parametrize("bad", ["gpu", "auto", "fused", "vmap"])
def test_bad_engine_is_one_line_naming_the_choices(bad):
    with pytest.raises(ValueError) as e:
        Branched(lin, 2, engine=bad)  # old names are mapped where configs are read back, never here
    assert str(e.value) == f"engine must be one of ('loop', 'packed'), got {bad!r}"
