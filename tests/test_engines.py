"""The engines of ``Branched``: two public choices, and the capability rule behind the default ``"packed"``.

M = 1 runs the loop; branches that pack run the packed network; branches that do not pack run the vmap
fallback, with the reason; branches vmap cannot run run the loop, with the reason, decided once per input kind
and mode (no timing: a resumed run takes the same path).
"""

import importlib.util

import pytest
import torch
from torch import nn

from branchspec import Branched
from branchspec.branched import ENGINES


def _mlp():
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))


class OwnParam(nn.Module):
    """A branch owning a parameter and no packing rule: not packable, but vmap runs it."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 2))

    def forward(self, x):
        return torch.tanh(x @ self.w)


CALLS = []  # forward calls of NoVmap, one entry each (a module attribute would change the packing fingerprint)


class NoVmap(OwnParam):
    """Not packable, and vmap cannot run it either: a Python branch on a parameter's value (``.item()``). It draws
    noise before that, so a vmap attempt consumes random numbers the loop would not."""

    def forward(self, x):
        CALLS.append(1)
        y = x @ self.w + 0.1 * torch.randn(x.shape[0], 2)
        return y * 2.0 if self.w.sum().item() > 0 else y


def test_two_public_choices_and_packed_by_default():
    assert ENGINES == ("loop", "packed")
    assert Branched(_mlp, 2).engine == "packed"
    assert importlib.util.find_spec("branchspec.engine_timing") is None  # timing lives in benchmarks/ only


def test_one_branch_runs_the_loop():
    m = Branched(NoVmap, 1, seed=0)
    x = torch.randn(4, 3)
    before = len(CALLS)
    torch.manual_seed(1)
    f = m(x)
    assert len(CALLS) - before == 1  # the branch itself, once: no packing check, no vmap attempt
    torch.manual_seed(1)
    torch.testing.assert_close(f, m.branches[0](x))
    assert not m.runs_packed()
    assert m.engine_report() == {"engine": "packed", "packed": "loop (M = 1: one branch, nothing to pack)"}


def test_a_packable_model_runs_the_packed_network():
    a, b = Branched(_mlp, 3, engine="loop", seed=0), Branched(_mlp, 3, seed=0)
    x = torch.randn(5, 3)
    torch.testing.assert_close(a(x), b(x))
    assert b.runs_packed() and b.engine_report() == {"engine": "packed", "shared": "packed"}
    assert a.engine_report() == {"engine": "loop"}


def test_a_branch_without_a_packing_rule_runs_the_vmap_fallback_with_the_reason():
    a, b = Branched(OwnParam, 3, engine="loop", seed=0), Branched(OwnParam, 3, seed=0)
    x = torch.randn(5, 3)
    fa, fb = a(x), b(x)
    torch.testing.assert_close(fa, fb)
    fa.square().sum().backward()
    fb.square().sum().backward()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    report = b.engine_report()["shared"]
    assert not b.runs_packed()
    assert report == ("vmap (not packable: branch (OwnParam): OwnParam owns 'w' and has no packing rule "
                      "(register_packer))"), report


def test_a_branch_vmap_cannot_run_runs_the_loop_with_the_reason_decided_once():
    a, b = Branched(NoVmap, 3, engine="loop", seed=0), Branched(NoVmap, 3, seed=0)
    x = torch.randn(4, 3)
    outs = []
    for m in (a, b):
        torch.manual_seed(5)
        outs.append(m(x))
        outs.append(torch.rand(3))  # the RNG stream after the forward: the failed vmap attempt drew nothing
    torch.testing.assert_close(outs[0], outs[2])
    torch.testing.assert_close(outs[1], outs[3])
    report = b.engine_report()["shared"]
    assert report.startswith("vmap (not packable: branch (NoVmap)"), report
    assert report.endswith("; the loop in training mode: vmap cannot run the branch (vmap: It looks like you're "
                           "calling .item() on a Tensor)"), report
    before = len(CALLS)
    b(x)
    assert len(CALLS) - before == 3  # decided: the three branches one by one, no second vmap attempt
    b.eval()
    b(x)  # eval mode is its own decision
    assert "the loop in training and eval mode" in b.engine_report()["shared"]
    with pytest.raises(RuntimeError, match=r"\.item\(\)"):
        b.engine_outputs("vmap", x)  # forcing the fallback raises where it cannot run


def test_an_input_error_is_the_callers_and_decides_nothing():
    m = Branched(OwnParam, 2, seed=0)
    with pytest.raises(RuntimeError):
        m(torch.randn(4, 5))  # wrong width: vmap fails, and the loop fails too
    assert "loop" not in m.engine_report().get("shared", "")
    m(torch.randn(4, 3))
    assert m.engine_report()["shared"].startswith("vmap (not packable"), m.engine_report()


def test_the_rule_is_deterministic_so_two_runs_take_the_same_path():
    reports = []
    for _ in range(2):
        m = Branched(NoVmap, 2, seed=0)
        torch.manual_seed(0)
        f = m(torch.randn(3, 3))
        reports.append((m.engine_report(), f))
    assert reports[0][0] == reports[1][0]
    torch.testing.assert_close(reports[0][1], reports[1][1], rtol=0, atol=0)
