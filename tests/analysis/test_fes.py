"""Free-energy surfaces: properties with known answers (exact references in 1-D and 2-D, marginals, units)."""

import json

import matplotlib.axes
import matplotlib.pyplot as plt
import numpy as np
import pytest

from itomd.analysis import free_energy_surface
from itomd.errors import InvalidInputError


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


def test_free_energy_is_in_units_of_kT():
    """Boltzmann samples of U = x²/2 at kT = 2.5 have F/kT = x²/5: the surface is in kT, whatever kT is."""
    kT = 2.5
    x = np.random.default_rng(7).normal(scale=np.sqrt(kT), size=(100_000, 1))
    fes = free_energy_surface(x, kT, bins=30, range=(-3, 3))
    centres = fes.centers[0]
    np.testing.assert_allclose(fes.free_energy, centres**2 / (2 * kT), atol=0.1)
    assert not np.allclose(fes.free_energy, centres**2 / 2, atol=0.1)  # negative control: energy units
    recorded_otherwise = free_energy_surface(x, 1.0, bins=30, range=(-3, 3))
    np.testing.assert_array_equal(recorded_otherwise.free_energy, fes.free_energy)  # kT is only recorded
    assert fes.to_dict()["unit"] == "kT"


def test_free_energy_plots_are_labelled_in_kT(double_well_2d_reference):
    ref = double_well_2d_reference
    samples = ref.sample(20_000, seed=8)
    ax = free_energy_surface(samples, ref.kT, bins=20, reference=ref).plot()
    colorbar = ax.figure.axes[-1]
    assert colorbar.get_ylabel() == "free energy (kT)"
    assert max(float(t) for t in colorbar.get_yticks()) <= 10.0 + 1e-9  # capped at 10 kT
    plt.close(ax.figure)
    ax = free_energy_surface(samples, ref.kT, features=[0]).plot()
    assert ax.get_ylabel() == "free energy (kT)"
    plt.close(ax.figure)


def test_fes_needs_one_or_two_features():
    with pytest.raises(InvalidInputError, match="features"):
        free_energy_surface(np.zeros((10, 3)), 1.0)
    with pytest.raises(InvalidInputError, match="kT"):
        free_energy_surface(np.zeros((10, 1)), 0.0)
