"""Specialisation analysis of a branched classifier (§6, Figs. 5–8, 16, 17): pure functions.

Every function takes the branch outputs ``V`` shaped ``(M, N, C)`` — branch
k's logit vector v_k(x_j) for test sample j, read through
:meth:`branchspec.Branched.branch_outputs` — and the labels ``(N,)``; none
touches a model's attributes. Each is tested against an explicit loop
(``tests/test_classifier_analysis.py``).

**Branch confidence** (Fig. 7, 8, 16). The paper does not give a formula; we
define the confidence of branch k on a sample x of class y as its
contribution to the true-class logit minus its mean contribution to the
other classes::

    conf_k(x) = v_k(x)[y] − 1/(C−1) · Σ_{c≠y} v_k(x)[c]

Positive: branch k pushes the prediction towards the right class; ≈ 0: the
branch is silent on x (or indifferent); negative: it argues against it.
Because f = Σ_k v_k, the confidences of all branches add up to the margin
f[y] − mean_{c≠y} f[c] of the unclamped sum.

Example:
    >>> import torch
    >>> V = torch.tensor([[[1., 0.], [0., 1.]], [[0., 0.], [0., 0.]]])  # (M=2, N=2, C=2)
    >>> branch_confidence(V, torch.tensor([0, 1])).tolist()
    [[1.0, 1.0], [0.0, 0.0]]
"""

from __future__ import annotations

import torch
from torch import Tensor

from branchspec import metrics
from branchspec.metrics import branch_confidence  # (M, N) conf_k(x_j); defined with the metrics


def class_means(V: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Each branch's mean output per class (Fig. 6): ``(M, K, C)``, entry [k, c] = mean_{y_j = c} v_k(x_j).

    Classes without samples get zeros.
    """
    onehot = torch.nn.functional.one_hot(labels, num_classes).to(V.dtype)  # (N, K)
    counts = onehot.sum(0).clamp_min(1)  # (K,)
    return torch.einsum("mnc,nk->mkc", V, onehot) / counts[None, :, None]  # (M, K, C)


def response(V: Tensor) -> Tensor:
    """The response matrix F of §4.1 for vector outputs: each sample's C logits side by side, ``(M, N·C)``."""
    return metrics.response_matrix(V, "flatten")


def accuracy(V: Tensor, labels: Tensor, gains: Tensor | None = None, *, clamp: bool) -> float:
    """Accuracy of argmax Σ_k g_k v_k — the model's prediction with branch gains g (1 by default).

    ``clamp`` (required): True for a model trained with the clamped sum of §6,
    argmax clamp(f, −1, 1) — ties among clamped logits then go to the first
    class, so a plain cross-entropy model must pass False.
    """
    g = torch.ones(V.shape[0], dtype=V.dtype) if gains is None else gains.to(V.dtype)
    f = (g[:, None, None] * V).sum(0)  # (N, C)
    if clamp:
        f = f.clamp(-1.0, 1.0)
    return float((f.argmax(1) == labels).float().mean())


def branch_ranking(V: Tensor) -> list[int]:
    """Branches ordered by the norm of their response ‖F_k‖ (most active first)."""
    norms = metrics.branch_norms(response(V))  # (M,)
    return [int(k) for k in torch.argsort(norms, descending=True, stable=True)]


def ablation(V: Tensor, labels: Tensor, *, clamp: bool, keep: list[int] | None = None) -> dict:
    """Accuracy with each branch silenced, and with all but the top-k (by ‖F_k‖) silenced.

    Silencing multiplies a branch's contribution by 0, exactly like
    :meth:`branchspec.Branched.silenced` (the branch outputs do not depend on
    the other branches in eval mode, so this needs no second model pass).

    Returns ``{"full", "without_branch": [M], "ranking", "keep_top": {k: acc}}``.
    """
    m = V.shape[0]
    full = accuracy(V, labels, clamp=clamp)
    without = []
    for k in range(m):
        g = torch.ones(m)
        g[k] = 0.0
        without.append(accuracy(V, labels, g, clamp=clamp))
    rank = branch_ranking(V)
    ks = keep if keep is not None else sorted({1, 2, 4, 8, 16, 32, m} & set(range(1, m + 1)))
    keep_top = {}
    for k in ks:
        g = torch.zeros(m)
        g[rank[:k]] = 1.0
        keep_top[int(k)] = accuracy(V, labels, g, clamp=clamp)
    return {"full": full, "without_branch": without, "ranking": rank, "keep_top": keep_top}


def sample_per_class(labels: Tensor, per_class: int, seed: int = 0) -> list[int]:
    """``per_class`` random sample indices of every class (fewer if a class is small), grouped by class."""
    gen = torch.Generator().manual_seed(seed)
    out: list[int] = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c)[:, 0]
        pick = idx[torch.randperm(len(idx), generator=gen)[:per_class]]
        out.extend(sorted(int(i) for i in pick))
    return out


def informative_pairs(V: Tensor, labels: Tensor, num_classes: int, branches: int = 2, classes: int = 2) -> list[tuple[int, int]]:
    """(branch, class) pairs for the galleries of Figs. 8, 16.

    The ``branches`` branches with the highest mean confidence on any one
    class, each paired with the ``classes`` classes it is most confident on.
    """
    conf = branch_confidence(V, labels)  # (M, N)
    onehot = torch.nn.functional.one_hot(labels, num_classes).to(conf.dtype)  # (N, K)
    per_class = conf @ onehot / onehot.sum(0).clamp_min(1)  # (M, K): mean confidence per class
    best = per_class.max(1).values  # (M,)
    order = torch.argsort(best, descending=True, stable=True)[:branches]
    pairs = []
    for k in order.tolist():
        for c in torch.argsort(per_class[k], descending=True, stable=True)[:classes].tolist():
            pairs.append((int(k), int(c)))
    return pairs


def top_confident(V: Tensor, labels: Tensor, branch: int, cls: int, fraction: float) -> list[int]:
    """Indices of the top ``fraction`` most confident samples of class ``cls`` for ``branch`` (Figs. 8, 16).

    At least one sample if the class has any; ordered most confident first.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    conf = branch_confidence(V, labels)[branch]  # (N,)
    idx = torch.nonzero(labels == cls)[:, 0]
    if len(idx) == 0:
        return []
    n = max(1, int(round(fraction * len(idx))))
    order = torch.argsort(conf[idx], descending=True, stable=True)[:n]
    return [int(i) for i in idx[order]]


def covariance_summary(V: Tensor, fraction: float = 0.1) -> dict:
    """Covariance F·Fᵀ, correlation and active / silent counts of the branch responses (Fig. 5 panels 1–2).

    Beside the paper's rule (Fig. 4: ‖F_k‖ under ``fraction`` of the largest), ``num_silent_centred`` counts the
    branches whose response *varies* with the input by less than that: the same rule on each branch's outputs
    minus their mean over the samples (``centred_branch_norms``). A branch that outputs one constant vector
    — its weights before the last layer decayed away, the bias left — is silent by this count whatever its
    constant's size, while the paper's uncentred norm counts the constant as response.
    """
    F = response(V)  # (M, N·C)
    act = metrics.activity(F, fraction)
    corr = metrics.correlation(F)
    centred = metrics.branch_norms(response(V - V.mean(dim=1, keepdim=True)))  # (M,) input-dependent part
    return {
        "centred_branch_norms": centred.tolist(),
        "num_silent_centred": int((~metrics.active_by_norm(centred, fraction)).sum()),
        "covariance": metrics.covariance(F).tolist(),
        "correlation": corr.tolist(),
        "mean_abs_offdiag_correlation": metrics.mean_abs_offdiag(corr),
        "branch_norms": metrics.branch_norms(F).tolist(),
        "active_branches": [int(k) for k in torch.nonzero(act.mask)[:, 0]],
        "silent_branches": [int(k) for k in torch.nonzero(~act.mask)[:, 0]],
        "num_active": act.active,
        "num_silent": act.silent,
        "active_fraction_threshold": fraction,
    }
