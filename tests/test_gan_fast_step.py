"""The fast GAN step: one G forward per step, lazy R1, channels_last, --precision auto, optional torch.compile.

Each is checked against a slow reference written out here (StarGAN-v2's order:
G(x, ỹ) under no_grad for the D step, again with grad for the G step; R1 on
every step; NCHW), and the precision rule on both kinds of CPU with the
capability mocked.
"""

import copy

import pytest
import torch

from branchspec import precision
from branchspec.data.embedded import embedded_domains
from branchspec.models.generator import generator_labels
import branchspec.gan.losses as gan_losses
from branchspec.gan.train import GanTrainConfig, GanTrainer

TINY = dict(img_size=16, num_branches=2, batch_size=4, base_width=4, max_width=8, style_dim=4, d_base_width=4,
            d_max_width=8, n_per_domain=4, engine="packed", sample_every=0, ckpt_every=0, precision="fp32")


@pytest.fixture(scope="module")
def data():
    return embedded_domains(16, n_per_domain=4)


def reference_step(tr: GanTrainer, r1_weight: float) -> None:
    """The step as StarGAN-v2 writes it (G twice, R1 weight given), on the trainer's batch of its step."""
    cfg = tr.cfg
    from branchspec.gan.train import _step_generator

    g = _step_generator(cfg.seed, tr.rank, tr.step)
    x, y = tr.data.batch(tr.batch_indices(tr.step), tr.device)
    b = x.shape[0]
    flip = (torch.rand(b, generator=g) < 0.5).view(-1, 1, 1, 1)
    x = torch.where(flip, x.flip(-1), x).contiguous()
    y_trg = torch.randint(len(tr.data.domains), (b,), generator=g)
    labels = generator_labels(tr.G, y, y_trg)
    with torch.no_grad():
        x_fake = tr.G(x, labels)
    x_real = x.detach().requires_grad_(True)
    logits = tr.D(torch.cat([x_real, x_fake]), torch.cat([y, y_trg]))
    d_loss, _ = gan_losses.discriminator_loss(logits[:b], logits[b:], x_real, r1_weight)
    tr.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    tr.opt_d.step()
    tr.D.requires_grad_(False)
    g_loss, _ = gan_losses.generator_loss(tr.D(tr.G(x, labels), y_trg))
    tr.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    tr.opt_g.step()
    tr.D.requires_grad_(True)


def _params(tr):
    return {**{f"g.{k}": v for k, v in tr.G.state_dict().items()}, **{f"d.{k}": v for k, v in tr.D.state_dict().items()}}


def _grads(tr):
    return {f"g.{k}": p.grad for k, p in tr.G.named_parameters()} | {f"d.{k}": p.grad for k, p in tr.D.named_parameters()}


@pytest.mark.parametrize("r1_every", [1, 3])
def test_fast_step_equals_reference(tmp_path, data, monkeypatch, r1_every):
    """Three trainer steps == three reference steps (G twice, NCHW), R1 scaled by N on every N-th step.

    Compared: every gradient of every step (per tensor, relative to its norm), and the weights after
    three steps. Tensors whose exact gradient is 0 (a bias before an instance norm) receive rounding
    noise that Adam scales up to ±lr, so weights are compared to within three Adam steps of lr.
    """
    fast = GanTrainer(GanTrainConfig(**TINY, r1_every=r1_every), tmp_path / "a", progress=False, data=data)
    start = {k: v.clone() for k, v in _params(fast).items()}
    monkeypatch.setenv("BRANCHSPEC_NCHW", "1")  # the reference runs in the default NCHW layout
    slow = GanTrainer(GanTrainConfig(**TINY, r1_every=r1_every), tmp_path / "b", progress=False, data=data)
    assert fast.channels_last and not slow.channels_last
    for step in range(3):
        fast.train_step()
        reference_step(slow, 1.0 * r1_every if step % r1_every == 0 else 0.0)
        slow.step += 1
        gf, gs = _grads(fast), _grads(slow)
        for k, g in gs.items():
            if g is None or g.norm() < 1e-6:
                continue
            assert (gf[k] - g).norm() <= 1e-4 * g.norm(), (step, k)
    pf, ps = _params(fast), _params(slow)
    for k in pf:
        torch.testing.assert_close(pf[k], ps[k], rtol=1e-4, atol=3 * fast.cfg.lr + 1e-6, msg=k)
    assert sum(not torch.equal(pf[k], start[k]) for k in pf) > len(pf) // 2  # the steps did train


def test_lazy_r1_logs_the_penalty_only_on_its_steps(tmp_path, data):
    tr = GanTrainer(GanTrainConfig(**TINY, r1_every=2), tmp_path, progress=False, data=data)
    seen = ["d/r1" in tr.train_step() for _ in range(4)]
    assert seen == [True, False, True, False]


@pytest.mark.slow  # torch.compile builds C++ kernels: about a minute
def test_compiled_generator_matches_eager(tmp_path, data):
    """--compile: the same losses as the eager step within float tolerance (torch.compile on CPU)."""
    pytest.importorskip("torch._inductor")
    eager = GanTrainer(GanTrainConfig(**TINY), tmp_path / "a", progress=False, data=data)
    comp = GanTrainer(GanTrainConfig(**TINY, compile=True), tmp_path / "b", progress=False, data=data)  # reflect
    try:
        la, lb = eager.train_step(), comp.train_step()
    except Exception as exc:  # no C++ compiler: inductor cannot build its kernels
        if "compiler" in str(exc).lower() or "InvalidCxxCompiler" in type(exc).__name__:
            pytest.skip(f"torch.compile unavailable here: {type(exc).__name__}")
        raise
    assert comp.G_forward is not comp.G_train
    for k in la:
        assert lb[k] == pytest.approx(la[k], rel=1e-3, abs=1e-4), k


@pytest.mark.parametrize("flags, capability, want", [
    ({"avx512_bf16", "avx512f"}, "AVX512", "bf16"),
    ({"amx_bf16", "avx512f"}, "AVX512", "bf16"),
    ({"avx2"}, "AVX2", "fp32"),
    ({"avx512f"}, "AVX512", "fp32"),  # AVX-512 without its bf16 extension: emulated, slow
    ({"avx512_bf16"}, "DEFAULT", "fp32"),  # torch runs without the vector kernels
])
def test_precision_auto_follows_the_cpu(monkeypatch, flags, capability, want):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert precision.resolve_precision("auto", "cpu") == want
    assert precision.resolve_precision("auto", "cuda") == "bf16"
    assert precision.resolve_precision("fp32", "cuda") == "fp32"
    cfg = GanTrainConfig(**{**TINY, "precision": "auto"}, device="cpu")
    assert cfg.precision == want  # recorded resolved, so --resume compares what really ran


def test_precision_rejects_unknown():
    with pytest.raises(ValueError, match="precision"):
        precision.resolve_precision("fp16", "cpu")


def test_old_generator_configs_keep_zero_padding():
    from branchspec.models.generator import build_from_config

    cfg = dict(img_size=16, num_domains=2, num_branches=2, base_width=4, max_width=8, style_dim=4, engine="loop")
    old = build_from_config(cfg)  # a checkpoint written before the option: zeros
    assert old.branches[0].from_rgb.padding_mode == "zeros"
    new = build_from_config({**cfg, "padding": "reflect"})
    assert new.branches[0].from_rgb.padding_mode == "reflect"
    assert copy.deepcopy(new).branches[0].encode[0].conv1.padding_mode == "reflect"


def test_classifier_precision_auto_is_recorded_resolved(monkeypatch):
    from branchspec.classifier.train import TrainConfig

    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert TrainConfig(data="digits", out="x").precision == "fp32"
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert TrainConfig(data="digits", out="x").precision == "bf16"
    assert TrainConfig(data="digits", out="x", precision="fp32").precision == "fp32"


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
def test_pad2d_equals_f_pad_with_its_gradient(mode):
    import torch.nn.functional as F

    from branchspec.padding import pad2d

    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.equal(pad2d(x, 2, mode), F.pad(x, (2, 2, 2, 2), mode=mode))
    assert torch.autograd.gradcheck(lambda t: pad2d(t, 2, mode), (x,))
    xc = torch.randn(2, 4, 5, 5).contiguous(memory_format=torch.channels_last)
    assert pad2d(xc, 1, mode).is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="mode"):
        pad2d(x, 1, "circular")
