"""The residual R of the class-transfer GAN (paper App. E, eq. 15-17).

Two options for the over-smoothed residual of f(x) = R + Σ_k v_k (eq. 15):

* :class:`GaussianSmoothing` — R = G_σ * x, a fixed depthwise Gaussian
  convolution with reflect padding; every branch receives x itself
  (App. D, bottom rows of Figs. 18-20).
* :class:`LearntDiffusion` — the learnt nonlinear diffusion of App. E,
  u_t = −p(u), u(0) = x (eq. 16), with p an 8-layer bottleneck CNN; it returns
  a :class:`~branchspec.branched.ResidualSplit` so that branch k receives its
  own input φ_k: f = R + Σ_k v_k(φ_k, y), and x = Σ_k φ_k + R exactly.

Example:
    >>> import torch
    >>> d = LearntDiffusion(channels=3, num_branches=4)
    >>> x = torch.randn(2, 3, 16, 16)
    >>> R, phi = d(x)
    >>> phi.shape, torch.allclose(phi.sum(0) + R, x, atol=1e-5)
    (torch.Size([4, 2, 3, 16, 16]), True)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from branchspec.branched import ResidualSplit


def gaussian_kernel1d(sigma: float, radius: int | None = None) -> Tensor:
    """Normalised 1-D Gaussian of standard deviation ``sigma`` on [-r, r] (r = ceil(3σ))."""
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    r = int(math.ceil(3 * sigma)) if radius is None else radius
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).float()  # (2r+1,)


class GaussianSmoothing(nn.Module):
    """R(x) = G_σ * x per channel, separable, reflect padding (App. D/E, eq. 15).

    The kernel radius is ceil(3σ), shortened to fit the image (reflect padding
    needs a pad smaller than the side). No trainable parameters; the kernel is
    a non-persistent buffer rebuilt from σ, so checkpoints do not hold it.

    Example:
        >>> g = GaussianSmoothing(sigma=1.0)
        >>> x = torch.ones(1, 3, 8, 8)
        >>> torch.allclose(g(x), x)
        True
    """

    def __init__(self, sigma: float, channels: int = 3) -> None:
        super().__init__()
        self.sigma = float(sigma)
        self.channels = channels
        self.register_buffer("kernel", gaussian_kernel1d(self.sigma), persistent=False)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        c, h, w = x.shape[-3:]
        k = self.kernel.to(x.dtype)
        r = min((k.numel() - 1) // 2, h - 1, w - 1)
        if r <= 0:
            return x
        mid = (k.numel() - 1) // 2
        k = k[mid - r: mid + r + 1]
        k = k / k.sum()  # (2r+1,)
        xp = F.pad(x, (r, r, r, r), mode="reflect")  # (B, C, H+2r, W+2r)
        kx = k.view(1, 1, 1, -1).expand(c, 1, 1, -1)  # (C, 1, 1, 2r+1) depthwise
        ky = k.view(1, 1, -1, 1).expand(c, 1, -1, 1)  # (C, 1, 2r+1, 1)
        out = F.conv2d(xp, kx, groups=c)  # (B, C, H+2r, W)
        return F.conv2d(out, ky, groups=c)  # (B, C, H, W)


def laplacian(u: Tensor) -> Tensor:
    """5-point discrete Laplacian per channel with reflect (Neumann-like) borders."""
    up = F.pad(u, (1, 1, 1, 1), mode="reflect")  # (B, C, H+2, W+2)
    return (
        up[..., :-2, 1:-1] + up[..., 2:, 1:-1] + up[..., 1:-1, :-2] + up[..., 1:-1, 2:] - 4 * u
    )  # (B, C, H, W)


def diffusion_cnn_widths(channels: int, width: int) -> list[int]:
    """Channel widths of the 8-layer bottleneck CNN p: C→w→w→w/2→w/4→w/2→w→w→C."""
    return [channels, width, width, width // 2, width // 4, width // 2, width, width, channels]


class DiffusionCNN(nn.Module):
    """The learnt part q of p: 8 conv layers, a channel bottleneck in the middle.

    3×3 convolutions with reflect padding and LeakyReLU(0.2) between layers;
    input and output have the channels of x (App. E). With ``width=36`` and 3
    channels it has ≈ 4.0·10⁴ parameters (the paper: 4.05·10⁴). The last
    layer starts at zero, so q ≡ 0 at initialisation.
    """

    def __init__(self, channels: int = 3, width: int = 36) -> None:
        super().__init__()
        if width < 4:
            raise ValueError(f"diffusion width must be >= 4, got {width}")
        ws = diffusion_cnn_widths(channels, width)
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, padding=1, padding_mode="reflect") for a, b in zip(ws[:-1], ws[1:])
        )
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.zeros_(self.convs[-1].bias)

    def forward(self, u: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        h = u
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = F.leaky_relu(h, 0.2)
        return h


class LearntDiffusion(nn.Module):
    r"""Learnt nonlinear diffusion u_t = −p(u), u(0) = x (App. E, eq. 16-17).

    p(u) = −κ Δu + q(u; W): q is the 8-layer bottleneck CNN of App. E
    (:class:`DiffusionCNN`, zero at initialisation) and −κΔ a fixed heat term,
    so training starts from linear heat diffusion, whose solution at time T is
    Gaussian smoothing with σ² = 2κT — App. E: the learnt R "generalizes the
    regular Gaussian smoothing". ``kappa=0`` gives a pure CNN p.

    **Discretisation (M + 1 evaluations of p, explicit Euler).** With
    dt = T/M, t_n = n·dt, u_0 = x and

        P_n = p(u_n),   u_{n+1} = u_n − dt·P_n,      n = 0 … M,

    the discrete time derivative is D_n = (u_{n+1} − u_n)/dt = −P_n and the
    discrete u_tt at step n is (D_n − D_{n−1})/dt. The weighted discrete terms
    of φ(t) = t·u_tt (eq. 17), integral → sum with weight dt, are

        φ_k = dt · t_k (D_k − D_{k−1})/dt = −t_k (P_k − P_{k−1}),   k = 1 … M.

    **Discrete integration by parts** (summation by parts, telescoping):

        Σ_{k=1}^{M} t_k (D_k − D_{k−1})
          = t_M D_M − Σ_{k=0}^{M−1} (t_{k+1} − t_k) D_k
          = T D_M − dt Σ_{k=0}^{M−1} D_k
          = −T P_M − (u_M − x),

    the discrete form of eq. 17 (∫φ = T u_t(T) − u(T) + x). Hence with

        R = T·p(u_M) + u_M          (u_M = u(T)),

    the reconstruction identity **x = Σ_{k=1}^{M} φ_k + R holds exactly**
    (up to float round-off), for any p. Branch k receives φ_k.

    Explicit Euler is stable for the heat term when κ·dt ≤ 1/4.

    Example:
        >>> d = LearntDiffusion(channels=1, num_branches=3, kappa=0.2)
        >>> x = torch.randn(1, 1, 8, 8)
        >>> split = d(x)
        >>> torch.allclose(split.branch_inputs.sum(0) + split.residual, x, atol=1e-5)
        True
    """

    def __init__(
        self,
        channels: int = 3,
        num_branches: int = 9,
        time: float = 1.0,
        width: int = 36,
        kappa: float = 0.0,
    ) -> None:
        super().__init__()
        if num_branches < 1:
            raise ValueError(f"num_branches must be >= 1, got {num_branches}")
        if time <= 0:
            raise ValueError(f"diffusion time must be > 0, got {time}")
        if kappa < 0 or kappa * time / num_branches > 0.25:
            raise ValueError(
                f"kappa={kappa} with T={time}, M={num_branches} violates 0 <= kappa*dt <= 1/4 (explicit heat step)"
            )
        self.num_branches = num_branches
        self.time = float(time)
        self.kappa = float(kappa)
        self.q = DiffusionCNN(channels, width)

    def extra_repr(self) -> str:
        return f"M={self.num_branches}, T={self.time}, kappa={self.kappa}"

    def p(self, u: Tensor) -> Tensor:
        """p(u) = −κΔu + q(u): the right-hand side of u_t = −p(u) (eq. 16)."""
        out = self.q(u)
        if self.kappa:
            out = out - self.kappa * laplacian(u)
        return out

    def forward(self, x: Tensor) -> ResidualSplit:
        m = self.num_branches
        dt = self.time / m
        u = x  # u_0 = x, (B, C, H, W)
        ps = []
        for n in range(m + 1):
            pn = self.p(u)  # P_n, (B, C, H, W)
            ps.append(pn)
            if n < m:
                u = u - dt * pn  # u_{n+1}
        phi = torch.stack([-(k * dt) * (ps[k] - ps[k - 1]) for k in range(1, m + 1)])  # (M, B, C, H, W)
        residual = self.time * ps[m] + u  # R = T p(u_M) + u_M, (B, C, H, W)
        return ResidualSplit(residual, phi)
