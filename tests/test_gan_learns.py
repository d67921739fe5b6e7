"""The discriminator leaves chance in train-gan under StarGAN-v2's he_init.

Under PyTorch's default init D's logits start at ≈ 0.01–0.04 and d/real + d/fake
stayed at 2·log 2; he_init (the default) gives O(1) logits from the start.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from branchspec.data.embedded import embedded_domains
from branchspec.models.discriminator import Discriminator, DiscriminatorConfig
from branchspec.models.generator import GeneratorBranch, GeneratorConfig
from branchspec.models.layers import he_init
from branchspec.gan.train import GanTrainConfig, GanTrainer

CHANCE = 2 * math.log(2)  # d/real + d/fake when D outputs 0


@pytest.fixture(scope="module")
def data():
    return embedded_domains(16, n_per_domain=8)


def _d_loss_curve(data, init, steps=40):
    torch.set_num_threads(1)
    cfg = GanTrainConfig(img_size=16, num_branches=2, batch_size=4, base_width=4, max_width=8, style_dim=4,
                         d_base_width=16, d_max_width=32, engine="loop", init=init, steps=steps,
                         sample_every=0, ckpt_every=0)
    trainer = GanTrainer(cfg, "unused", progress=False, data=data)
    losses = []
    for _ in range(steps):
        logs = trainer.train_step()
        losses.append(logs["d/real"] + logs["d/fake"])
    return np.array(losses)


def test_discriminator_leaves_chance(data):
    late = _d_loss_curve(data, "he")[-10:].mean()
    assert late < CHANCE - 0.1, late  # measured 1.17 (chance 1.386)


def test_he_init_matches_stargan_v2():
    """kaiming-normal (fan_in, ReLU gain) weights and zero biases on every conv/linear layer."""
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig(img_size=16, num_domains=2, base_width=32, max_width=64))
    for m in d.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            if m.weight.numel() >= 1000:  # enough entries for a 15 % std check
                assert abs(m.weight.std().item() / math.sqrt(2 / fan_in) - 1) < 0.15
            if m.bias is not None:
                assert torch.count_nonzero(m.bias) == 0
    x = torch.randn(8, 3, 16, 16)
    assert d.logits(x).abs().mean() > 0.1  # torch's default init gives ≈ 0.01–0.04
    torch.manual_seed(0)
    old = Discriminator(DiscriminatorConfig(img_size=16, num_domains=2, base_width=32, max_width=64, init="torch"))
    assert old.logits(x).abs().mean() < d.logits(x).abs().mean()
    # generator branches: he_init, then the output conv scaled by 0.1 (f ≈ R at the start)
    b = GeneratorBranch(GeneratorConfig(img_size=16, num_domains=2, base_width=16, max_width=32, style_dim=8))
    assert torch.count_nonzero(b.from_rgb.bias) == 0
    w = b.encode[0].conv1.weight
    assert abs(w.std().item() / math.sqrt(2 / w[0].numel()) - 1) < 0.15
    assert b.to_rgb.weight.std() < 0.1 * math.sqrt(2 / 16) * 1.5


def test_he_init_function():
    m = he_init(nn.Linear(50, 400))
    assert torch.count_nonzero(m.bias) == 0
    assert abs(m.weight.std().item() - math.sqrt(2 / 50)) < 0.01
