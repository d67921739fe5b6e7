"""The branched CIFAR-10 classifier of §6: M slim ResNet18 branches summed.

Each branch is the common CIFAR ResNet18 layout (kuangliu/pytorch-cifar,
ref. [15] of the paper): a 3×3 stem, four stages of two BasicBlocks with
strides 1, 2, 2, 2, global average pooling and a linear head to 10 logits —
with all widths scaled down so that one branch has ≈ 0.08·10⁶ parameters
(§6: |θ_k| = 0.08 M, M = 16 → |θ| ≈ 1.3 M). The classifier output is
f(x) = Σ_k v_k(x) (eq. 1); the clamp of f to [−1, 1] (§6) is applied by
:class:`Classifier` / the loss, never inside :class:`~branchspec.Branched`.

Example:
    >>> import torch
    >>> model = build_classifier(ClassifierConfig(num_branches=2, width=2))
    >>> f, v = model(torch.zeros(3, 3, 32, 32), return_branches=True)
    >>> f.shape, v.shape
    (torch.Size([3, 10]), torch.Size([2, 3, 10]))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from branchspec.branched import ENGINES, Branched

# Stage widths are round(w·2^i), i = 0..3, of the base width w; the full ResNet18 has w = 64.
DEFAULT_WIDTH = 5.4  # -> stages (5, 11, 22, 43), 80,973 parameters per branch (0.08 M, §6)


def stage_widths(width: float) -> list[int]:
    """Channels of the four stages: round(w·2^i), at least 1 (w = 64: 64, 128, 256, 512)."""
    return [max(1, round(width * 2**i)) for i in range(4)]


class BasicBlock(nn.Module):
    """ResNet BasicBlock: two 3×3 conv–BN layers and an identity / 1×1 shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))  # (B, C, H, W)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SlimResNet18(nn.Module):
    """One branch v_k: CIFAR ResNet18 with stage widths ≈ (w, 2w, 4w, 8w).

    Input ``(B, 3, 32, 32)`` (any H, W ≥ 8), output ``(B, num_classes)`` logits.

    Example:
        >>> sum(p.numel() for p in SlimResNet18().parameters())
        80973
    """

    def __init__(self, width: float = DEFAULT_WIDTH, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        widths = stage_widths(width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        layers, cin = [], widths[0]
        for cout, stride in zip(widths, (1, 2, 2, 2)):
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.layers(self.stem(x))  # (B, C4, H/8, W/8)
        return self.head(h.mean(dim=(2, 3)))  # (B, num_classes)


@dataclass(frozen=True)
class ClassifierConfig:
    """The branched classifier of §6 (resolved config is stored in checkpoints)."""

    num_branches: int = 16  # M; §6 uses 16
    width: float = DEFAULT_WIDTH  # base width w of each branch (stage widths round(w·2^i))
    num_classes: int = 10  # CIFAR-10
    in_channels: int = 3  # RGB
    clamp: bool = True  # clamp f to [-1, 1] and train on the ±1 soft target (§6); False = plain one-hot CE
    engine: str = "packed"  # Branched engine, one of branchspec.branched.ENGINES: "packed" (its capability rule) or "loop"
    seed: int | None = None  # branch initialisation seed (None: global RNG)
    head_init_scale: float | None = None  # multiply each head's initial weights by this; None -> 1/sqrt(M)

    def __post_init__(self) -> None:
        if not isinstance(self.num_branches, int) or self.num_branches < 1:
            raise ValueError(f"num_branches must be an integer >= 1, got {self.num_branches!r}")
        if not isinstance(self.width, (int, float)) or not self.width >= 1:
            raise ValueError(f"width must be a number >= 1, got {self.width!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "ClassifierConfig":
        keys = ClassifierConfig.__dataclass_fields__
        return ClassifierConfig(**{k: v for k, v in d.items() if k in keys})


def clamp_logits(f: Tensor, clamp: bool) -> Tensor:
    """f clamped to [−1, 1] (§6) when ``clamp`` (required: a plain-CE model passes False), else unchanged."""
    return f.clamp(-1.0, 1.0) if clamp else f


def build_classifier(cfg: ClassifierConfig) -> Branched:
    """M independently initialised slim ResNet18 branches summed (eq. 1, §6).

    The returned :class:`Branched` outputs the *unclamped* sum; clamp with
    :func:`clamp_logits` (the loss functions do).
    The initial head weights of every branch are scaled by
    ``head_init_scale`` (default 1/√M) so that the initial sum f stays mostly
    inside the clamp range: with PyTorch's default init, M = 16 branches give
    std(f) ≈ 2.3 and ~58 % of the logits clamped, where the clamp passes no
    gradient (measured on CIFAR-10); with 1/√M, std(f) ≈ 0.6.
    """
    w, c, cin = cfg.width, cfg.num_classes, cfg.in_channels
    scale = cfg.head_init_scale if cfg.head_init_scale is not None else cfg.num_branches ** -0.5

    def make():
        branch = SlimResNet18(w, c, cin)
        with torch.no_grad():
            branch.head.weight.mul_(scale)
            branch.head.bias.mul_(scale)
        return branch

    return Branched(make, cfg.num_branches, engine=cfg.engine, seed=cfg.seed)


def build_from_config(config: dict) -> Branched:
    """The classifier a checkpoint's ``{"kind": "classifier", "config": {...}}`` describes (registry builder)."""
    return build_classifier(ClassifierConfig.from_dict(config))
