"""The packed engine: M branches run as one network whose every layer is block diagonal.

A branched network of identical branches (eq. 1, Fig. 1) *is* one network in
which every layer acts on the branches separately. Writing the M branches'
activations side by side on the channel axis, ``(B, M·C, …)`` with channel
``k·C + c`` holding channel c of branch k, every layer becomes one call:

* ``Conv`` → grouped convolution with ``groups = M·g`` on a packed input, or one
  dense convolution with the M weight tensors concatenated when the input is
  the shared x (no copy of x: the first layer maps C → M·C₀ at once);
* ``Linear`` → a block-diagonal (batched) matrix product, or one dense linear
  on a shared input;
* ``BatchNorm`` / ``GroupNorm`` / ``InstanceNorm`` over M·C channels — exactly
  per-branch normalisation, since their statistics are per channel (per
  group); BatchNorm running statistics are written back to every branch;
* element-wise ops, pooling, up-sampling and residual sums act per channel and
  need no change at all, so the branch's own ``forward`` code runs unchanged.

Design: :func:`pack` walks one branch module (the template) together with the
same sub-module of every branch. A module type with a *packing rule* (a
registered factory, see :func:`register_packer`) is replaced by a packed layer
that keeps references to the M source modules and concatenates their
parameters at call time — so the parameters stay in ``branches.<k>.*`` (state
dicts identical across engines) and autograd sends every gradient to each
branch's own tensors. Any other module is a container: it is copied and its
children are packed recursively; a container that owns parameters or buffers
itself, and has no rule, cannot be packed (:class:`NotPackable`, with the
reason). Model files register rules for their own layers (AdaIN, the style
code, the toy neuron) next to the layer.

:class:`~branchspec.branched.Branched` checks the packed network against the
loop engine before using it, and rebuilds it when the branch modules change
(:mod:`branchspec.packed_check`), because a branch ``forward`` that mixes
channels (``chunk``/``view`` across the channel axis outside a registered
layer) would silently break the channel layout; on a mismatch it falls back
to vmap with a one-line reason naming the layer
(:meth:`~branchspec.branched.Branched.engine_report`), or raises with
``strict=True``. A rule applies to its layer's own ``forward``: a subclass that
redefines it is not packable until registered itself, and a module with a
forward or backward hook is not packable at all (a packed layer never calls
its sources' ``forward``, so their hooks would silently not run).

Example:
    >>> import torch, torch.nn as nn
    >>> from branchspec import Branched
    >>> m = Branched(lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()), 5, engine="packed", seed=0)
    >>> m.branch_outputs(torch.randn(2, 3, 8, 8)).shape
    torch.Size([5, 2, 4, 8, 8])
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from branchspec import padding as padding2d


class NotPackable(ValueError):
    """A branch module has a layer without a packing rule (the message says which)."""


Packer = Callable[[Sequence[nn.Module]], nn.Module]
_PACKERS: dict[type, Packer] = {}


def register_packer(*types: type) -> Callable[[Packer], Packer]:
    """Register ``factory(sources) -> packed module`` for module ``types``.

    ``sources`` are the M corresponding modules of the M branches. The packed
    module maps packed (or shared) inputs to packed outputs; see the module
    docstring for the layout.

    Example:
        >>> @register_packer(nn.Identity)
        ... def _identity(sources):
        ...     return nn.Identity()
    """

    def deco(factory: Packer) -> Packer:
        for t in types:
            _PACKERS[t] = factory
        return factory

    return deco


HOOKS = {"forward hook": "_forward_hooks", "forward pre-hook": "_forward_pre_hooks", "backward hook": "_backward_hooks",
         "backward pre-hook": "_backward_pre_hooks"}
"""Module hooks (kind → attribute) that make a module unpackable: the packed layers do not run them."""

SAFE_OVERRIDES = frozenset({"__init__", "__repr__", "extra_repr", "reset_parameters", "__setstate__"})
"""Methods a subclass of a layer with a rule may redefine and stay packable: none of them runs in ``forward``."""


def _overridden(t: type, base: type) -> str | None:
    """The first method of ``base`` that ``t`` (a subclass) redefines, other than :data:`SAFE_OVERRIDES`."""
    for cls in t.__mro__:
        if cls is base:
            return None
        for name, v in vars(cls).items():
            if callable(v) and name not in SAFE_OVERRIDES and hasattr(base, name):
                return name
    return None


def _rule_for(t: type) -> Packer | None:
    """The packing rule of ``t``: its own, or that of the nearest registered base class when ``t`` computes
    exactly what the base computes. A rule describes the base's own ``forward``: a subclass that redefines it
    (or a method it calls, e.g. a DropConnect ``Linear``) has no rule until it is registered itself."""
    for cls in t.__mro__:
        if cls in _PACKERS:
            over = None if cls is t else _overridden(t, cls)
            if over:
                raise NotPackable(f"redefines {cls.__name__}.{over}, so the packing rule of {cls.__name__} does not "
                                  f"apply (register_packer({t.__name__}) for it)")
            return _PACKERS[cls]
    return None


def pack(sources: Sequence[nn.Module], path: str = "branch") -> nn.Module:
    """The packed equivalent of the M modules ``sources`` (same type, same structure).

    Raises :class:`NotPackable` naming the first module at fault — its path in the branch (``path``, e.g.
    ``branch.blocks.0.conv``) and its type — that differs between branches, has parameters or buffers of its
    own and no packing rule, or redefines the ``forward`` of a layer with a rule.
    """
    first = sources[0]
    t = type(first)
    where = f"{path} ({t.__name__})"
    if any(type(s) is not t for s in sources):
        other = next(type(s).__name__ for s in sources if type(s) is not t)
        raise NotPackable(f"{where}: branches differ in module type ({t.__name__} vs {other})")
    hook = next((kind for kind, attr in HOOKS.items() for s in sources if getattr(s, attr, None)), None)
    if hook:
        raise NotPackable(f"{where}: has a {hook}, which the packed network would not run per branch "
                          "(remove it, or use the loop engine)")
    try:
        rule = _rule_for(t)
        if rule is not None:
            return rule(sources)
    except NotPackable as err:
        raise NotPackable(f"{where}: {err}") from None
    own = [n for n, _ in first.named_parameters(recurse=False)] + [n for n, _ in first.named_buffers(recurse=False)]
    if own:
        raise NotPackable(f"{where}: {t.__name__} owns {own[0]!r} and has no packing rule (register_packer)")
    clone = copy.deepcopy(first)
    for name, _ in first.named_children():
        setattr(clone, name, pack([getattr(s, name) for s in sources], f"{path}.{name}"))
    clone.__dict__["packed_source"] = first  # unregistered: the container's mode follows its source's
    return clone


class PackedLayer(nn.Module):
    """Base of the packed layers: keeps the M source modules, unregistered.

    The sources are kept in a plain list, so a packed layer owns no parameter
    and never appears in a state dict; parameters are read from the sources at
    every call.
    """

    def __init__(self, sources: Sequence[nn.Module]) -> None:
        super().__init__()
        self.sources = list(sources)  # M branch modules, not registered
        self.m = len(self.sources)

    def cat(self, name: str, dim: int = 0) -> Tensor | None:
        """Parameter/buffer ``name`` of every source concatenated on ``dim`` (None if absent)."""
        ts = [getattr(s, name) for s in self.sources]
        if ts[0] is None:
            return None
        return torch.cat(ts, dim) if ts[0].dim() > 0 else torch.stack(ts)

    def stack(self, name: str) -> Tensor | None:
        ts = [getattr(s, name) for s in self.sources]
        return None if ts[0] is None else torch.stack(ts)  # (M, ...)

    def packed_channels(self, x: Tensor, c: int, dim: int = 1) -> bool:
        """True if ``x`` is packed (M·c channels on ``dim``), False if shared (c channels)."""
        n = x.shape[dim]
        if n == self.m * c:
            return True
        if n == c:
            return False
        raise ValueError(f"{type(self.sources[0]).__name__}: input has {n} channels, expected {c} or {self.m}x{c}")


_CONV = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


class PackedConv(PackedLayer):
    """M convolutions as one grouped convolution (groups = M·g), or one dense conv on a shared input."""

    def forward(self, x: Tensor) -> Tensor:
        s = self.sources[0]
        conv = _CONV[type(s)]
        weight, bias = self.cat("weight"), self.cat("bias")  # (M·Cout, Cin/g, k…), (M·Cout,)
        padding = s.padding
        if s.padding_mode != "zeros":
            if isinstance(padding, str):
                raise NotPackable(f"padding={padding!r} with padding_mode={s.padding_mode!r}")
            pads = [p for p in reversed(padding) for _ in range(2)]
            if x.dim() == 4 and len(set(pads)) == 1 and s.padding_mode in padding2d.MODES:
                x = padding2d.pad2d(x, pads[0], s.padding_mode)  # one opaque op for torch.compile
            else:
                x = F.pad(x, pads, mode=s.padding_mode)
            padding = 0
        if self.packed_channels(x, s.in_channels):
            groups = self.m * s.groups
        elif s.groups == 1:
            groups = 1  # shared input: one dense conv C -> M·Cout
        else:
            x = x.repeat(1, self.m, *([1] * (x.dim() - 2)))  # (B, M·C, …)
            groups = self.m * s.groups
        return conv(x, weight, bias, s.stride, padding, s.dilation, groups)  # (B, M·Cout, …)


class PackedLinear(PackedLayer):
    """M linear maps as one block-diagonal product on the last axis, or one dense linear if shared."""

    def forward(self, x: Tensor) -> Tensor:
        s = self.sources[0]
        if not self.packed_channels(x, s.in_features, dim=-1):
            return F.linear(x, self.cat("weight"), self.cat("bias"))  # (…, M·out)
        w = self.stack("weight")  # (M, out, in)
        xs = x.unflatten(-1, (self.m, s.in_features))  # (…, M, in)
        y = torch.einsum("...mi,moi->...mo", xs, w)  # (…, M, out)
        b = self.stack("bias")
        if b is not None:
            y = y + b  # (M, out) broadcast
        return y.flatten(-2)  # (…, M·out)


class PackedBatchNorm(PackedLayer):
    """BatchNorm over M·C channels = per-branch BatchNorm; running statistics written back per branch."""

    def forward(self, x: Tensor) -> Tensor:
        s = self.sources[0]
        if not self.packed_channels(x, s.num_features):
            x = x.repeat(1, self.m, *([1] * (x.dim() - 2)))
        momentum = 0.0 if s.momentum is None else s.momentum
        track = s.track_running_stats and s.running_mean is not None
        if self.training and track:
            for src in self.sources:
                src.num_batches_tracked.add_(1)
            if s.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(s.num_batches_tracked)
        use_batch = self.training or not track
        mean, var = (self.cat("running_mean"), self.cat("running_var")) if track else (None, None)
        out = F.batch_norm(
            x, mean, var, self.cat("weight"), self.cat("bias"), use_batch, momentum, s.eps
        )  # (B, M·C, …)
        if self.training and track:
            with torch.no_grad():
                for src, pm, pv in zip(self.sources, mean.chunk(self.m), var.chunk(self.m)):
                    src.running_mean.copy_(pm)
                    src.running_var.copy_(pv)
        return out


class PackedGroupNorm(PackedLayer):
    """GroupNorm(G, C) on M·C channels = GroupNorm(M·G, M·C): groups never straddle branches."""

    def forward(self, x: Tensor) -> Tensor:
        s = self.sources[0]
        if not self.packed_channels(x, s.num_channels):
            x = x.repeat(1, self.m, *([1] * (x.dim() - 2)))
        return F.group_norm(x, self.m * s.num_groups, self.cat("weight"), self.cat("bias"), s.eps)


class PackedInstanceNorm(PackedLayer):
    """torch InstanceNorm without running statistics: per channel, hence per branch."""

    def forward(self, x: Tensor) -> Tensor:
        s = self.sources[0]
        if not self.packed_channels(x, s.num_features):
            x = x.repeat(1, self.m, *([1] * (x.dim() - 2)))
        return F.instance_norm(x, None, None, self.cat("weight"), self.cat("bias"), True, 0.0, s.eps)


class PackedLayerNorm(PackedLayer):
    """LayerNorm over the last axis, applied to each branch's slice of it."""

    def forward(self, x: Tensor) -> Tensor:
        s = self.sources[0]
        (c,) = s.normalized_shape
        if not self.packed_channels(x, c, dim=-1):
            x = x.repeat(*([1] * (x.dim() - 1)), self.m)
        xs = F.layer_norm(x.unflatten(-1, (self.m, c)), (c,), eps=s.eps)  # (…, M, C)
        w, b = self.stack("weight"), self.stack("bias")
        if w is not None:
            xs = xs * w
        if b is not None:
            xs = xs + b
        return xs.flatten(-2)


class PackedEmbedding(PackedLayer):
    """M embedding tables side by side: one lookup returns (…, M·D)."""

    def forward(self, idx: Tensor) -> Tensor:
        return F.embedding(idx, self.cat("weight", dim=1), self.sources[0].padding_idx)


class PerChannel(PackedLayer):
    """A layer whose forward treats its parameters as per-channel vectors (or scalars).

    Its own ``forward`` runs on the packed input with every parameter replaced
    by the M branches' parameters concatenated on axis 0 (scalars stacked), via
    :func:`torch.func.functional_call`. Register it for such layers with
    ``register_packer(MyLayer)(PerChannel)``.
    """

    def forward(self, *args, **kwargs):
        names = [n for n, _ in self.sources[0].named_parameters()]
        params = {n: self.cat(n) for n in names}
        return torch.func.functional_call(self.sources[0], params, args, kwargs)


def _unsupported(reason: str) -> Packer:
    def rule(sources):
        raise NotPackable(reason)

    return rule


def _instance_norm_rule(sources):
    if sources[0].track_running_stats:
        raise NotPackable("InstanceNorm with track_running_stats has no packing rule")
    return PackedInstanceNorm(sources)


def _layer_norm_rule(sources):
    if len(sources[0].normalized_shape) != 1:
        raise NotPackable("LayerNorm over more than the last axis has no packing rule")
    return PackedLayerNorm(sources)


def _embedding_rule(sources):
    if sources[0].max_norm is not None:
        raise NotPackable("Embedding with max_norm has no packing rule")
    return PackedEmbedding(sources)


register_packer(nn.Conv1d, nn.Conv2d, nn.Conv3d)(PackedConv)
register_packer(nn.Linear)(PackedLinear)
register_packer(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)(PackedBatchNorm)
register_packer(nn.GroupNorm)(PackedGroupNorm)
register_packer(nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)(_instance_norm_rule)
register_packer(nn.LayerNorm)(_layer_norm_rule)
register_packer(nn.Embedding)(_embedding_rule)
register_packer(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)(
    _unsupported("ConvTranspose has no packing rule yet")
)


def run_packed(net: nn.Module, x: Tensor, per_branch: bool, m: int, args: tuple, kwargs: dict,
               channels_last: bool = True) -> Tensor:
    """Run the packed network on shared ``(B, C, …)`` or per-branch ``(M, B, C, …)`` input → ``(M, B, …)``.

    ``channels_last``: 4-D activations in channels_last memory format (faster
    grouped convolutions on CPU: ``benchmarks/bench_engine.py``).
    """
    xin = pack_input(x) if per_branch else x  # (B, M·C, …) or shared (B, C, …)
    if xin.dim() == 4 and channels_last:
        xin = xin.contiguous(memory_format=torch.channels_last)
    return unpack_output(net(xin, *args, **kwargs), m)  # (M, B, …)


def pack_input(x: Tensor) -> Tensor:
    """Per-branch inputs ``(M, B, C, …)`` → packed ``(B, M·C, …)`` (one copy)."""
    return x.movedim(0, 1).flatten(1, 2)


def unpack_output(y: Tensor, m: int) -> Tensor:
    """Packed ``(B, M·C, …)`` → ``(M, B, C, …)`` (a view, no copy)."""
    if y.dim() < 2 or y.shape[1] % m:
        raise ValueError(f"packed output of shape {tuple(y.shape)} does not split into {m} branches on axis 1")
    return y.unflatten(1, (m, y.shape[1] // m)).movedim(1, 0)
