"""compile_after_warmup: the warm eager call leaves no trace; a compiled classifier run trains like the eager one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from branchspec.compiling import compile_after_warmup
import branchspec.classifier.train as T
from branchspec.checkpoint import load_checkpoint


def test_an_unknown_compile_mode_is_refused():
    with pytest.raises(ValueError, match="compile_mode"):
        compile_after_warmup(lambda x: x, torch.nn.Linear(1, 1), torch.zeros(1), compile_mode="fast")
    with pytest.raises(ValueError, match="compile_mode"):
        T.TrainConfig(out="x", data="digits", compile=True, compile_mode="fast")


def test_warm_call_restores_batchnorm_statistics_and_rng():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5)).train()
    before = {n: b.clone() for n, b in model.named_buffers()}
    x = torch.randn(8, 3, 6, 6)
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    calls = []
    compiled = compile_after_warmup(lambda x: calls.append(1) or model(x), model, x)
    assert calls == [1] and callable(compiled)  # the eager warm call ran once; nothing compiled yet
    for n, b in model.named_buffers():
        assert torch.equal(b, before[n]), n  # running mean / var / batch count untouched
    assert torch.equal(torch.rand(3), expected)  # the RNG stream goes on as if the warm call had not happened


@pytest.mark.slow  # torch.compile builds C++ kernels: a minute or two
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])  # on a CPU reduce-overhead records no CUDA graph
def test_compiled_classifier_trains_like_eager(tmp_path, mode):
    # One step: later steps of any two fp32 paths part at ReLU kinks (an activation within rounding of 0 takes the
    # other side), which SGD then amplifies — the eager packed engine and the loop part the same way by step 3.
    tiny = dict(data="digits", num_branches=2, width=1, epochs=1, batch_size=32, subset=32, engine="packed",
                eval_batch_size=400, precision="fp32")
    T.train(T.TrainConfig(out=str(tmp_path / "a"), **tiny), progress=False, log=lambda *_: None)
    try:
        T.train(T.TrainConfig(out=str(tmp_path / "b"), compile=True, compile_mode=mode, **tiny), progress=False,
                log=lambda *_: None)
    except Exception as exc:  # no C++ compiler: inductor cannot build its kernels
        if "compiler" in str(exc).lower() or "InvalidCxxCompiler" in type(exc).__name__:
            pytest.skip(f"torch.compile unavailable here: {type(exc).__name__}")
        raise
    a, b = load_checkpoint(tmp_path / "a" / "last")[0], load_checkpoint(tmp_path / "b" / "last")[0]
    assert a.keys() == b.keys()
    for k in a:  # the weights and BatchNorm statistics (the optimiser's buffers hold the raw gradient)
        if k.startswith("model."):
            torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4, msg=k)


@pytest.mark.slow  # torch.compile builds C++ kernels
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_forward_follows_weight_updates(mode):
    """The compiled packed network reads the branches' current weights: after an in-place update (what an optimiser
    step does) it equals the eager model again, not the weights it was traced with."""
    from branchspec.models.resnet import ClassifierConfig, build_classifier

    model = build_classifier(ClassifierConfig(num_branches=2, width=1, engine="packed", seed=0)).eval()
    x = torch.randn(8, 3, 32, 32)
    try:
        fwd = compile_after_warmup(model, model, x, compile_mode=mode)
        first = fwd(x)
    except Exception as exc:  # no C++ compiler: inductor cannot build its kernels
        if "compiler" in str(exc).lower() or "InvalidCxxCompiler" in type(exc).__name__:
            pytest.skip(f"torch.compile unavailable here: {type(exc).__name__}")
        raise
    torch.testing.assert_close(first, model(x), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5).add_(0.05)
    torch.testing.assert_close(fwd(x), model(x), rtol=1e-4, atol=1e-5)
    assert (fwd(x) - first).abs().max() > 1e-2  # the update changed the output
