"""Thermal relaxation after surrogate jumps: strained structures come back to MD's energies, Boltzmann
frames stay Boltzmann, torsions barely move, seeded, and one-line errors for what it cannot do."""

from __future__ import annotations

import numpy as np
import pytest

from itomd.analysis.molecular import backbone_dihedrals
from itomd.errors import InvalidInputError
from itomd.simulate.molecular import simulate_molecule
from itomd.simulate.relax import ThermalRelaxation


@pytest.fixture(scope="module")
def md_frames(ala2):
    """Vacuum alanine dipeptide at 300 K: 4 walkers × 40 frames of 1 ps after 20 ps (~2 s of OpenMM)."""
    x0 = np.tile(ala2.initial_coordinates(), (4, 1))
    return simulate_molecule(ala2, x0, n_frames=60, seed=11)[:, 20:].reshape(-1, ala2.dim)


def _circular_rms_degrees(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.sqrt(np.mean(np.angle(np.exp(1j * (a - b))) ** 2))))


def test_relaxation_removes_strain_and_keeps_boltzmann_frames_and_torsions(ala2, md_frames):
    """Measured (160 frames, 50 steps at 100/ps): MD's mean energy moves by < 1 kT under relaxation
    (its standard error here ~0.4 kT); frames strained by 0.004 nm of noise per coordinate (+40 kT)
    come back to within 2 kT of MD; φ/ψ move by ~5° RMS (their thermal spread within a basin is
    ~20°). Negative control: 1 step does not remove the strain."""
    rng = np.random.default_rng(0)
    strained = md_frames + rng.normal(scale=0.004, size=md_frames.shape)
    energy = ala2.analysis_energies
    md, before = energy(md_frames).mean(), energy(strained).mean()
    assert before - md > 15.0
    relaxed = ThermalRelaxation(ala2, 50, seed=1)(strained)
    assert abs(energy(relaxed).mean() - md) < 2.0
    assert energy(ThermalRelaxation(ala2, 1, seed=1)(strained)).mean() - md > 10.0
    assert abs(energy(ThermalRelaxation(ala2, 50, seed=2)(md_frames)).mean() - md) < 1.5
    topology = ala2.topology()
    moved = [_circular_rms_degrees(a, b) for a, b in zip(backbone_dihedrals([relaxed], topology)[0].T,
                                                         backbone_dihedrals([md_frames], topology)[0].T)]
    assert max(moved) < 12.0, moved


def test_relaxation_is_seeded_and_refuses_what_it_cannot_do(ala2, md_frames, prinz_system):
    a = ThermalRelaxation(ala2, 5, seed=3)(md_frames[:3])
    assert np.array_equal(a, ThermalRelaxation(ala2, 5, seed=3)(md_frames[:3]))
    assert not np.array_equal(a, ThermalRelaxation(ala2, 5, seed=4)(md_frames[:3]))
    with pytest.raises(InvalidInputError, match="not a molecule"):
        ThermalRelaxation(prinz_system, 5, seed=0)
    with pytest.raises(InvalidInputError):
        ThermalRelaxation(ala2, 0, seed=0)
    with pytest.raises(InvalidInputError, match="shape"):
        ThermalRelaxation(ala2, 5, seed=0)(md_frames[:, :-3])


@pytest.mark.parametrize("platform", ["Reference", "CPU"])
def test_a_structure_that_blows_up_comes_back_non_finite_and_the_others_still_relax(ala2, md_frames, platform):
    """Two atoms 10⁻⁴ nm apart blow the segment up (the CPU platform raises "Particle coordinate is
    NaN", Reference returns NaN): that row is left non-finite for the rollout's blow-up check (and its
    redraws), not an error that ends the rollout, and the next structure relaxes as it would have:
    identically on Reference; on CPU the aborted segment used fewer of the integrator's random numbers,
    so the next one differs by its noise (measured 1.0 kT; a poisoned context would give NaN)."""
    overlapping = md_frames[0].reshape(-1, 3).copy()
    overlapping[1] = overlapping[0] + 1e-4
    relax = ThermalRelaxation(ala2, 25, seed=0, platform=platform)
    out = relax(np.stack([overlapping.reshape(-1), md_frames[1]]))
    usual = ThermalRelaxation(ala2, 25, seed=0, platform=platform)(md_frames[:2])
    assert not np.isfinite(out[0]).all() and np.isfinite(out[1]).all()
    if platform == "Reference":
        assert np.array_equal(out[1], usual[1])
    else:
        assert abs(ala2.analysis_energies(out[1:])[0] - ala2.analysis_energies(usual[1:])[0]) < 10.0
