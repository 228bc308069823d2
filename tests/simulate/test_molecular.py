"""Molecular dynamics through OpenMM (simulate_molecule, its contexts and seeds) and molecules in campaigns:
physics, determinism, resume, one-line errors (``itomd simulate`` / ``export`` of molecules:
tests/cli/test_simulate.py, tests/cli/test_export.py)."""

import os

import numpy as np
import pytest

from itomd.data import TrajectoryStore
from itomd.errors import InvalidInputError
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
