"""One test over every branch architecture (STYLE habit 5): forward, backward,
shapes, no NaN, fused == loop in train and eval mode, state dicts shared."""

import pytest
import torch

from branchspec import Branched
from branchspec.models.zoo import architectures

ARCHS = architectures()


def _pair(spec, m=3):
    res = spec.residual
    a = Branched(spec.make_branch, m, residual=res() if res else None, engine="loop", seed=0)
    b = Branched(spec.make_branch, m, residual=res() if res else None, engine="fused", seed=1)
    b.load_state_dict(a.state_dict())  # state dicts interchangeable between engines
    return a, b


@pytest.mark.parametrize("name", sorted(ARCHS))
@pytest.mark.parametrize("train", [True, False])
def test_fused_equals_loop(name, train):
    spec = ARCHS[name]
    a, b = _pair(spec)
    a.train(train)
    b.train(train)
    x = spec.example_input(4)
    args = spec.example_args(4)
    fa, va = a(x, *args, return_branches=True)
    fb, vb = b(x, *args, return_branches=True)
    assert va.shape[:2] == (3, 4)
    assert fa.shape == va.shape[1:]
    assert torch.isfinite(fa).all() and torch.isfinite(va).all()
    torch.testing.assert_close(va, vb, atol=spec.tol, rtol=spec.tol)
    torch.testing.assert_close(fa, fb, atol=spec.tol, rtol=spec.tol)
    (fa.square().mean()).backward()
    (fb.square().mean()).backward()
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        if p.grad is None:
            assert q.grad is None, n
            continue
        assert torch.isfinite(p.grad).all(), n
        torch.testing.assert_close(p.grad, q.grad, atol=spec.tol * 10, rtol=spec.tol * 10, msg=n)
    # running statistics updated per branch, identically
    for (n, p), (_, q) in zip(a.named_buffers(), b.named_buffers()):
        torch.testing.assert_close(p.float(), q.float(), atol=spec.tol, rtol=spec.tol, msg=n)
