"""A tiny stand-in branched generator for the decomposition tests (no GAN training needed).

Branch k: conv → + domain embedding → tanh → conv, called as branch(x, y);
R: a fixed Gaussian blur of x. Registered as model kind "test-standin-generator".
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from branchspec import Branched
from branchspec.models.registry import model_spec, register
from branchspec.checkpoint import prefixed, save_checkpoint

KIND = "test-standin-generator"


class TinyBranch(nn.Module):
    def __init__(self, domains: int, width: int = 4):
        super().__init__()
        self.a = nn.Conv2d(3, width, 3, padding=1)
        self.emb = nn.Embedding(domains, width)
        self.b = nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x, y):
        h = torch.tanh(self.a(x) + self.emb(y)[:, :, None, None])
        return 0.3 * self.b(h)


class Blur(nn.Module):
    def __init__(self, sigma: float = 1.5):
        super().__init__()
        r = 3
        t = torch.arange(-r, r + 1, dtype=torch.float32)
        g = torch.exp(-(t**2) / (2 * sigma**2))
        g = g / g.sum()
        self.register_buffer("k", g, persistent=False)

    def forward(self, x):
        c = x.shape[1]
        kx = self.k.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
        ky = self.k.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
        x = F.conv2d(F.pad(x, (3, 3, 0, 0), mode="reflect"), kx, groups=c)
        return F.conv2d(F.pad(x, (0, 0, 3, 3), mode="reflect"), ky, groups=c)


@register(KIND)
def build(config: dict) -> Branched:
    return Branched(lambda: TinyBranch(config["domains"]), config["branches"], residual=Blur(),
                    engine="loop", seed=config.get("seed", 0))


def make_checkpoint(path, domains=("cat", "dog"), branches=3, img_size=16, **extra_state):
    cfg = {"domains": len(domains), "branches": branches, "seed": 0}
    gen = build(cfg)
    save_checkpoint(path, prefixed("model", gen.state_dict()),
                    {"model": model_spec(KIND, cfg), "domains": list(domains), "img_size": img_size, **extra_state})
    return gen
