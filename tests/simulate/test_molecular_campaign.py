"""Molecules in campaigns: OpenMM physics, determinism, resume, CLI simulate + export, one-line errors."""

import json
import os

import numpy as np
import pytest

from itomd.cli import main
from itomd.data import TrajectoryStore
from itomd.errors import DataFileError, InvalidInputError
from itomd.simulate.campaign import Campaign, run_campaign
from itomd.simulate.integrators import SimulationError
from itomd.simulate.molecular import make_context, simulate_molecule, walker_seeds
from itomd.systems import SystemSpec, resolve_system

import openmm
import mdtraj

# short frames (0.1 ps = 50 steps) keep every test well under a second of OpenMM time
ALA2 = SystemSpec("ala2", frame_interval=0.1)


def small(out, **overrides):
    """A small ala2 campaign: 5 trajectories in 3 chunks (the last one partial), 40 frames of 0.1 ps."""
    args = dict(n_trajectories=5, n_frames=40, seed=11, chunk_size=2, n_workers=0, progress=False)
    args.update(overrides)
    spec = args.pop("spec", ALA2)
    return run_campaign(spec, out, **args)


def bond_lengths(frames: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Distances [..., n_pairs] (nm) of atom pairs in flattened frames [..., 3·n_atoms]."""
    xyz = frames.reshape(*frames.shape[:-1], -1, 3)
    return np.linalg.norm(xyz[..., pairs[:, 0], :] - xyz[..., pairs[:, 1], :], axis=-1)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> TrajectoryStore:
    return small(tmp_path_factory.mktemp("ala2") / "md")


def test_store_layout_metadata_and_topology(store):
    trajectories = store.trajectories()
    assert len(trajectories) == 5 and all(t.shape == (40, 66) for t in trajectories)
    meta = store.metadata
    assert meta["integrator"] == "langevin-middle" and meta["platform"] == "Reference"
    assert meta["temperature"] == 300.0 and meta["frame_interval"] == 0.1 and meta["start"] == "fixed"
    assert SystemSpec.from_metadata(meta) == ALA2
    manifest = store.manifest["campaign"]
    assert manifest["platform"] == "Reference" and manifest["chunk_size"] == 2
    topology = mdtraj.load_topology(str(store.path / "topology.pdb"))
    assert topology.n_atoms == 22 and topology.n_bonds == 21
    # every walker starts from the shipped structure (already constrained) and then they differ
    x0 = resolve_system("ala2").initial_coordinates()
    assert all(np.abs(t[0] - x0).max() < 1e-6 for t in trajectories)
    assert not np.allclose(trajectories[0][1:], trajectories[1][1:])


def test_constraints_hold_and_heavy_bonds_fluctuate_around_their_lengths(store):
    system = resolve_system("ala2")
    omm = system.openmm_system()
    frames = np.concatenate(store.trajectories())  # [frames, 66]
    constrained = [omm.getConstraintParameters(i) for i in range(omm.getNumConstraints())]
    pairs = np.array([(i, j) for i, j, _ in constrained])
    lengths = np.array([d.value_in_unit(openmm.unit.nanometer) for _, _, d in constrained])
    assert np.abs(bond_lengths(frames, pairs) - lengths).max() < 1e-4
    bonds = next(f for f in omm.getForces() if isinstance(f, openmm.HarmonicBondForce))
    constrained_pairs = {frozenset(p) for p in pairs.tolist()}
    heavy = [bonds.getBondParameters(i) for i in range(bonds.getNumBonds())]
    heavy = [(i, j, r0.value_in_unit(openmm.unit.nanometer)) for i, j, r0, _ in heavy
             if frozenset((i, j)) not in constrained_pairs]
    assert len(heavy) == 9  # 21 bonds, 12 of them to hydrogen
    distances = bond_lengths(frames[1:], np.array([(i, j) for i, j, _ in heavy]))
    r0 = np.array([r for _, _, r in heavy])
    assert np.abs(distances.mean(axis=0) - r0).max() < 0.005  # thermal spread ~0.003 nm
    assert np.all(distances.std(axis=0) > 5e-4) and np.all(distances.std(axis=0) < 0.01)


def test_langevin_middle_holds_300_kelvin():
    system = resolve_system("ala2")
    omm = system.openmm_system()
    dof = 3 * omm.getNumParticles() - omm.getNumConstraints() - 3  # CMMotionRemover takes 3
    temperatures = []
    for seeds in walker_seeds(4, 2):  # 2 walkers x 100 ps: standard error ~4 K (1 ns runs give 298-302 K)
        context = make_context(system, system.initial_coordinates(), *seeds)
        integrator = context.getIntegrator()
        integrator.step(2000)  # 4 ps from the minimised-like start
        for _ in range(1000):  # a sample every 0.1 ps
            integrator.step(50)
            kinetic = context.getState(getEnergy=True).getKineticEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
            temperatures.append(2 * kinetic / (dof * 0.00831446261815324))
    assert np.mean(temperatures) == pytest.approx(300.0, rel=0.05)


def test_simulate_molecule_is_deterministic_and_seeded():
    system = resolve_system("ala2", frame_interval=0.05)
    x0 = np.stack([system.initial_coordinates()] * 2)
    a = simulate_molecule(system, x0, 6, seed=3)
    assert a.shape == (2, 6, 66) and a.dtype == np.float64
    assert np.array_equal(a, simulate_molecule(system, x0, 6, seed=3))
    assert not np.array_equal(a[0], a[1])  # walkers have their own seeds
    assert not np.array_equal(a, simulate_molecule(system, x0, 6, seed=4))
    seeds = walker_seeds(2**64 - 1, 100)
    assert seeds.min() >= 1 and seeds.max() < 2**31 and len(np.unique(seeds)) == 200


def test_generated_start_points_get_their_hydrogens_constrained():
    system = resolve_system("ala2", frame_interval=0.05)
    x0 = system.initial_coordinates() + np.random.default_rng(1).normal(0.0, 0.002, 66)
    frames = simulate_molecule(system, x0, 3, seed=0)[0]
    assert 1e-6 < np.abs(frames[0] - x0).max() < 0.02  # frame 0: the start, with constraints applied
    omm = system.openmm_system()
    constrained = [omm.getConstraintParameters(i) for i in range(omm.getNumConstraints())]
    pairs = np.array([(i, j) for i, j, _ in constrained])
    lengths = np.array([d.value_in_unit(openmm.unit.nanometer) for _, _, d in constrained])
    assert np.abs(bond_lengths(frames, pairs) - lengths).max() < 1e-4


def test_one_dask_worker_equals_in_process(store, tmp_path):
    other = small(tmp_path / "dask", n_workers=1)
    assert all(np.array_equal(a, b) for a, b in zip(store.trajectories(), other.trajectories()))


def test_resume_recomputes_only_a_removed_file(tmp_path, store):
    resumed = small(tmp_path / "resume")
    untouched = {i: os.stat(resumed.file_path(i)).st_mtime_ns for i in (0, 1, 4)}
    resumed.file_path(3).unlink()
    (resumed.path / "traj_000002.h5.tmp-1-deadbeef").write_bytes(b"half a file")
    small(tmp_path / "resume")
    assert all(np.array_equal(a, b) for a, b in zip(store.trajectories(), resumed.trajectories()))
    assert {i: os.stat(resumed.file_path(i)).st_mtime_ns for i in (0, 1, 4)} == untouched
    assert not list(resumed.path.glob("*.tmp-*"))


def test_per_trajectory_start_points_like_equilibrium_model_seeding(tmp_path):
    system = resolve_system("ala2")
    starts = simulate_molecule(system, system.initial_coordinates(), 3, seed=9)[0]  # [3, 66] states
    out = small(tmp_path / "seeded", n_trajectories=3, n_frames=4, start=starts)
    assert out.manifest["campaign"]["start"] == "fixed"
    assert all(np.abs(t[0] - x).max() < 1e-6 for t, x in zip(out.trajectories(), starts))


@pytest.mark.parametrize("overrides, fragment", [
    (dict(platform="Metal"), "unknown OpenMM platform 'Metal'"),
    (dict(integrator="baoab"), "is a molecule, simulated by OpenMM with integrator 'langevin-middle'"),
    (dict(spec=SystemSpec("prinz"), integrator="langevin-middle"), "is for molecules"),
    (dict(spec=SystemSpec("prinz"), platform="Reference"), "molecules only"),
    (dict(start="equilibrium"), "dimension ≤ 2"),
    (dict(start=np.zeros((5, 3))), "x0 has 3 coordinates"),
])
def test_bad_molecular_campaigns_are_one_line_errors(tmp_path, overrides, fragment):
    with pytest.raises(InvalidInputError, match=fragment) as info:
        small(tmp_path / "bad", **overrides)
    assert "\n" not in str(info.value)


def test_unavailable_platform_lists_the_available_ones(tmp_path):
    from itomd.simulate.molecular import available_platforms

    missing = next((p for p in ("CUDA", "OpenCL") if p not in available_platforms()), None)
    if missing is None:
        pytest.skip("every platform is available here")
    with pytest.raises(InvalidInputError, match=f"'{missing}' is not available here: choose one of Reference") as info:
        small(tmp_path / "bad", platform=missing)
    assert "\n" not in str(info.value)


def test_overlapping_atoms_are_a_simulation_error():
    with pytest.raises(SimulationError, match="walker 0 of ala2") as info:
        simulate_molecule(resolve_system("ala2"), np.zeros(66), 3, seed=0)
    assert "\n" not in str(info.value)


def test_campaign_defaults_for_molecules():
    campaign = Campaign(SystemSpec("ala2"), n_trajectories=3, n_frames=2, seed=0)
    assert campaign.integrator == "langevin-middle" and campaign.platform == "Reference"
    assert campaign.chunk_size == 4 and campaign.start == "fixed" and campaign.x0.shape == (66,)
    toy = Campaign(SystemSpec("prinz"), n_trajectories=3, n_frames=2, seed=0)
    assert toy.integrator == "overdamped" and toy.platform is None and toy.start == "equilibrium"
    assert "platform" not in toy.parameters()


# -- command line ---------------------------------------------------------------------------------
def assert_one_line_error(capsys, code: int, fragment: str) -> None:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]


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


@pytest.mark.parametrize("argv, fragment", [
    (["--system", "ala2", "--integrator", "overdamped"], "not 'overdamped'"),
    (["--system", "ala2", "--kT", "2"], "set its temperature in kelvin"),
    (["--system", "ala2", "--dim", "2"], "--dim 2 is not possible"),
    (["--system", "ala2", "--x0", "0.1,0.2"], "--x0 needs 66 numbers"),
    (["--system", "prinz", "--platform", "Reference"], "applies to molecules only"),
    (["--system", "prinz", "--temperature", "300"], "applies to molecules"),
])
def test_cli_simulate_errors_are_one_line(tmp_path, capsys, argv, fragment):
    code = main(["simulate", *argv, "--out", str(tmp_path / "o"), "--n-traj", "2", "--n-frames", "2", "--workers", "0",
                 "--quiet"])
    assert_one_line_error(capsys, code, fragment)


def test_cli_export_errors_are_one_line(tmp_path, capsys):
    assert main(["simulate", "--system", "double-well", "--out", str(tmp_path / "toy"), "--n-traj", "2",
                 "--n-frames", "3", "--workers", "0", "--quiet"]) == 0
    capsys.readouterr()
    assert_one_line_error(capsys, main(["export", str(tmp_path / "toy"), "--format", "dcd", "--out", str(tmp_path / "e")]),
                          "not of a molecule")
    assert_one_line_error(capsys, main(["export", str(tmp_path / "nope"), "--format", "dcd", "--out", str(tmp_path / "e")]),
                          "no trajectory store")
    with pytest.raises(DataFileError, match="no trajectories"):
        from itomd.data.export import export_store

        (tmp_path / "empty").mkdir()
        export_store(tmp_path / "empty", tmp_path / "e")
