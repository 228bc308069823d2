"""TransitionDenoiser: per-lag linear preconditioning is exact for Ornstein–Uhlenbeck dynamics (the lag
tables it is given come from itomd.models.lag_statistics: tests/models/test_fitting.py)."""

import numpy as np
import pytest
import torch

from itomd.diffusion import TransitionDenoiser, karras_sigmas
from itomd.diffusion.samplers import sample_dpmpp_2m
from itomd.errors import InvalidInputError


class Zero(torch.nn.Module):
    def forward(self, x, c_noise, **cond):
        return torch.zeros_like(x)


def test_zero_network_is_the_exact_ou_transition_sampler():
    """With F ≡ 0 the preconditioning alone denoises N(m + A x_t, σ_d²) exactly; Heun then samples it."""
    lags = np.arange(1, 11)
    denoiser = TransitionDenoiser(Zero(), sigma_data=1.0, mean=[0.0], lag_coefficients=(0.9**lags)[:, None],
                                  lag_scales=np.sqrt(1 - 0.81**lags))
    g = torch.Generator().manual_seed(0)
    for lag, x_t in ((1, 1.5), (10, -1.0)):
        cond = torch.full((20000, 1), x_t)
        lag_t = torch.full((20000,), float(lag))
        centre, scale = denoiser.centre_and_scale(cond, cond=cond, lag=lag_t)
        sd = float(scale[0])
        sigmas = karras_sigmas(24, 0.02 * sd, 10 * sd)  # the schedule TransitionModel.sample uses
        x = centre + (sigmas[0] ** 2 + sd**2) ** 0.5 * torch.randn(20000, 1, generator=g)
        y = sample_dpmpp_2m(denoiser, x, sigmas, extra_args={"cond": cond, "lag": lag_t}).numpy()[:, 0]
        assert y.mean() == pytest.approx(0.9**lag * x_t, abs=0.02)
        assert y.std() == pytest.approx(np.sqrt(1 - 0.81**lag), rel=0.02)


def test_training_noise_levels_follow_the_lag_scale():
    denoiser = TransitionDenoiser(Zero(), 1.0, [0.0], [[1.0], [1.0]], [0.1, 1.0], p_mean=0.0, p_std=0.5)
    g = torch.Generator().manual_seed(1)
    small = denoiser.sample_training_sigmas(20000, g, lag=torch.ones(20000))
    large = denoiser.sample_training_sigmas(20000, g, lag=torch.full((20000,), 2.0))
    assert small.log().mean().item() == pytest.approx(np.log(0.1), abs=0.02)
    assert large.log().mean().item() == pytest.approx(0.0, abs=0.02)
    assert large.log().std().item() == pytest.approx(0.5, rel=0.03)
    with pytest.raises(InvalidInputError, match="lag"):
        denoiser.sample_training_sigmas(3, g)
    with pytest.raises(InvalidInputError, match="lag_coefficients"):
        TransitionDenoiser(Zero(), 1.0, [0.0, 0.0], [[1.0]], [0.1])
