"""One test over every branch architecture (STYLE habit 5): forward, backward,
shapes, no NaN, the packed network and packed's vmap fallback == the loop engine
in train and eval mode, with silenced branches; state dicts shared; BatchNorm
statistics per branch."""

import pytest
import torch

from branchspec import Branched
from branchspec.models import registry
from branchspec.models.registry import ARCHITECTURES as ARCHS

EXPECTED = {"mlp", "conv-bn", "toy-neuron", "slim-resnet18", "generator-gaussian", "generator-diffusion"}
EXPECTED_KINDS = {"toy", "classifier", "generator"}  # checkpoint kinds the package writes


def test_every_expected_architecture_is_registered():
    assert EXPECTED <= set(ARCHS), f"missing: {sorted(EXPECTED - set(ARCHS))}"
    assert EXPECTED_KINDS <= set(registry.kinds()), f"missing kinds: {sorted(EXPECTED_KINDS - set(registry.kinds()))}"
    for kind in EXPECTED_KINDS:  # every checkpoint kind is walked by the test below
        assert any(s.kind == kind for s in ARCHS.values()), kind


@pytest.mark.parametrize("name", sorted(n for n, s in ARCHS.items() if s.kind))
def test_checkpoint_kinds_build_from_their_tiny_config(name):
    spec = ARCHS[name]
    model = registry.build_model(spec.kind, {**spec.config, "num_branches": 2})
    assert isinstance(model, Branched) and model.num_branches == 2
    out = model(spec.example_input(2), *spec.example_args(2))
    assert out.shape[0] == 2 and torch.isfinite(out).all()


def test_unknown_kind_is_a_one_line_error():
    from branchspec.errors import BranchspecError

    with pytest.raises(BranchspecError, match="unknown model kind 'nope'; known: "):
        registry.build_model("nope", {})


def _pair(spec, path, m=3):
    a = spec.build({**spec.config, "num_branches": m, "engine": "loop", "seed": 0})
    b = spec.build({**spec.config, "num_branches": m, "engine": "packed", "seed": 1})
    if spec.prepare is not None:
        spec.prepare(a)
    assert a.engine == "loop" and b.engine == "packed"
    b.load_state_dict(a.state_dict())  # state dicts interchangeable between engines
    if path == "vmap":  # a hooked module is never packed: the forward takes packed's vmap fallback
        for branch in b.branches:
            branch.register_forward_hook(lambda mod, inp, out: None)
    return a, b


@pytest.mark.parametrize("name", sorted(ARCHS))
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("path", ["vmap", "packed"])
def test_engine_equals_loop(name, train, path):
    spec = ARCHS[name]
    a, b = _pair(spec, path)
    a.train(train)
    b.train(train)
    a.silence(1)
    b.silence(1)
    x = spec.example_input(4)
    args = spec.example_args(4)
    fa, va = a(x, *args, return_branches=True)
    fb, vb = b(x, *args, return_branches=True)
    report = b.engine_report()
    if path == "packed":
        assert b.runs_packed(per_branch=name == "generator-diffusion") and "vmap" not in str(report), report
    else:  # really ran vmap, not the loop behind it
        assert "vmap (not packable" in str(report) and "the loop in" not in str(report), report
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
