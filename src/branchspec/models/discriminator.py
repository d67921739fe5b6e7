"""StarGAN-v2's multi-task discriminator (paper §7, App. E).

One real/fake logit per domain; the logit of the relevant domain y is
selected, so each domain has its own binary real/fake task on a shared trunk
(Choi et al. 2020). Layout: 3×3 ``from_rgb`` conv → log2(img_size) − 2
ResBlk down-sampling blocks (width doubling up to ``max_width``, no
normalisation) down to 4×4 → LeakyReLU → 4×4 valid conv → LeakyReLU → 1×1
conv to ``num_domains`` logits. With ``domain_head`` (a departure, not in
the paper or StarGAN-v2: the auxiliary classifier of AC-GAN / StarGAN v1) a
second 1×1 conv on the same features classifies the image's domain.

Example:
    >>> import torch
    >>> d = Discriminator(DiscriminatorConfig(img_size=16, num_domains=3, base_width=8, max_width=16))
    >>> d(torch.randn(2, 3, 16, 16), torch.tensor([0, 2])).shape
    torch.Size([2])
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from branchspec.models.layers import INITS, ResBlock, he_init


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Widths of the discriminator (StarGAN-v2: base 2^14/img_size, max 512)."""

    img_size: int = 64  # side of the square images (power of two >= 8)
    num_domains: int = 2  # one logit per domain
    channels: int = 3  # image channels
    base_width: int = 32  # width after from_rgb
    max_width: int = 256  # widest layer
    init: str = "he"  # StarGAN-v2's "he" init (kaiming-normal, zero bias) or PyTorch's "torch" defaults
    domain_head: bool = False  # an auxiliary domain classifier on the shared features (AC-GAN; not the paper's)

    def __post_init__(self) -> None:
        s = self.img_size
        if not isinstance(s, int) or s < 8 or s & (s - 1):
            raise ValueError(f"img_size must be a power of two >= 8, got {s!r}")
        for name in ("num_domains", "channels", "base_width", "max_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Discriminator(nn.Module):
    """D(x, y) -> (B,) real/fake logits of domain y (multi-task, StarGAN-v2)."""

    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.base_width
        blocks: list[nn.Module] = [nn.Conv2d(cfg.channels, w, 3, 1, 1)]
        for _ in range(int(math.log2(cfg.img_size)) - 2):  # down to 4x4
            w_out = min(2 * w, cfg.max_width)
            blocks.append(ResBlock(w, w_out, downsample=True))
            w = w_out
        self.trunk = nn.Sequential(*blocks)
        self.conv4 = nn.Conv2d(w, w, 4, 1, 0)  # 4x4 -> 1x1
        self.head = nn.Conv2d(w, cfg.num_domains, 1)
        if cfg.init == "he":  # StarGAN-v2 initialises D this way; PyTorch's default leaves D at chance
            he_init(self)
        # created last, so that the shared layers draw the same initial weights with or without it
        self.domain_head = nn.Conv2d(w, cfg.num_domains, 1) if cfg.domain_head else None
        if self.domain_head is not None and cfg.init == "he":
            he_init(self.domain_head)

    def features(self, x: Tensor) -> Tensor:
        """The shared features, (B, w, 1, 1)."""
        h = self.trunk(x)  # (B, w, 4, 4)
        return F.leaky_relu(self.conv4(F.leaky_relu(h, 0.2)), 0.2)  # (B, w, 1, 1)

    def logits(self, x: Tensor) -> Tensor:
        """All domains' real/fake logits, (B, num_domains)."""
        return self.head(self.features(x)).flatten(1)  # (B, D)

    def forward(self, x: Tensor, y: Tensor, classes: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Real/fake logit of domain y, (B,); with ``classes`` also the domain-classifier logits (B, D)."""
        h = self.features(x)
        out = self.head(h).flatten(1).gather(1, y.view(-1, 1).long()).squeeze(1)  # (B,)
        if not classes:
            return out
        if self.domain_head is None:
            raise ValueError("classes=True needs a discriminator built with domain_head=True")
        return out, self.domain_head(h).flatten(1)
