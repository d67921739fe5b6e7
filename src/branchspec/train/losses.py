"""Classifier losses of §6 as free functions returning ``(loss, {name: float})``.

* :func:`clamped_soft_ce` — the paper's loss: f clamped to [−1, 1] and the
  cross-entropy between p = softmax(class-indicating ±1 vector) and
  softmax(clamp(f)) (§6, gradient p − s(f) of eq. 3).
* :func:`onehot_ce` — plain cross-entropy of the unclamped logits against the
  one-hot label, for comparison.

Example:
    >>> import torch
    >>> f = torch.tensor([[5.0, -3.0, -2.0]])
    >>> loss, logs = clamped_soft_ce(f, torch.tensor([0]))
    >>> round(loss.item(), 4) == round(soft_targets(torch.tensor([0]), 3).mul(-soft_targets(torch.tensor([0]), 3).log()).sum().item(), 4)
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def soft_targets(labels: Tensor, num_classes: int) -> Tensor:
    """p = softmax(s) with s = +1 at the true class and −1 elsewhere (§6), ``(B, C)``.

    Example:
        >>> soft_targets(torch.tensor([1]), 2)[0, 1].item() > 0.5
        True
    """
    s = torch.full((labels.shape[0], num_classes), -1.0, device=labels.device)  # (B, C)
    s.scatter_(1, labels[:, None], 1.0)
    return s.softmax(dim=1)


def clamped_soft_ce(f: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Cross-entropy H(p, softmax(clamp(f, −1, 1))) averaged over the batch (§6, eq. 3).

    Args:
        f: ``(B, C)`` summed branch logits Σ_k v_k(x) (unclamped).
        labels: ``(B,)`` int64 class indices.

    Returns:
        ``(loss, {"loss": ..., "acc": ...})`` with acc the batch accuracy of argmax clamp(f).
    """
    fc = f.clamp(-1.0, 1.0)  # (B, C)
    p = soft_targets(labels, f.shape[1])  # (B, C)
    loss = -(p * fc.log_softmax(dim=1)).sum(dim=1).mean()
    acc = (fc.argmax(dim=1) == labels).float().mean()
    return loss, {"loss": float(loss.detach()), "acc": float(acc)}


def onehot_ce(f: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Plain cross-entropy of unclamped logits against one-hot labels (comparison option).

    Example:
        >>> loss, logs = onehot_ce(torch.zeros(2, 4), torch.tensor([0, 3]))
        >>> round(logs["loss"], 4) == round(float(torch.log(torch.tensor(4.0))), 4)
        True
    """
    loss = F.cross_entropy(f, labels)
    acc = (f.argmax(dim=1) == labels).float().mean()
    return loss, {"loss": float(loss.detach()), "acc": float(acc)}


def classifier_loss(f: Tensor, labels: Tensor, clamp: bool = True) -> tuple[Tensor, dict[str, float]]:
    """:func:`clamped_soft_ce` when ``clamp`` (the paper), else :func:`onehot_ce`."""
    return clamped_soft_ce(f, labels) if clamp else onehot_ce(f, labels)
