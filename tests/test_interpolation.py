"""Correlation functions of models and the λ_int search of fit_interpolation."""

from __future__ import annotations

import math

import numpy as np
import pytest

import itomd.interpolation as interpolation
from itomd.errors import InvalidInputError
from itomd.interpolation import correlation_of_jumps, fit_interpolation, read_correlation_file


class _FakeBoPITO:
    """Stands in for a BoPITO model whose C(N) beyond N_max decays exactly as λ_int^(N − N_max)."""

    is_bopito = True
    max_lag = 10
    frame_interval = 0.01
    dim = 1

    def __init__(self):
        self.lambda_interpolation = None

    def set_interpolation(self, value):
        self.lambda_interpolation = value
        return self


def test_fit_recovers_the_interpolation_eigenvalue_that_made_the_target(monkeypatch):
    model = _FakeBoPITO()

    def fake_correlation(model, x0, lags, coordinate=0, seed=0, sampler=None, n_steps=None):
        lam = model.lambda_interpolation
        return 0.8 * lam ** (np.asarray(lags) - model.max_lag)

    monkeypatch.setattr(interpolation, "jump_correlation", fake_correlation)
    true = math.exp(-1 / 250.0)  # timescale 250 frames
    lags = [20, 60, 200]
    target = 0.8 * true ** (np.asarray(lags) - 10)
    fit = fit_interpolation(model, lags, target, x0=np.zeros((4, 1)))
    assert abs(math.log(-1 / math.log(fit.lambda_interpolation)) - math.log(250)) < 0.01
    assert fit.timescale == pytest.approx(250 * 0.01, rel=0.01)
    assert fit.rms_error < 1e-3 and fit.evaluations < 30
    assert model.lambda_interpolation is None  # the model is left as it was


def test_fit_refuses_lags_within_training_and_non_bopito_models():
    model = _FakeBoPITO()
    with pytest.raises(InvalidInputError, match="beyond the largest training lag"):
        fit_interpolation(model, [5, 20], [0.5, 0.4], x0=np.zeros((4, 1)))
    model.is_bopito = False
    with pytest.raises(InvalidInputError, match="no equilibrium prior"):
        fit_interpolation(model, [20], [0.4], x0=np.zeros((4, 1)))


def test_correlation_of_jumps_of_an_exact_ar1_process():
    rng = np.random.default_rng(0)
    a = 0.8
    x0 = rng.standard_normal((200_000, 1))
    jumps = [a**n * x0 + np.sqrt(1 - a ** (2 * n)) * rng.standard_normal(x0.shape) for n in (1, 3)]
    np.testing.assert_allclose(correlation_of_jumps(x0, jumps), [a, a**3], atol=0.01)


def test_read_correlation_file(tmp_path):
    good = tmp_path / "c.csv"
    good.write_text("150,0.4\n300,0.2\n")
    lags, values = read_correlation_file(good)
    assert lags.tolist() == [150, 300] and values.tolist() == [0.4, 0.2]
    bad = tmp_path / "bad.txt"
    bad.write_text("1.5 0.3\n")
    with pytest.raises(InvalidInputError, match="whole numbers"):
        read_correlation_file(bad)
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("lag C\nx y\n")
    with pytest.raises(Exception, match="cannot read"):
        read_correlation_file(garbage)
