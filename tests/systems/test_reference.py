"""The SqRA reference is exact where an answer is known and converges under grid refinement."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from itomd.errors import InvalidInputError
from itomd.systems import CallablePotential, HarmonicPotential, System, resolve_system
from itomd.systems.reference import exact_reference


def test_prinz_slowest_timescale():
    ref = exact_reference(resolve_system("prinz"))
    assert ref.implied_timescales()[0] == pytest.approx(0.834, rel=2e-3)
    # the BoPITO paper's check: lambda_2 at deeptime's frame of 5e-3 is 0.9940
    assert ref.transfer_eigenvalues(5e-3)[1] == pytest.approx(0.9940, abs=1e-4)


def test_muller_brown_slowest_timescale():
    ref = exact_reference(resolve_system("muller-brown"), n_grid=160)
    assert ref.implied_timescales()[0] == pytest.approx(5.0, rel=0.01)


def test_harmonic_spectrum_is_ornstein_uhlenbeck():
    # OU with rate a = k / gamma has eigenvalues -n a: timescales gamma / (n k).
    k, gamma = 2.0, 0.5
    system = System(HarmonicPotential(1, stiffness=k), kT=1.0, friction=gamma, box=((-5.0, 5.0),))
    ref = exact_reference(system, n_grid=2000, n_eigen=5)
    np.testing.assert_allclose(ref.implied_timescales(), gamma / k / np.arange(1, 5), rtol=2e-3)
    lags = np.array([0.05, 0.1, 0.3])
    np.testing.assert_allclose(ref.autocorrelation(ref.points[:, 0], lags), np.exp(-k / gamma * lags), rtol=2e-3)


def test_grid_refinement_converges():
    system = resolve_system("prinz")
    ts = np.array([exact_reference(system, n_grid=n).implied_timescales(2) for n in (150, 300, 600, 1200)])
    diffs = np.abs(np.diff(ts[:, 0]))
    assert np.all(diffs[1:] < diffs[:-1] / 3)  # second-order convergence: errors fall ~4x per halving
    assert abs(ts[-1, 0] - ts[-2, 0]) / ts[-1, 0] < 1e-3


def test_stationary_density_is_boltzmann():
    system = resolve_system("prinz")
    ref = exact_reference(system)
    u = lambda x: system.potential.energy(torch.tensor([[x]], dtype=torch.float64)).item()
    z, _ = integrate.quad(lambda x: math.exp(-u(x)), -1.2, 1.2, points=[-0.5, 0, 0.5], limit=200)
    for i in (100, 400, 600, 900):
        x = ref.axes[0][i]
        assert ref.density[i] == pytest.approx(math.exp(-u(x)) / z, rel=1e-3)
    assert ref.cell_probabilities.sum() == pytest.approx(1.0)


def test_samples_follow_density():
    ref = exact_reference(resolve_system("double-well", dim=2), n_grid=80)
    x = ref.sample(40000, seed=3)
    edges = [np.linspace(-2, 2, 11), np.linspace(-2.5, 2.5, 11)]
    hist, _ = np.histogramdd(x, bins=edges)
    np.testing.assert_allclose(hist / hist.sum(), ref.bin_probabilities(edges), atol=5e-3)


def test_to_dict_is_json_ready():
    import json

    d = exact_reference(resolve_system("double-well")).to_dict()
    json.dumps(d)
    assert d["implied_timescales"][0] > d["implied_timescales"][1]


def test_errors():
    with pytest.raises(InvalidInputError, match="dimension ≤ 3"):
        exact_reference(resolve_system("harmonic", dim=4))
    no_box = System(CallablePotential(lambda x: (x**2).sum(-1), dim=1), kT=1.0)
    with pytest.raises(InvalidInputError, match="--box"):
        exact_reference(no_box)
    log = System(CallablePotential(lambda x: -torch.log(x[..., 0]), dim=1), kT=1.0, box=((-1.0, 1.0),))
    with pytest.raises(InvalidInputError, match="not finite"):
        exact_reference(log)


def test_bin_probabilities_split_cells_by_overlap_and_marginalise():
    ref = exact_reference(resolve_system("double-well", dim=2), n_grid=60)
    # bins that do not line up with the cells: mass is conserved and matches many exact samples
    edges = [np.linspace(-2, 2, 8), np.linspace(-2.5, 2.5, 6)]
    mass = ref.bin_probabilities(edges)
    assert mass.shape == (7, 5) and mass.sum() == pytest.approx(1.0, abs=1e-9)
    hist, _ = np.histogramdd(ref.sample(400000, seed=9), bins=edges)
    np.testing.assert_allclose(mass, hist / hist.sum(), atol=2e-3)
    marginal_y = ref.bin_probabilities([edges[1]], features=(1,))
    np.testing.assert_allclose(marginal_y, mass.sum(0), atol=1e-12)
    with pytest.raises(InvalidInputError):
        ref.bin_probabilities([edges[0]], features=(2,))


def test_a_grid_too_large_for_memory_is_refused_before_anything_is_allocated():
    system = resolve_system("muller-brown")
    with pytest.raises(InvalidInputError, match="too large"):  # 10¹⁰ cells: a 75 GiB mesh per axis
        exact_reference(system, n_grid=100_000)
    with pytest.raises(InvalidInputError, match="too large"):
        exact_reference(system, n_grid=(1001, 1000))
