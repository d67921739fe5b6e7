"""The branched model of the paper: f(x) = R(x) + Σ_k v_k(x).

A :class:`Branched` module holds M identical sub-networks ("branches") built
by one factory and independently initialised (paper §1, eq. 1, Fig. 1); an
optional residual R(x) is added to their sum (App. E, eq. 15). Every analysis
in branchspec reads the branch outputs through this class, as one tensor
shaped ``(M, B, ...)`` — the branch axis first.

Two engines compute the same thing, the public choices of ``engine`` (:data:`ENGINES`):

* ``"loop"``   — a Python loop over the branch modules (the reference);
* ``"packed"`` (the default) — the branch is converted once into one block-diagonal network
  over ``(B, M·C, …)`` activations (:mod:`branchspec.packed`): grouped
  convolutions, per-channel normalisation, one kernel per layer and no
  stacking or transposes between layers — the fastest on CPU and GPU. Where the
  branch does not pack, it falls back to the branch parameters stacked and the
  branch function vectorised with :func:`torch.func.vmap` (convolutions become
  grouped convolutions under vmap's batching rules), and where vmap cannot run
  the branch either, to the loop: the capability rule of :class:`Branched`,
  decided once per input kind and mode without timing anything, so a resumed
  run takes the same path. :meth:`Branched.engine_report` says which path runs
  and why. Timing the paths against each other is ``benchmarks/bench_engine.py``.

The parameters always live in the per-branch modules (``branches.0.…``,
``branches.1.…``), so state dicts are identical between engines and a model
trained with one can be analysed with the other. BatchNorm running
statistics are updated per branch by every path.

Example:
    >>> import torch, torch.nn as nn
    >>> from branchspec import Branched
    >>> model = Branched(lambda: nn.Linear(3, 2), num_branches=4, seed=0)
    >>> f, v = model(torch.randn(5, 3), return_branches=True)
    >>> v.shape, torch.allclose(f, v.sum(0), atol=1e-6)
    (torch.Size([4, 5, 2]), True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from branchspec import packed as packing
from branchspec.engines import ENGINES, VMAP, VmapFallback, loop_outputs, stacked_state, vmap_outputs
from branchspec.errors import BranchspecError
from branchspec.packed_check import PackedCache, mirror_modes

__all__ = ["ENGINES", "VMAP", "Branched", "ResidualSplit", "as_branched"]


class ResidualSplit(NamedTuple):
    """What a residual may return instead of a plain tensor.

    ``residual``: R(x), shaped like f(x). ``branch_inputs``: a ``(M, B, ...)``
    tensor whose slice k is the input of branch k — the learnt-diffusion
    pre-processing of App. E feeds φ_k to branch k, f = R + Σ_k v_k(φ_k).
    """

    residual: Tensor
    branch_inputs: Tensor


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Fork the global RNG and seed it, or do nothing when seed is None."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class Branched(nn.Module):
    """M identical branches summed, plus an optional residual (eq. 1, eq. 15).

    Args:
        make_branch: factory returning a fresh ``nn.Module``; called M times,
            so every branch has the same architecture and its own random
            initialisation — the only difference between branches (§1).
        num_branches: M ≥ 1.
        residual: optional R. An ``nn.Module`` (registered, trained with the
            model) or any callable of the branch input x. It returns R(x), or
            a :class:`ResidualSplit` giving R and per-branch inputs.
        engine: ``"packed"`` (default) or ``"loop"`` (:data:`ENGINES`); anything
            else is a one-line ``ValueError``. ``"packed"`` is a capability rule,
            decided per input kind (shared or per-branch inputs) and mode, never
            by timing, so a resumed run takes the same path:

            1. the branches pack (:mod:`branchspec.packed`, checked against the
               loop in the mode they run in) → the packed network (for M = 1 the
               branch itself, in channels_last where that is set);
            2. they do not → the vmap fallback (:meth:`stacked_state` under
               :func:`torch.func.vmap`);
            3. vmap cannot run the branch (a ``RuntimeError`` at its first call:
               an op without a batching rule, ``.item()``, data-dependent control
               flow) → the loop, with the RNG as it was before that call.

            :meth:`engine_report` says which path runs for each input kind and why.
            The old names ``"auto"`` and ``"fused"`` are refused here; configs
            recorded with them read back as ``"packed"``
            (:func:`branchspec.options.current_values`).
        seed: if given, branch initialisation is reproducible (the global RNG
            is forked, seeded once, and the M branches are built in order).
        strict: the packed engine raises :class:`~branchspec.packed.NotPackable`
            (naming the layer at fault) instead of falling back to vmap.

    Extra positional / keyword arguments of :meth:`forward` are passed
    unchanged to every branch (e.g. a target-domain label of a generator).

    Example:
        >>> import torch, torch.nn as nn
        >>> m = Branched(lambda: nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1)), 3, seed=1)
        >>> m.branch_outputs(torch.zeros(7, 2)).shape
        torch.Size([3, 7, 1])
    """

    branch_gain: Tensor  # (M,) buffer: multiplier on each branch's contribution; 0 silences a branch
    residual: nn.Module | None

    def __init__(
        self,
        make_branch: Callable[[], nn.Module],
        num_branches: int,
        residual: nn.Module | Callable[[Tensor], Any] | None = None,
        engine: str = "packed",
        seed: int | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(num_branches, int) or num_branches < 1:
            raise ValueError(f"num_branches must be an integer >= 1, got {num_branches!r}")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        with _seeded(seed):
            self.branches = nn.ModuleList([make_branch() for _ in range(num_branches)])
        if isinstance(residual, nn.Module):
            self.residual = residual
        else:
            self.residual = None
        self._residual_fn = None if isinstance(residual, nn.Module) else residual
        self.engine = engine
        self.register_buffer("branch_gain", torch.ones(num_branches), persistent=False)
        self._vmap = VmapFallback()  # where the branches do not pack: vmap, or the loop where vmap cannot run them
        # packed network per input kind (shared / per-branch), built on first use and rebuilt when the
        # branch modules change; not registered, so it never enters the state dict.
        self._packed = PackedCache(strict)
        # channels_last for 4-D packed activations: None = yes (faster for grouped convs, measured in
        # benchmarks/bench_engine.py), False = keep the input's memory format.
        self.channels_last: bool | None = None

    # ------------------------------------------------------------------ basics
    @property
    def num_branches(self) -> int:
        """M, the number of branches."""
        return len(self.branches)

    def extra_repr(self) -> str:
        return f"num_branches={self.num_branches}, engine={self.engine!r}"

    def _residual(self, x: Tensor) -> Tensor | ResidualSplit | None:
        fn = self.residual if self.residual is not None else self._residual_fn
        out: Tensor | ResidualSplit | None = None if fn is None else fn(x)
        return out

    # ----------------------------------------------------------------- engines
    def stacked_state(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Parameters and buffers of all branches stacked on a leading M axis.

        The stack is differentiable: gradients reach every branch's own
        parameters. Returns ``(params, buffers)``, each ``{name: (M, ...)}``.
        """
        return stacked_state(list(self.branches))

    # ------------------------------------------------------------ packed engine
    def _packed_outputs(self, x: Tensor, per_branch: bool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor:
        """The capability rule of ``engine="packed"`` (class docstring): the packed network, else vmap, else the
        loop."""
        branches = list(self.branches)
        net = self._packed.network(branches, x, per_branch, args, kwargs)  # checked in this mode; rebuilt on change
        if net is None:  # fall back, the reason is in engine_report()
            return self._vmap.outputs(branches, x, per_branch, args, kwargs, self.training)
        net.train(self.training)  # the packed layers are not registered children: set their mode here,
        mirror_modes(net)  # then each one's from the branch module it stands for (a frozen BatchNorm stays frozen)
        return packing.run_packed(net, x, per_branch, self.num_branches, args, kwargs, self.channels_last is not False)

    def engine_report(self) -> dict[str, str]:
        """Which path runs for each input kind seen so far, and why.

        Keys are ``"shared"`` / ``"per-branch"`` inputs; values say e.g. ``"packed"``, ``"vmap (not packable:
        branch.norm (AdaIN): AdaIN owns 'w' and has no packing rule)"``, or add ``"; loop in training mode
        (vmap cannot run the branch: …)"``; before the first forward, ``"packed"`` says whether the structure
        packs. ``engine="loop"`` reports the engine only.

        Example:
            >>> import torch, torch.nn as nn
            >>> m = Branched(lambda: nn.Linear(3, 2), 2)
            >>> _ = m(torch.randn(4, 3))
            >>> m.engine_report()
            {'engine': 'packed', 'shared': 'packed'}
        """
        report = {"engine": self.engine}
        if self.engine == "loop":
            return report
        return self._vmap.annotate({**report, **self._packed.report(list(self.branches))})

    def runs_packed(self, per_branch: bool = False) -> bool:
        """Whether the packed engine ran the packed network itself — not a fallback — at its last forward
        on this input kind (shared or per-branch inputs)."""
        return self._packed.packed(per_branch)

    def engine_outputs(self, engine: str, x: Tensor, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                       per_branch: bool = False) -> Tensor:
        """The ``(M, B, ...)`` branch outputs computed by ``engine``: ``"loop"``, ``"packed"`` (the capability rule,
        as :meth:`forward` runs it: :meth:`runs_packed`, :meth:`engine_report`), or ``"vmap"`` — packed's
        fallback forced, for benchmarks and tests (raises where vmap cannot run the branch); ``x`` is
        ``(M, B, ...)`` when ``per_branch``."""
        if engine not in (*ENGINES, VMAP):
            raise ValueError(f"engine must be one of {(*ENGINES, VMAP)}, got {engine!r}")
        return self._outputs(engine, x, args, kwargs or {}, per_branch)

    def _outputs(self, engine: str, x: Tensor, args: tuple[Any, ...], kwargs: dict[str, Any],
                 per_branch: bool = False) -> Tensor:
        if engine == "packed":
            return self._packed_outputs(x, per_branch, args, kwargs)
        if engine == VMAP:
            return vmap_outputs(list(self.branches), x, per_branch, args, kwargs, self.training)
        return loop_outputs(list(self.branches), x, per_branch, args, kwargs)

    # ----------------------------------------------------------------- forward
    def forward_all(self, x: Tensor, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor, Tensor | None]:
        """One pass returning ``(f, branch_outputs, R)``.

        ``branch_outputs`` is ``(M, B, ...)`` *before* the silencing gains
        are applied; ``f = R + Σ_k g_k · v_k`` with g the gains (1 by
        default). ``R`` is ``None`` when the model has no residual.
        """
        out = self._residual(x)
        res: Tensor | None
        if isinstance(out, ResidualSplit):
            res, branch_in, per_branch = out.residual, out.branch_inputs, True
            if branch_in.shape[0] != self.num_branches:
                raise ValueError(
                    f"residual returned inputs for {branch_in.shape[0]} branches, model has {self.num_branches}")
        else:
            res, branch_in, per_branch = out, x, False
        outs = self._outputs(self.engine, branch_in, args, kwargs, per_branch)  # (M, B, ...)
        gain = self.branch_gain.to(outs.dtype).view(-1, *([1] * (outs.dim() - 1)))  # (M, 1, ...)
        f = (gain * outs).sum(0)  # (B, ...)
        if res is not None:
            f = f + res
        return f, outs, res

    def forward(self, x: Tensor, *args: Any, return_branches: bool = False, **kwargs: Any) -> Any:
        """f(x) = R(x) + Σ_k v_k(x) (eq. 1 / eq. 15).

        With ``return_branches=True`` returns ``(f, v)`` where v is the
        ``(M, B, ...)`` tensor of branch outputs from the same pass.
        """
        f, outs, _ = self.forward_all(x, *args, **kwargs)
        return (f, outs) if return_branches else f

    def branch_outputs(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """Every branch's output before summation, shaped ``(M, B, ...)``.

        This is v_k(x) of eq. 1 for all k at once — the input of every
        specialisation metric (response matrix F of §4.1).
        """
        return self.forward_all(x, *args, **kwargs)[1]

    def branch_inputs(self, x: Tensor) -> Tensor | None:
        """What each branch receives, ``(M, B, ...)``, or ``None`` when every branch sees x itself.

        A residual may return a :class:`ResidualSplit` that feeds branch k its
        own input (the learnt diffusion of App. E, f = R + Σ_k v_k(φ_k), eq. 15).
        """
        res = self._residual(x)
        return res.branch_inputs if isinstance(res, ResidualSplit) else None

    def residual_output(self, x: Tensor) -> Tensor | None:
        """R(x) alone (``None`` without a residual)."""
        res = self._residual(x)
        return res.residual if isinstance(res, ResidualSplit) else res

    # ----------------------------------------------------------------- helpers
    def silence(self, branches: int | Iterable[int], value: float = 0.0) -> None:
        """Silence branches: their contribution to f is multiplied by ``value`` (0).

        Used for ablations. :meth:`branch_outputs` still reports them unscaled.
        """
        idx = [branches] if isinstance(branches, int) else list(branches)
        for k in idx:
            if not 0 <= k < self.num_branches:
                raise IndexError(f"branch index {k} out of range 0..{self.num_branches - 1}")
            self.branch_gain[k] = value

    def unsilence(self) -> None:
        """Give every branch its full contribution again."""
        self.branch_gain.fill_(1.0)

    @contextlib.contextmanager
    def silenced(self, branches: int | Iterable[int]) -> Iterator["Branched"]:
        """Context manager: silence ``branches`` inside the block, restore after.

        Example:
            >>> import torch, torch.nn as nn
            >>> m = Branched(lambda: nn.Linear(1, 1), 3, seed=0)
            >>> x = torch.ones(2, 1)
            >>> with m.silenced([0, 1]):
            ...     torch.allclose(m(x), m.branch_outputs(x)[2])
            True
        """
        saved = self.branch_gain.clone()
        try:
            self.silence(branches)
            yield self
        finally:
            self.branch_gain.copy_(saved)

    def keep_only(self, branches: Iterable[int]) -> None:
        """Silence every branch not in ``branches``."""
        keep = set(branches)
        self.silence([k for k in range(self.num_branches) if k not in keep])

    def branch_parameters(self, k: int) -> dict[str, nn.Parameter]:
        """θ_k: the parameters of branch k, ``{name: parameter}`` (§3)."""
        return dict(self.branches[k].named_parameters())

    def branch_weight_norms(self, prefix: str = "") -> list[float]:
        """‖θ_k‖₂ for every k: the norm of branch k's parameters whose names start with ``prefix`` (all of
        them by default) — what weight decay shrinks once a branch's samples sit at the clamp and its
        collaborative factor vanishes (§4, eq. 10). With normalisation layers most weights are scale
        invariant (a convolution followed by batch norm); a branch's output scale is set by the rest, e.g. its
        last layer: ``branch_weight_norms("head.")`` for the §6 classifier.

        Example:
            >>> net = Branched(lambda: torch.nn.Linear(2, 1, bias=False), num_branches=2)
            >>> with torch.no_grad():
            ...     _ = net.branches[0].weight.fill_(3.0), net.branches[1].weight.fill_(0.0)
            >>> [round(n, 3) for n in net.branch_weight_norms()], net.branch_weight_norms("bias")
            ([4.243, 0.0], [0.0, 0.0])
        """
        with torch.no_grad():
            return [float(torch.sqrt(sum(((p.detach().float() ** 2).sum() for n, p in b.named_parameters()
                                          if n.startswith(prefix)), torch.zeros(()))))
                    for b in self.branches]

    def parameters_per_branch(self) -> list[int]:
        """|θ_k| for every k (number of scalar parameters)."""
        return [sum(p.numel() for p in b.parameters()) for b in self.branches]

    def num_parameters(self) -> int:
        """|θ|, all parameters including the residual's."""
        return sum(p.numel() for p in self.parameters())


def as_branched(model: nn.Module, what: str = "branched model") -> Branched:
    """The :class:`Branched` inside ``model``: itself, or its ``.branched`` / ``.generator``.

    Lets analysis code accept a wrapper around a branched model. Raises a
    one-line :class:`~branchspec.errors.BranchspecError` naming ``what`` otherwise.
    """
    for cand in (model, getattr(model, "branched", None), getattr(model, "generator", None)):
        if isinstance(cand, Branched):
            return cand
    raise BranchspecError(f"{type(model).__name__} is not a {what} (no Branched inside)")

