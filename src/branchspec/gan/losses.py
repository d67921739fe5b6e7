"""Losses of the class-transfer GAN: adversarial + R1, and nothing else (App. E).

StarGAN-v2's style-reconstruction, diversity and cycle losses are dropped;
fidelity to the input comes from the residual R of eq. 15 instead. Two
departures exist as options, off by default and measured in docs/gan.md:
:func:`domain_class_loss` (an AC-GAN / StarGAN-v1 auxiliary domain classifier
in D, trained on reals, that G must satisfy on fakes) and
:func:`regeneration_loss` (L1 between G(x, y) and x on own-domain samples). Each loss
is a free function returning ``(loss, {name: float})``; the training step in
:mod:`branchspec.gan.train` reads like the algorithm:

    d_loss = softplus(−D(x, y)) + softplus(D(G(x, ỹ), ỹ)) + λ_R1 · ½ E‖∇ₓD(x, y)‖²
    g_loss = softplus(−D(G(x, ỹ), ỹ))                      (non-saturating)

Example:
    >>> import torch
    >>> loss, logs = generator_loss(torch.zeros(4))
    >>> round(loss.item(), 4), sorted(logs)
    (0.6931, ['g/adv'])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def r1_penalty(real_logits: Tensor, x_real: Tensor) -> Tensor:
    """R1 = ½ E_x ‖∇ₓ D(x)‖² on real images (Mescheder et al. 2018); ``x_real`` must require grad."""
    (grad,) = torch.autograd.grad(real_logits.sum(), x_real, create_graph=True)  # (B, C, H, W)
    return 0.5 * grad.float().pow(2).flatten(1).sum(1).mean()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, x_real: Tensor, r1_weight: float) -> tuple[Tensor, dict[str, float]]:
    """Non-saturating D loss on real (label 1) and fake (label 0) logits, plus λ·R1 on reals.

    ``real_logits`` (B,) = D(x_real, y_real) computed from ``x_real`` with
    ``requires_grad``; ``fake_logits`` (B,) = D(G(x, ỹ), ỹ) with G detached.
    """
    real = F.softplus(-real_logits.float()).mean()
    fake = F.softplus(fake_logits.float()).mean()
    loss = real + fake
    logs = {"d/real": real.item(), "d/fake": fake.item(),
            # fraction of reals D calls real and of fakes it calls fake (0.5 each: chance)
            "d/acc_real": (real_logits > 0).float().mean().item(), "d/acc_fake": (fake_logits < 0).float().mean().item()}
    if r1_weight > 0:
        r1 = r1_penalty(real_logits, x_real)
        loss = loss + r1_weight * r1
        logs["d/r1"] = r1.item()
    logs["d/loss"] = loss.item()
    return loss, logs


def generator_loss(fake_logits: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Non-saturating G loss −log σ(D(G(x, ỹ), ỹ)) = softplus(−logit)."""
    loss = F.softplus(-fake_logits.float()).mean()
    return loss, {"g/adv": loss.item()}


def domain_class_loss(class_logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of the discriminator's domain classifier, (B, D) logits vs domains y (B,).

    D minimises it on real images (x, y); G minimises it on its outputs
    (G(x, ỹ), ỹ) — StarGAN v1's L_cls (Choi et al. 2018, eq. 2–3), an
    explicit class-transfer signal the paper's adversarial-only §7 objective
    does not have.
    """
    return F.cross_entropy(class_logits.float(), y.long())


def regeneration_loss(x_fake: Tensor, x: Tensor, y_trg: Tensor, y: Tensor) -> Tensor:
    """Mean absolute error between G(x, ỹ) and x over the samples whose target is their own domain.

    Mean over those samples' pixels; 0 (with a graph) when the batch has none.
    Pulls G(x, y) = R + Σ_k v_k towards x, i.e. the branches towards x − R.

    Example:
        >>> x = torch.zeros(2, 1, 2, 2)
        >>> float(regeneration_loss(x + 1, x, torch.tensor([0, 1]), torch.tensor([0, 0])))
        1.0
    """
    own = (y_trg == y).to(x_fake.dtype).view(-1, *([1] * (x_fake.dim() - 1)))  # (B, 1, 1, 1)
    err = (x_fake.float() - x.float()).abs() * own
    per_sample = x_fake[0].numel()
    return err.sum() / (own.sum() * per_sample).clamp_min(1.0)
