"""Generator, residuals, discriminator and GAN losses (paper §7, App. E)."""

import math

import pytest
import torch

from branchspec import Branched
from branchspec.branched import ResidualSplit
from branchspec.models.diffusion import DiffusionCNN, GaussianSmoothing, LearntDiffusion, laplacian
from branchspec.models.discriminator import Discriminator, DiscriminatorConfig
from branchspec.models.generator import GeneratorBranch, GeneratorConfig, build_generator, count_parameters
from branchspec.loading import load_model
from branchspec.models.registry import build_model, model_spec
import branchspec.gan.losses as gan_losses
from branchspec.checkpoint import prefixed, save_checkpoint

TINY = dict(img_size=16, num_domains=3, num_branches=3, base_width=8, max_width=16, style_dim=8, mapping_width=8)




def test_generator_shapes_and_sum():
    g = build_generator(GeneratorConfig(**TINY))
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([0, 2])
    f, v, r = g.forward_all(x, y)
    assert f.shape == (2, 3, 16, 16) and v.shape == (3, 2, 3, 16, 16)
    torch.testing.assert_close(f, r + v.sum(0))
    torch.testing.assert_close(r, GaussianSmoothing(GeneratorConfig(**TINY).resolved_sigma)(x))


def test_style_depends_on_target_domain_only():
    b = GeneratorBranch(GeneratorConfig(**TINY))
    x = torch.randn(1, 3, 16, 16).expand(2, -1, -1, -1)
    out = b(x, torch.tensor([0, 1]))
    assert not torch.allclose(out[0], out[1])
    torch.testing.assert_close(b(x, torch.tensor([1, 1]))[0], out[1])


def test_parameter_budget_256():
    """M = 9 slim branches at 256² cost no more than one original StarGAN-v2 generator (≈ 33.9 M)."""
    with torch.device("meta"):  # count without allocating
        slim = count_parameters(GeneratorBranch(GeneratorConfig(img_size=256, num_domains=3)))
        original = count_parameters(GeneratorBranch(GeneratorConfig(img_size=256, num_domains=3, base_width=64, max_width=512)))
    assert 2.6e6 < slim < 3.0e6
    assert 33.0e6 < original < 34.5e6  # the StarGAN-v2 layout without the high-pass path
    assert 9 * slim <= original


def test_diffusion_cnn_size():
    n = count_parameters(DiffusionCNN(3, 36))
    assert 3.8e4 < n < 4.2e4  # App. E: 4.05·10⁴
    assert sum(isinstance(m, torch.nn.Conv2d) for m in DiffusionCNN(3, 36).modules()) == 8


@pytest.mark.parametrize("kappa", [0.0, 0.5])
def test_diffusion_reconstruction_identity(kappa):
    """x = Σ_k φ_k + R exactly (App. E, eq. 17, discrete), for a random non-zero p."""
    torch.manual_seed(0)
    d = LearntDiffusion(channels=3, num_branches=9, time=1.0, width=12, kappa=kappa).double()
    for conv in d.q.convs:
        torch.nn.init.normal_(conv.weight, std=0.2)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    split = d(x)
    assert isinstance(split, ResidualSplit)
    assert split.branch_inputs.shape == (9, 2, 3, 12, 12)
    assert split.branch_inputs.abs().max() > 1e-3  # the components are not trivially zero
    torch.testing.assert_close(split.branch_inputs.sum(0) + split.residual, x, atol=1e-12, rtol=0)
    # float32 to float tolerance
    d32, x32 = d.float(), x.float()
    s32 = d32(x32)
    torch.testing.assert_close(s32.branch_inputs.sum(0) + s32.residual, x32, atol=1e-5, rtol=1e-5)


def test_diffusion_brute_force_reference():
    """φ_k and R against a direct transcription of the scheme in the docstring."""
    torch.manual_seed(1)
    d = LearntDiffusion(channels=1, num_branches=4, time=2.0, width=8, kappa=0.3).double()
    for conv in d.q.convs:
        torch.nn.init.normal_(conv.weight, std=0.3)
    x = torch.randn(1, 1, 10, 10, dtype=torch.float64)
    dt, us = 0.5, [x]
    for _ in range(4):
        us.append(us[-1] - dt * d.p(us[-1]))
    P = [d.p(u) for u in us]  # P_0..P_4
    phi = [-(k * dt) * (P[k] - P[k - 1]) for k in range(1, 5)]
    split = d(x)
    torch.testing.assert_close(split.branch_inputs, torch.stack(phi))
    torch.testing.assert_close(split.residual, 2.0 * P[4] + us[4])


def test_heat_initialisation_smooths():
    """With q = 0 at init, p is heat diffusion: R is a low-pass version of x."""
    d = LearntDiffusion(channels=1, num_branches=9, kappa=1.0)
    x = torch.zeros(1, 1, 16, 16)
    x[..., ::2, :] = 1.0  # highest vertical frequency
    r = d(x).residual
    assert r.std() < 0.5 * x.std()
    torch.testing.assert_close(r.mean(), x.mean(), atol=1e-5, rtol=0)  # heat conserves mass (reflect borders)
    assert laplacian(torch.ones(1, 1, 5, 5)).abs().max() == 0


def test_gaussian_smoothing_matches_dense_reference():
    g = GaussianSmoothing(1.3)
    x = torch.randn(1, 2, 9, 11)
    r = (g.kernel.numel() - 1) // 2
    xp = torch.nn.functional.pad(x, (r, r, r, r), mode="reflect")
    k2 = torch.outer(g.kernel, g.kernel)
    ref = torch.zeros_like(x)
    for i in range(9):
        for j in range(11):
            ref[..., i, j] = (xp[..., i: i + 2 * r + 1, j: j + 2 * r + 1] * k2).sum((-2, -1))
    torch.testing.assert_close(g(x), ref, atol=1e-5, rtol=1e-5)


def test_generator_with_diffusion_feeds_phi_k():
    cfg = GeneratorConfig(**TINY, residual="diffusion", sigma=1.0)
    g = build_generator(cfg)
    x, y = torch.randn(2, 3, 16, 16), torch.tensor([1, 0])
    f, v, r = g.forward_all(x, y)
    phi = g.residual(x).branch_inputs  # (M, B, C, H, W)
    for k in range(3):  # brute force: branch k on its own φ_k
        torch.testing.assert_close(v[k], g.branches[k](phi[k], y), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(f, r + v.sum(0), atol=1e-5, rtol=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="img_size"):
        GeneratorConfig(img_size=24)
    with pytest.raises(ValueError, match="residual"):
        GeneratorConfig(residual="median")
    with pytest.raises(ValueError, match="sigma"):
        GeneratorConfig(residual="diffusion", sigma=5.0)
    with pytest.raises(ValueError, match="max_width"):
        GeneratorConfig(base_width=64, max_width=32)


def test_registry_round_trip(tmp_path):
    cfg = GeneratorConfig(**TINY, engine="loop")
    g = build_generator(cfg)
    save_checkpoint(tmp_path / "g", prefixed("model", g.state_dict()), {"model": model_spec("generator", cfg.to_dict())})
    h, _ = load_model(tmp_path / "g")
    assert isinstance(h, Branched)
    x, y = torch.randn(1, 3, 16, 16), torch.tensor([2])
    torch.testing.assert_close(g.eval()(x, y), h(x, y))
    assert isinstance(build_model("generator", {"img_size": 16, "num_domains": 2}), Branched)


def test_discriminator_selects_domain_logit():
    d = Discriminator(DiscriminatorConfig(img_size=16, num_domains=3, base_width=8, max_width=16))
    x = torch.randn(4, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 1])
    all_logits = d.logits(x)  # (B, D)
    assert all_logits.shape == (4, 3)
    torch.testing.assert_close(d(x, y), torch.stack([all_logits[i, y[i]] for i in range(4)]))


def test_losses_values_and_r1():
    z = torch.zeros(3)
    loss, logs = gan_losses.generator_loss(z)
    assert math.isclose(loss.item(), math.log(2), rel_tol=1e-6) and set(logs) == {"g/adv"}
    # R1 of D(x) = Σ a·x is ½‖a‖² per sample
    a = torch.randn(1, 2, 3, 3)
    x = torch.randn(4, 2, 3, 3, requires_grad=True)
    logits = (x * a).flatten(1).sum(1)
    torch.testing.assert_close(gan_losses.r1_penalty(logits, x), 0.5 * a.pow(2).sum())
    loss, logs = gan_losses.discriminator_loss(torch.full((4,), 2.0), torch.full((4,), -1.0), x, 0.0)
    ref = math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0))
    assert math.isclose(loss.item(), ref, rel_tol=1e-6) and "d/r1" not in logs
    loss, logs = gan_losses.discriminator_loss(logits, torch.zeros(4), x, 10.0)
    assert math.isclose(logs["d/r1"], 0.5 * a.pow(2).sum().item(), rel_tol=1e-5)
    loss.backward()  # the penalty is differentiable (double backward)


def test_ema_update():
    from branchspec.train.ema import ema_update

    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    wa, wb = a.weight.detach().clone(), b.weight.detach().clone()
    ema_update(a, b, 0.9)
    torch.testing.assert_close(a.weight, 0.9 * wa + 0.1 * wb)


def test_gan_and_classifier_ema_share_the_warm_up():
    from branchspec.train.ema import WeightEMA, ema_update, warmup_decay

    torch.manual_seed(0)
    model, ema_net = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    ema_net.load_state_dict(model.state_dict())
    shadow = WeightEMA(model, 0.95)
    ref = model.weight.detach().clone()
    for t in range(12):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        d = min(0.95, (1 + t) / (10 + t))  # by hand
        assert warmup_decay(0.95, t) == d
        ref = d * ref + (1 - d) * model.weight.detach()
        shadow.update(model)
        ema_net_before = ema_net.weight.detach().clone()
        ema_update(ema_net, model, warmup_decay(0.95, t))
        torch.testing.assert_close(ema_net.weight, d * ema_net_before + (1 - d) * model.weight.detach())
    torch.testing.assert_close(shadow.shadow["weight"], ref)
    assert torch.equal(shadow.shadow["weight"], ema_net.weight)  # the same lerp, number for number
