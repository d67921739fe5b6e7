"""The packed engine is checked in the mode it runs in.

A layer that equals its plain base in eval mode (where the first check runs) but not in training mode must
never be packed as the base for training: a hook is refused up front, code that mixes channels only in
training is caught by the training-mode check, randomness other than dropout layers is refused, and a
module the user keeps in eval mode inside a training model keeps its mode in the packed network.
"""

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from branchspec import Branched
from branchspec.packed import NotPackable, pack


def _drop_connect_hook(p=0.5):
    """DropConnect-style through a forward pre-hook: in training the layer's inputs are randomly thinned (the same
    as dropping whole weight columns); in eval mode, where the first check runs, it is a plain Linear."""
    def hook(mod, args):
        if mod.training:
            return (args[0] * (torch.rand_like(args[0]) > p).float() / (1 - p),)
    return hook


def _hooked():
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    net[2].register_forward_pre_hook(_drop_connect_hook())
    return net


def test_a_hooked_layer_is_refused_up_front():
    with pytest.raises(NotPackable, match=r"branch\.2 \(Linear\): has a forward pre-hook"):
        pack([_hooked(), _hooked()])
    m = Branched(_hooked, 2, engine="packed", seed=0)
    m.train()
    m.branch_outputs(torch.randn(4, 3))
    assert not m.runs_packed() and "forward pre-hook" in m.engine_report()["shared"]
    with pytest.raises(NotPackable, match="strict=True.*forward pre-hook"):
        Branched(_hooked, 2, engine="packed", seed=0, strict=True).branch_outputs(torch.randn(4, 3))


def test_a_hook_added_after_the_first_forward_rebuilds_and_refuses():
    m = Branched(lambda: nn.Sequential(nn.Linear(3, 2)), 2, engine="packed", seed=0)
    x = torch.randn(4, 3)
    m.branch_outputs(x)
    assert m.runs_packed()
    seen = []
    handle = m.branches[1][0].register_forward_hook(lambda mod, i, o: seen.append(o.shape))
    m.branch_outputs(x)
    assert not m.runs_packed() and "forward hook" in m.engine_report()["shared"]
    handle.remove()
    m.branch_outputs(x)
    assert m.runs_packed()


class MixesInTraining(nn.Module):
    """Equal to a plain conv stack in eval mode; in training its own forward mixes channels (a batch-wide
    channel mean, like a home-made normalisation) — which the packed layout would mix across branches."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 1)

    def forward(self, x):
        y = self.conv(x)
        return y - y.mean(1, keepdim=True) if self.training else y


def test_channel_mixing_only_in_training_is_caught_in_training_mode():
    a = Branched(MixesInTraining, 3, engine="loop", seed=0)
    b = Branched(MixesInTraining, 3, engine="packed", seed=0)
    x = torch.randn(2, 2, 4, 4)
    for mode in (False, True):
        a.train(mode)
        b.train(mode)
        torch.testing.assert_close(a.branch_outputs(x), b.branch_outputs(x))
        assert b.runs_packed() is (not mode)
    report = b.engine_report()["shared"]
    assert report.startswith("packed in eval mode, vmap in training mode (packed output differs from the loop "
                             "engine in training mode"), report
    assert "branch (MixesInTraining) mixes channels" in report
    strict = Branched(MixesInTraining, 3, engine="packed", seed=0, strict=True)
    strict.eval()
    strict.branch_outputs(x)
    strict.train()
    with pytest.raises(NotPackable, match="in training mode"):
        strict.branch_outputs(x)


class DropConnect(nn.Module):
    """A parametrization thinning the weight in training mode (DropConnect without a Linear subclass)."""

    def forward(self, w):
        return nn.functional.dropout(w, 0.5, self.training)


def _parametrized():
    lin = nn.Linear(3, 2)
    parametrize.register_parametrization(lin, "weight", DropConnect())
    return nn.Sequential(lin)


class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def forward(self, x):
        y = self.lin(x)
        return y + 0.1 * torch.randn_like(y) if self.training else y


@pytest.mark.parametrize("make", [_parametrized, Noisy], ids=["DropConnect parametrization", "noise in forward"])
def test_randomness_beyond_dropout_is_not_packed_for_training(make):
    m = Branched(make, 3, engine="packed", seed=0)
    x = torch.randn(4, 3)
    m.train()
    m.branch_outputs(x)
    assert not m.runs_packed(), m.engine_report()
    if make is Noisy:  # deterministic in eval mode: packed there
        assert "random in training mode" in m.engine_report()["shared"]
        m.eval()
        m.branch_outputs(x)
        assert m.runs_packed()


def test_dropout_layers_still_pack_for_training():
    make = lambda: nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.3), nn.ReLU(), nn.Linear(8, 2))  # noqa: E731
    m = Branched(make, 3, engine="packed", seed=0)
    m.train()
    v = m.branch_outputs(torch.randn(64, 3))
    assert m.runs_packed() and m.engine_report()["shared"] == "packed"
    assert v.shape == (3, 64, 2)


def test_a_frozen_batchnorm_inside_a_training_model_stays_frozen():
    make = lambda: nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.ReLU())  # noqa: E731
    a = Branched(make, 2, engine="loop", seed=0)
    b = Branched(make, 2, engine="packed", seed=0, strict=True)
    x = torch.randn(4, 2, 3, 3)
    for m in (a, b):
        m.eval()
        m.branch_outputs(x)  # a first forward in eval mode: the eval-mode check
        m.train()
        for br in m.branches:
            br[1].eval()  # the user freezes this BatchNorm
            br[1].running_mean.fill_(0.5)
    torch.testing.assert_close(a.branch_outputs(x), b.branch_outputs(x))
    assert b.runs_packed()
    for (n, p), (_, q) in zip(a.named_buffers(), b.named_buffers()):
        torch.testing.assert_close(p, q, msg=n)  # running statistics untouched by the checks, as by the loop


def test_the_training_check_leaves_batchnorm_statistics_as_the_loop_does():
    make = lambda: nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3))  # noqa: E731
    a = Branched(make, 2, engine="loop", seed=0)
    b = Branched(make, 2, engine="packed", seed=0)
    x = torch.randn(4, 2, 3, 3)
    torch.testing.assert_close(a.branch_outputs(x), b.branch_outputs(x))  # training mode: the check ran first
    assert b.runs_packed()
    for (n, p), (_, q) in zip(a.named_buffers(), b.named_buffers()):
        torch.testing.assert_close(p, q, msg=n)
