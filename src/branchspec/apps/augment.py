"""Component augmentation: random per-component gains as a data-augmentation step.

Beyond the paper, which names "random channel perturbations for data
augmentation" as a use of the decompositions (§7): an augmented image is

    x̃ = R + Σ_k g_k v_k,   g_k ~ U[1 − s, 1 + s] for the chosen k, g_k = 1 otherwise,

so s = 0 returns the re-generation exactly. :class:`ComponentAugment` is a
seedable ``nn.Module`` transform on tensors; :class:`DecompositionDataset`
serves augmented images from saved ``.npz`` decompositions, so it drops into
a ``torch.utils.data.DataLoader``.

Example:
    >>> import torch
    >>> aug = ComponentAugment(0.5, seed=0)
    >>> R, v = torch.zeros(3, 4, 4), torch.ones(2, 3, 4, 4)
    >>> x = aug(R, v)
    >>> bool(((x >= 1.0) & (x <= 3.0)).all())
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from branchspec.io import atomic_write_npz


class ComponentAugment(nn.Module):
    """x̃ = R + Σ_k g_k v_k with g_k ~ U[1 − s, 1 + s] on ``components`` (all by default).

    Args:
        gain_range: s ≥ 0, the half-width of the gain interval.
        components: indices k that are perturbed; the others keep g_k = 1.
        seed: seeds the transform's own ``torch.Generator`` (reproducible and
            independent of the global RNG); ``None`` uses the global RNG.

    Call with ``(R, components)``: R ``(C, H, W)`` and components ``(M, C,
    H, W)`` — or a batch, R ``(B, C, H, W)`` and components ``(M, B, C, H,
    W)`` (branch axis first, as :class:`~branchspec.Branched` returns them),
    with gains drawn per sample. ``return_gains=True`` also returns the gains
    ``(M,)`` / ``(M, B)``.
    """

    def __init__(self, gain_range: float, components: Sequence[int] | None = None, seed: int | None = None) -> None:
        super().__init__()
        if not (isinstance(gain_range, (int, float)) and gain_range >= 0 and gain_range == gain_range):
            raise ValueError(f"gain_range must be a number >= 0, got {gain_range!r}")
        self.gain_range = float(gain_range)
        self.components = None if components is None else [int(k) for k in components]
        self.seed = seed
        self._gen = None
        if seed is not None:
            self._gen = torch.Generator().manual_seed(int(seed))

    def extra_repr(self) -> str:
        return f"gain_range={self.gain_range}, components={self.components}, seed={self.seed}"

    def reset(self) -> None:
        """Restart the random stream from ``seed``."""
        if self.seed is not None:
            self._gen = torch.Generator().manual_seed(int(self.seed))

    def sample_gains(self, shape: tuple[int, ...]) -> Tensor:
        """Gains of ``shape`` (leading axis M), U[1 − s, 1 + s] on the chosen components, 1 elsewhere."""
        m = shape[0]
        u = torch.rand(shape, generator=self._gen, dtype=torch.float64)  # (M, ...)
        g = 1.0 + self.gain_range * (2.0 * u - 1.0)
        if self.components is not None:
            bad = [k for k in self.components if not 0 <= k < m]
            if bad:
                raise IndexError(f"components {bad} out of range 0..{m - 1}")
            keep = torch.ones(m, dtype=torch.bool)
            keep[self.components] = False
            g[keep] = 1.0
        return g

    def forward(self, R: Tensor, components: Tensor, return_gains: bool = False):
        if components.dim() != R.dim() + 1 or components.shape[1:] != R.shape:
            raise ValueError(f"components must be (M, *R.shape) = (M, {tuple(R.shape)}), got {tuple(components.shape)}")
        batched = R.dim() == 4
        g = self.sample_gains((components.shape[0], R.shape[0]) if batched else (components.shape[0],))
        g = g.to(components.dtype).to(components.device)
        gv = g.view(*g.shape, *([1] * (components.dim() - g.dim())))  # (M, [B,] 1, 1, 1)
        x = R + (gv * components).sum(0)
        return (x, g) if return_gains else x


class DecompositionDataset(torch.utils.data.Dataset):
    """Augmented images from saved decompositions: item i = ``transform(R_i, v_i)``.

    Example:
        >>> ds = DecompositionDataset(["a.npz", "b.npz"], ComponentAugment(0.3, seed=0))  # doctest: +SKIP
    """

    def __init__(self, paths, transform: ComponentAugment) -> None:
        from branchspec.apps.components import Decomposition

        self.items = [Decomposition.load(p) for p in paths]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Tensor:
        d = self.items[i]
        return self.transform(torch.from_numpy(d.R), torch.from_numpy(d.components))


def augment_samples(dec, gain_range: float, n: int = 6, components: Sequence[int] | None = None,
                    seed: int = 0, out_npz=None):
    """``n`` augmented versions of one decomposition → dict (and ``out_npz`` if given) for the figure."""
    import numpy as np

    aug = ComponentAugment(gain_range, components, seed=seed)
    R, v = torch.from_numpy(dec.R), torch.from_numpy(dec.components)  # (C, H, W), (M, C, H, W)
    Rb = R[None].expand(n, *R.shape)  # (n, C, H, W)
    vb = v[:, None].expand(v.shape[0], n, *R.shape)  # (M, n, C, H, W)
    x, g = aug(Rb, vb, return_gains=True)  # (n, C, H, W), (M, n)
    doc = {"output": dec.output, "samples": x.numpy(), "gains": g.numpy(),
           "value_range": np.asarray(dec.value_range), "gain_range": np.asarray(gain_range)}
    if out_npz is not None:
        atomic_write_npz(out_npz, doc, compressed=False)
    return doc
