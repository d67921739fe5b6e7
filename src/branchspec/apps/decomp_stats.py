"""Statistics over many decompositions: the §4 metrics on generator outputs, PSNR, SSIM.

The response matrix of the generator is the flattened one of §4.1: row k
holds every pixel of v_k on every image, F = [v_k(x_1) … v_k(x_N)] of shape
(M, N·C·H·W). From it (``branchspec.metrics``, all of it through
:class:`~branchspec.metrics.StreamingCovariance`):

* covariance Cov = F·Fᵀ (uncentred, as §4.1 defines it; Fig. 3, Fig. 5);
* correlation Cov_ik / sqrt(Cov_ii Cov_kk) — the cosine similarity between
  two branches' outputs over all images; its mean |·| off the diagonal is
  the "mean absolute correlation between branch outputs" (low = the
  components differ from one another);
* the same after removing each branch's mean (Pearson correlation,
  ``mean_abs_pearson``), which ignores constant colour offsets;
* active / silent branches: ‖F_k‖ ≥ 10 % of the largest (Fig. 4, Fig. 5);
* where the components put their energy (:mod:`branchspec.apps.spatial`):
  border ratio (frames), spatial entropy, and with ``face_regions`` the
  share in eyes / mouth / hair / background of an aligned face.

Per-branch profiles (:mod:`branchspec.apps.profiles`: energy share,
radial-frequency centroid, chroma fraction, spatial entropy) go under
``profiles``. Cov is accumulated image by image (Cov = Σ_j F_j F_jᵀ), so F never has to be
held in memory. Faithfulness of the re-generation: PSNR and SSIM
(``skimage.metrics``) of the clipped output against the input, both mapped
to [0, 1]; the same for R alone (``psnr_residual_only``), the baseline that
the branches have to improve on.

Example:
    >>> import numpy as np
    >>> from branchspec.apps.components import Decomposition
    >>> s = DecompositionStats()
    >>> v = np.stack([np.ones((1, 2, 2)), -np.ones((1, 2, 2))])
    >>> s.add(Decomposition(R=np.zeros((1, 2, 2)), components=v, output=v.sum(0)))
    >>> s.result()["correlation"]
    [[1.0, -1.0], [-1.0, 1.0]]
"""

from __future__ import annotations

import numpy as np
import torch

from branchspec import metrics
from branchspec.apps.components import Decomposition, to_unit
from branchspec.apps.profiles import ProfileStats
from branchspec.apps.spatial import FACE_REGIONS, SpatialStats


def psnr(x01: np.ndarray, y01: np.ndarray) -> float:
    """PSNR (dB) of two (C, H, W) images in [0, 1] (``skimage.metrics``); inf for identical images.

    The one PSNR of the package: re-generation and R vs the input here, own-domain
    fidelity in :mod:`branchspec.apps.judge`.

    Example:
        >>> round(psnr(np.zeros((1, 2, 2)), np.full((1, 2, 2), 0.1)), 6)
        20.0
    """
    from skimage.metrics import peak_signal_noise_ratio

    if np.array_equal(x01, y01):
        return float("inf")
    return float(peak_signal_noise_ratio(np.moveaxis(x01, 0, -1), np.moveaxis(y01, 0, -1), data_range=1.0))


def psnr_ssim(x01: np.ndarray, y01: np.ndarray) -> tuple[float, float | None]:
    """:func:`psnr` and SSIM of two (C, H, W) images in [0, 1]; SSIM is None below 3×3 pixels."""
    from skimage.metrics import structural_similarity

    a, b = np.moveaxis(x01, 0, -1), np.moveaxis(y01, 0, -1)  # (H, W, C)
    side = min(a.shape[0], a.shape[1])
    win = min(7, side if side % 2 else side - 1)
    ssim = float(structural_similarity(a, b, data_range=1.0, channel_axis=-1, win_size=win)) if win >= 3 else None
    return psnr(x01, y01), ssim


class DecompositionStats:
    """Accumulate Cov = F·Fᵀ and PSNR / SSIM over decompositions, one image at a time."""

    def __init__(self, active_fraction: float = 0.1, face_regions: bool = False) -> None:
        self.active_fraction = active_fraction
        self.spatial = SpatialStats()  # border ratio, entropy (and face-region shares) of the energy maps
        self.detail = SpatialStats()  # the same of the detail x − R the branches have to add: the content's own ratio
        self.face_regions = face_regions
        self.acc = metrics.StreamingCovariance("flatten")  # Cov = Σ_j F_j F_jᵀ, one image j at a time
        self.total: torch.Tensor | None = None  # (M,) Σ of every branch's values, for the centred version
        self.values = 0  # number of values per branch so far (N·C·H·W)
        self.psnr: list[float] = []
        self.ssim: list[float] = []
        self.psnr_r: list[float] = []  # R alone vs input: the baseline the branches improve on
        self.ssim_r: list[float] = []
        self.max_reconstruction_error = 0.0
        self.profiles = ProfileStats()  # per-branch energy / frequency / chroma / spatial profiles

    @property
    def count(self) -> int:
        """Decompositions added so far."""
        return self.acc.samples

    def add(self, dec: Decomposition) -> None:
        v = torch.from_numpy(np.asarray(dec.components, np.float64))  # (M, C, H, W)
        if self.acc.cov is not None and v.shape[0] != self.acc.cov.shape[0]:
            raise ValueError(f"decompositions with {v.shape[0]} and {self.acc.cov.shape[0]} components cannot be pooled")
        self.acc.update(v[:, None])  # one image: (M, 1, C, H, W)
        F = v.reshape(v.shape[0], -1)  # (M, C·H·W)
        self.total = F.sum(1) if self.total is None else self.total + F.sum(1)  # (M,)
        self.values += F.shape[1]
        self.profiles.add(dec.components)
        self.spatial.add(dec.components)
        if dec.input is not None:
            self.detail.add((np.asarray(dec.input, np.float64) - np.asarray(dec.R, np.float64))[None])  # (1, C, H, W)
        self.max_reconstruction_error = max(self.max_reconstruction_error, dec.reconstruction_error())
        if dec.input is not None:
            p, s = psnr_ssim(to_unit(dec.input, dec.value_range), to_unit(dec.output, dec.value_range))
            self.psnr.append(p)
            if s is not None:
                self.ssim.append(s)
            p, s = psnr_ssim(to_unit(dec.input, dec.value_range), to_unit(dec.R, dec.value_range))
            self.psnr_r.append(p)
            if s is not None:
                self.ssim_r.append(s)

    def result(self) -> dict:
        """Everything as plain JSON-able numbers and lists."""
        if self.acc.cov is None:
            raise ValueError("no decomposition added")
        cov = self.acc.covariance  # (M, M)
        corr = self.acc.correlation()  # (M, M)
        norms = self.acc.norms()  # (M,) = ‖F_k‖
        act = self.acc.activity(self.active_fraction)
        active = act.mask  # (M,) bool
        sub = corr[active][:, active]
        mu = self.total / self.values  # (M,)
        pearson = metrics.normalised_covariance(cov - self.values * mu[:, None] * mu[None, :])  # centred, (M, M)
        energy = cov.diagonal() / cov.diagonal().sum().clamp_min(1e-30)  # (M,)
        finite = [p for p in self.psnr if np.isfinite(p)]
        finite_r = [p for p in self.psnr_r if np.isfinite(p)]
        return {
            "images": self.count,
            "branches": int(cov.shape[0]),
            "covariance": cov.tolist(),
            "correlation": corr.tolist(),
            "mean_abs_correlation": metrics.mean_abs_offdiag(corr),
            "mean_abs_correlation_active": metrics.mean_abs_offdiag(sub) if int(active.sum()) > 1 else None,
            "pearson": pearson.tolist(),
            "mean_abs_pearson": metrics.mean_abs_offdiag(pearson),
            "active_fraction": self.active_fraction,
            "active": act.active,
            "silent": act.silent,
            "active_mask": active.tolist(),
            "branch_norm": norms.tolist(),
            "energy_share": energy.tolist(),
            "psnr": float(np.mean(finite)) if finite else None,
            "ssim": float(np.mean(self.ssim)) if self.ssim else None,
            "psnr_residual_only": float(np.mean(finite_r)) if finite_r else None,
            "ssim_residual_only": float(np.mean(self.ssim_r)) if self.ssim_r else None,
            "psnr_per_image": [p if np.isfinite(p) else None for p in self.psnr],
            "ssim_per_image": self.ssim,
            "max_reconstruction_error": self.max_reconstruction_error,
            "profiles": self.profiles.result(),  # per branch, see branchspec.apps.profiles
            "spatial": self._spatial(),  # branchspec.apps.spatial
        }


    def _spatial(self) -> dict:
        out = self.spatial.result(FACE_REGIONS if self.face_regions else None)
        if self.detail.count:  # a frame is a component ratio above the content's own (its detail x − R)
            out["border_ratio_detail"] = float(self.detail.result()["border_ratio"][0])
        return out


def summarize(paths) -> dict:
    """:class:`DecompositionStats` over saved ``.npz`` decompositions."""
    stats = DecompositionStats()
    for p in paths:
        stats.add(Decomposition.load(p))
    return stats.result()
