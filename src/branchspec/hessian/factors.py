"""Eq. 12–14 made concrete: distributive × collaborative factors of the Hessian (§5.2, §8).

For a loss of the summed output, L = ℓ(f), f = R + Σ_k v_k, the Hessian over
a branch-wise parameter subset splits exactly as (eq. 13 / 14)

    H_kl = Σ_j D_k(x_j)ᵀ · C_l(x_j)                          (k ≠ l, eq. 14)
    H_kk = Σ_j D_k(x_j)ᵀ · C_k(x_j) + ∇²_{w_k} ⟨dL/df, v_k⟩  (eq. 13)

with the **distributive** factor D_k(x_j) = ∂v_k(x_j)/∂w_k ``(C, |w_k|)``
(per sample, :func:`branchspec.metrics.gradient_factors`, eq. 11) and the
**collaborative** factor C_l(x_j) = ∂/∂w_l [dL/df(x_j)] =
Σ_j' d²L/df(x_j)df(x_j') · D_l(x_j') ``(C, |w_l|)``. The product, contracted
over output dims and summed over samples, *is* the inter-branch entry —
:func:`eq14_report` checks that against an independently computed Hessian
and counts where the distributive part vanishes (which zeroes every term it
enters, the block-diagonal mechanism of §8).

:func:`blockwise_hessian` assembles the exact H from these pieces: it costs
about one Hessian of a single branch per branch instead of one of the whole
model per parameter, so it is the method for the 16-branch classifier.

Example:
    >>> import torch, torch.nn as nn
    >>> from branchspec import Branched
    >>> from branchspec.hessian import select_params, exact_hessian
    >>> m = Branched(lambda: nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)), 3, seed=0)
    >>> sub = select_params(m, "first-layer")
    >>> x, y = torch.randn(4, 2), torch.randn(4, 2)
    >>> lf = lambda f, t: 0.5 * ((f - t) ** 2).sum()
    >>> fac = hessian_factors(m, sub, x, y, lf)
    >>> H = exact_hessian(m, sub, x, y, lf)
    >>> bool(torch.allclose(fac.offblock(0, 1), H[0:9, 9:18], atol=1e-5))
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, hessian, jvp, vmap

from branchspec.branched import as_branched
from branchspec.hessian.exact import (
    DEFAULT_BUDGET_BYTES,
    LossFn,
    ParamSubset,
    analysis_mode,
    check_budget,
    estimate_bytes,
)
from branchspec.metrics import gradient_factors, take_samples


@dataclass(frozen=True)
class HessianFactors:
    """The pieces of eq. 13–14 for every branch of a subset.

    ``distributive``  ``(M, N, C, |w_k|)``: ∂v_k(x_j)/∂w_k (branch gain included).
    ``collaborative`` ``(M, N, C, |w_k|)``: ∂/∂w_k [dL/df(x_j)].
    ``output_grad``   ``(N, C)``: dL/df(x_j), the collaborative part of the gradient (eq. 10).
    ``output_hessian`` ``(N·C, N·C)``: d²L/df², samples × outputs flattened.
    """

    distributive: Tensor
    collaborative: Tensor
    output_grad: Tensor
    output_hessian: Tensor

    def terms(self, k: int, l: int) -> Tensor:
        """Per-sample terms of entry (k, l), ``(N, |w_k|, |w_l|)``; they sum to H_kl for k ≠ l."""
        return torch.einsum("nca,ncb->nab", self.distributive[k], self.collaborative[l])

    def offblock(self, k: int, l: int) -> Tensor:
        """Σ_j D_k(x_j)ᵀ C_l(x_j), ``(|w_k|, |w_l|)`` — eq. 14 (for k = l only the Gauss–Newton part)."""
        return torch.einsum("nca,ncb->ab", self.distributive[k], self.collaborative[l])


def hessian_factors(model: nn.Module, subset: ParamSubset, x: Tensor, y: Tensor, loss_fn: LossFn,
                    args: tuple[Any, ...] = (), sample_chunk: int = 16,
                    kwargs: dict[str, Any] | None = None) -> HessianFactors:
    """Distributive and collaborative factors of eq. 14 for every branch (loss of f only).

    ``loss_fn(f, y)`` must be the batch loss (a sum or mean over samples of
    any form: the output Hessian d²L/df² is taken in full, so losses that mix
    samples are handled too). D_k comes from
    :func:`branchspec.metrics.gradient_factors` (eq. 11), ``sample_chunk``
    samples at a time to bound memory, in eval mode; dL/df from the whole batch.
    Extra model inputs ``args`` / ``kwargs`` with a sample axis are chunked with x.
    """
    model = as_branched(model)
    names = list(subset.names)
    n = x.shape[0]
    kwargs = kwargs or {}
    parts = []  # per chunk: (M, n_c, C, |w_k|)
    with analysis_mode(model):
        for i in range(0, n, sample_chunk):
            sl = slice(i, i + sample_chunk)
            a_c, k_c = take_samples(args, kwargs, n, sl)
            gf = gradient_factors(model, x[sl], y[sl], loss_fn, names, args=a_c, kwargs=k_c)
            parts.append(torch.stack([
                torch.cat([gf.distributive[k][nm].reshape(*gf.distributive[k][nm].shape[:2], -1) for nm in names], 2)
                for k in range(subset.num_branches)]))
        with torch.no_grad():
            f = model(x, *args, **kwargs)
    dist = torch.cat(parts, dim=1)  # (M, N, C, |w_k|)
    c = dist.shape[2]
    flat_f = f.detach().reshape(-1)  # (N·C,)

    def loss_flat(ff: Tensor) -> Tensor:
        return loss_fn(ff.reshape(f.shape), y)

    g = grad(loss_flat)(flat_f).reshape(n, c)  # (N, C): dL/df, eq. 10's collaborative part
    with torch.no_grad():
        h_ff = hessian(loss_flat)(flat_f)  # (N·C, N·C)
        coll = torch.einsum("pq,mqa->mpa", h_ff, dist.reshape(subset.num_branches, n * c, -1))
    coll = coll.reshape(dist.shape)  # (M, N, C, |w_k|)
    return HessianFactors(dist, coll, g.detach(), h_ff)


def auto_chunk(batch: int, images: int = 2048) -> int:
    """Tangents per vmapped pass so that one pass sees about ``images`` samples."""
    return max(1, images // max(1, batch))


def within_branch_curvature(model: nn.Module, subset: ParamSubset, x: Tensor, output_grad: Tensor, k: int,
                            args: tuple[Any, ...] = (), chunk_size: int | None = None,
                            kwargs: dict[str, Any] | None = None) -> Tensor:
    """∇²_{w_k} ⟨dL/df, v_k(x)⟩ with dL/df held fixed: the extra term of eq. 13, ``(|w_k|, |w_k|)``.

    |w_k| forward-over-reverse products of branch k alone, ``chunk_size`` at
    a time (default :func:`auto_chunk`). The term vanishes for piecewise-linear
    branches (ReLU / LeakyReLU, convs, eval-mode BatchNorm): autograd then
    returns exact zeros. So one product with a Gaussian vector z is taken
    first; if A z is exactly 0 the block A is 0 (a nonzero A has A z ≠ 0 with
    probability 1) and the |w_k| products are skipped.
    """
    chunk_size = chunk_size or auto_chunk(x.shape[0])
    model = as_branched(model)
    branch = model.branches[k]
    gain = model.branch_gain[k]
    per_in = model.branch_inputs(x)  # (M, N, ...) or None
    xin = x if per_in is None else per_in[k]
    names = list(subset.names)
    theta = torch.cat([dict(branch.named_parameters())[nm].detach().reshape(-1) for nm in names])

    def s(th: Tensor) -> Tensor:
        params, i = {}, 0
        for nm, shape, size in zip(names, subset.shapes, subset.sizes):
            params[nm] = th[i:i + size].reshape(shape)
            i += size
        v: Tensor = functional_call(branch, params, (xin, *args), kwargs or {})  # (N, ...)
        return (gain * v.reshape(v.shape[0], -1) * output_grad).sum()

    g = grad(s)
    eye = torch.eye(theta.numel(), dtype=theta.dtype, device=theta.device)
    z = torch.randn(theta.numel(), generator=torch.Generator().manual_seed(k), dtype=theta.dtype).to(theta.device)
    with torch.no_grad(), analysis_mode(model):
        if not jvp(g, (theta,), (z,))[1].any():
            return torch.zeros_like(eye)  # certified zero block
        block: Tensor = vmap(lambda t: jvp(g, (theta,), (t,))[1], chunk_size=chunk_size)(eye)  # (|w_k|, |w_k|)
        return block


def blockwise_hessian(model: nn.Module, subset: ParamSubset, x: Tensor, y: Tensor, loss_fn: LossFn, *,
                      args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, chunk_size: int | None = None,
                      budget_bytes: float = DEFAULT_BUDGET_BYTES,
                      factors: HessianFactors | None = None) -> tuple[Tensor, HessianFactors]:
    """The exact ``(P, P)`` Hessian assembled from eq. 13–14: ``(H, factors)``.

    Same result as :func:`branchspec.hessian.exact_hessian` for a loss of
    f, at the cost of M within-branch Hessians plus per-sample Jacobians.
    ``args`` / ``kwargs``: extra model inputs (a per-sample condition is split with x).
    Refuses (one line) when :func:`~branchspec.hessian.estimate_bytes` exceeds the budget.
    """
    model = as_branched(model)
    itemsize = next(model.parameters()).element_size()
    with torch.no_grad(), analysis_mode(model):
        nc = model(x, *args, **(kwargs or {})).numel()
    check_budget(estimate_bytes(subset, nc, itemsize, "blockwise"), budget_bytes,
                 f"the exact Hessian of {subset.num_params} parameters ({subset.selector}) on {x.shape[0]} samples",
                 "choose a smaller parameter subset or batch, or estimate block norms with probes")
    if factors is None:
        factors = hessian_factors(model, subset, x, y, loss_fn, args, kwargs=kwargs)
    m, pk = subset.num_branches, subset.per_branch
    d = factors.distributive.reshape(m, -1, pk)  # (M, N·C, |w_k|)
    co = factors.collaborative.reshape(m, -1, pk)  # (M, N·C, |w_k|)
    gn = torch.einsum("kqa,lqb->kalb", d, co).reshape(m * pk, m * pk)  # Gauss–Newton part, (P, P)
    H = gn.clone()
    for k in range(m):
        sl = slice(k * pk, (k + 1) * pk)
        H[sl, sl] += within_branch_curvature(model, subset, x, factors.output_grad, k, args, chunk_size, kwargs)
    return H, factors


def eq14_report(H: Tensor, factors: HessianFactors, boundaries: Sequence[int], zero_tol: float = 1e-6,
                small_tol: float = 0.05) -> dict[str, Any]:
    """Check eq. 14 on H and measure where its distributive factor vanishes.

    Returns (JSON-ready):

    * ``product_max_error`` — max over k ≠ l of |Σ_j D_kᵀC_l − H_kl|, relative
      to max |H| (≈ 1e-7 in float32 when H came from an independent method);
    * ``distributive_zero_fraction`` — share of (branch, sample, parameter)
      triples whose distributive vector ∂v_k(x_j)/∂w_a is zero
      (norm ≤ ``zero_tol`` × the largest); ``…_per_branch`` likewise;
    * ``offblock_terms_vanishing_distributive`` / ``…_collaborative`` — share of
      the per-sample terms D_k(x_j)[:, a]·C_l(x_j)[:, b] (k ≠ l) that vanish
      because their distributive (resp. collaborative) factor is zero: the
      part of the off-block sum of eq. 14 that zero distributive parts remove;
    * ``offblock_rows_zero_by_distributive`` — share of off-block rows (a, all
      l ≠ k) that are zero because D_k[:, :, a] is zero on every sample;
    * ``offblock_mass_at_zero_distributive`` — squared off-block mass carried
      by terms with a zero distributive factor, over the total (≈ 0: check);
    * ``distributive_small_fraction`` / ``offblock_mass_at_small_distributive``
      — the same two with "nearly zero" (norm ≤ ``small_tol`` × the largest,
      e.g. a LeakyReLU on its 0.01 side): a large share of terms carrying a
      small share of the off-block mass is the §8 mechanism at work;
    * ``offblock_mass_fraction`` — 1 − block diagonality of H.
    """
    m = factors.distributive.shape[0]
    d, co = factors.distributive, factors.collaborative  # (M, N, C, |w_k|)
    dn, cn = d.norm(dim=2), co.norm(dim=2)  # (M, N, |w_k|)
    dmax = dn.max().clamp_min(torch.finfo(dn.dtype).tiny)
    dz = dn <= zero_tol * dmax
    ds = dn <= small_tol * dmax
    cz = cn <= zero_tol * cn.max().clamp_min(torch.finfo(cn.dtype).tiny)
    scale = H.abs().max().item() or 1.0
    b = list(boundaries)
    err, masked_sq, small_sq, off_sq = 0.0, 0.0, 0.0, 0.0
    for k in range(m):
        for l in range(m):
            if k == l:
                continue
            hkl = H[b[k]:b[k + 1], b[l]:b[l + 1]]
            err = max(err, (factors.offblock(k, l) - hkl).abs().max().item() / scale)
            masked = torch.einsum("nca,ncb->ab", d[k] * dz[k][:, None, :], co[l])
            masked_sq += masked.pow(2).sum().item()
            small = torch.einsum("nca,ncb->ab", d[k] * ds[k][:, None, :], co[l])
            small_sq += small.pow(2).sum().item()
            off_sq += hkl.pow(2).sum().item()
    total_sq = H.pow(2).sum().item()
    return {
        "product_max_error": err,
        "zero_tol": zero_tol,
        "distributive_zero_fraction": dz.double().mean().item(),
        "distributive_zero_fraction_per_branch": dz.double().mean(dim=(1, 2)).tolist(),
        "collaborative_zero_fraction": cz.double().mean().item(),
        "offblock_terms_vanishing_distributive": dz.double().mean().item() if m > 1 else 0.0,
        "offblock_terms_vanishing_collaborative": cz.double().mean().item() if m > 1 else 0.0,
        "offblock_rows_zero_by_distributive": dz.all(dim=1).double().mean().item(),
        "offblock_mass_at_zero_distributive": masked_sq / off_sq if off_sq > 0 else 0.0,
        "small_tol": small_tol,
        "distributive_small_fraction": ds.double().mean().item(),
        "offblock_mass_at_small_distributive": small_sq / off_sq if off_sq > 0 else 0.0,
        "offblock_mass_fraction": off_sq / total_sq if total_sq > 0 else 0.0,
    }
