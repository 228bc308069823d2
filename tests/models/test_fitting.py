"""Data scales of a model description: lag_statistics recovers the lag tables of exact OU data."""

import numpy as np

from itomd.data.pairs import PairSampler, UniformLag
from itomd.models import lag_statistics
from itomd.representation import CoordinateRepresentation


def _ou(n_traj=400, n_frames=300, a=0.9, seed=0):
    rng = np.random.default_rng(seed)
    x = np.empty((n_traj, n_frames))
    x[:, 0] = rng.standard_normal(n_traj)
    for k in range(1, n_frames):
        x[:, k] = a * x[:, k - 1] + np.sqrt(1 - a * a) * rng.standard_normal(n_traj)
    return [t[:, None] for t in x]


def test_lag_statistics_recover_ou_autocorrelation_and_residual():
    coefficients, scales = lag_statistics(PairSampler(_ou(), UniformLag(20)), CoordinateRepresentation(1), max_lag=20)
    lags = np.arange(1, 21)
    assert coefficients.shape == (20, 1) and scales.shape == (20,)
    assert np.allclose(coefficients[:, 0], 0.9**lags, atol=0.02)
    assert np.allclose(scales, np.sqrt(1 - 0.81**lags), rtol=0.03)
