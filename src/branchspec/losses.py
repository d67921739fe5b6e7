"""The classifier loss of §6: one formula, :func:`loss_value`, and its two views for training.

* :func:`loss_value` — the loss as a plain tensor. With ``clamp`` (the paper):
  f clamped to [−1, 1] and the cross-entropy between p = softmax(class-indicating
  ±1 vector) and softmax(clamp(f)) (§6, gradient s(f) − p of eq. 3); without,
  plain cross-entropy of the unclamped logits against the one-hot label, for
  comparison. The Hessian analyses differentiate it with ``reduction="sum"``.
* :func:`classifier_loss` — the house form ``(loss, {name: float})`` (evaluation);
  :func:`training_loss` — the same loss with its statistics as one tensor, so
  the training step never waits on the GPU.
* ``clamp_grad``: how the clamp's *gradient* is taken. ``"hard"`` (default,
  the paper): autograd's clamp, which passes no gradient for a logit outside
  [−1, 1]. ``"pass-inward"`` (opt-in, not in the paper): the same forward value
  and so the same loss, but the gradient of a clamped logit is passed when a
  descent step would move it back towards [−1, 1] (f > 1 and dL/dclamp(f) > 0,
  or f < −1 and dL/dclamp(f) < 0) — so a wrong-class logit above +1 is pulled
  back instead of being stuck ("dead"). See :class:`ClampPassInward`.

Example:
    >>> import torch
    >>> f = torch.tensor([[5.0, -3.0, -2.0]])
    >>> loss, logs = classifier_loss(f, torch.tensor([0]), clamp=True)
    >>> round(loss.item(), 4) == round(soft_target_floor(3), 4)   # clamp(f) is the ±1 vector: the floor H(p)
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


CLAMP_GRADS = ("hard", "pass-inward")


class ClampPassInward(torch.autograd.Function):
    """clamp(f, −1, 1) whose backward passes the gradient g = dL/dclamp(f) where
    −1 ≤ f ≤ 1 (as the hard clamp does), and also where f > 1 and g > 0 or
    f < −1 and g < 0 — the cases where gradient descent (f ← f − η g) moves f
    back into [−1, 1]. Zero otherwise. The forward value is the paper's clamp (§6).

    Example:
        >>> f = torch.tensor([2.0, 2.0, -2.0, 0.5], requires_grad=True)
        >>> ClampPassInward.apply(f).backward(torch.tensor([1.0, -1.0, 1.0, 3.0]))
        >>> f.grad.tolist()
        [1.0, 0.0, 0.0, 3.0]
    """

    @staticmethod
    def forward(ctx, f: Tensor) -> Tensor:
        ctx.save_for_backward(f)
        return f.clamp(-1.0, 1.0)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        (f,) = ctx.saved_tensors
        inside = (f >= -1.0) & (f <= 1.0)
        inward = ((f > 1.0) & (g > 0)) | ((f < -1.0) & (g < 0))
        return torch.where(inside | inward, g, torch.zeros_like(g))


def _clamp(f: Tensor, clamp_grad: str = "hard") -> Tensor:
    """clamp(f, −1, 1) (§6) with the gradient rule ``clamp_grad`` (``"hard"`` or ``"pass-inward"``)."""
    if clamp_grad == "hard":
        return f.clamp(-1.0, 1.0)
    if clamp_grad == "pass-inward":
        return ClampPassInward.apply(f)
    raise ValueError(f"clamp_grad must be one of {CLAMP_GRADS}, got {clamp_grad!r}")


def soft_target_floor(num_classes: int) -> float:
    """H(p), the minimum of the §6 loss (reached at clamp(f) = the ±1 vector), e.g. 1.8949 for 10 classes.

    Example:
        >>> round(soft_target_floor(10), 4)
        1.8949
    """
    p = soft_targets(torch.tensor([0]), num_classes)[0]  # (C,)
    return float(-(p * p.log()).sum())


REDUCTIONS = ("mean", "sum")


def loss_value(f: Tensor, labels: Tensor, clamp: bool, clamp_grad: str = "hard", reduction: str = "mean") -> Tensor:
    """The §6 loss as a plain tensor: the one formula every entry point computes.

    With ``clamp`` (the paper): H(p, softmax(clamp(f, −1, 1))), the cross-entropy
    between p = softmax(±1 class-indicating vector) and the clamped logits (eq. 3);
    without: plain cross-entropy of the unclamped logits against the one-hot label.

    Args:
        f: ``(B, C)`` summed branch logits Σ_k v_k(x) (unclamped), in any float dtype (kept).
        labels: ``(B,)`` int64 class indices.
        clamp: True for a run trained with the §6 clamp, False for plain CE.
        clamp_grad: ``"hard"`` (the paper) or ``"pass-inward"`` (same value,
            gradient of :class:`ClampPassInward`).
        reduction: ``"mean"`` over the batch (training) or ``"sum"`` (the per-sample
            sum differentiated by the Hessian analyses, §5).

    No Python float is taken, so torch.func can transform it (``functools.partial(loss_value,
    clamp=..., reduction="sum")`` is the Hessian's ``loss_fn``).

    Example:
        >>> f = torch.tensor([[5.0, -5.0]])   # clamped to [1, -1] = the target logits
        >>> round(loss_value(f, torch.tensor([0]), clamp=True, reduction="sum").item(), 4)   # = H(p), p = softmax([1, -1])
        0.3653
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not clamp:
        return F.cross_entropy(f, labels, reduction=reduction)
    p = soft_targets(labels, f.shape[1]).to(f.dtype)  # (B, C)
    per_sample = -(p * _clamp(f, clamp_grad).log_softmax(dim=1)).sum(dim=1)  # (B,) H(p, softmax(clamp f))
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


def classifier_loss(f: Tensor, labels: Tensor, clamp: bool, clamp_grad: str = "hard",
                    reduction: str = "mean") -> tuple[Tensor, dict[str, float]]:
    """The §6 loss and its logs ``(loss, {"loss": ..., "acc": ...})``: :func:`loss_value` of ``f`` in float32.

    ``acc`` is the batch accuracy of argmax clamp(f) (argmax f without ``clamp``).
    ``f`` is cast to float32 first, so the loss is computed in fp32 under bf16 autocast.

    Example:
        >>> loss, logs = classifier_loss(torch.zeros(2, 4), torch.tensor([0, 3]), clamp=False)
        >>> round(logs["loss"], 4) == round(float(torch.log(torch.tensor(4.0))), 4)
        True
    """
    f = f.float()
    loss = loss_value(f, labels, clamp, clamp_grad, reduction)
    acc = ((f.clamp(-1.0, 1.0) if clamp else f).argmax(dim=1) == labels).float().mean()
    return loss, {"loss": float(loss.detach()), "acc": float(acc)}


def training_loss(f: Tensor, labels: Tensor, clamp: bool, clamp_grad: str = "hard") -> tuple[Tensor, Tensor]:
    """The batch-mean §6 loss of :func:`classifier_loss` and its statistics, without a host sync.

    Returns ``(loss, stats)`` with ``stats`` a float64 ``(4,)`` tensor on ``f``'s device:
    [loss, accuracy, clamped fraction, dead fraction] (accuracy and the fractions as in
    :func:`classifier_loss` and :func:`logit_diagnostics`). The training step reads all four
    with one ``.tolist()`` — on a GPU every ``float()`` would stall the launch queue.

    Example:
        >>> loss, stats = training_loss(torch.tensor([[2.0, -3.0], [0.0, 1.5]]), torch.tensor([0, 0]), clamp=True)
        >>> [round(v, 4) for v in stats.tolist()[1:]]
        [0.5, 0.75, 0.5]
    """
    f = f.float()
    loss = loss_value(f, labels, clamp, clamp_grad, "mean")
    with torch.no_grad():
        g = f.detach()
        acc = ((g.clamp(-1.0, 1.0) if clamp else g).argmax(dim=1) == labels).double().mean()
        clamped, dead = _clamped_dead(g, labels)
        stats = torch.stack([loss.detach().double(), acc, clamped, dead])
    return loss, stats


def logit_diagnostics(f: Tensor, labels: Tensor) -> dict[str, float]:
    """Where the §6 clamp stops learning: the fraction of logits outside [−1, 1]
    (``clamped``: |f| > 1, no gradient through the hard clamp), of samples that
    are ``dead`` — a wrong-class logit ≥ +1 or the true logit ≤ −1, a state the
    hard clamp's zero gradient cannot leave through that logit — and of samples that
    are ``saturated``: every logit clamped, so ∂L/∂f (the collaborative factor of
    eq. 10) is zero for every branch.

    Example:
        >>> d = logit_diagnostics(torch.tensor([[2.0, -3.0], [0.0, 1.5]]), torch.tensor([0, 0]))
        >>> d["clamped"], d["dead"], d["saturated"]
        (0.75, 0.5, 0.5)
    """
    f = f.detach().float()
    clamped, dead = _clamped_dead(f, labels)
    saturated = (f.abs() > 1.0).all(dim=1).double().mean()
    return {"clamped": float(clamped), "dead": float(dead), "saturated": float(saturated)}


def _clamped_dead(f: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """0-d float64 fractions of logits with |f| > 1 and of dead samples (see :func:`logit_diagnostics`)."""
    true = f.gather(1, labels[:, None])[:, 0]  # (B,)
    wrong = f.scatter(1, labels[:, None], float("-inf"))  # (B, C), true class masked out
    dead = (wrong.max(dim=1).values >= 1.0) | (true <= -1.0)  # (B,)
    return (f.abs() > 1.0).double().mean(), dead.double().mean()
