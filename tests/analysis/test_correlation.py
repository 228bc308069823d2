"""Autocorrelation functions: an AR(1) process and Prinz against the exact reference; bad observables."""

import json

import matplotlib.axes
import matplotlib.pyplot as plt
import numpy as np
import pytest

from itomd.analysis import autocorrelation
from itomd.errors import InvalidInputError


def test_autocorrelation_of_ar1_process():
    rng = np.random.default_rng(8)
    x = np.zeros((50, 400, 1))
    x[:, 0] = rng.normal(size=(50, 1))
    for t in range(1, 400):
        x[:, t] = 0.9 * x[:, t - 1] + np.sqrt(1 - 0.81) * rng.normal(size=(50, 1))
    acf = autocorrelation(list(x), 0.5, [1, 2, 5, 10])
    np.testing.assert_allclose(acf.values, 0.9 ** np.array([1, 2, 5, 10]), atol=0.03)
    np.testing.assert_allclose(acf.lag_times, [0.5, 1, 2.5, 5])
    assert acf.n_pairs[0] == 50 * 399 and acf.observable == "x[0]"


def test_autocorrelation_of_prinz_matches_exact(prinz_system, prinz_trajectories, prinz_reference):
    acf = autocorrelation(prinz_trajectories, prinz_system.frame_interval, [1, 10, 50, 150, 300],
                          reference=prinz_reference)
    assert acf.max_abs_deviation() < 0.04, (acf.values, acf.reference)
    squared = autocorrelation(prinz_trajectories, prinz_system.frame_interval, [10, 100],
                              observable=lambda x: x[:, 0] ** 2, reference=prinz_reference, name="x²")
    assert squared.max_abs_deviation() < 0.05 and squared.observable == "x²"
    json.dumps(acf.to_dict(), allow_nan=False)
    ax = acf.plot()
    assert isinstance(ax, matplotlib.axes.Axes) and len(ax.lines) >= 2
    plt.close(ax.figure)


def test_autocorrelation_rejects_bad_observables(prinz_trajectories):
    with pytest.raises(InvalidInputError, match="observable"):
        autocorrelation(prinz_trajectories[:2], 0.1, [1], observable=lambda x: x[:3, 0])
    with pytest.raises(InvalidInputError, match="constant"):
        autocorrelation(prinz_trajectories[:2], 0.1, [1], observable=lambda x: np.ones(len(x)))
