"""Using the packed engine safely: build it checked against the loop, name the layer at fault, notice change.

:func:`build_checked` packs the branches (:func:`branchspec.packed.pack`) and
compares the packed network with the M branches run one by one; a mismatch
falls back with a reason naming the module at fault (:func:`blame`).
:func:`fingerprint` summarises the branch modules' structure, so
:class:`~branchspec.branched.Branched` rebuilds the packed network when a
branch module is replaced or an attribute changes after the first forward.

Example:
    >>> import torch, torch.nn as nn
    >>> branches = [nn.Sequential(nn.Linear(3, 4), nn.ReLU()) for _ in range(2)]
    >>> net, reason = build_checked(branches, torch.randn(5, 3), False, (), {})
    >>> reason
    'packed'
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from branchspec.packed import NotPackable, pack, run_packed, unpack_output

_PLAIN = (int, float, str, bool, tuple, type(None))


def fingerprint(branches: Sequence[nn.Module]) -> list:
    """A cheap structural fingerprint of the branch modules: every module's identity and type, in traversal
    order, and its plain attributes (strides, eps, a DropConnect rate …; not ``training``). A packed network
    keeps references to the modules it was built from and copies of their containers, so
    :class:`PackedCache` rebuilds it whenever this changes (a branch module replaced, an attribute set after
    the first forward). About 3 µs per module (3 ms for the 1,041 modules of the M = 16 classifier on this
    project's CPU), checked on every packed forward."""
    out: list = []
    stack = list(branches)
    while stack:
        m = stack.pop()
        d = m.__dict__
        out += (id(m), type(m))
        out += [(k, v) for k, v in d.items() if isinstance(v, _PLAIN) and k[0] != "_" and k != "training"]
        stack += [c for c in d["_modules"].values() if c is not None]
    return out


def build_checked(branches: Sequence[nn.Module], x: Tensor, per_branch: bool, args: tuple, kwargs: dict
                  ) -> tuple[nn.Module | None, str]:
    """``(packed network, "packed")``, or ``(None, reason)`` when the branches cannot be packed.

    The packed network is compared with the M branches run one by one on a few
    samples (fp32, eval mode, no grad, buffers untouched): a branch ``forward``
    that mixes channels outside a registered layer is caught here, and the
    reason names the module at fault (:func:`blame`).
    """
    try:
        net = pack(list(branches))
        reason = _check(net, branches, x, per_branch, args, kwargs)
    except (NotPackable, RuntimeError, ValueError, TypeError, AttributeError) as err:
        return None, f"not packable: {err}"
    return (None, reason) if reason else (net, "packed")


def _check(net: nn.Module, branches: Sequence[nn.Module], x: Tensor, per_branch: bool, args: tuple, kwargs: dict) -> str:
    """'' if ``net`` matches the branches run one by one on a few samples, else why not."""
    full = x.shape[1] if per_branch else x.shape[0]
    n = min(full, 4)

    def cut(a):
        return a[:n] if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == full else a

    xs = x[:, :n] if per_branch else x[:n]
    xs = xs.float() if xs.is_floating_point() else xs
    a_s, k_s = tuple(cut(a) for a in args), {k: cut(v) for k, v in kwargs.items()}
    with _evaluating(branches, net), torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        ref = torch.stack([b(xs[k] if per_branch else xs, *a_s, **k_s) for k, b in enumerate(branches)])
        got = run_packed(net, xs, per_branch, len(branches), a_s, k_s, channels_last=False)
    if got.shape != ref.shape:
        return f"packed output shape {tuple(got.shape)} != loop {tuple(ref.shape)}"
    err = (got - ref).norm() / ref.norm().clamp_min(1e-12)
    if not err <= 1e-3:
        where = blame(net, branches, xs, per_branch, a_s, k_s)
        return (f"packed output differs from the loop engine (relative error {float(err):.2g}): "
                f"{where or 'a layer'} mixes channels")
    return ""


def _close(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and bool((a - b).norm() <= 1e-3 * b.norm().clamp_min(1e-12))


def _matches(packed: Tensor, refs: list[Tensor]) -> bool:
    """Whether a packed-network activation equals the M branches' ``refs``: shared (the same tensor for every
    branch), packed on the channel axis ``(B, M·C, …)``, or packed on the last axis ``(…, M·C)``."""
    ref = torch.stack(refs)  # (M, B, C, …)
    m, r = len(refs), refs[0]
    if packed.shape == r.shape and all(_close(packed, q) for q in refs):
        return True
    if packed.dim() >= 2 and r.dim() >= 2 and packed.shape[1] == m * r.shape[1]:
        if _close(unpack_output(packed, m), ref):
            return True
    if packed.dim() >= 1 and r.dim() >= 1 and packed.shape[-1] == m * r.shape[-1]:
        return _close(packed.unflatten(-1, (m, r.shape[-1])).movedim(-2, 0), ref)  # (M, …, C)
    return False


def blame(net: nn.Module, branches: Sequence[nn.Module], xs: Tensor, per_branch: bool, args: tuple,
          kwargs: dict) -> str:
    """``"branch.PATH (Type)"``: the first module to finish whose input matches the branches' and whose output
    does not — the layer (or the container's own ``forward`` code) that mixes the branches' channels; ``''`` if
    none is found. Runs both networks once more with forward hooks (fp32, eval mode, no grad)."""
    def first_tensor(t):
        return t if isinstance(t, Tensor) else next((a for a in t if isinstance(a, Tensor)), None)

    def hook(log, name):
        return lambda mod, inp, out: log.append((name, first_tensor(inp), out if isinstance(out, Tensor) else None))

    got: list = []
    seen: list[dict[str, list]] = [{} for _ in branches]
    handles = [mod.register_forward_hook(hook(got, n)) for n, mod in net.named_modules()]
    for k, b in enumerate(branches):
        log: list = []
        handles += [mod.register_forward_hook(hook(log, n)) for n, mod in b.named_modules()]
        seen[k] = log  # filled below
    try:
        with _evaluating(branches, net), torch.no_grad(), torch.autocast(xs.device.type, enabled=False):
            for k, b in enumerate(branches):
                b(xs[k] if per_branch else xs, *args, **kwargs)
            run_packed(net, xs, per_branch, len(branches), args, kwargs, channels_last=False)
    except (RuntimeError, ValueError, TypeError):
        return ""
    finally:
        for h in handles:
            h.remove()
    calls: list[dict[str, list]] = []
    for log in seen:
        per: dict[str, list] = {}
        for name, i, o in log:
            per.setdefault(name, []).append((i, o))
        calls.append(per)
    count: dict[str, int] = {}
    types = dict(branches[0].named_modules())
    for name, i, o in got:
        c = count[name] = count.get(name, -1) + 1
        ref = [per.get(name, [])[c] if c < len(per.get(name, [])) else (None, None) for per in calls]
        if o is None or i is None or any(ri is None or ro is None for ri, ro in ref):
            continue
        if _matches(i, [ri for ri, _ in ref]) and not _matches(o, [ro for _, ro in ref]):
            return f"{'branch.' + name if name else 'branch'} ({type(types.get(name, net)).__name__})"
    return ""




class PackedCache:
    """The packed networks of one :class:`~branchspec.branched.Branched`, one per input kind (shared /
    per-branch): built and checked on first use, rebuilt (and re-checked) whenever :func:`fingerprint` of the
    branches changes, so a stale copy of replaced or re-configured modules is never run. With ``strict`` a
    branch set that cannot be packed raises :class:`NotPackable` instead of falling back to the fused engine.
    Not an ``nn.Module``: nothing of it enters the state dict."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.built: dict[bool, tuple[nn.Module | None, str, list]] = {}  # per_branch -> (net | None, reason, fp)

    def network(self, branches: Sequence[nn.Module], x: Tensor, per_branch: bool, args: tuple, kwargs: dict
                ) -> nn.Module | None:
        """The checked packed network for this input kind, or None (fall back; the reason is in :meth:`report`)."""
        fp = fingerprint(branches)
        got = self.built.get(per_branch)
        if got is None or got[2] != fp:
            got = self.built[per_branch] = (*build_checked(branches, x, per_branch, args, kwargs), fp)
        if got[0] is None and self.strict:
            raise NotPackable(f"engine 'packed' with strict=True: {got[1]}")
        return got[0]

    def report(self, branches: Sequence[nn.Module]) -> dict[str, str]:
        """``{"shared" | "per-branch": "packed" | "fused (reason)"}`` for the input kinds seen; before the
        first forward, ``{"packed": …}`` from packing the branches' structure (not yet checked on data)."""
        if not self.built:
            try:
                pack(list(branches))
            except NotPackable as err:
                return {"packed": f"fused (not packable: {err})"}
            return {"packed": "not built yet: the structure packs; checked against the loop on the first forward"}
        stale = fingerprint(branches)
        return {("per-branch" if pb else "shared"): ("packed" if net is not None else f"fused ({reason})")
                + (" (branches changed since; rebuilt on the next forward)" if fp != stale else "")
                for pb, (net, reason, fp) in self.built.items()}


@contextmanager
def _evaluating(branches: Sequence[nn.Module], net: nn.Module) -> Iterator[None]:
    """The branches and the packed net in eval mode inside; the branches' own modes restored after."""
    modes = [b.training for b in branches]
    try:
        for b in branches:
            b.train(False)
        net.train(False)
        yield
    finally:
        for b, mode in zip(branches, modes):
            b.train(mode)
