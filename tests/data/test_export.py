"""export_store: a molecule's trajectory store as MD files (one per trajectory or joined) plus its topology,
read back by mdtraj; stores of points, unknown formats and empty stores are one-line errors. (The
``itomd export`` command on simulated stores: tests/cli/test_export.py.)"""

from __future__ import annotations

import json

import mdtraj
import numpy as np
import pytest

from itomd.data.export import export_store
from itomd.data.store import save_trajectories
from itomd.errors import DataFileError, InvalidInputError
from itomd.systems import SystemSpec

FRAME_INTERVAL = 0.2  # ps


@pytest.fixture
def molecule_store(ala2, tmp_path):
    """Three short trajectories of lengths 4, 2 and 3: the shipped structure with per-frame shifts (nm)."""
    x0 = ala2.initial_coordinates()
    rng = np.random.default_rng(0)
    trajectories = [x0 + 0.01 * rng.standard_normal((n, x0.size)) for n in (4, 2, 3)]
    metadata = {**ala2.metadata(), "spec": json.dumps(SystemSpec("ala2").to_dict()), "frame_interval": FRAME_INTERVAL}
    save_trajectories(tmp_path / "store", trajectories, metadata)
    return tmp_path / "store", trajectories


def test_one_file_per_trajectory_and_the_topology_with_the_first_frame(molecule_store, tmp_path):
    store, trajectories = molecule_store
    written = export_store(store, tmp_path / "out", "dcd")
    assert [p.name for p in written] == ["traj_000000.dcd", "traj_000001.dcd", "traj_000002.dcd", "topology.pdb"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in written)  # no temporaries
    top = mdtraj.load(str(written[-1]))
    assert top.topology.n_atoms == 22 and top.topology.n_bonds == 21
    np.testing.assert_allclose(top.xyz.reshape(-1), trajectories[0][0], atol=1e-4)  # PDB keeps 10⁻⁴ nm
    for path, expected in zip(written[:-1], trajectories):
        loaded = mdtraj.load(str(path), top=str(written[-1]))
        np.testing.assert_allclose(loaded.xyz, expected.reshape(-1, 22, 3), atol=1e-5)  # float32 positions


def test_joined_files_hold_every_frame_in_index_order_with_the_time_axis(molecule_store, tmp_path):
    store, trajectories = molecule_store
    written = export_store(store, tmp_path / "out", "xtc", join=True)
    assert [p.name for p in written] == ["trajectories.xtc", "topology.pdb"]
    joined = mdtraj.load(str(written[0]), top=str(written[1]))
    expected = np.concatenate(trajectories).reshape(-1, 22, 3)
    np.testing.assert_allclose(joined.xyz, expected, atol=1e-3)  # XTC keeps 10⁻³ nm
    np.testing.assert_allclose(joined.time[:4], FRAME_INTERVAL * np.arange(4), atol=1e-4)
    again = export_store(store, tmp_path / "out", "xtc", join=True)  # a second export replaces the files
    assert again == written and sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in written)


def test_points_unknown_formats_and_empty_stores_are_one_line_errors(molecule_store, tmp_path):
    store, _ = molecule_store
    with pytest.raises(InvalidInputError, match="unknown export format 'gro': choose one of dcd, xtc, h5, pdb"):
        export_store(store, tmp_path / "out", "gro")
    toy = save_trajectories(tmp_path / "toy", [np.zeros((3, 1))],
                            {"spec": json.dumps(SystemSpec("prinz").to_dict()), "frame_interval": 0.1}).path
    with pytest.raises(InvalidInputError, match="holds trajectories of 'prinz', not of a molecule") as error:
        export_store(toy, tmp_path / "out")
    assert "\n" not in str(error.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFileError, match="no trajectories in the store"):
        export_store(tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()
