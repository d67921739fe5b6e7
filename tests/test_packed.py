"""The packed engine (branchspec.packed): layer rules against the loop engine,
fallbacks with a reason, and bf16 training that tracks fp32."""

import copy

import pytest
import torch
from torch import nn

from branchspec import Branched
from branchspec.packed import NotPackable, pack, pack_input, unpack_output


def _same(make, x, *args, m=3, train=True, per_branch_residual=None):
    a = Branched(make, m, engine="loop", seed=0)
    b = Branched(make, m, engine="packed", seed=1)
    b.load_state_dict(a.state_dict())
    a.train(train)
    b.train(train)
    va = a.branch_outputs(x, *args)
    vb = b.branch_outputs(x, *args)
    torch.testing.assert_close(va, vb, atol=1e-5, rtol=1e-5)
    va.square().sum().backward()
    vb.square().sum().backward()
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert q.grad is not None, n
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=n)
    for (n, p), (_, q) in zip(a.named_buffers(), b.named_buffers()):
        torch.testing.assert_close(p, q, msg=n)
    return b


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, groups=2), nn.GroupNorm(3, 6), nn.ReLU()), (2, 4, 5, 5)),
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), nn.InstanceNorm2d(4, affine=True)),
         (2, 3, 6, 6)),
        (lambda: nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3, momentum=None), nn.Flatten(), nn.Linear(3 * 6, 2)),
         (5, 2, 8)),
        (lambda: nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7), nn.GELU(), nn.Linear(7, 2)), (4, 5)),
        (lambda: nn.Sequential(nn.Conv3d(1, 2, 2), nn.BatchNorm3d(2), nn.AdaptiveAvgPool3d(1), nn.Flatten()), (3, 1, 3, 3, 3)),
    ],
)
def test_layer_rules_match_loop(make, shape, train):
    b = _same(make, torch.randn(*shape), train=train)
    assert b.engine_report()["shared"] == "packed"


def test_embedding_and_sequence_linear():
    class Tok(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(11, 4)
            self.out = nn.Linear(4, 3)

        def forward(self, idx):  # (B,) -> (B, 3)
            return self.out(torch.tanh(self.emb(idx)))

    _same(Tok, torch.tensor([0, 3, 10, 3]))


def test_pack_input_unpack_output_roundtrip():
    x = torch.randn(3, 2, 4, 5, 5)  # (M, B, C, H, W)
    packed = pack_input(x)  # (B, M·C, H, W)
    assert packed.shape == (2, 12, 5, 5)
    torch.testing.assert_close(packed[:, 4:8], x[1])  # branch 1's channels, branch-major
    torch.testing.assert_close(unpack_output(packed, 3), x)


class OwnParam(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))

    def forward(self, x):
        return x * self.scale


class MixesChannels(nn.Module):
    """A branch that reverses its channels: fine per branch, wrong on packed tensors without a rule."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 1)

    def forward(self, x):
        return self.conv(x).flip(1)


def test_unpackable_layer_falls_back_with_reason():
    with pytest.raises(NotPackable, match="OwnParam owns 'scale'"):
        pack([OwnParam(), OwnParam()])
    m = Branched(OwnParam, 2, engine="packed", seed=0)
    x = torch.randn(4, 3)
    torch.testing.assert_close(m.branch_outputs(x), torch.stack([x, x]))
    assert "OwnParam owns 'scale'" in m.engine_report()["shared"]


def test_channel_mixing_forward_is_detected_and_falls_back():
    a = Branched(MixesChannels, 3, engine="loop", seed=0)
    b = Branched(MixesChannels, 3, engine="packed", seed=0)
    x = torch.randn(2, 2, 4, 4)
    torch.testing.assert_close(a.branch_outputs(x), b.branch_outputs(x))  # right answer via the fallback
    assert b.engine_report()["shared"].startswith("vmap (packed output differs")


def test_deepcopy_and_state_dict_keep_packed_consistent():
    make = lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())  # noqa: E731
    m = Branched(make, 2, engine="packed", seed=0)
    x = torch.randn(5, 3, 6, 6)
    m(x)  # builds the packed network
    twin = copy.deepcopy(m)
    with torch.no_grad():
        twin.branches[1][0].weight.add_(1.0)
    assert not torch.allclose(twin.branch_outputs(x)[1], m.branch_outputs(x)[1])  # the copy reads its own weights
    assert set(m.state_dict()) == set(Branched(make, 2, engine="loop").state_dict())


def _digits_curve(precision: str, steps: int = 200) -> list[float]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8)
    y = torch.tensor(d.target)
    torch.manual_seed(0)

    def make():
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                             nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

    model = Branched(make, 4, engine="packed", seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            f = model(x[idx])
        loss = nn.functional.cross_entropy(f.float(), y[idx])  # the loss in fp32
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_bf16_training_tracks_fp32():
    """200 SGD steps on digits, same data order: the bf16-autocast loss curve stays near fp32's.

    Tolerance: bf16 keeps 8 mantissa bits (relative rounding 2⁻⁹ ≈ 0.2 % per op),
    so single-step losses drift apart over training; smoothed over 20-step windows the
    measured gap is below 0.05 nats at every window (loss falls from 2.3 to ≈ 0.1),
    and the test allows 0.15 — a bug such as a wrong dtype in a packed layer or the
    loss computed in bf16 without fp32 master weights shows as a gap of ≫ 0.15 or no
    descent at all.
    """
    a = torch.tensor(_digits_curve("fp32")).view(10, 20).mean(1)
    b = torch.tensor(_digits_curve("bf16")).view(10, 20).mean(1)
    assert a[-1] < 0.5 * a[0] and b[-1] < 0.5 * b[0]  # both learn
    assert (a - b).abs().max() < 0.15, (a, b)


# ------------------------------------------------------------- safety: exact rules, change, strictness, report
class DropConnectLinear(nn.Linear):
    """A Linear that drops weights in training: equal to Linear in eval mode, where the one-time check runs."""

    def __init__(self, *a, p=0.5, **k):
        super().__init__(*a, **k)
        self.p = p

    def forward(self, x):
        return nn.functional.linear(x, nn.functional.dropout(self.weight, self.p, self.training), self.bias)


class PlainSubLinear(nn.Linear):
    """A subclass that only adds an attribute: Linear's rule still applies."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.tag = "x"


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.scale = 1.0  # a plain attribute its forward reads

    def forward(self, x):
        return self.lin(x) * self.scale


def test_subclass_redefining_forward_is_not_packed_as_its_base():
    make = lambda: nn.Sequential(nn.Linear(3, 5), nn.ReLU(), DropConnectLinear(5, 2))  # noqa: E731
    with pytest.raises(NotPackable, match=r"branch\.2 \(DropConnectLinear\): redefines Linear\.forward"):
        pack([make(), make()])
    m = Branched(make, 2, engine="packed", seed=0)
    m.branch_outputs(torch.randn(4, 3))
    assert "branch.2 (DropConnectLinear)" in m.engine_report()["shared"]
    strict = Branched(make, 2, engine="packed", seed=0, strict=True)
    with pytest.raises(NotPackable, match="strict=True.*DropConnectLinear"):
        strict.branch_outputs(torch.randn(4, 3))
    ok = Branched(lambda: nn.Sequential(PlainSubLinear(3, 2)), 2, engine="packed", seed=0, strict=True)
    ok.branch_outputs(torch.randn(4, 3))
    assert ok.engine_report()["shared"] == "packed"


@pytest.mark.parametrize("change", ["attribute", "replace module"])
def test_packed_copy_follows_branch_changes_after_the_first_forward(change):
    a = Branched(Scaled, 3, engine="loop", seed=0)
    b = Branched(Scaled, 3, engine="packed", seed=0, strict=True)
    x = torch.randn(5, 3)
    torch.testing.assert_close(a.branch_outputs(x), b.branch_outputs(x))
    for m in (a, b):
        if change == "attribute":
            for br in m.branches:
                br.scale = 2.5
        else:
            torch.manual_seed(7)
            m.branches[1].lin = nn.Linear(3, 4)
    assert "rebuilt on the next forward" in b.engine_report()["shared"]
    torch.testing.assert_close(a.branch_outputs(x), b.branch_outputs(x))
    assert b.engine_report()["shared"] == "packed"


def test_engine_report_before_the_first_forward_and_blame():
    assert "not built yet" in Branched(Scaled, 2, engine="packed").engine_report()["packed"]
    assert "OwnParam owns 'scale'" in Branched(OwnParam, 2, engine="packed").engine_report()["packed"]
    b = Branched(MixesChannels, 3, engine="packed", seed=0)
    b.branch_outputs(torch.randn(2, 2, 4, 4))
    assert "branch (MixesChannels) mixes channels" in b.engine_report()["shared"], b.engine_report()
