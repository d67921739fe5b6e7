"""One test over every branch architecture (STYLE habit 5): forward, backward,
shapes, no NaN, every engine == the loop engine in train and eval mode, with
silenced branches; state dicts shared; BatchNorm statistics per branch."""

import pytest
import torch

from branchspec import Branched
from branchspec.models.zoo import architectures

ARCHS = architectures()
EXPECTED = {"mlp", "conv-bn", "toy-neuron", "slim-resnet18", "generator-gaussian", "generator-diffusion"}


def test_every_expected_architecture_is_registered():
    assert EXPECTED <= set(ARCHS), f"missing: {sorted(EXPECTED - set(ARCHS))}"


def _pair(spec, engine, m=3):
    res = spec.residual
    a = Branched(spec.make_branch, m, residual=res() if res else None, engine="loop", seed=0)
    b = Branched(spec.make_branch, m, residual=res() if res else None, engine=engine, seed=1)
    b.load_state_dict(a.state_dict())  # state dicts interchangeable between engines
    return a, b


@pytest.mark.parametrize("name", sorted(ARCHS))
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("engine", ["fused", "packed"])
def test_engine_equals_loop(name, train, engine):
    spec = ARCHS[name]
    a, b = _pair(spec, engine)
    a.train(train)
    b.train(train)
    a.silence(1)
    b.silence(1)
    x = spec.example_input(4)
    args = spec.example_args(4)
    fa, va = a(x, *args, return_branches=True)
    fb, vb = b(x, *args, return_branches=True)
    if engine == "packed":
        assert "fused" not in str(b.engine_report()), b.engine_report()  # really ran packed
    assert va.shape[:2] == (3, 4)
    assert fa.shape == va.shape[1:]
    assert torch.isfinite(fa).all() and torch.isfinite(va).all()
    torch.testing.assert_close(va, vb, atol=spec.tol, rtol=spec.tol)
    torch.testing.assert_close(fa, fb, atol=spec.tol, rtol=spec.tol)
    # the silenced branch 1 contributes nothing to f = R + Σ_k g_k v_k, in every engine
    r = b.residual_output(x)
    torch.testing.assert_close(fb, vb[0] + vb[2] + (0 if r is None else r), atol=spec.tol, rtol=spec.tol)
    (fa.square().mean() + va.square().mean()).backward()
    (fb.square().mean() + vb.square().mean()).backward()
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert p.grad is not None and q.grad is not None, f"{n} received no gradient"
        assert torch.isfinite(p.grad).all(), n
        torch.testing.assert_close(p.grad, q.grad, atol=spec.tol * 10, rtol=spec.tol * 10, msg=n)
    # running statistics updated per branch, identically
    for (n, p), (_, q) in zip(a.named_buffers(), b.named_buffers()):
        torch.testing.assert_close(p.float(), q.float(), atol=spec.tol, rtol=spec.tol, msg=n)
