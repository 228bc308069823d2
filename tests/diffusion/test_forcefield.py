"""The force-field prior: −β∇U blended with a base across noise levels, against the exact (quadrature)
equilibrium denoiser of Prinz; the calibrated blend; the trust region; derivatives for toy potentials."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from itomd.diffusion.equilibrium import ExactEquilibriumDenoiser
from itomd.diffusion.forcefield import (MAX_STEP_SIGMAS, ForceFieldEquilibriumDenoiser, GaussianEquilibriumDenoiser,
                                        calibrate_blend)
from itomd.errors import InvalidInputError
from itomd.systems.reference import exact_reference
from itomd.systems.registry import resolve_system


@pytest.fixture(scope="module")
def prinz():
    system = resolve_system("prinz")
    reference = exact_reference(system, n_eigen=2)
    frames = reference.sample(20_000, seed=1)
    sigma_data = float(np.sqrt(np.mean((frames - frames.mean(0)) ** 2)))
    return system, reference, frames, sigma_data


def _prior(system, frames, sigma_data, kT: float | None = None):
    kT = system.kT if kT is None else kT
    score = (lambda x: system.equilibrium_score(x) * system.kT / kT)
    base = GaussianEquilibriumDenoiser.of_frames(frames, frames.mean(0))
    log_sigmas, weights = calibrate_blend(base, score, frames, sigma_data)
    return ForceFieldEquilibriumDenoiser(base, log_sigmas, weights).attach(score), base


def _error(denoiser, exact, reference, sigma: float) -> float:
    """E|D(x; σ) − D_exact(x; σ)|² / σ² over exact samples noised at σ."""
    y = torch.as_tensor(reference.sample(4000, seed=5))
    x = y + sigma * torch.randn(y.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sigmas = torch.full((len(y),), sigma, dtype=torch.float64)
    d = denoiser(x.to(torch.float32), sigmas.to(torch.float32)).to(torch.float64)
    return float(((d - exact(x, sigmas)) ** 2).sum(1).mean() / sigma**2)


def test_blend_follows_the_exact_denoiser_at_every_noise_level(prinz):
    system, reference, frames, sigma_data = prinz
    prior, gaussian = _prior(system, frames, sigma_data)
    exact = ExactEquilibriumDenoiser.from_reference(reference)
    # small σ: the force field (measured 3e-8 and 1e-5 against the Gaussian's 1.5e-3 and 1.3e-2)
    for relative in (0.01, 0.03):
        sigma = relative * sigma_data
        assert _error(prior, exact, reference, sigma) < 0.01 * _error(gaussian, exact, reference, sigma)
    # large σ: the base (the Gaussian is exact as σ → ∞)
    for relative in (1.0, 3.0):
        sigma = relative * sigma_data
        assert _error(prior, exact, reference, sigma) < 1.5 * _error(gaussian, exact, reference, sigma)


def test_wrong_temperature_is_a_worse_prior(prinz):
    """Negative control: the forces at twice the temperature cannot match μ at small σ."""
    system, reference, frames, sigma_data = prinz
    exact = ExactEquilibriumDenoiser.from_reference(reference)
    right, _ = _prior(system, frames, sigma_data)
    wrong, _ = _prior(system, frames, sigma_data, kT=2 * system.kT)
    sigma = 0.03 * sigma_data
    assert _error(wrong, exact, reference, sigma) > 10 * _error(right, exact, reference, sigma)


def test_calibrated_blend_is_one_at_small_and_zero_at_large_noise(prinz):
    system, _, frames, sigma_data = prinz
    prior, _ = _prior(system, frames, sigma_data)
    weights = prior.weights.numpy()
    assert weights[0] == 1.0 and weights[-1] == 0.0 and np.all(np.diff(weights) <= 0)
    sigmas = torch.tensor([1e-6, 1e-3 * sigma_data, 10 * sigma_data, 1e6])
    assert prior.blend_weight(sigmas).tolist()[0] == 1.0 and prior.blend_weight(sigmas).tolist()[-1] == 0.0
    # the crossover lies between the widths of a well and of the density
    half = math.exp(float(np.interp(-0.5, -weights, prior.log_sigmas.numpy())))
    assert 0.01 * sigma_data < half < sigma_data


def test_step_is_cut_to_the_trust_region_per_atom():
    huge = lambda x: 1e9 * torch.ones_like(x)  # noqa: E731 - forces of overlapping atoms
    base = GaussianEquilibriumDenoiser(np.zeros(6), np.ones(6))
    prior = ForceFieldEquilibriumDenoiser(base, [-5.0, 5.0], [1.0, 1.0], n_atoms=2).attach(huge)
    x = torch.zeros(3, 6, dtype=torch.float64)
    sigma = torch.full((3,), 0.1, dtype=torch.float64)
    step = prior.forcefield_denoiser(x, sigma).reshape(3, 2, 3).norm(dim=-1)
    assert torch.allclose(step, torch.full_like(step, MAX_STEP_SIGMAS * 0.1))
    nan = ForceFieldEquilibriumDenoiser(base, [-5.0, 5.0], [1.0, 1.0], n_atoms=2).attach(lambda x: x * math.nan)
    out = nan(x.to(torch.float32), sigma.to(torch.float32))  # non-finite forces: the base
    assert torch.equal(out, base(x.to(torch.float32), sigma.to(torch.float32)))


def test_toy_prior_is_differentiable_and_needs_a_potential(prinz):
    system, _, frames, sigma_data = prinz
    prior, _ = _prior(system, frames, sigma_data)
    x = torch.tensor([[0.3], [-0.6]], dtype=torch.float64, requires_grad=True)
    sigma = torch.full((2,), 0.01 * sigma_data, dtype=torch.float64)
    (jacobian,) = torch.autograd.grad(prior(x, sigma).sum(), x)
    h = 1e-5
    numeric = (prior(x.detach() + h, sigma) - prior(x.detach() - h, sigma)) / (2 * h)
    assert torch.allclose(jacobian, numeric, rtol=1e-4, atol=1e-6)
    with pytest.raises(InvalidInputError, match="no potential attached"):
        ForceFieldEquilibriumDenoiser(GaussianEquilibriumDenoiser([0.0], [1.0]), [-9.0, 9.0], [1.0, 1.0])(x.detach(), sigma)
