"""Layers shared by the generator and the discriminator of §7 / App. D–E (StarGAN-v2 blocks).

* :func:`he_init` — StarGAN-v2's initialisation (``INITS`` names the choices);
* :func:`instance_norm`, :class:`InstanceNorm` — instance normalisation
  without running statistics (vmap- and packing-friendly);
* :class:`ResBlock` — StarGAN-v2's pre-activation ResBlk, used by the
  generator's encoder and by the discriminator's trunk.

Example:
    >>> import torch
    >>> ResBlock(4, 8, normalize=True, downsample=True)(torch.randn(2, 4, 8, 8)).shape
    torch.Size([2, 8, 4, 4])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from branchspec.packed import PerChannel, register_packer

INITS = ("he", "torch")  # weight initialisation: StarGAN-v2's he_init, or PyTorch's layer defaults
PADDINGS = ("reflect", "zeros")  # padding of the 3×3 convolutions (torch's padding_mode)


@torch.no_grad()
def he_init(module: nn.Module) -> nn.Module:
    """StarGAN-v2's ``he_init`` on every conv and linear layer of ``module``: kaiming-normal
    weights (fan_in, ReLU gain, std = √(2 / fan_in)) and zero biases (Choi et al. 2020,
    ``core/utils.py``; the initialisation behind the GAN of paper §7 / App. E).

    PyTorch's default (kaiming-uniform with a = √5, std = √(1 / (3 fan_in))) shrinks the
    signal by about √6 per conv; through the ~10 layers of the discriminator its logits start
    at ≈ 0.01–0.04 and its input gradient at ≈ 10⁻³ (R1 ≈ 10⁻⁶), and in the GAN game it
    stays at chance (docs/gan.md, "Why D sat at chance").

    Example:
        >>> m = he_init(nn.Conv2d(8, 4, 3))  # fan_in 72: weight std √(2/72) ≈ 0.17
        >>> float(m.bias.detach().abs().sum())
        0.0
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def instance_norm(x: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-sample, per-channel normalisation over H, W, no running statistics; float32 inside.

    ``F.instance_norm`` has a vmap batching rule, so branches stay fusable.
    """
    return F.instance_norm(x.float(), eps=eps).to(x.dtype)


class InstanceNorm(nn.Module):
    """Instance normalisation with a learnt per-channel affine map (no running stats)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        return instance_norm(x) * self.weight.view(-1, 1, 1) + self.bias.view(-1, 1, 1)


class ResBlock(nn.Module):
    """StarGAN-v2 ResBlk: pre-activation residual block, optional IN and 2× average-pool down-sampling."""

    def __init__(self, dim_in: int, dim_out: int, normalize: bool = False, downsample: bool = False,
                 padding: str = "zeros") -> None:
        super().__init__()
        self.normalize, self.downsample = normalize, downsample
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1, padding_mode=padding)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1, padding_mode=padding)
        if normalize:
            self.norm1, self.norm2 = InstanceNorm(dim_in), InstanceNorm(dim_in)
        self.skip = nn.Conv2d(dim_in, dim_out, 1, bias=False) if dim_in != dim_out else None

    def forward(self, x: Tensor) -> Tensor:
        sc = self.skip(x) if self.skip is not None else x
        h = self.norm1(x) if self.normalize else x
        h = self.conv1(F.leaky_relu(h, 0.2))
        if self.downsample:
            sc, h = F.avg_pool2d(sc, 2), F.avg_pool2d(h, 2)
        h = self.norm2(h) if self.normalize else h
        h = self.conv2(F.leaky_relu(h, 0.2))
        return (sc + h) / math.sqrt(2)  # unit variance


# Packing rule (branchspec.packed): M instance norms at once, per-channel affine maps concatenated.
register_packer(InstanceNorm)(PerChannel)
