"""Toy problems of §4.1: sums of scalar Leaky-ReLU neurons (eq. 1 with eq. 4).

Each branch is v_k(x) = LeakyReLU(w_k·x + b_k) with scalar w_k, b_k; the
network is f(x) = Σ_k v_k(x); the loss is L = ½‖f − y‖² over the N = 4
training points; training is plain full-batch gradient descent, and a run
*succeeds* when Σ_j (f(x_j) − y_j)² < δ = 1e-4 (§4.1).

* Toy1: X = {−1, 0, 0, 1}, Y = {1, .5, .5, 1} (a 1-D XOR, Fig. 2–3);
* Toy2: X = {−1, 0, 1, 2}, Y = {1, .25, .5, .75} (a regression, Fig. 4).

:func:`train_toy` trains every (M, trial) pair of a sweep *at once*: all
neurons of all networks live in one dense parameter table of R rows × L
slots (two networks share a row of length L = M_max + M_min, so a
contiguous sweep 2…30 wastes no slot; see :mod:`branchspec.toy.engine`),
and the closed-form gradient of eq. 5,
∂L/∂w_k = Σ_j (f(x_j) − y_j) · σ'(w_k x_j + b_k) · x_j, is evaluated for
all of them with a handful of tensor operations per step — no Python loop
over trials or over M. ``tests/test_toy.py`` checks it against a plain
per-trial autograd loop (same initialisation → same trajectory).

Defaults (found by a search on small trial counts, documented in
``docs/toy.md``) reproduce the paper: init w, b ~ U(−1, 1) (PyTorch's
default for a 1→1 ``nn.Linear``), Leaky-ReLU slope 0.01 (PyTorch's
default), learning rate 0.03, 2000 steps for Toy1 and 4000 for Toy2.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from branchspec import metrics
from branchspec.models.toy_neuron import toy_model
from branchspec.toy.engine import PackedSweep
from branchspec.toy.problems import DEFAULT_STEPS, PROBLEMS, toy_data
from branchspec.seeds import derive_seed

@dataclass(frozen=True)
class ToyConfig:
    """One toy sweep: every M in ``branches`` trained ``trials`` times (§4.1).

    Example:
        >>> ToyConfig(problem="toy2", branches=(10, 20), trials=5).resolved_steps
        4000
    """

    problem: str = "toy1"  # "toy1" or "toy2" (§4.1)
    branches: tuple[int, ...] = tuple(range(2, 31))  # the values of M (paper: 2..30)
    trials: int = 1000  # random initialisations per M (paper: 1000)
    steps: int = 0  # gradient-descent steps; 0 = DEFAULT_STEPS[problem]
    lr: float = 0.03  # plain full-batch GD step size
    init_scale: float = 1.0  # w, b ~ U(-init_scale, init_scale) (PyTorch nn.Linear(1, 1) default)
    negative_slope: float = 0.01  # Leaky-ReLU slope (PyTorch default)
    seed: int = 0  # the init of (M, trial) depends only on (seed, M, trial)
    delta: float = 1e-4  # success: Σ_j (f(x_j) − y_j)² < delta (§4.1)
    active_fraction: float = 0.1  # active: ‖F_i‖ ≥ fraction · max_k ‖F_k‖ (Fig. 4)
    dtype: str = "float32"  # "float32" or "float64"
    trace_m: tuple[int, ...] = (2,)  # record training dynamics of these M (Fig. 2) …
    trace_trials: int = 6  # … for their first trials …
    trace_every: int = 10  # … every this many steps (every step before 2·trace_every)
    keep_responses: int = 10  # final response matrices F kept per M (first trials)

    def __post_init__(self):
        if self.problem not in PROBLEMS:
            raise ValueError(f"problem must be one of {sorted(PROBLEMS)}, got {self.problem!r}")
        object.__setattr__(self, "branches", tuple(sorted({int(m) for m in self.branches})))
        object.__setattr__(self, "trace_m", tuple(int(m) for m in self.trace_m))
        if not self.branches or self.branches[0] < 1:
            raise ValueError(f"branches must be a non-empty set of M >= 1, got {self.branches}")
        for name in ("trials", "trace_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("steps", "trace_trials", "keep_responses"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0 or not self.init_scale > 0 or not self.delta > 0:
            raise ValueError("lr, init_scale and delta must be > 0")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")

    @property
    def resolved_steps(self) -> int:
        return self.steps or DEFAULT_STEPS[self.problem]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["steps"] = self.resolved_steps
        return d


@dataclass
class ToyRun:
    """Everything one sweep produced; per-network arrays are indexed by g = (M, trial).

    Networks are ordered by M (ascending), then trial. Ragged per-neuron
    arrays (``w0, b0, w, b, F``) are concatenated in that order; network g
    owns rows ``offsets[g]:offsets[g+1]``.
    """

    config: ToyConfig
    net_m: np.ndarray  # (G,) number of branches of network g
    net_trial: np.ndarray  # (G,)
    offsets: np.ndarray  # (G+1,)
    w0: np.ndarray  # (P,) initial weights
    b0: np.ndarray  # (P,) initial biases
    w: np.ndarray  # (P,) final weights
    b: np.ndarray  # (P,) final biases
    F: np.ndarray  # (P, N) final responses v_i(x_j): the rows of each network's F (§4.1)
    loss: np.ndarray  # (G,) Σ_j (f(x_j) − y_j)²
    success: np.ndarray  # (G,) bool, loss < delta
    active: np.ndarray  # (G,) number of active branches (10 % rule)
    silent: np.ndarray  # (G,)
    trace_steps: np.ndarray  # (S,) step of each snapshot
    traces: dict = field(default_factory=dict)  # "m{M}_t{trial}" -> (S, M, N) branch outputs
    seconds: float = 0.0

    def network(self, m: int, trial: int) -> int:
        """Index g of the network with ``m`` branches and trial number ``trial``."""
        hit = np.flatnonzero((self.net_m == m) & (self.net_trial == trial))
        if hit.size == 0:
            raise KeyError(f"no network with M={m}, trial={trial}")
        return int(hit[0])

    def response(self, g: int) -> np.ndarray:
        """F of network g, ``(M, N)``: F[i, j] = v_i(x_j)."""
        return self.F[self.offsets[g]:self.offsets[g + 1]]

    def params(self, g: int, initial: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(w, b)`` of network g, each ``(M,)``, final or initial."""
        s = slice(self.offsets[g], self.offsets[g + 1])
        return (self.w0[s], self.b0[s]) if initial else (self.w[s], self.b[s])

    def per_m(self) -> list[dict]:
        """One summary per M: success rate (Fig. 3 left), mean active / silent (Fig. 4 right)."""
        out = []
        for m in self.config.branches:
            sel = self.net_m == m
            loss = self.loss[sel]
            out.append({
                "m": int(m),
                "trials": int(sel.sum()),
                "success_rate": float(self.success[sel].mean()),
                "mean_active": float(self.active[sel].mean()),
                "mean_silent": float(self.silent[sel].mean()),
                "std_active": float(self.active[sel].std()),
                "median_loss": float(np.median(loss)),
                "diverged": int((~np.isfinite(loss)).sum()),
            })
        return out


def initial_parameters(config: ToyConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Initial ``(w, b)`` of every network, concatenated in network order, float64.

    The draw for M uses its own generator seeded by ``(seed, M)``, so the
    initialisation of (M, trial) does not depend on which other M are swept.
    """
    ws, bs = [], []
    for m in config.branches:  # init only; training has no loop over M
        g = torch.Generator().manual_seed(derive_seed(config.seed, "toy-init", m))
        wb = torch.empty(2, config.trials, m, dtype=torch.float64).uniform_(-config.init_scale, config.init_scale,
                                                                            generator=g)  # (2, T, M)
        ws.append(wb[0].reshape(-1))
        bs.append(wb[1].reshape(-1))
    return torch.cat(ws), torch.cat(bs)


def train_toy(config: ToyConfig, w0: torch.Tensor | None = None, b0: torch.Tensor | None = None,
              progress: bool = False, threads: int | None = 1) -> ToyRun:
    """Train every (M, trial) network of ``config`` together by full-batch GD (§4.1).

    ``w0, b0`` (``(P,)``, network order) override :func:`initial_parameters`.
    ``threads``: torch threads while training (``None``: leave the setting
    alone). The default 1 is deliberate: every op is a memory-bound pass
    over the table, and on the shared 2-core machine two OpenMP threads
    were up to 10× *slower* whenever other jobs ran (a barrier per op waits
    for a descheduled thread); see docs/toy.md.

    Example:
        >>> run = train_toy(ToyConfig(branches=(10,), trials=8, steps=2000))
        >>> run.per_m()[0]["success_rate"]
        1.0
    """

    t0 = time.perf_counter()
    if w0 is None or b0 is None:
        w0, b0 = initial_parameters(config)
    prev = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        sweep = PackedSweep(config, w0, b0)
        trace_steps, snaps = sweep.run(config.resolved_steps, progress=progress)
        w, b, F, loss = sweep.result()
    finally:
        torch.set_num_threads(prev)
    # Active / silent (§4.1, Fig. 4): per-branch response norms via metrics.branch_norms,
    # compared with the largest norm of the same network (vectorised segment max).
    norms = metrics.branch_norms(F)  # (P,)
    seg = torch.from_numpy(np.repeat(np.arange(sweep.G), sweep.sizes))
    top = torch.full((sweep.G,), -1.0, dtype=norms.dtype).scatter_reduce(0, seg, norms, "amax")
    act = (norms >= config.active_fraction * top[seg]) & (top[seg] > 0)  # (P,)
    n_active = torch.zeros(sweep.G, dtype=torch.long).index_add_(0, seg, act.long()).numpy()
    traces = {}
    for key, (start, m) in sweep.traced.items():
        traces[key] = snaps[:, :, start:start + m].transpose(0, 2, 1)  # (S, M, N)
    return ToyRun(
        config=config, net_m=sweep.sizes.copy(), net_trial=sweep.trial.copy(), offsets=sweep.offsets,
        w0=w0.numpy().copy(), b0=b0.numpy().copy(), w=w, b=b, F=F.numpy(), loss=loss,
        success=loss < config.delta, active=n_active, silent=sweep.sizes - n_active,
        trace_steps=trace_steps, traces=traces, seconds=time.perf_counter() - t0,
    )


def network_outputs(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, negative_slope: float) -> torch.Tensor:
    """Branch outputs v_k(x_j) of one network, ``(M, N)`` (eq. 4)."""
    return nn.functional.leaky_relu(w[:, None] * x[None, :] + b[:, None], negative_slope)  # (M, N)


def reference_train(w0: torch.Tensor, b0: torch.Tensor, problem: str, steps: int, lr: float,
                    negative_slope: float = 0.01) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The straightforward reference: one network, autograd, ``torch.optim.SGD`` (for tests/benchmarks).

    Returns final ``(w, b, Σ_j (f − y)²)``.
    """
    model = toy_model(len(w0), negative_slope)
    model = model.to(w0.dtype)
    with torch.no_grad():
        for k, br in enumerate(model.branches):
            br.weight.copy_(w0[k])
            br.bias.copy_(b0[k])
    x, y = toy_data(problem, w0.dtype)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        f = model(x[:, None])[:, 0]  # (N,)
        loss = 0.5 * ((f - y) ** 2).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        f = model(x[:, None])[:, 0]
        w = torch.stack([br.weight.detach() for br in model.branches])
        b = torch.stack([br.bias.detach() for br in model.branches])
    return w, b, float(((f - y) ** 2).sum())
