"""Evaluation and per-epoch diagnostics of the §6 classifier.

Why training with the clamp of §6 stalls is visible in three numbers:
the fraction of logits outside [−1, 1] (no gradient through the hard clamp),
the fraction of "dead" samples (a wrong-class logit ≥ +1 or the true logit
≤ −1, :func:`~branchspec.losses.logit_diagnostics`), and the gradient
norm of each branch ‖∂L/∂θ_k‖ (eq. 10: every branch gets the same
collaborative factor dL/df, so these norms differ only by the distributive
part). Active / silent branches are counted on the test response matrix with
the Fig. 4 rule (:func:`branchspec.metrics.activity`). With ``--track-every N``
a :class:`branchspec.parts.Tracker` records them, with every branch's norm and
gradient norm, every N steps on fixed test images (:func:`make_tracker`).

Example:
    >>> import torch
    >>> from branchspec import Branched
    >>> m = Branched(lambda: torch.nn.Linear(2, 3), 2, engine="loop", seed=0)
    >>> m(torch.randn(4, 2)).sum().backward()
    >>> branch_grad_norms(m).shape
    torch.Size([2])
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch.nn.utils import get_total_norm

from branchspec import metrics, parts
from branchspec.branched import as_branched
from branchspec.classifier.recipe import tta_logits
from branchspec.losses import classifier_loss, logit_diagnostics


def branch_grad_norms(model) -> Tensor:
    """‖∂L/∂θ_k‖₂ over all parameters of branch k (after ``backward``), ``(M,)``; 0 where no grad."""
    dev = next(model.parameters()).device
    out = []
    for k in range(model.num_branches):
        gs = [p.grad.detach() for p in model.branch_parameters(k).values() if p.grad is not None]
        out.append(get_total_norm(gs, 2.0, foreach=True).float() if gs else torch.zeros((), device=dev))  # fused
    return torch.stack(out).cpu()  # (M,), one host sync for all branches


TRACK_IMAGES = 256  # the first test images, the same at every tracking record


def make_tracker(every: int, model, test_set, out: str | Path, step: int, device) -> parts.Tracker | None:
    """A :class:`~branchspec.parts.Tracker` of the branches writing ``out/tracker.{csv,jsonl}`` every ``every`` steps
    (None when 0), on the first :data:`TRACK_IMAGES` test images; records past ``step`` (a resume) dropped.

    It measures in eval mode and restores the RNG, so a run with tracking trains the same weights as one without.
    """
    if not every:
        return None
    x, _ = next(iter(test_set.batches(min(TRACK_IMAGES, len(test_set)), augment=False, prefetch=False)))
    tracker = parts.Tracker(parts.branches(as_branched(model)), out, every=every, eval_batches=[x.to(device)])
    tracker.resume_at(step)
    return tracker


def grad_norm_summary(norms: Tensor) -> dict[str, float]:
    """min / median / max of per-branch gradient norms ``(M,)`` (the CSV columns)."""
    return {"grad_norm_min": float(norms.min()), "grad_norm_median": float(norms.median()),
            "grad_norm_max": float(norms.max())}


@torch.no_grad()
def evaluate(model, data, clamp: bool, batch_size: int = 500, tta: bool = False, branches: bool = False,
             precision: str = "fp32") -> dict[str, float]:
    """Test loss and accuracy (argmax of clamp(f)) in eval mode, plus the ``clamped``, ``dead`` and
    ``saturated`` fractions of :func:`~branchspec.losses.logit_diagnostics`; with ``tta`` on the
    flip-averaged logits (:func:`tta_logits`); with ``branches`` also ``active`` / ``silent`` branch counts
    and per-branch ``branch_norm`` (a list) on the response matrix of the (un-augmented) test set (Fig. 4 rule)."""
    was = model.training
    model.eval()
    n, loss_sum, correct, clamped, dead, saturated = 0, 0.0, 0, 0.0, 0.0, 0.0
    outs = []
    dev = next(model.parameters()).device
    for x, y in data.batches(batch_size, augment=False, prefetch=False):
        x, y = x.to(dev), y.to(dev)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            if branches:
                f, v = model(x, return_branches=True)  # (B, C), (M, B, C)
                outs.append(v.float())
                if tta:
                    f = 0.5 * (f + model(x.flip(3)))
            else:
                f = tta_logits(model, x) if tta else model(x)  # (B, C)
        loss, logs = classifier_loss(f, y, clamp)
        d = logit_diagnostics(f, y)
        b = len(y)
        n += b
        loss_sum += logs["loss"] * b
        correct += round(logs["acc"] * b)
        clamped += d["clamped"] * b
        dead += d["dead"] * b
        saturated += d["saturated"] * b
    model.train(was)
    n = max(1, n)
    res = {"test_loss": loss_sum / n, "test_acc": correct / n, "test_clamped": clamped / n, "test_dead": dead / n,
           "test_saturated": saturated / n}
    if branches and outs:
        F = metrics.response_matrix(torch.cat(outs, dim=1))  # (M, N·C)
        act = metrics.activity(F, 0.1)
        res.update(active=act.active, silent=act.silent, branch_norm=metrics.branch_norms(F).tolist())
    return res


__all__ = ["branch_grad_norms", "grad_norm_summary", "evaluate"]
