"""Using the packed engine safely: build it checked against the loop, name the layer at fault, notice change.

:func:`build_checked` packs the branches (:func:`branchspec.packed.pack`) and
compares the packed network with the M branches run one by one, in eval mode;
a mismatch falls back with a reason naming the module at fault (:func:`blame`).
A network that will run in training mode is checked once more in the modes the
branches are in (:func:`check_training`): batch statistics and any code path
taken only in training are compared too, with the same RNG state for both.
Dropout layers (per element or per channel, so per branch on packed
activations) are switched off for that comparison; any other randomness in
training mode (a DropConnect-style parametrization, noise in a ``forward``)
cannot be compared and keeps the packed network out of training.
:func:`fingerprint` summarises the branch modules' structure, so
:class:`~branchspec.branched.Branched` rebuilds the packed network when a
branch module is replaced, an attribute changes or a hook is added after the
first forward; :func:`mirror_modes` gives every packed module its source's
training mode before each forward.

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
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from branchspec.packed import HOOKS, NotPackable, PackedLayer, pack, run_packed, unpack_output

_PLAIN = (int, float, str, bool, tuple, type(None))
DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
"""Layers whose randomness is per element or per channel — per branch on packed activations — and which are
switched off while the training-mode check compares the packed network with the loop."""


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
        out += [bool(d.get(attr)) for attr in HOOKS.values()]  # a hook added later: rebuilt, so refused
        stack += [c for c in d["_modules"].values() if c is not None]
    return out


def training_modes(branches: Sequence[nn.Module]) -> tuple[bool, ...]:
    """The ``training`` flag of every module of the branches, in traversal order."""
    return tuple(m.training for b in branches for m in b.modules())


def mirror_modes(net: nn.Module) -> None:
    """Give every module of a packed network the training mode of the branch module it stands for (a packed
    layer: its first source; a copied container: the module it was copied from), so a sub-module the user
    keeps in eval mode (a frozen BatchNorm) behaves as it does in the loop."""
    for mod in net.modules():
        src = mod.sources[0] if isinstance(mod, PackedLayer) else mod.__dict__.get("packed_source")
        if src is not None:
            mod.training = src.training


def build_checked(branches: Sequence[nn.Module], x: Tensor, per_branch: bool, args: tuple, kwargs: dict
                  ) -> tuple[nn.Module | None, str]:
    """``(packed network, "packed")``, or ``(None, reason)`` when the branches cannot be packed.

    The packed network is compared with the M branches run one by one on a few
    samples (fp32, eval mode, no grad, buffers and RNG restored): a branch ``forward``
    that mixes channels outside a registered layer is caught here, and the
    reason names the module at fault (:func:`blame`).
    """
    try:
        net = pack(list(branches))
        reason = _check(net, branches, x, per_branch, args, kwargs, training=False)
    except (NotPackable, RuntimeError, ValueError, TypeError, AttributeError) as err:
        return None, f"not packable: {err}"
    return (None, reason) if reason else (net, "packed")


def check_training(net: nn.Module, branches: Sequence[nn.Module], x: Tensor, per_branch: bool, args: tuple,
                   kwargs: dict) -> str:
    """'' if ``net`` matches the loop in the modes the branches are in now (training: batch statistics, code
    that runs only in training), dropout layers off, the same RNG state for both; else why not (a branch
    still random with dropout off cannot be compared, so it is refused). Buffers and RNG restored after."""
    try:
        return _check(net, branches, x, per_branch, args, kwargs, training=None)
    except (RuntimeError, ValueError, TypeError, AttributeError) as err:
        return f"not packable in training mode: {str(err).splitlines()[0] if str(err) else type(err).__name__}"


_SEED = 20240917  # the RNG state both networks start from in the training-mode check


def _sample(x: Tensor, per_branch: bool, args: tuple, kwargs: dict) -> tuple[Tensor, tuple, dict]:
    """A few samples (at most 4) of the input and of every argument batched with it, in fp32."""
    full = x.shape[1] if per_branch else x.shape[0]
    n = min(full, 4)

    def cut(a):
        return a[:n] if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == full else a

    xs = x[:, :n] if per_branch else x[:n]
    xs = xs.float() if xs.is_floating_point() else xs
    return xs, tuple(cut(a) for a in args), {k: cut(v) for k, v in kwargs.items()}


def _check(net: nn.Module, branches: Sequence[nn.Module], x: Tensor, per_branch: bool, args: tuple, kwargs: dict,
           training: bool | None) -> str:
    """'' if ``net`` matches the branches run one by one on a few samples, else why not (see :func:`_modes`)."""
    xs, a_s, k_s = _sample(x, per_branch, args, kwargs)
    mode = "" if training is False else " in training mode"

    def loop(seed: int) -> Tensor:
        torch.manual_seed(seed)
        return torch.stack([b(xs[k] if per_branch else xs, *a_s, **k_s) for k, b in enumerate(branches)])

    with _modes(branches, net, training, x.device):
        ref = loop(_SEED)
        if training is None and not _close(loop(_SEED + 1), ref):
            return ("random in training mode (beyond dropout layers, e.g. DropConnect or noise in a forward): "
                    "the packed network cannot be checked against the loop there")
        torch.manual_seed(_SEED)
        got = run_packed(net, xs, per_branch, len(branches), a_s, k_s, channels_last=False)
    if got.shape != ref.shape:
        return f"packed output shape {tuple(got.shape)} != loop {tuple(ref.shape)}{mode}"
    err = (got - ref).norm() / ref.norm().clamp_min(1e-12)
    if not err <= 1e-3:
        where = blame(net, branches, xs, per_branch, a_s, k_s, training)
        return (f"packed output differs from the loop engine{mode} (relative error {float(err):.2g}): "
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
          kwargs: dict, training: bool | None = False) -> str:
    """``"branch.PATH (Type)"``: the first module to finish whose input matches the branches' and whose output
    does not — the layer (or the container's own ``forward`` code) that mixes the branches' channels; ``''`` if
    none is found. Runs both networks once more with forward hooks (fp32, no grad, in eval mode, or with
    ``training=None`` in the branches' own modes from one RNG state; buffers restored)."""
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
        with _modes(branches, net, training, xs.device):
            torch.manual_seed(_SEED)
            for k, b in enumerate(branches):
                b(xs[k] if per_branch else xs, *args, **kwargs)
            torch.manual_seed(_SEED)
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
    branch set that cannot be packed raises :class:`NotPackable` instead of falling back to vmap.
    Not an ``nn.Module``: nothing of it enters the state dict."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.built: dict[bool, _Built] = {}  # per_branch -> the network, checked in eval mode and per training mode
        self.ran: dict[bool, bool] = {}  # per_branch -> whether the last network() call gave the packed network

    def network(self, branches: Sequence[nn.Module], x: Tensor, per_branch: bool, args: tuple, kwargs: dict
                ) -> nn.Module | None:
        """The packed network for this input kind, checked in the modes the branches are in now, or None (fall
        back; the reason is in :meth:`report`)."""
        fp = fingerprint(branches)
        got = self.built.get(per_branch)
        if got is None or got.fp != fp:
            got = self.built[per_branch] = _Built(*build_checked(branches, x, per_branch, args, kwargs), fp)
        reason = got.reason
        modes = training_modes(branches)
        if got.net is not None and any(modes):
            if modes not in got.training:
                if len(got.training) >= 8:  # modes toggled module by module: keep the memory bounded
                    got.training.clear()
                got.training[modes] = check_training(got.net, branches, x, per_branch, args, kwargs)
            reason = got.training[modes] or reason
        self.ran[per_branch] = reason == "packed"
        if reason != "packed" and self.strict:
            raise NotPackable(f"engine 'packed' with strict=True: {reason}")
        return got.net if reason == "packed" else None

    def packed(self, per_branch: bool) -> bool:
        """Whether the last :meth:`network` call for this input kind gave the packed network (not a fallback)."""
        return self.ran.get(per_branch, False)

    def report(self, branches: Sequence[nn.Module]) -> dict[str, str]:
        """``{"shared" | "per-branch": "packed" | "vmap (reason)"}`` for the input kinds seen; before the
        first forward, ``{"packed": …}`` from packing the branches' structure (not yet checked on data)."""
        if not self.built:
            try:
                pack(list(branches))
            except NotPackable as err:
                return {"packed": f"vmap (not packable: {err})"}
            return {"packed": "not built yet: the structure packs; checked against the loop on the first forward"}
        stale = fingerprint(branches)
        out = {}
        for pb, got in self.built.items():
            bad = next((r for r in got.training.values() if r), "")
            text = (f"vmap ({got.reason})" if got.net is None else
                    f"packed in eval mode, vmap in training mode ({bad})" if bad else "packed")
            out["per-branch" if pb else "shared"] = text + (
                " (branches changed since; rebuilt on the next forward)" if got.fp != stale else "")
        return out


@dataclass
class _Built:
    net: nn.Module | None  # None: not packable (reason says why)
    reason: str  # "packed" or why not, from the eval-mode check
    fp: list  # fingerprint of the branches it was built from
    training: dict = field(default_factory=dict)  # training_modes(...) -> "" (matches) or why not


@contextmanager
def _modes(branches: Sequence[nn.Module], net: nn.Module, training: bool | None, device: torch.device
           ) -> Iterator[None]:
    """Inside: every branch module in eval mode (``training=False``) or in its own mode with the dropout layers
    off (``None``), the packed net mirroring them; no grad, no autocast, the RNG forked. After: every module's
    own mode, the branches' buffers (BatchNorm statistics a training-mode pass moved) and the RNG restored."""
    mods = [m for b in branches for m in b.modules()]
    saved = [(m, m.training) for m in mods]
    buffers = [(t, t.detach().clone()) for b in branches for t in b.buffers()]
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad(), torch.autocast(device.type, enabled=False):
            for m in mods:
                if training is False or isinstance(m, DROPOUT):
                    m.training = False
            net.train(training is None)
            mirror_modes(net)
            yield
    finally:
        for m, mode in saved:
            m.training = mode
        with torch.no_grad():
            for t, value in buffers:
                t.copy_(value)
