r"""An equilibrium denoiser from the known potential: BoPITO's force-field prior.

The equilibrium score at noise level zero is known wherever the energy is: :math:`s_0(x) = -\beta\nabla U(x)`
(OpenMM's forces for molecules, autograd for toy potentials). BoPITO needs the score of the
*noised* density :math:`p_\sigma = \mu * \mathcal N(0, \sigma^2 I)` at every σ the sampler visits,
and :math:`s_0` is only its σ → 0 limit: by the identity
:math:`\nabla\ln p_\sigma(x) = \mathbb E[s_0(y) \mid x]`, :math:`s_\sigma(x) = s_0(x) + O(\sigma^2)`,
while at large σ the force at a noisy point (overlapping atoms, a point on a barrier) is no guide
to the posterior mean at all. In denoiser form the force-field estimate is

.. math::
    D_\mathrm{ff}(x;\sigma) = x + \sigma^2 s_0(x)

(its step cut to at most :data:`MAX_STEP_SIGMAS`·σ per atom: a trust region where forces blow up),
and the prior blends it with a base denoiser :math:`D_\mathrm{b}` that is right at large σ — the
Gaussian of the data's mean and variance (exact as σ → ∞) or a trained equilibrium model:

.. math::
    D_\mathrm{eq}(x;\sigma) = D_\mathrm{b}(x;\sigma) + a(\sigma)\,\big(D_\mathrm{ff}(x;\sigma) - D_\mathrm{b}(x;\sigma)\big).

The weight :math:`a(\sigma) \in [0, 1]` is not a guess: per noise level of a log-spaced grid it is the
least-squares optimum of the denoising loss on the training frames y (x = y + σn),

.. math::
    a^*(\sigma) = \frac{\mathbb E[(y - D_\mathrm{b})\cdot(D_\mathrm{ff} - D_\mathrm{b})]}{\mathbb E\,|D_\mathrm{ff} - D_\mathrm{b}|^2},

clipped to [0, 1] and made non-increasing in σ by a weighted isotonic regression (weights: the
loss's curvature in a; :func:`calibrate_blend`). As σ → 0,
:math:`a^* \to 1` for the exact force (both the numerator and the denominator tend to
:math:`\sigma^4(\mathbb E|s_0|^2 - \mathbb E[s_0\cdot s_\mathrm{b}])`); where forces blow up,
:math:`a^* \to 0` and the base takes over. Between grid points a is interpolated in ln σ; below the
grid it keeps its first value (1), above the grid it is 0. Rows whose force is not finite fall back to
the base.

This is the choice of "a blend with a Gaussian or learned prior across noise levels": cheap (one
force evaluation per row with a(σ) > 0, none elsewhere), exact at σ → 0 and at σ → ∞, and calibrated
on the data rather than hand-tuned. What it does not do is get the populations of metastable states
right at intermediate σ with a Gaussian base (those are set where the Gaussian dominates); a learned
base (``--prior forcefield:RUN``) supplies them, while the force field supplies the local structure
(bond lengths, sterics) exactly.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from itomd.diffusion.denoiser import append_dims
from itomd.geometry import remove_centroid
from itomd.errors import InvalidInputError

#: The blend's grid of noise levels: from BLEND_GRID_LOW to BLEND_GRID_HIGH times σ_data, log-spaced.
BLEND_GRID_LOW, BLEND_GRID_HIGH, BLEND_GRID_POINTS = 1e-4, 1e2, 49
#: Training frames (with one noise draw each per grid level) that calibrate the blend.
BLEND_CALIBRATION_FRAMES = 1024
#: The force field's step σ²·s₀ is cut to at most this many σ per atom (per coordinate for points): the
#: posterior mean of a noised data point lies within a few σ of it, while the force at a point far from
#: the data (overlapping atoms) is no guide at all. A trust region, not a correction: where the cut acts,
#: the calibration finds the base better and a(σ) small.
MAX_STEP_SIGMAS = 4.0
#: D_ff − D_b counts as resolved where its RMS exceeds this many float32 roundings of the frames.
RESOLVED_ROUNDING = 100.0
#: A grid level where more than this fraction of forces is not finite gets weight 0.
MAX_NONFINITE_FRACTION = 1e-3

#: ``score(x)``: s₀ = −β∇U(x) on float64 states [B, dim] (:meth:`~itomd.systems.System.equilibrium_score`).
ScoreFunction = Callable[[torch.Tensor], torch.Tensor]


class GaussianEquilibriumDenoiser(nn.Module):
    r"""The posterior mean of a Gaussian density with diagonal covariance: the exact denoiser of
    :math:`\mathcal N(m, \mathrm{diag}(v))`, :math:`D(x;\sigma) = m + v/(v + \sigma^2)\,(x - m)`.

    Parameters
    ----------
    mean, variance : array_like, shape [dim]
    """

    def __init__(self, mean: "np.ndarray | torch.Tensor", variance: "np.ndarray | torch.Tensor"):
        super().__init__()
        mean = torch.as_tensor(np.asarray(mean, dtype=np.float64))
        variance = torch.as_tensor(np.asarray(variance, dtype=np.float64))
        if mean.shape != variance.shape or mean.ndim != 1:
            raise InvalidInputError(f"a Gaussian prior needs mean and variance of one shape [dim], got "
                                    f"{tuple(mean.shape)} and {tuple(variance.shape)}")
        self.register_buffer("mean", mean)
        self.register_buffer("variance", variance.clamp(min=1e-300))

    @classmethod
    def of_frames(cls, frames: np.ndarray, mean: np.ndarray, n_atoms: int | None = None) -> "GaussianEquilibriumDenoiser":
        """The Gaussian of frames [n, dim] about ``mean`` [dim]; for molecules (``n_atoms``) one variance
        per atom, the mean over its three coordinates (a rotation-invariant density has no other)."""
        frames = np.asarray(frames, dtype=np.float64)
        variance = ((frames - mean) ** 2).mean(0)
        if n_atoms is not None:
            variance = np.repeat(variance.reshape(n_atoms, 3).mean(1), 3)
        return cls(mean, variance)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
        """D(x; σ) [B, dim] for states [B, dim] and noise levels [B]."""
        s2 = append_dims(torch.as_tensor(sigma, device=x.device).to(torch.float64).expand(x.shape[0]), 2) ** 2
        shrink = self.variance / (self.variance + s2)
        return (self.mean + shrink * (x.to(torch.float64) - self.mean)).to(x.dtype)


class ForceFieldEquilibriumDenoiser(nn.Module):
    r"""D_eq(x; σ) = D_b + a(σ)·(x + σ²·s₀(x) − D_b): the force field blended with a base denoiser.

    Same call signature as the other equilibrium denoisers. The score function s₀ = −β∇U is not a
    weight: :meth:`attach` sets it after construction (from the model's system), and a denoiser
    without one says so when called.

    Parameters
    ----------
    base : nn.Module
        Equilibrium denoiser ``base(x, sigma)`` that is right at large σ (Gaussian or trained).
    log_sigmas : array_like, shape [K]
        Increasing ln σ of the blend's grid.
    weights : array_like, shape [K]
        a(σ) on the grid, in [0, 1], non-increasing.
    n_atoms : int, optional
        Atoms of a molecule (the trust region is per atom); None: per coordinate.
    """

    def __init__(self, base: nn.Module, log_sigmas: "np.ndarray | torch.Tensor", weights: "np.ndarray | torch.Tensor",
                 n_atoms: int | None = None):
        super().__init__()
        self.n_atoms = n_atoms
        log_sigmas = torch.as_tensor(np.asarray(log_sigmas, dtype=np.float64))
        weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        if log_sigmas.ndim != 1 or log_sigmas.shape != weights.shape or len(log_sigmas) < 2:
            raise InvalidInputError("the force-field blend needs one weight per grid level (at least two levels)")
        self.base = base
        self.register_buffer("log_sigmas", log_sigmas)
        self.register_buffer("weights", weights)
        self.score_function: ScoreFunction | None = None

    @classmethod
    def empty(cls, base: nn.Module, n_levels: int = BLEND_GRID_POINTS,
              n_atoms: int | None = None) -> "ForceFieldEquilibriumDenoiser":
        """A denoiser of the right shape to load a saved state dict into."""
        return cls(base, np.linspace(0.0, 1.0, n_levels), np.zeros(n_levels), n_atoms)

    def attach(self, score_function: ScoreFunction) -> "ForceFieldEquilibriumDenoiser":
        """Set s₀ = −β∇U (a function of float64 states [B, dim])."""
        self.score_function = score_function
        return self

    def blend_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """a(σ) [B] (float64) for noise levels [B]: interpolated in ln σ, 0 above the grid."""
        log_sigma = torch.as_tensor(sigma, device=self.weights.device).to(torch.float64).log()
        grid, weights = self.log_sigmas, self.weights
        index = torch.searchsorted(grid, log_sigma.contiguous()).clamp(1, len(grid) - 1)
        lo, hi = grid[index - 1], grid[index]
        t = ((log_sigma - lo) / (hi - lo)).clamp(0.0, 1.0)
        a = weights[index - 1] + t * (weights[index] - weights[index - 1])
        return torch.where(log_sigma > grid[-1], torch.zeros_like(a), a)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **_) -> torch.Tensor:
        """D_eq(x; σ) [B, dim] for states [B, dim] and noise levels [B]."""
        sigma = torch.as_tensor(sigma, device=x.device).to(x.dtype).expand(x.shape[0])
        out = self.base(x, sigma)
        a = self.blend_weight(sigma.to(self.weights.device)).to(x.device)
        rows = torch.nonzero(a > 0).flatten()
        if len(rows) == 0:
            return out
        forcefield = self.forcefield_denoiser(x[rows], sigma[rows])
        finite = torch.isfinite(forcefield).all(1)
        rows, forcefield = rows[finite], forcefield[finite]
        weight = append_dims(a[rows], 2)
        blended = out[rows].to(torch.float64) + weight * (forcefield - out[rows].to(torch.float64))
        out = out.clone()
        out[rows] = blended.to(out.dtype)
        return out

    def forcefield_denoiser(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """x + σ²·s₀(x) [B, dim] (float64, device of x; differentiable where s₀ is); non-finite where the
        force is."""
        if self.score_function is None:
            raise InvalidInputError("this force-field prior has no potential attached: load the model with the "
                                    "system it was trained on (its model file records it)")
        x64 = x.to(torch.float64)
        score = self.score_function(x64).to(device=x.device, dtype=torch.float64)
        sigma64 = append_dims(sigma.to(torch.float64), 2)
        step = sigma64**2 * score
        # the trust region: at most MAX_STEP_SIGMAS·σ per atom (per coordinate for points)
        group = 3 if self.n_atoms is not None else 1
        length = step.reshape(len(step), -1, group).norm(dim=-1)
        factor = (MAX_STEP_SIGMAS * sigma64 / length.clamp(min=1e-300)).clamp(max=1.0)
        factor = torch.where(torch.isfinite(length), factor, torch.full_like(factor, torch.nan))
        return x64 + (step.reshape(len(step), -1, group) * factor[..., None]).reshape(step.shape)


def calibrate_blend(base: nn.Module, score_function: ScoreFunction, frames: np.ndarray, sigma_data: float,
                    n_frames: int = BLEND_CALIBRATION_FRAMES, seed: int = 0,
                    n_atoms: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""The blend weights a(σ) of a force-field prior, fitted on training frames.

    Per level of a log-spaced grid, the least-squares optimum a*(σ) of the denoising loss of
    D_b + a·(D_ff − D_b) (module docstring), estimated with antithetic noise pairs (the O(σ³) noise
    of the estimate cancels) and clipped to [0, 1]. At the smallest levels D_ff − D_b falls below what
    float32 resolves (:data:`RESOLVED_ROUNDING` times the rounding of the frames): there a* is set to
    its σ → 0 limit, 1. From the first level where more than :data:`MAX_NONFINITE_FRACTION` of the
    forces are not finite, a = 0. Then a weighted isotonic regression makes a non-increasing in σ,
    with the loss's curvature in a under EDM's weighting, E|D_ff − D_b|²·(σ² + σ_d²)/(σσ_d)², as
    weights (the excess denoising loss of a ≠ a*), the σ → 0 levels weighing as much as the heaviest.

    Parameters
    ----------
    base : nn.Module
        The base equilibrium denoiser.
    score_function : callable
        s₀ = −β∇U on float64 states [B, dim].
    frames : np.ndarray, shape [n, dim]
        Training frames (as the model sees them).
    sigma_data : float
        Their scale σ_d; the grid spans BLEND_GRID_LOW..BLEND_GRID_HIGH times it.
    n_frames : int
        Frames drawn (with replacement when fewer) for the estimate at each level.
    seed : int
    n_atoms : int, optional
        Atoms of a molecule: its noise draws lose their centroid (as the model's states do) and its
        trust region is per atom.

    Returns
    -------
    log_sigmas : np.ndarray, shape [K]
        ln σ of the grid.
    weights : np.ndarray, shape [K]
        a(σ) on the grid, in [0, 1], non-increasing.
    """
    from scipy.optimize import isotonic_regression

    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 2 or len(frames) == 0 or not np.all(np.isfinite(frames)):
        raise InvalidInputError("the force-field prior is calibrated on finite frames [n, dim]")
    rng = np.random.default_rng(seed)
    half = max(n_frames // 2, 1)
    y = torch.as_tensor(frames[rng.choice(len(frames), size=half, replace=len(frames) < half)])
    y = torch.cat([y, y])  # each frame with a noise draw and its negative
    generator = torch.Generator().manual_seed(seed)
    log_sigmas = np.linspace(math.log(BLEND_GRID_LOW * sigma_data), math.log(BLEND_GRID_HIGH * sigma_data),
                             BLEND_GRID_POINTS)
    rounding = float((y * y).sum(1).mean()) * (RESOLVED_ROUNDING * float(torch.finfo(torch.float32).eps)) ** 2
    optimum, curvature = np.ones(len(log_sigmas)), np.zeros(len(log_sigmas))
    unresolved = np.zeros(len(log_sigmas), dtype=bool)
    overflow = len(log_sigmas)  # the first level whose forces are not usable: it and all above get weight 0
    probe = ForceFieldEquilibriumDenoiser(base, log_sigmas, np.ones(len(log_sigmas)), n_atoms).attach(score_function)
    for k, log_sigma in enumerate(log_sigmas):
        sigma = math.exp(log_sigma)
        noise = torch.randn((half, y.shape[1]), generator=generator, dtype=torch.float64)
        noise = torch.cat([noise, -noise])  # antithetic: the O(σ³) noise of the estimate cancels
        if n_atoms is not None:
            noise = remove_centroid(noise, n_atoms)
        x = (y + sigma * noise).to(torch.float32).to(torch.float64)  # both denoisers see the same point
        sigmas = torch.full((len(y),), sigma, dtype=torch.float64)
        with torch.no_grad():
            d_base = base(x.to(torch.float32), sigmas.to(torch.float32)).to(torch.float64)
            d_ff = probe.forcefield_denoiser(x, sigmas)
        finite = torch.isfinite(d_ff).all(1)
        delta = (d_ff - d_base)[finite]
        numerator = float(((y - d_base)[finite] * delta).sum(1).mean())
        denominator = float((delta * delta).sum(1).mean())
        if ((~finite).double().mean() > MAX_NONFINITE_FRACTION or not math.isfinite(numerator)
                or not math.isfinite(denominator)):
            overflow = k  # forces that overflow: the base alone from here on
            break
        curvature[k] = denominator * (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
        if denominator <= rounding:
            unresolved[k] = True  # below float32's resolution: the σ → 0 limit
        else:
            optimum[k] = min(max(numerator / denominator, 0.0), 1.0)
    weights = np.zeros(len(log_sigmas))
    if overflow == 0:
        return log_sigmas, weights
    level_weights = curvature[:overflow].copy()
    heaviest = max(level_weights.max(), 1e-300)
    level_weights[unresolved[:overflow]] = heaviest
    level_weights = np.maximum(level_weights, 1e-12 * heaviest)
    fitted = isotonic_regression(optimum[:overflow], weights=level_weights, increasing=False).x
    weights[:overflow] = np.clip(fitted, 0.0, 1.0)
    return log_sigmas, weights


__all__ = ["ForceFieldEquilibriumDenoiser", "GaussianEquilibriumDenoiser", "calibrate_blend", "ScoreFunction",
           "BLEND_GRID_POINTS"]
