"""The potential-energy check of a molecule's frames (issue 14, item 3): MD against MD agrees within
its noise, and strained structures are seen at once."""

from __future__ import annotations

import numpy as np
import pytest

from itomd.analysis.energy import EnergySection, energy_sections
from itomd.systems import SystemSpec
from itomd.data.store import TrajectoryStore


@pytest.fixture(scope="module")
def ala2_frames(tmp_path_factory):
    """Two 100-frame alanine-dipeptide MD trajectories (1 ps frames, OBC2 as shipped)."""
    from itomd.cli import main

    out = tmp_path_factory.mktemp("energy") / "md"
    assert main(["simulate", "--system", "ala2", "--out", str(out), "--n-traj", "2", "--n-frames", "100",
                 "--seed", "3", "--workers", "0", "--quiet"]) == 0
    return TrajectoryStore(out).trajectories()


def test_md_halves_agree_and_strained_frames_do_not(ala2_frames):
    system = SystemSpec("ala2").build()
    first, second = ala2_frames
    section = energy_sections(system.analysis_energies, [first[20:]])[0]
    section.add_comparison([second[20:]], [], 1.0)
    summary = section.to_dict()
    # equipartition: 66 - 6 - 12 constrained = 48 degrees of freedom, so std(U) ~ sqrt(48/2) ~ 5 kT.
    # Measured: std 5.1 and 4.1 kT; the two trajectories' means differ by 1.45 kT (80 correlated frames each)
    assert 2.5 < summary["std"] < 8.0, summary
    assert abs(summary["mean_difference"]) < 3.0, summary
    rng = np.random.default_rng(0)
    strained = [f + rng.normal(0, 0.005, f.shape) for f in (second[20:],)]  # 0.05 Å noise on every atom
    negative = EnergySection(energies=section.energies, energy=system.analysis_energies)
    negative.add_comparison(strained, [], 1.0)
    gap = negative.to_dict()["mean_difference"]
    assert gap < -20.0, gap  # the noised frames are far higher in energy (measured: 52 kT)
    assert negative.to_dict()["wasserstein"] > 20.0


def test_constraints_are_applied_before_the_energy(ala2_frames):
    """A frame whose C-H bonds are stretched by 0.01 nm has the same energy after the constraints."""
    system = SystemSpec("ala2").build()
    frame = ala2_frames[0][-1].reshape(-1, 3).copy()
    top = system.topology()
    h = [a.index for a in top.atoms if a.element.symbol == "H"][0]
    partner = next(b[0].index if b[1].index == h else b[1].index for b in top.bonds if h in (b[0].index, b[1].index))
    stretched = frame.copy()
    direction = frame[h] - frame[partner]
    stretched[h] += 0.01 * direction / np.linalg.norm(direction)
    energies = system.analysis_energies(np.stack([frame.ravel(), stretched.ravel()]))
    assert energies[1] == pytest.approx(energies[0], abs=0.5)
    assert np.isnan(system.analysis_energies(np.full((1, frame.size), np.nan))[0])  # counted as strained, not fatal
