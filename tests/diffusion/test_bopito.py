"""BoPITO composition: D = D_eq + v(N)·[D_lin − D_lin^∞] + w(N)·σ·F or D_eq + w(N)·[D_tr − D_eq], the decay of w
and v, and the limit N → ∞."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from itomd.diffusion.bopito import BoPITODenoiser
from itomd.diffusion.equilibrium import ExactEquilibriumDenoiser
from itomd.diffusion.forcefield import GaussianEquilibriumDenoiser
from itomd.errors import InvalidInputError
from itomd.data.pairs import PairSampler, UniformLag
from itomd.errors import DataFileError
from itomd.models import DenoiserSpec, ExactPrior, TransitionModel, fit_denoiser_spec, prior_from_dict
from itomd.representation import CoordinateRepresentation, NetworkSize
from itomd.systems.reference import exact_reference
from itomd.systems.registry import resolve_system


class _RecordingInner(nn.Module):
    """F = a fixed non-zero function of its inputs; remembers the lags it was called with."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(0.7))
        self.lags = []

    def forward(self, x_in, c_noise, positions=None, cond=None, lag=None):
        self.lags.append(lag.clone())
        return self.weight * torch.tanh(x_in + cond) + c_noise[:, None]


class _ShiftEquilibrium(nn.Module):
    def forward(self, x, sigma, **_):
        return 0.5 * x + 0.1 * sigma[:, None]


def _bopito(lambda_hat=0.9, max_lag=20):
    return BoPITODenoiser(_RecordingInner(), _ShiftEquilibrium(), lambda_hat, sigma_data=1.0, mean=[0.0],
                          lag_coefficients=[[0.5]] * max_lag, lag_scales=[0.3] * max_lag)


def test_composition_is_equilibrium_plus_weighted_dynamic_part():
    d = _bopito()
    x, x_t = torch.randn(6, 1), torch.randn(6, 1)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 3.0, 10.0])
    for lag in (1.0, 5.0, 20.0):
        lags = torch.full((6,), lag)
        out = d(x, sigma, cond=x_t, lag=lags)
        centre = 0.5 * x_t
        dynamic = d.inner(x / (sigma[:, None] ** 2 + 0.09).sqrt() - centre / (sigma[:, None] ** 2 + 0.09).sqrt(),
                          sigma.log() / 4, cond=x_t, lag=lags)
        expected = d.equilibrium(x, sigma) + 0.9**lag * sigma[:, None] * dynamic
        assert torch.allclose(out, expected, atol=1e-6)


class _ZeroInner(nn.Module):
    def forward(self, x_in, c_noise, positions=None, cond=None, lag=None):
        return torch.zeros_like(x_in)


def test_linear_part_adds_the_linear_gaussian_departure_from_its_equilibrium_limit():
    d = BoPITODenoiser(_RecordingInner(), _ShiftEquilibrium(), 0.9, sigma_data=1.0, mean=[0.2],
                       lag_coefficients=[[0.5]] * 20, lag_scales=[0.3] * 20, dynamic_part="linear")
    plain = _bopito()
    plain.shift.fill_(0.2)
    plain.inner.weight.data.copy_(d.inner.weight.data)
    x, x_t = torch.randn(6, 1), torch.randn(6, 1)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 3.0, 10.0])
    for lag, v in ((1.0, 1.0), (20.0, 1.0), (25.0, 0.9**5)):
        lags = torch.full((6,), lag)
        centre = 0.2 + 0.5 * (x_t - 0.2)
        k_lag, k_eq = 0.09 / (sigma[:, None] ** 2 + 0.09), 1.0 / (sigma[:, None] ** 2 + 1.0)
        d_lin = centre + k_lag * (x - centre)
        d_lin_eq = 0.2 + k_eq * (x - 0.2)
        expected = plain(x, sigma, cond=x_t, lag=lags) + v * (d_lin - d_lin_eq)
        assert torch.allclose(d(x, sigma, cond=x_t, lag=lags), expected, atol=1e-6)
    np.testing.assert_allclose(d.linear_weight(torch.tensor([1.0, 20.0, 30.0])).numpy(), [1.0, 1.0, 0.9**10],
                               rtol=1e-12)


def test_linear_part_makes_an_untrained_bopito_exact_for_ou():
    """OU with μ = N(0, 1): x_{t+N} | x_t ~ N(a^N x_t, 1 − a^{2N}). With the exact (Gaussian) prior and
    F = 0, BoPITO with the linear part returns the exact posterior mean at every σ and lag; without
    it (negative control) it returns μ's, far from the transition's."""
    a, max_lag = 0.9, 30
    coefficients = [[a**n] for n in range(1, max_lag + 1)]
    scales = [math.sqrt(1 - a ** (2 * n)) for n in range(1, max_lag + 1)]
    prior = GaussianEquilibriumDenoiser([0.0], [1.0])
    kwargs = dict(sigma_data=1.0, mean=[0.0], lag_coefficients=coefficients, lag_scales=scales)
    linear = BoPITODenoiser(_ZeroInner(), prior, a, dynamic_part="linear", **kwargs).double()
    plain = BoPITODenoiser(_ZeroInner(), prior, a, **kwargs).double()
    x, x_t = torch.randn(500, 1, dtype=torch.float64) * 2, torch.randn(500, 1, dtype=torch.float64) * 1.5
    sigma = torch.exp(torch.linspace(-5, 3, 500, dtype=torch.float64))
    for lag in (1, 5, 30):
        s2 = 1 - a ** (2 * lag)
        exact = a**lag * x_t + s2 / (s2 + sigma[:, None] ** 2) * (x - a**lag * x_t)
        lags = torch.full((500,), float(lag), dtype=torch.float64)
        assert torch.allclose(linear(x, sigma, cond=x_t, lag=lags), exact, atol=1e-6)
        assert (plain(x, sigma, cond=x_t, lag=lags) - exact).abs().max() > 0.1 * a**lag


def test_transition_part_is_the_prior_plus_weighted_departure_of_an_ito_denoiser():
    """D = D_eq + w(N)[D_tr − D_eq] with D_tr the ITO denoiser around c_N (same inner network): at
    λ̂ = 1 it is that ITO denoiser exactly; its loss weight is ITO's on D (w² on F), not the residual form's."""
    from itomd.diffusion.denoiser import TransitionDenoiser

    tables = dict(sigma_data=1.0, mean=[0.2], lag_coefficients=[[0.5]] * 20, lag_scales=[0.3] * 20)
    d = BoPITODenoiser(_RecordingInner(), _ShiftEquilibrium(), 0.9, dynamic_part="transition", **tables)
    ito = TransitionDenoiser(d.inner, **tables)
    x, x_t = torch.randn(6, 1), torch.randn(6, 1)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 3.0, 10.0])
    for lag, w in ((1.0, 0.9), (7.0, 0.9**7), (20.0, 0.9**20), (25.0, 0.9**25)):
        lags = torch.full((6,), lag)
        d_tr = ito(x, sigma, cond=x_t, lag=lags.clamp(max=20.0))
        d_eq = d.equilibrium(x, sigma)
        assert torch.allclose(d(x, sigma, cond=x_t, lag=lags), d_eq + w * (d_tr - d_eq), atol=1e-6)
    d.lambda_hat = 1.0
    lags = torch.full((6,), 4.0)
    assert torch.allclose(d(x, sigma, cond=x_t, lag=lags), ito(x, sigma, cond=x_t, lag=lags), atol=1e-6)
    d.lambda_hat = 0.8
    sd = torch.full((6,), 0.3)
    np.testing.assert_allclose(d.loss_weight(sigma, sd, lag=lags).numpy(), ito.loss_weight(sigma, sd).numpy(),
                               rtol=1e-6)
    d.dynamic_part = "residual"
    np.testing.assert_allclose(d.loss_weight(sigma, sd, lag=lags).numpy(), (1 / (0.8**4 * sigma) ** 2).numpy(),
                               rtol=1e-5)
    with pytest.raises(InvalidInputError, match="dynamic_part must be one of"):
        BoPITODenoiser(_RecordingInner(), _ShiftEquilibrium(), 0.9, dynamic_part="quadratic", **tables)


def test_weight_decays_as_lambda_hat_then_lambda_int_and_network_lag_is_clamped():
    d = _bopito(lambda_hat=0.9, max_lag=20)
    lags = torch.tensor([1.0, 10.0, 20.0, 30.0, 100.0])
    np.testing.assert_allclose(d.dynamic_weight(lags).numpy(), [0.9, 0.9**10, 0.9**20, 0.9**30, 0.9**100], rtol=1e-12)
    d.set_interpolation(0.5)
    np.testing.assert_allclose(d.dynamic_weight(lags).numpy(),
                               [0.9, 0.9**10, 0.9**20, 0.9**20 * 0.5**10, 0.9**20 * 0.5**80], rtol=1e-12)
    d.inner.lags.clear()
    d(torch.zeros(5, 1), torch.ones(5), cond=torch.zeros(5, 1), lag=lags)
    assert d.inner.lags[0].tolist() == [1.0, 10.0, 20.0, 20.0, 20.0]  # never beyond the training lags
    with pytest.raises(InvalidInputError):
        d.set_interpolation(1.5)


def test_equilibrium_part_alone_when_the_weight_vanishes():
    """D = D_eq exactly once λ̂^N underflows: the composition algebra's limit."""
    d = _bopito(lambda_hat=0.5, max_lag=20)
    x, x_t = torch.randn(4, 1), torch.randn(4, 1)
    sigma = torch.full((4,), 0.7)
    out = d(x, sigma, cond=x_t, lag=torch.full((4,), 5000.0))
    assert torch.equal(out, d.equilibrium(x, sigma))
    for part in ("linear", "transition"):  # their weights vanish beyond the tables as well
        d.dynamic_part = part
        assert torch.equal(d(x, sigma, cond=x_t, lag=torch.full((4,), 5000.0)), d.equilibrium(x, sigma))


def test_loss_weight_puts_unit_weight_on_the_network_output():
    d = _bopito(lambda_hat=0.8)
    sigma, lag = torch.tensor([0.1, 2.0]), torch.tensor([3.0, 7.0])
    w = d.loss_weight(sigma, torch.ones(2), lag=lag)
    np.testing.assert_allclose(w.numpy(), 1 / (np.array([0.8**3, 0.8**7]) * sigma.numpy()) ** 2, rtol=1e-6)


def test_equilibrium_part_is_frozen():
    d = _bopito()
    d.train()
    assert not d.equilibrium.training
    eq = ExactEquilibriumDenoiser(np.ones(10), [(0.0, 1.0)])
    b = BoPITODenoiser(_RecordingInner(), eq, 0.9, 1.0, [0.0], [[0.5]], [0.3])
    assert [p for p in b.parameters() if p.requires_grad] == [b.inner.weight]


def test_bopito_model_samples_the_boltzmann_density_at_long_lags_whatever_the_start():
    """A BoPITO model with a random (untrained, non-zero) dynamic part and the exact prior of the
    double well: at N ≫ N_max its jumps from one point follow μ (mean and spread of the two wells)."""
    torch.manual_seed(0)
    reference = exact_reference(resolve_system("double-well"), n_eigen=2)
    data = [reference.sample(50, seed=i) for i in range(4)]
    prior = ExactPrior.of_reference(reference)
    spec = fit_denoiser_spec(data, CoordinateRepresentation(1), NetworkSize(16, 1, 4), max_lag=10,
                             pairs=PairSampler(data, UniformLag(10)), prior=prior, lambda_hat=0.9)
    denoiser = spec.build()
    denoiser.equilibrium.load_state_dict(prior.module.state_dict())
    with torch.no_grad():
        for p in denoiser.inner.parameters():
            p.normal_(0, 0.3)  # a dynamic part that is far from zero
    model = TransitionModel(spec, denoiser.state_dict(), frame_interval=0.01, max_lag=10,
                            data_low=[-2.0], data_high=[2.0])
    generator = torch.Generator().manual_seed(1)
    long = model.sample(torch.full((4000, 1), -1.0), lag=2000, generator=generator).numpy()[:, 0]
    exact = reference.sample(200_000, seed=5)[:, 0]
    right_well = float((exact > 0).mean())
    assert abs(float((long > 0).mean()) - right_well) < 0.03
    assert abs(long.std() - exact.std()) < 0.05
    eq = model.sample_equilibrium(4000, generator=generator).numpy()[:, 0]
    assert abs(float((eq > 0).mean()) - right_well) < 0.03


def test_spec_round_trip_rebuilds_the_prior():
    reference = exact_reference(resolve_system("prinz"), n_grid=200, n_eigen=2)
    prior = ExactPrior.of_reference(reference)
    data = [reference.sample(300, seed=0)]
    spec = fit_denoiser_spec(data, CoordinateRepresentation(1), NetworkSize(8, 1, 2), max_lag=5,
                             pairs=PairSampler(data, UniformLag(5)), prior=prior, lambda_hat=0.99)
    again = DenoiserSpec.from_dict(spec.to_dict())
    assert again == spec and again.is_bopito and again.lambda_hat == 0.99
    assert spec.dynamic_part == "residual" and "dynamic_part" not in spec.to_dict()  # as files written before
    assert spec.build().dynamic_part == "residual"
    for part in ("linear", "transition"):
        other = fit_denoiser_spec(data, CoordinateRepresentation(1), NetworkSize(8, 1, 2), max_lag=5,
                                  pairs=PairSampler(data, UniformLag(5)), prior=prior, lambda_hat=0.99,
                                  dynamic_part=part)
        assert other.to_dict()["dynamic_part"] == part and DenoiserSpec.from_dict(other.to_dict()) == other
        assert other.build().dynamic_part == part
    legacy = {**spec.to_dict(), "linear_dynamic_part": True}  # files of the earlier boolean key
    assert DenoiserSpec.from_dict(legacy).dynamic_part == "linear"
    with pytest.raises(DataFileError, match="dynamic_part must be one of"):
        DenoiserSpec.from_dict({**spec.to_dict(), "dynamic_part": "quadratic"})
    assert isinstance(again.prior.build(), ExactEquilibriumDenoiser)
    assert spec.to_dict()["prior"] == {"kind": "exact", "shape": [200], "box": [list(prior.box[0])]}
    with pytest.raises(DataFileError, match="unknown equilibrium prior"):
        prior_from_dict({"kind": "nonsense"})
    assert math.isclose(float(prior.module.probabilities.sum()), 1.0)
