"""Start points: exact equilibrium samples, fixed points, store frames, files, equilibrium models, the sample default."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from itomd.data.starts import (START_POINTS_FILE, default_sample_start_points, equilibrium_model_start_points,
                               equilibrium_samples, fixed_points, per_walker, read_start_points, sample_start_points,
                               start_points_from_store)
from itomd.data.store import save_trajectories
from itomd.errors import DataFileError, InvalidInputError
from itomd.systems import SystemSpec, resolve_system
from itomd.systems.reference import exact_reference


class FakeModel:
    """What the start-point functions use of a TransitionModel: a Gaussian 'equilibrium model'."""

    def __init__(self, dim=1, conditional=False, is_bopito=False, system=None):
        self.dim, self.conditional, self.is_bopito, self.system = dim, conditional, is_bopito, system
        self.draws = 0

    def sample_equilibrium(self, n, generator=None):
        self.draws += 1
        return 0.5 + 0.1 * torch.randn(n, self.dim, generator=generator, dtype=torch.float32)


# -- exact equilibrium samples --------------------------------------------------------------------
def test_equilibrium_samples_are_boltzmann_distributed():
    system = resolve_system("prinz")
    reference = exact_reference(system)
    mean_u = reference.expectation(reference.energy)
    sd_u = np.sqrt(reference.expectation((reference.energy - mean_u) ** 2))
    points = equilibrium_samples(system, 2000, np.random.SeedSequence(1, spawn_key=(0, 1)))
    assert points.shape == (2000, 1) and points.dtype == np.float64
    u = system.potential.energy(torch.as_tensor(points)).mean().item()
    assert u == pytest.approx(mean_u, abs=5 * sd_u / np.sqrt(2000))


def test_equilibrium_samples_depend_on_the_seed_alone():
    system = resolve_system("muller-brown")
    a = equilibrium_samples(system, 50, np.random.SeedSequence(4, spawn_key=(2, 1)))
    assert a.shape == (50, 2)
    assert np.array_equal(a, equilibrium_samples(resolve_system("muller-brown"), 50,
                                                 np.random.SeedSequence(4, spawn_key=(2, 1))))
    assert not np.array_equal(a, equilibrium_samples(system, 50, np.random.SeedSequence(4, spawn_key=(3, 1))))
    assert np.array_equal(a, exact_reference(system, n_eigen=2).sample(
        50, np.random.default_rng(np.random.SeedSequence(4, spawn_key=(2, 1)))))


def test_equilibrium_samples_need_an_exact_reference():
    with pytest.raises(InvalidInputError, match="dimension ≤ 2"):
        equilibrium_samples(resolve_system("double-well", dim=3), 4, 0)


def test_fixed_points_tile_or_slice():
    assert np.array_equal(fixed_points(np.array([0.25, 1.0]), range(2, 5)), np.tile([0.25, 1.0], (3, 1)))
    per = np.arange(10.0).reshape(5, 2)
    out = fixed_points(per, range(1, 3))
    assert np.array_equal(out, per[1:3])
    out[0, 0] = -1.0
    assert per[1, 0] == 2.0  # a copy


# -- stores and files -----------------------------------------------------------------------------
def test_start_points_from_a_store_are_its_frames_drawn_with_their_own_stream(tmp_path):
    trajectories = [np.arange(10.0).reshape(5, 2), 100 + np.arange(6.0).reshape(3, 2)]
    save_trajectories(tmp_path / "s", trajectories, {"frame_interval": 1.0})
    points = start_points_from_store(tmp_path / "s", 20, seed=3, dim=2)
    frames = np.concatenate(trajectories)
    rng = np.random.default_rng(np.random.SeedSequence(3, spawn_key=(0, 1)))
    assert np.array_equal(points, frames[rng.integers(len(frames), size=20)])
    assert not np.array_equal(points, start_points_from_store(tmp_path / "s", 20, seed=4, dim=2))
    with pytest.raises(InvalidInputError, match="holds 2-dimensional frames; the model is 1-dimensional"):
        start_points_from_store(tmp_path / "s", 3, seed=0, dim=1)


def test_read_start_points_from_npy_and_text(tmp_path):
    np.save(tmp_path / "p.npy", np.array([[0.1, 0.2], [0.3, 0.4]]))
    assert np.array_equal(read_start_points(tmp_path / "p.npy", 2), [[0.1, 0.2], [0.3, 0.4]])
    (tmp_path / "one.txt").write_text("0.5 0.6\n")
    assert read_start_points(tmp_path / "one.txt", 2).shape == (1, 2)
    (tmp_path / "column.txt").write_text("0.1\n0.2\n0.3\n")
    assert read_start_points(tmp_path / "column.txt", 1).shape == (3, 1)


@pytest.mark.parametrize("content, error, fragment", [
    (None, DataFileError, "no start-point file"),
    ("0.1 0.2 0.3\n", InvalidInputError, "must have shape [W, 2]"),
    ("0.1 nan\n", InvalidInputError, "contain NaN or inf"),
    ("a b\n", DataFileError, "cannot read start points"),
])
def test_bad_start_point_files_are_one_line_errors(tmp_path, content, error, fragment):
    path = tmp_path / "x.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(error) as info:
        read_start_points(path, 2)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_per_walker_repeats_one_point_or_checks_the_count():
    assert np.array_equal(per_walker(np.array([[1.0]]), 3), [[1.0], [1.0], [1.0]])
    assert per_walker(np.zeros((3, 1)), 3).shape == (3, 1)
    with pytest.raises(InvalidInputError, match="f.txt holds 2 start points for 3 walkers"):
        per_walker(np.zeros((2, 1)), 3, source="f.txt")


# -- equilibrium models ---------------------------------------------------------------------------
@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights v1")
    return path


def test_equilibrium_model_starts_are_drawn_once_and_cached(model_file, tmp_path):
    model = FakeModel()
    out = tmp_path / "campaign"
    points = equilibrium_model_start_points(model, model_file, out, 5, seed=3, dim=1)
    expected = FakeModel().sample_equilibrium(5, torch.Generator().manual_seed(3)).double().numpy()
    assert np.array_equal(points, expected) and points.dtype == np.float64
    assert (out / START_POINTS_FILE).is_file() and not list(out.glob("*.tmp-*"))
    assert np.array_equal(equilibrium_model_start_points(model, model_file, out, 5, seed=3, dim=1), points)
    assert model.draws == 1  # the second call read the cache
    equilibrium_model_start_points(model, model_file, out, 5, seed=4, dim=1)  # another seed: a new draw
    model_file.write_bytes(b"weights v2")  # another model: a new draw
    equilibrium_model_start_points(model, model_file, out, 5, seed=4, dim=1)
    assert model.draws == 3


def test_equilibrium_model_start_errors(model_file, tmp_path):
    with pytest.raises(InvalidInputError, match="is an ITO transition model; --from-equilibrium-model needs"):
        equilibrium_model_start_points(FakeModel(conditional=True), model_file, tmp_path, 3, 0, 1)
    bopito = equilibrium_model_start_points(FakeModel(conditional=True, is_bopito=True), model_file, tmp_path, 3, 0, 1)
    assert bopito.shape == (3, 1)
    with pytest.raises(InvalidInputError, match="models 1-dimensional states but the system is 2-dimensional"):
        equilibrium_model_start_points(FakeModel(), model_file, tmp_path, 3, 0, 2)
    (tmp_path / START_POINTS_FILE).write_bytes(b"garbage")
    with pytest.raises(DataFileError, match="is corrupt"):
        equilibrium_model_start_points(FakeModel(), model_file, tmp_path, 3, 0, 1)


# -- what itomd sample starts from ----------------------------------------------------------------
def test_sample_default_is_exact_equilibrium_of_the_recorded_system():
    model = FakeModel(conditional=True, system=SystemSpec("prinz"))
    points = default_sample_start_points(model, 8, seed=5)
    expected = equilibrium_samples(resolve_system("prinz"), 8, np.random.SeedSequence(5, spawn_key=(0, 2)))
    assert np.array_equal(points, expected) and model.draws == 0


def test_sample_default_without_a_reference_uses_a_bopito_prior_or_asks_for_points():
    bopito = FakeModel(conditional=True, is_bopito=True, system=None)
    points = default_sample_start_points(bopito, 4, seed=5)
    seed = int(np.random.SeedSequence(5, spawn_key=(0, 2)).generate_state(1)[0])
    assert np.array_equal(points, FakeModel().sample_equilibrium(4, torch.Generator().manual_seed(seed)).double().numpy())
    with pytest.raises(InvalidInputError, match="give start points with --from DIR"):
        default_sample_start_points(FakeModel(conditional=True, dim=66, system=SystemSpec("ala2")), 4, 0)


def test_sample_start_points_choose_the_source(tmp_path):
    model = FakeModel(conditional=True, system=SystemSpec("prinz"))
    (tmp_path / "x0.txt").write_text("0.3\n")
    assert np.array_equal(sample_start_points(model, 3, 0, x0_file=tmp_path / "x0.txt"), [[0.3]] * 3)
    save_trajectories(tmp_path / "s", [np.zeros((4, 1))], {"frame_interval": 1.0})
    assert np.array_equal(sample_start_points(model, 2, 0, from_store=tmp_path / "s"), np.zeros((2, 1)))
    assert np.array_equal(sample_start_points(model, 2, 0), default_sample_start_points(model, 2, 0))
    with pytest.raises(InvalidInputError, match="not both"):
        sample_start_points(model, 2, 0, from_store=tmp_path / "s", x0_file=tmp_path / "x0.txt")


# -- dependency direction -------------------------------------------------------------------------
def imported_itomd_modules(path) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("itomd"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("itomd")}
    return names


def test_data_and_checkpoints_sit_below_simulation_and_models():
    from pathlib import Path

    import itomd

    package = Path(itomd.__file__).parent
    for path in sorted((package / "data").glob("*.py")):
        above = [m for m in imported_itomd_modules(path) if m.startswith(("itomd.simulate", "itomd.model", "itomd.rollout"))]
        assert not above, f"{path.name} imports {above}"
    assert not [m for m in imported_itomd_modules(package / "checkpoint.py") if m.startswith("itomd.data")]
