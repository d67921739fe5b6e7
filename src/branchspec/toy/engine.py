"""The vectorised full-batch GD engine behind :func:`branchspec.toy.train_toy`.

Layout: every neuron of every (M, trial) network sits in one dense table of
L slots × R rows. A row holds one network or two (the largest unpaired one
with the smallest that still fits, L = M_max + M_min), so a sweep over a
contiguous range of M with an even number of trials fills every slot; empty
slots hold w = b = 0, output 0 and are frozen. The tensors are laid out
``(N, L, R)`` — rows innermost — so per-network values ``(N, 1, R)``
broadcast along the slots at full vector speed. A step is ~10 whole-table
tensor ops written into pre-allocated buffers (closed-form gradients of
L = ½‖f − y‖², eq. 5); on one core of the 2-core test machine the full
Toy1 sweep (29 × 1000 networks, 464 000 neurons) costs ~4 ms of CPU per
step. Repeated inputs are merged with their multiplicity (Toy1's two x = 0
points become one of weight 2), which leaves the trajectory unchanged.

The second network's sum is the row total minus the first network's, so a
network that diverges would spoil its row-mate: every step checks
max |f − y| (one cheap reduction) and freezes any network beyond
``DIVERGED`` at w = b = 0, reporting its loss as inf (never seen with the
defaults).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from branchspec.toy.problems import toy_data

DIVERGED = 1e4  # |f(x_j) − y_j| beyond this: the network diverged and is frozen (loss = inf)

def _pair_rows(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Pack networks into rows: ``first[r]``, ``second[r]`` (−1 if none), row length L."""
    order = np.argsort(-sizes, kind="stable")
    L = int(sizes.max() + sizes.min())
    first, second = [], []
    i, j = 0, len(order) - 1
    while i <= j:
        if i < j and sizes[order[i]] + sizes[order[j]] <= L:
            first.append(order[i])
            second.append(order[j])
            j -= 1
        else:
            first.append(order[i])
            second.append(-1)
        i += 1
    return np.asarray(first), np.asarray(second), L


class PackedSweep:
    """All networks of a :class:`~branchspec.toy.ToyConfig` sweep, packed for GD."""

    def __init__(self, config, w0: torch.Tensor, b0: torch.Tensor) -> None:
        self.config = config
        dt = torch.float32 if config.dtype == "float32" else torch.float64
        T = config.trials
        self.sizes = np.repeat(np.asarray(config.branches, dtype=np.int64), T)  # (G,)
        self.trial = np.tile(np.arange(T), len(config.branches))  # (G,)
        self.G = G = len(self.sizes)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])  # (G+1,)
        P = int(self.offsets[-1])
        if w0.numel() != P or b0.numel() != P:
            raise ValueError(f"w0, b0 must hold {P} values (one per neuron), got {w0.numel()}, {b0.numel()}")
        first, second, L = _pair_rows(self.sizes)
        R = len(first)
        k = self.sizes[first]  # (R,) slots of the first network
        l = np.where(second >= 0, self.sizes[np.maximum(second, 0)], 0)  # (R,) slots of the second
        self.net_row = np.empty(G, np.int64)
        self.net_col = np.empty(G, np.int64)
        self.net_row[first], self.net_col[first] = np.arange(R), 0
        has2 = second >= 0
        self.net_row[second[has2]], self.net_col[second[has2]] = np.arange(R)[has2], k[has2]
        self.net_slot = np.zeros(G, np.int64)
        self.net_slot[second[has2]] = 1
        # flat position (col·R + row) of every neuron, network order
        local = np.arange(P) - np.repeat(self.offsets[:-1], self.sizes)  # (P,) neuron number within its network
        self.idx = torch.from_numpy((np.repeat(self.net_col, self.sizes) + local) * R + np.repeat(self.net_row, self.sizes))
        self.R, self.L = R, L
        col = torch.arange(L)[:, None]  # (L, 1)
        kt, lt = torch.from_numpy(k)[None, :], torch.from_numpy(l)[None, :]
        self.m1 = (col < kt).to(dt)  # (L, R) 1 on the first network's slots
        self.live = (col < kt + lt).to(dt)  # (L, R) 1 = a neuron, 0 = empty slot (frozen at w = b = 0)
        self.W = torch.zeros(L * R, dtype=dt)
        self.B = torch.zeros(L * R, dtype=dt)
        self.W[self.idx] = w0.to(dt)
        self.B[self.idx] = b0.to(dt)
        self.W, self.B = self.W.view(L, R), self.B.view(L, R)
        # Repeated inputs are merged (Toy1 has x = 0 twice): with U distinct u and c_u copies,
        # ½Σ_j (f(x_j) − y_j)² = ½Σ_u c_u (f(u) − ȳ_u)² + const, so the GD trajectory is unchanged.
        x, y = toy_data(config.problem, torch.float64)
        ux, inv, cnt = torch.unique(x, return_inverse=True, return_counts=True)
        ybar = torch.zeros(len(ux), dtype=torch.float64).index_add_(0, inv, y) / cnt
        self.loss_const = float(((y - ybar[inv]) ** 2).sum())  # 0 for Toy1 and Toy2
        self.inv = inv  # (N,) column of each original x
        self.N = N = len(ux)  # distinct inputs: the table's leading axis
        self.x3 = ux.to(dt).view(N, 1, 1)
        self.x1 = torch.stack([ux, torch.ones_like(ux)]).to(dt)  # (2, N): rows give ∂L/∂w and ∂L/∂b
        self.y3 = ybar.to(dt).view(N, 1, 1)
        self.c3 = cnt.to(dt).view(N, 1, 1)  # multiplicities c_u
        self.alpha = float(config.negative_slope)
        self.lr = float(config.lr)
        self.diverged = np.zeros(G, bool)
        # pre-allocated buffers; the table is (N, L, R): slots outer, rows inner, so
        # per-network values (N, 1, R) broadcast along L at full vector speed
        self.z = torch.empty(N, L, R, dtype=dt)  # pre-activations w·x_j + b
        self.v = torch.empty(N, L, R, dtype=dt)  # branch outputs σ(z)
        self.slope = torch.empty(N, L, R, dtype=dt)  # σ'(z) of the last forward
        self.tmp = torch.empty(N, L, R, dtype=dt)
        self.r1 = torch.empty(N, 1, R, dtype=dt)  # f − y of the first network of each row
        self.r2 = torch.empty(N, 1, R, dtype=dt)  # f − y of the second network
        self.d = torch.empty(N, 1, R, dtype=dt)
        self.gwb = torch.empty(2, L * R, dtype=dt)  # (∂L/∂w, ∂L/∂b) of every slot
        # networks whose dynamics are recorded (Fig. 2)
        self.traced: dict[str, tuple[int, int]] = {}
        q = []
        for m in config.trace_m:
            for t in range(min(config.trace_trials, T)):
                hit = np.flatnonzero((self.sizes == m) & (self.trial == t))
                if hit.size:
                    g = int(hit[0])
                    self.traced[f"m{m}_t{t}"] = (len(q), m)
                    q.extend(self.idx[self.offsets[g]:self.offsets[g + 1]].tolist())
        self.trace_idx = torch.tensor(q, dtype=torch.long)

    def forward(self) -> None:
        """Pre-activations ``z``, outputs ``v`` and residuals f − y of every network (``r1``, ``r2``)."""
        torch.addcmul(self.B, self.x3, self.W, out=self.z)  # (N, L, R) w·x_j + b
        torch.gt(self.z, 0, out=self.slope)  # (N, L, R) σ'(z) = 1 if z > 0 else α, kept for step()
        self.slope.mul_(1.0 - self.alpha).add_(self.alpha)
        torch.mul(self.z, self.slope, out=self.v)  # (N, L, R) v = σ(z) = σ'(z)·z, eq. 4
        torch.sum(self.v, 1, keepdim=True, out=self.r2)  # (N, 1, R) row totals
        torch.mul(self.v, self.m1, out=self.tmp)
        torch.sum(self.tmp, 1, keepdim=True, out=self.r1)  # (N, 1, R) f of the first network
        self.r2.sub_(self.r1)  # f of the second network (empty slots hold v = 0)
        self.r1.sub_(self.y3)
        self.r2.sub_(self.y3)
        if not max(float(self.r1.abs().max()), float(self.r2.abs().max())) <= DIVERGED:  # NaN-safe
            bad = ~(torch.isfinite(self.r1) & torch.isfinite(self.r2)) | (self.r1.abs() > DIVERGED) | (self.r2.abs() > DIVERGED)
            if bool(bad.any()):
                self._drop_diverged(bad.any(0).flatten())

    def _drop_diverged(self, rows_bad: torch.Tensor) -> None:
        """Freeze networks that blew up (|f − y| > DIVERGED or non-finite) at w = b = 0; their loss is inf."""
        for r in torch.nonzero(rows_bad).flatten().tolist():  # rare path
            nets = np.flatnonzero(self.net_row == r)
            culprits = []
            for g in nets:
                s = self.idx[self.offsets[g]:self.offsets[g + 1]]
                w, b = self.W.view(-1)[s], self.B.view(-1)[s]
                f = F.leaky_relu(self.x3.view(-1, 1) * w + b, self.alpha).sum(1)
                if not bool(torch.isfinite(f).all()) or bool(((f - self.y3.view(-1)).abs() > DIVERGED).any()):
                    culprits.append(g)
            for g in culprits or nets:
                s = self.idx[self.offsets[g]:self.offsets[g + 1]]
                self.W.view(-1)[s] = 0
                self.B.view(-1)[s] = 0
                self.live.view(-1)[s] = 0
                self.diverged[g] = True
        self.forward()

    def step(self) -> None:
        """One GD step on every network (after :meth:`forward`)."""
        g = self.tmp
        self.r1.mul_(self.c3)  # c_u (f − ȳ): ∂L/∂f(u)
        self.r2.mul_(self.c3)
        torch.sub(self.r1, self.r2, out=self.d)
        torch.addcmul(self.r2, self.d, self.m1, out=g)  # (N, L, R) ∂L/∂f of each neuron's network
        g.mul_(self.slope)  # (N, L, R) ∂L/∂z = ∂L/∂v · σ'(z) (eq. 5)
        torch.mm(self.x1, g.view(self.N, -1), out=self.gwb)  # (2, L·R): Σ_j ∂L/∂z_j · (x_j, 1), one pass
        self.W.addcmul_(self.gwb[0].view(self.L, self.R), self.live, value=-self.lr)
        self.B.addcmul_(self.gwb[1].view(self.L, self.R), self.live, value=-self.lr)

    def snapshot(self) -> np.ndarray:
        """Branch outputs of the traced networks, ``(N, Q)`` (after :meth:`forward`)."""
        return self.v.view(self.N, -1)[:, self.trace_idx][self.inv].numpy().copy()  # original x order

    def run(self, steps: int, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``steps`` GD steps; returns the snapshot steps ``(S,)`` and snapshots ``(S, N, Q)``."""
        every = self.config.trace_every
        rec = len(self.trace_idx) > 0
        it = range(steps)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc=f"{self.config.problem} GD", unit="step", mininterval=0.5, leave=False)
        steps_at, snaps = [], []
        for t in it:  # the only loop: over GD steps
            self.forward()
            if rec and (t % every == 0 or t < 2 * every):  # dense at the start, where the dynamics are fast
                steps_at.append(t)
                snaps.append(self.snapshot())
            self.step()
        self.forward()
        if rec:
            steps_at.append(steps)
            snaps.append(self.snapshot())
        shape = (0, len(self.inv), len(self.trace_idx))
        return np.asarray(steps_at, np.int64), (np.stack(snaps) if snaps else np.zeros(shape))

    def result(self) -> tuple[np.ndarray, np.ndarray, torch.Tensor, np.ndarray]:
        """Final ``(w, b, F, loss)`` in network order (after :meth:`forward`)."""
        w = self.W.reshape(-1)[self.idx].numpy().copy()
        b = self.B.reshape(-1)[self.idx].numpy().copy()
        F = self.v.view(self.N, -1)[:, self.idx][self.inv].T.contiguous()  # (P, N) v_i(x_j), original x
        rows = torch.from_numpy(self.net_row)
        r1, r2 = self.r1[:, 0, rows], self.r2[:, 0, rows]  # (N, G)
        r = torch.where(torch.from_numpy(self.net_slot == 0), r1, r2)  # (N, G) f − y of each network
        loss = (self.c3.view(-1, 1).double() * r.double() ** 2).sum(0).numpy() + self.loss_const  # (G,) Σ_j (f(x_j) − y_j)²
        loss[self.diverged] = np.inf
        return w, b, F, loss
