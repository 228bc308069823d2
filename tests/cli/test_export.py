"""``itomd export``: a molecule's store to DCD, XTC, PDB and HDF5 files that mdtraj reads back, one-line
errors."""

import json
import os

import mdtraj
import numpy as np
import pytest

from itomd.cli import main
from itomd.data import TrajectoryStore
from itomd.errors import DataFileError
from tests.cli.helpers import assert_one_line_exit


@pytest.fixture(scope="module")
def cli_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "md"
    assert main(["simulate", "--system", "ala2", "--out", str(out), "--n-traj", "3", "--n-frames", "25",
                 "--seed", "0", "--frame-interval", "0.1", "--temperature", "310", "--platform", "Reference",
                 "--workers", "0", "--quiet"]) == 0
    return TrajectoryStore(out)


def test_cli_simulate_and_export_dcd_round_trip(cli_store, tmp_path, capsys):
    meta = cli_store.metadata
    assert meta["temperature"] == 310.0 and meta["integrator"] == "langevin-middle" and meta["chunk_size"] == 4
    capsys.readouterr()
    assert main(["export", str(cli_store.path), "--format", "dcd", "--out", str(tmp_path / "dcd"), "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert [os.path.basename(f) for f in files] == [
        "traj_000000.dcd", "traj_000001.dcd", "traj_000002.dcd", "topology.pdb"]
    top = str(tmp_path / "dcd" / "topology.pdb")
    for index, path in enumerate(files[:-1]):
        loaded = mdtraj.load(path, top=top)
        expected = cli_store.read(index).reshape(25, 22, 3)
        assert loaded.n_frames == 25 and loaded.topology.n_bonds == 21
        np.testing.assert_allclose(loaded.xyz, expected, rtol=1e-6, atol=1e-6)


def test_cli_export_joined_xtc_and_pdb(cli_store, tmp_path):
    assert main(["export", str(cli_store.path), "--format", "xtc", "--out", str(tmp_path / "x"), "--join"]) == 0
    joined = mdtraj.load(str(tmp_path / "x" / "trajectories.xtc"), top=str(tmp_path / "x" / "topology.pdb"))
    expected = np.concatenate(cli_store.trajectories()).reshape(-1, 22, 3)
    assert joined.n_frames == 75
    np.testing.assert_allclose(joined.xyz, expected, atol=1e-3)  # XTC keeps 3 decimals in nm
    np.testing.assert_allclose(joined.time[:3], [0.0, 0.1, 0.2], atol=1e-4)  # ps
    assert main(["export", str(cli_store.path), "--format", "pdb", "--out", str(tmp_path / "p")]) == 0
    pdb = mdtraj.load(str(tmp_path / "p" / "traj_000001.pdb"))
    np.testing.assert_allclose(pdb.xyz, cli_store.read(1).reshape(25, 22, 3), atol=1e-4)


def test_cli_export_hdf5_round_trip(cli_store, tmp_path):
    assert main(["export", str(cli_store.path), "--format", "h5", "--out", str(tmp_path / "h"), "--join"]) == 0
    loaded = mdtraj.load(str(tmp_path / "h" / "trajectories.h5"))  # mdtraj's HDF5 carries its topology
    assert loaded.n_frames == 75 and loaded.topology.n_atoms == 22
    np.testing.assert_allclose(loaded.xyz, np.concatenate(cli_store.trajectories()).reshape(-1, 22, 3), atol=1e-6)


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    assert main(["simulate", "--system", "double-well", "--out", str(tmp_path / "toy"), "--n-traj", "2",
                 "--n-frames", "3", "--workers", "0", "--quiet"]) == 0
    capsys.readouterr()
    assert_one_line_exit(capsys, main(["export", str(tmp_path / "toy"), "--format", "dcd", "--out", str(tmp_path / "e")]),
                          "not of a molecule")
    assert_one_line_exit(capsys, main(["export", str(tmp_path / "nope"), "--format", "dcd", "--out", str(tmp_path / "e")]),
                          "no trajectory store")
    with pytest.raises(DataFileError, match="no trajectories"):
        from itomd.data.export import export_store

        (tmp_path / "empty").mkdir()
        export_store(tmp_path / "empty", tmp_path / "e")
