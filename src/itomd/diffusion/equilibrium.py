r"""The exact equilibrium denoiser of a low-dimensional system, by quadrature on its reference grid.

For a Boltzmann density μ and Gaussian noise of level σ, the optimal denoiser is the posterior mean

.. math::
    D_\mathrm{eq}(x;\sigma) = \mathbb E[y \mid y + \sigma n = x]
        = \frac{\int y\,\mu(y)\,\mathcal N(x; y, \sigma^2 I)\,dy}{\int \mu(y)\,\mathcal N(x; y, \sigma^2 I)\,dy},
    \qquad s_\mathrm{eq}(x,\sigma) = \nabla_x \ln p_\sigma(x) = \frac{D_\mathrm{eq}(x;\sigma) - x}{\sigma^2}.

μ is taken as the :class:`~itomd.systems.reference.ExactReference` density: uniform within each
grid cell (the density its ``sample`` draws from). The Gaussian kernel factorises over
coordinates, so per coordinate k a cell contributes the mass
:math:`\Phi(\beta) - \Phi(\alpha)` (α, β its edges relative to x_k in units of σ) and the
truncated-normal mean :math:`x_k + \sigma\,(\varphi(\alpha) - \varphi(\beta))/(\Phi(\beta) - \Phi(\alpha))`;
the d-dimensional sums become d + 1 contractions of the probability grid with [batch, n_k]
factor matrices (a matrix product in 2-D). Everything is evaluated in float64 with the factors
scaled by their row maxima in log space, so it stays exact for σ far below the grid spacing
(D → x inside a cell) and far above the box (D → the mean of μ). No training. For speed, large σ use
the grid pooled to a spacing ≤ σ/8 (posterior means within 0.5 % of σ of the full sums) and 1-D
sums run over a window of ±10σ around x.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from itomd.errors import InvalidInputError

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
#: A row with noise level σ is evaluated on the grid pooled by 2^k for the largest k with spacing
#: ≤ σ / POOL_RATIO. The pooled cell-uniform density smoothed by σ gives a posterior mean within
#: 0.5 % of σ of the fine grid's (measured on Prinz and Müller–Brown; tests check 1 %).
POOL_RATIO = 8.0
#: Coarsest pooled grid: at least this many cells along the shortest axis.
MIN_POOLED_CELLS = 16
#: In 1-D only cells within WINDOW_SIGMAS·σ of x enter the sums (their Gaussian weight beyond is e^{-50}).
WINDOW_SIGMAS = 10.0


class ExactEquilibriumDenoiser(nn.Module):
    """D_eq(x; σ) of a density that is constant on the cells of a regular grid.

    Same call signature as an unconditional :class:`~itomd.diffusion.Denoiser` (conditioning
    keywords are accepted and ignored), so the two are interchangeable as the equilibrium part of
    a BoPITO model.

    Parameters
    ----------
    cell_probabilities : array_like, shape [n_1, ..., n_d]
        Probability of each grid cell (normalised here), d ≤ 3.
    box : sequence of (low, high), length d
        Extent of the grid along each coordinate.
    """

    def __init__(self, cell_probabilities: "np.ndarray | torch.Tensor", box: "list[tuple[float, float]] | tuple"):
        super().__init__()
        p = torch.as_tensor(np.asarray(cell_probabilities, dtype=np.float64))
        if p.ndim < 1 or p.ndim > 3 or len(box) != p.ndim:
            raise InvalidInputError(f"need a 1- to 3-dimensional probability grid with one box range per axis, "
                                    f"got grid shape {tuple(p.shape)} and {len(box)} ranges")
        if not torch.all(torch.isfinite(p)) or torch.any(p < 0) or not p.sum() > 0:
            raise InvalidInputError("cell probabilities must be finite, non-negative and not all zero")
        low = torch.tensor([float(lo) for lo, _ in box], dtype=torch.float64)
        high = torch.tensor([float(hi) for _, hi in box], dtype=torch.float64)
        if not torch.all(high > low):
            raise InvalidInputError(f"box ranges must satisfy low < high, got {box}")
        self.register_buffer("probabilities", p / p.sum())
        self.register_buffer("low", low)
        self.register_buffer("spacing", (high - low) / torch.tensor(p.shape, dtype=torch.float64))

    @classmethod
    def from_reference(cls, reference) -> "ExactEquilibriumDenoiser":
        """The exact denoiser of an :class:`~itomd.systems.reference.ExactReference`'s density."""
        return cls(reference.cell_probabilities, reference.box)

    @classmethod
    def empty(cls, shape: "tuple[int, ...] | list[int]", box) -> "ExactEquilibriumDenoiser":
        """A denoiser of the right shape to load a saved state dict into."""
        return cls(np.ones(tuple(int(s) for s in shape)), box)

    @property
    def dim(self) -> int:
        return self.probabilities.ndim

    @property
    def box(self) -> list[tuple[float, float]]:
        high = self.low + self.spacing * torch.tensor(self.probabilities.shape, dtype=torch.float64)
        return [(float(lo), float(hi)) for lo, hi in zip(self.low, high)]

    @property
    def mean(self) -> torch.Tensor:
        """Mean of the density, shape [d] (float64)."""
        centres = self._centres()
        mean = []
        for k in range(self.dim):
            others = tuple(j for j in range(self.dim) if j != k)
            marginal = self.probabilities.sum(dim=others) if others else self.probabilities
            mean.append((marginal * centres[k]).sum())
        return torch.stack(mean)

    def _centres(self) -> list[torch.Tensor]:
        return [self.low[k] + (torch.arange(n, dtype=torch.float64, device=self.low.device) + 0.5) * self.spacing[k]
                for k, n in enumerate(self.probabilities.shape)]

    def _pyramid(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(probabilities, spacing) of the grid pooled by 2^k per axis, k = 0, 1, ... (cached)."""
        key = (self.probabilities.data_ptr(), self.probabilities._version, self.probabilities.device)
        if getattr(self, "_pyramid_key", None) != key:
            levels = [(self.probabilities, self.spacing)]
            p, h = self.probabilities, self.spacing
            while min(p.shape) > MIN_POOLED_CELLS:
                for axis in range(p.ndim):  # pad to an even count with empty cells, then sum pairs
                    if p.shape[axis] % 2:
                        pad = list(p.shape)
                        pad[axis] = 1
                        p = torch.cat([p, p.new_zeros(pad)], dim=axis)
                    p = p.unflatten(axis, (p.shape[axis] // 2, 2)).sum(axis + 1)
                h = 2 * h
                levels.append((p, h))
            self._pyramid_cache, self._pyramid_key = levels, key
        return self._pyramid_cache

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
        """Denoised estimate E[y | x] for noise levels ``sigma`` [B]; ``x`` [B, d] → [B, d] (dtype of x)."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InvalidInputError(f"the exact equilibrium denoiser takes states of shape [B, {self.dim}], "
                                    f"got {tuple(x.shape)}")
        x64 = x.to(torch.float64)
        sigma64 = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).expand(x.shape[0])
        pyramid = self._pyramid()
        # the coarsest grid whose spacing is at most σ / POOL_RATIO along every axis
        ratio = sigma64 / (POOL_RATIO * self.spacing.max())
        level = torch.floor(torch.log2(ratio.clamp(min=1.0))).long().clamp(max=len(pyramid) - 1)
        out = torch.empty_like(x64)
        for k in level.unique().tolist():
            rows = level == k
            out[rows] = self._posterior_mean(x64[rows], sigma64[rows], *pyramid[k])
        return out.to(x.dtype)

    def _posterior_mean(self, x: torch.Tensor, sigma: torch.Tensor, p: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """E[y | x] on one grid (probabilities ``p``, spacing ``h``) for rows ``x`` [B, d], ``sigma`` [B]."""
        if self.dim == 1:  # only the cells within WINDOW_SIGMAS·σ of x matter; gather that window
            n = p.shape[0]
            width = min(n, 2 * int(math.ceil(WINDOW_SIGMAS * float(sigma.max()) / float(h[0]))) + 3)
            centre = torch.floor((x[:, 0] - self.low[0]) / h[0]).long()
            start = (centre - width // 2).clamp(0, n - width)
            index = start[:, None] + torch.arange(width, device=x.device)
            lower = self.low[0] + index * h[0]
            weights, means = _cell_factors(x[:, :1], sigma, lower, lower + h[0])
            weights = weights * p[index]
            return ((weights * means).sum(1) / weights.sum(1).clamp(min=1e-300))[:, None]
        factors = []
        for k, n in enumerate(p.shape):
            lower = (self.low[k] + torch.arange(n, dtype=torch.float64, device=x.device) * h[k])[None, :]
            factors.append(_cell_factors(x[:, k:k + 1], sigma, lower, lower + h[k]))
        total = _contract(p, [w for w, _ in factors])
        moments = [_contract(p, [w * m if j == k else w for j, (w, m) in enumerate(factors)]) for k in range(self.dim)]
        return torch.stack(moments, dim=1) / total.clamp(min=1e-300)[:, None]


def _cell_factors(x: torch.Tensor, sigma: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Along one axis: Gaussian masses of the cells [lower, upper) scaled to row maximum 1, and the
    truncated-normal means within them; ``x`` [B, 1], ``sigma`` [B], edges [B or 1, n] → two [B, n]."""
    s = sigma[:, None]
    alpha, beta = (lower - x) / s, (upper - x) / s
    # Φ(β) − Φ(α) in log space; on the upper tail use the mirror image Φ(−α) − Φ(−β)
    flip = alpha > 0
    a, b = torch.where(flip, -beta, alpha), torch.where(flip, -alpha, beta)
    log_b = torch.special.log_ndtr(b)
    log_mass = log_b + torch.log((-torch.expm1(torch.special.log_ndtr(a) - log_b)).clamp(min=1e-300))
    log_phi_a, log_phi_b = -0.5 * alpha**2 - _LOG_SQRT_2PI, -0.5 * beta**2 - _LOG_SQRT_2PI
    truncated_mean = x + s * (torch.exp(log_phi_a - log_mass) - torch.exp(log_phi_b - log_mass))
    truncated_mean = torch.minimum(torch.maximum(truncated_mean, lower), upper)
    weights = torch.exp(log_mass - log_mass.max(dim=1, keepdim=True).values)
    return weights, truncated_mean


def _contract(p: torch.Tensor, factors: list[torch.Tensor]) -> torch.Tensor:
    """Σ_{i_1..i_d} p[i_1..i_d] Π_k factors[k][b, i_k] for every row b; shape [B]."""
    b = factors[0].shape[0]
    acc = factors[0] @ p.reshape(p.shape[0], -1)  # [B, n_2 * ... * n_d]
    for f in factors[1:]:
        acc = (acc.reshape(b, f.shape[1], -1) * f[:, :, None]).sum(1)
    return acc.reshape(b)
