"""Featurizers: what an analysis looks at — coordinates for points, backbone torsions for molecules
(``md_trajectories``, ``topology``: tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

from itomd.analysis import BackboneTorsionFeaturizer, CoordinateFeaturizer, MolecularSection, analyze
from itomd.analysis import molecular as M
from itomd.analysis.features import slow_plane
from itomd.errors import InvalidInputError

FRAME_INTERVAL = 0.1  # ps: the frame interval of md_trajectories


def test_representations_pick_torsions_for_a_molecule_and_coordinates_otherwise(topology):
    from itomd.representation import CoordinateRepresentation, representation_for
    from itomd.systems import SystemSpec

    torsions = representation_for(SystemSpec("ala2").build()).featurizer()
    assert isinstance(torsions, BackboneTorsionFeaturizer) and torsions.n_cells == M.MSM_GRID
    assert isinstance(representation_for(SystemSpec("prinz").build()).featurizer(), CoordinateFeaturizer)
    assert isinstance(CoordinateRepresentation(66).featurizer(), CoordinateFeaturizer)
    with pytest.raises(InvalidInputError, match="mdtraj Topology"):
        BackboneTorsionFeaturizer("ala2")


def test_torsion_featurizer_refuses_a_number_of_states_and_an_exact_reference(md_trajectories, topology,
                                                                               prinz_reference):
    with pytest.raises(InvalidInputError, match="--n-states") as error:
        analyze(md_trajectories, FRAME_INTERVAL, 1.0, n_states=10, n_samples=0, featurizer=BackboneTorsionFeaturizer(topology))
    assert "\n" not in str(error.value)
    with pytest.raises(InvalidInputError, match="reference"):
        analyze(md_trajectories, FRAME_INTERVAL, 1.0, reference=prinz_reference, n_samples=0,
                featurizer=BackboneTorsionFeaturizer(topology))


def test_coordinate_features_are_the_checked_coordinates_and_histograms_use_the_first_two():
    featurizer = CoordinateFeaturizer()
    x = np.arange(12.0).reshape(4, 3)
    (features,) = featurizer.transform([x])
    assert np.array_equal(features, x) and features.dtype == np.float64
    assert featurizer.transform([np.arange(5.0)])[0].shape == (5, 1)  # 1-D: one coordinate
    with pytest.raises(InvalidInputError, match="trajectory 0 contains NaN"):
        featurizer.transform([np.array([[0.0], [np.nan]])])
    assert featurizer.histogram_features(1) == (0,) and featurizer.histogram_features(5) == (0, 1)
    assert featurizer.note(2) is None and "first two of 3 coordinates" in featurizer.note(3)
    assert featurizer.supports_reference and featurizer.sections([x], [x]) == []
    assert featurizer.discretize([np.linspace(0, 1, 50)[:, None]], n_states=5).n_states == 5


def test_torsion_features_are_phi_psi_on_a_grid_with_a_validity_section(ala2, topology):
    featurizer = BackboneTorsionFeaturizer(topology, n_cells=4)
    frames = np.stack([ala2.initial_coordinates(), ala2.initial_coordinates() + 0.002])
    (features,) = featurizer.transform([frames])
    assert features.shape == (2, 2) and np.array_equal(features, M.backbone_dihedrals([frames], topology)[0])
    assert not featurizer.supports_reference and featurizer.observable is M.sin_phi
    assert featurizer.discretize([features]).method == "grid" and "4×4 grid" in featurizer.note(2)
    (section,) = featurizer.sections([frames], [features])
    assert isinstance(section, MolecularSection) and section.validity.n_frames == 2


def test_slow_plane_keeps_two_coordinates_and_finds_the_slow_ones():
    """One or two coordinates pass through; more are projected on their two slowest TICA components:
    a slow two-state coordinate hidden among four fast noise coordinates is what the plane's first axis follows."""
    rng = np.random.default_rng(1)
    two = [rng.normal(size=(50, 2))]
    assert np.array_equal(slow_plane(two)[0], two[0])
    slow = np.repeat(rng.choice([-1.0, 1.0], 40), 50)[:, None] + 0.1 * rng.normal(size=(2000, 1))
    data = np.concatenate([rng.normal(size=(2000, 2)), slow, rng.normal(size=(2000, 2))], axis=1)
    plane = slow_plane([data[:1000], data[1000:]])
    assert [p.shape for p in plane] == [(1000, 2), (1000, 2)]
    assert abs(np.corrcoef(np.concatenate(plane)[:, 0], slow[:, 0])[0, 1]) > 0.95
