"""JS divergence, free-energy surfaces and autocorrelation: properties with known answers."""

import json

import matplotlib.axes
import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from itomd.analysis import autocorrelation, free_energy_surface, js_divergence, js_divergence_of_distributions
from itomd.errors import InvalidInputError


# -- JS divergence --------------------------------------------------------------------------------
def test_js_of_identical_samples_is_zero_and_of_disjoint_is_ln2():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 1))
    assert js_divergence(x, x.copy(), bins=40).value == pytest.approx(0.0, abs=1e-12)
    far = js_divergence(x, x + 100.0, bins=40)
    assert far.value == pytest.approx(np.log(2), rel=1e-12)
    assert js_divergence_of_distributions([1, 0], [0, 1]) == pytest.approx(np.log(2))


def test_js_is_the_divergence_not_scipys_distance():
    p, q = np.array([0.2, 0.5, 0.3]), np.array([0.4, 0.4, 0.2])
    assert js_divergence_of_distributions(p, q) == pytest.approx(jensenshannon(p, q) ** 2)


def test_js_is_symmetric_and_records_its_histogram():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4000, 2)), rng.normal(0.5, 1.0, size=(3000, 2))
    ab = js_divergence(a, b, bins=20, range=[(-5, 5), (-5, 5)])
    ba = js_divergence(b, a, bins=20, range=[(-5, 5), (-5, 5)])
    assert ab.value == pytest.approx(ba.value) and 0 < ab.value < np.log(2)
    d = ab.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["unit"] == "nats" and d["bins"] == [20, 20] and d["range"] == [[-5, 5], [-5, 5]]
    assert d["n_samples"] == 4000 and d["n_other_samples"] == 3000 and d["against"] == "samples"
    assert "nats" in ab.describe()


def test_js_of_reference_samples_is_small_and_shrinks_with_n(prinz_reference):
    values = [js_divergence(prinz_reference.sample(n, seed=n), reference=prinz_reference).value
              for n in (1_000, 10_000, 100_000)]
    assert values[0] < 0.03 and values[2] < 1e-3
    assert values[0] > values[1] > values[2]
    js = js_divergence(prinz_reference.sample(1000, seed=0), reference=prinz_reference)
    assert js.against == "exact" and js.range == [prinz_reference.box[0]] and js.bins == [100]


def test_js_counts_samples_outside_the_range(prinz_reference):
    samples = prinz_reference.sample(20_000, seed=4)
    inside = js_divergence(samples, reference=prinz_reference).value
    escaped = samples.copy()
    escaped[:2000] = 5.0  # 10 % of the samples leave the box
    js = js_divergence(escaped, reference=prinz_reference)
    assert js.fraction_outside == pytest.approx(0.1)
    assert js.value > inside + 0.02


def test_js_input_errors():
    x = np.zeros((10, 1))
    with pytest.raises(InvalidInputError, match="exactly one"):
        js_divergence(x)
    with pytest.raises(InvalidInputError, match="NaN"):
        js_divergence(np.array([[0.0], [np.nan]]), x)
    with pytest.raises(InvalidInputError, match="dimension"):
        js_divergence(x, np.zeros((10, 2)))


# -- free energy ----------------------------------------------------------------------------------
def test_fes_of_reference_samples_matches_exact_1d(prinz_reference):
    fes = free_energy_surface(prinz_reference.sample(200_000, seed=5), prinz_reference.kT,
                              reference=prinz_reference)
    assert fes.free_energy.shape == (100,) and np.nanmin(fes.free_energy) == 0
    assert fes.rms_deviation() < 0.1
    json.dumps(fes.to_dict(), allow_nan=False)
    ax = fes.plot()
    assert isinstance(ax, matplotlib.axes.Axes) and len(ax.lines) == 2
    plt.close(ax.figure)


def test_fes_of_reference_samples_matches_exact_2d_and_marginal(double_well_2d_reference):
    ref = double_well_2d_reference
    samples = ref.sample(200_000, seed=6)
    fes = free_energy_surface(samples, ref.kT, bins=25, reference=ref)
    assert fes.free_energy.shape == (25, 25) and fes.rms_deviation() < 0.3
    # one coordinate of 2-D samples against the exact marginal
    marginal = free_energy_surface(samples, ref.kT, bins=40, reference=ref, features=[1])
    assert marginal.features == (1,) and marginal.rms_deviation() < 0.1
    exact_marginal = -ref.kT * np.log(ref.cell_probabilities.sum(0))
    assert np.nanmax(marginal.reference) == pytest.approx(np.ptp(exact_marginal), rel=0.2)
    ax = fes.plot()
    assert isinstance(ax, matplotlib.axes.Axes)
    plt.close(ax.figure)


def test_fes_units_follow_kT():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(100_000, 1))
    f1 = free_energy_surface(x, kT=1.0, bins=30, range=(-3, 3))
    f2 = free_energy_surface(x, kT=2.5, bins=30, range=(-3, 3))
    np.testing.assert_allclose(f2.free_energy, 2.5 * f1.free_energy)
    centres = f1.centers[0]  # harmonic: F = x²/2 up to noise
    np.testing.assert_allclose(f1.free_energy, centres**2 / 2, atol=0.15)


def test_fes_needs_one_or_two_features():
    with pytest.raises(InvalidInputError, match="features"):
        free_energy_surface(np.zeros((10, 3)), 1.0)
    with pytest.raises(InvalidInputError, match="kT"):
        free_energy_surface(np.zeros((10, 1)), 0.0)


# -- autocorrelation ------------------------------------------------------------------------------
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
