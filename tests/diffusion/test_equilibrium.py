"""The exact equilibrium denoiser: Gaussian closed form, finite differences of ln p_σ, limits, pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import ndtr

from itomd.diffusion import equilibrium as equilibrium_module
from itomd.diffusion.equilibrium import ExactEquilibriumDenoiser
from itomd.errors import InvalidInputError


def _gaussian_grid(n: int, width: float, std: float, dim: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    axis = -width + (np.arange(n) + 0.5) * 2 * width / n
    mesh = np.meshgrid(*([axis] * dim), indexing="ij")
    log_p = -0.5 * sum(m**2 for m in mesh) / std**2
    return np.exp(log_p), [(-width, width)] * dim


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("sigma", [3e-3, 0.05, 0.3, 1.0, 5.0])
def test_gaussian_density_gives_the_linear_shrinkage(dim, sigma):
    """For μ = N(0, s²): D(x; σ) = x s²/(s² + σ²) — on the grid, at every pooling level and window."""
    std = 0.7
    probabilities, box = _gaussian_grid(600 if dim == 1 else 160, 6.0, std, dim)
    denoiser = ExactEquilibriumDenoiser(probabilities, box)
    x = torch.randn(500, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * np.hypot(std, sigma)
    d = denoiser(x, torch.full((500,), sigma, dtype=torch.float64))
    expected = x * std**2 / (std**2 + sigma**2)
    # cell-uniform density on spacing h: within-cell variance adds h²/12 to s²; tolerance 1 % of σ + h/4
    h = 12.0 / probabilities.shape[0]
    assert torch.allclose(d, expected, atol=0.01 * sigma + h / 4), (d - expected).abs().max()


def _naive_log_p(probabilities: np.ndarray, box, x: np.ndarray, sigma: float) -> np.ndarray:
    """ln Σ_cells p_c Π_k [Φ((hi_k − x_k)/σ) − Φ((lo_k − x_k)/σ)] (up to a constant), plainly."""
    factors = []
    for k, ((lo, hi), n) in enumerate(zip(box, probabilities.shape)):
        edges = np.linspace(lo, hi, n + 1)
        factors.append(ndtr((edges[None, 1:] - x[:, k:k + 1]) / sigma) - ndtr((edges[None, :-1] - x[:, k:k + 1]) / sigma))
    if len(factors) == 1:
        return np.log(factors[0] @ probabilities)
    return np.log(np.einsum("bi,ij,bj->b", factors[0], probabilities, factors[1]))


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("sigma", [0.02, 0.1, 0.4])
def test_score_matches_finite_differences_of_log_p_sigma(dim, sigma):
    """s_eq = (D − x)/σ² equals ∇ ln p_σ of the smoothed grid density (a two-well density)."""
    n = 400 if dim == 1 else 100
    axis = -2 + (np.arange(n) + 0.5) * 4 / n
    mesh = np.meshgrid(*([axis] * dim), indexing="ij")
    energy = 4 * (mesh[0] ** 2 - 1) ** 2 + sum(0.5 * m**2 for m in mesh[1:]) + 0.3 * mesh[0]
    probabilities = np.exp(-energy)
    box = [(-2.0, 2.0)] * dim
    denoiser = ExactEquilibriumDenoiser(probabilities, box)
    rng = np.random.default_rng(1)
    x = rng.uniform(-1.5, 1.5, size=(200, dim))
    d = denoiser(torch.as_tensor(x), torch.full((200,), sigma, dtype=torch.float64)).numpy()
    eps = 1e-5
    fd = np.stack([(_naive_log_p(probabilities, box, x + eps * np.eye(dim)[k], sigma)
                    - _naive_log_p(probabilities, box, x - eps * np.eye(dim)[k], sigma)) / (2 * eps)
                   for k in range(dim)], axis=1)
    score = (d - x) / sigma**2
    # tolerance: 1 % of σ in D (the pooled grid's accuracy), i.e. 0.01/σ in the score
    np.testing.assert_allclose(score, fd, atol=0.01 / sigma, rtol=1e-3)


def test_limits_small_and_large_noise():
    probabilities, box = _gaussian_grid(300, 3.0, 0.5, 2)
    probabilities = probabilities * (1 + 0.5 * np.arange(300)[:, None] / 300)  # not symmetric
    denoiser = ExactEquilibriumDenoiser(probabilities, box)
    x = torch.tensor([[0.1, -0.2], [0.5, 0.3], [-1.0, 0.0]], dtype=torch.float64)
    tiny = denoiser(x, torch.full((3,), 1e-6, dtype=torch.float64))
    assert torch.allclose(tiny, x, atol=1e-9)
    huge = denoiser(x, torch.full((3,), 1e4, dtype=torch.float64))
    assert torch.allclose(huge, denoiser.mean.expand(3, 2), atol=1e-5)  # pooled cells move mass by < h_k/2
    assert denoiser.mean[0] > 0.01  # the tilt moved the mean


def test_pooling_and_window_agree_with_the_full_sum():
    """The speed-ups (pooled grids for large σ, 1-D windows) stay within 1 % of σ of the plain sum."""
    rng = np.random.default_rng(2)
    for dim, n in ((1, 1200), (2, 200)):
        probabilities = rng.random((n,) * dim) ** 4 + 1e-3
        denoiser = ExactEquilibriumDenoiser(probabilities, [(-1.0, 1.0)] * dim)
        full_p, full_h = denoiser._pyramid()[0]
        for sigma in (0.01, 0.05, 0.2, 0.8):
            x = torch.as_tensor(rng.uniform(-1.2, 1.2, size=(300, dim)))
            s = torch.full((300,), sigma, dtype=torch.float64)
            fast = denoiser(x, s)
            window = equilibrium_module.WINDOW_SIGMAS
            equilibrium_module.WINDOW_SIGMAS = 1e9
            try:
                slow = denoiser._posterior_mean(x, s, full_p, full_h)
            finally:
                equilibrium_module.WINDOW_SIGMAS = window
            assert (fast - slow).abs().max() < 0.01 * sigma, (dim, sigma)


def test_state_dict_round_trip_and_errors():
    probabilities, box = _gaussian_grid(50, 3.0, 1.0, 2)
    a = ExactEquilibriumDenoiser(probabilities, box)
    b = ExactEquilibriumDenoiser.empty((50, 50), box)
    b.load_state_dict(a.state_dict())
    x = torch.randn(10, 2, dtype=torch.float64)
    s = torch.full((10,), 0.3, dtype=torch.float64)
    assert torch.equal(a(x, s), b(x, s))
    with pytest.raises(InvalidInputError):
        a(torch.zeros(3, 1), torch.ones(3))
    with pytest.raises(InvalidInputError):
        ExactEquilibriumDenoiser(-probabilities, box)
    with pytest.raises(InvalidInputError):
        ExactEquilibriumDenoiser(probabilities, box[:1])
