"""The trajectory store: round trips, atomic writes, and one-line errors for bad files."""

import json
import os

import h5py
import numpy as np
import pytest

from itomd.data import TrajectoryStore, save_trajectories, trajectory_filename
from itomd.errors import DataFileError, InvalidInputError

META = {"system": "prinz", "spec": json.dumps({"spec": "prinz"}), "dim": 1, "kT": 1.0,
        "frame_interval": 5e-3, "integrator": "overdamped", "box": [[-1.2, 1.2]], "note": None,
        "flags": {"a": 1}, "fixed": True}


def random_trajectories(n=3, n_frames=(50, 40, 30), dim=1, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n_frames[i % len(n_frames)], dim)) for i in range(n)]


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def test_round_trip_with_metadata(tmp_path):
    arrays = random_trajectories()
    store = TrajectoryStore(tmp_path / "store")
    for i, a in enumerate(arrays):
        store.write(i, a, {**META, "seed": i})
    assert len(store) == 3 and store.indices == [0, 1, 2]
    for a, b in zip(arrays, store.trajectories()):
        assert b.dtype == np.float64 and np.array_equal(a, b)
    assert np.array_equal(store.read(1), arrays[1])
    assert all(np.array_equal(a, b) for a, b in zip(arrays, store))
    shared = store.metadata
    for key, value in META.items():
        assert shared[key] == value
    assert "seed" not in shared and "trajectory" not in shared  # differ between files
    one = store.read_metadata(2)
    assert one["seed"] == 2 and one["trajectory"] == 2
    assert {"itomd_version", "created"} <= set(one)


def test_files_are_plain_hdf5(tmp_path):
    store = TrajectoryStore(tmp_path)
    data = random_trajectories(1)[0]
    store.write(7, data, META)
    with h5py.File(tmp_path / "traj_000007.h5", "r") as f:
        assert list(f.keys()) == ["coordinates"]
        assert np.array_equal(f["coordinates"][10:20], data[10:20])   # partial read
        assert f.attrs["frame_interval"] == 5e-3 and f.attrs["system"] == "prinz"


def test_save_trajectories_and_manifest(tmp_path):
    arrays = random_trajectories(4, dim=2)
    store = save_trajectories(tmp_path / "rollout", arrays, {"frame_interval": 0.1, "source": "model"})
    assert [a.shape for a in store.trajectories()] == [a.shape for a in arrays]
    assert store.metadata["dim"] == 2 and store.metadata["source"] == "model"
    assert store.manifest["n_trajectories"] == 4
    with pytest.raises(InvalidInputError, match="already holds trajectories"):
        save_trajectories(tmp_path / "rollout", arrays[:1])
    store = save_trajectories(tmp_path / "rollout", arrays[:1], {"frame_interval": 0.1}, overwrite=True)
    assert len(store) == 1


def test_stray_temporary_files_are_ignored_and_cleaned(tmp_path):
    store = TrajectoryStore(tmp_path)
    arrays = random_trajectories(2)
    for i, a in enumerate(arrays):
        store.write(i, a, META)
    stray = tmp_path / (trajectory_filename(1) + ".tmp-12345-deadbeef")
    stray.write_bytes(b"\x89HDF half a file")
    other = tmp_path / (trajectory_filename(5) + ".tmp-12345-cafecafe")
    other.write_bytes(b"")
    assert len(store) == 2
    assert all(np.array_equal(a, b) for a, b in zip(arrays, store.trajectories()))
    store.write(1, arrays[1], META)           # the next write of that file removes its leftovers
    assert not stray.exists() and other.exists()
    assert store.remove_temporary_files() == 1 and not other.exists()


def test_failed_write_keeps_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    store = TrajectoryStore(tmp_path)
    old = random_trajectories(1)[0]
    store.write(0, old, META)

    def crash(*args, **kwargs):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.write(0, old + 1.0, META)
    monkeypatch.undo()
    assert np.array_equal(store.read(0), old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["traj_000000.h5"]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "no-coordinates"])
def test_corrupt_file_is_a_one_line_data_file_error(tmp_path, damage):
    store = TrajectoryStore(tmp_path)
    for i, a in enumerate(random_trajectories(3)):
        store.write(i, a, META)
    victim = tmp_path / "traj_000001.h5"
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:300])
    elif damage == "garbage":
        victim.write_bytes(os.urandom(4096))
    elif damage == "empty":
        victim.write_bytes(b"")
    else:
        with h5py.File(victim, "w") as f:
            f.create_dataset("positions", data=np.zeros((5, 1)))
    with pytest.raises(DataFileError) as exc_info:
        store.trajectories()
    assert "traj_000001.h5" in one_line(exc_info)
    with pytest.raises(DataFileError, match="traj_000001.h5"):
        store.read(1)
    assert np.array_equal(store.read(0), store.read(0))  # other files still readable


def test_nan_coordinates_are_invalid_input(tmp_path):
    store = TrajectoryStore(tmp_path)
    for i, a in enumerate(random_trajectories(2)):
        store.write(i, a, META)
    with h5py.File(tmp_path / "traj_000001.h5", "r+") as f:
        f["coordinates"][4, 0] = np.nan
    with pytest.raises(InvalidInputError) as exc_info:
        store.trajectories()
    assert "traj_000001.h5" in one_line(exc_info) and "NaN" in str(exc_info.value)
    bad = np.zeros((5, 1))
    bad[2] = np.inf
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        store.write(3, bad, META)
    assert 3 not in store


def test_missing_or_empty_store(tmp_path):
    missing = TrajectoryStore(tmp_path / "nowhere")
    for action in (missing.trajectories, lambda: len(missing), lambda: missing.metadata, lambda: missing.read(0)):
        with pytest.raises(DataFileError, match="no trajectory store at"):
            action()
    empty = TrajectoryStore(tmp_path)
    assert len(empty) == 0 and empty.metadata == {} and empty.manifest is None
    with pytest.raises(DataFileError, match="no trajectories"):
        empty.trajectories()
    (tmp_path / "traj_000000.h5").write_bytes(b"")
    with pytest.raises(DataFileError, match="no trajectory file traj_000003.h5"):
        empty.read(3)


def test_inconsistent_metadata_is_refused(tmp_path):
    store = TrajectoryStore(tmp_path)
    a, b = random_trajectories(2)
    store.write(0, a, META)
    store.write(1, b, {**META, "frame_interval": 1e-2})
    with pytest.raises(DataFileError, match="different frame_interval") as exc_info:
        store.metadata
    one_line(exc_info)
    with pytest.raises(DataFileError, match="different frame_interval"):
        store.trajectories()
    store.write(1, np.zeros((5, 2)), {})
    with pytest.raises(DataFileError, match="mixes"):
        store.trajectories()


def test_corrupt_manifest(tmp_path):
    store = TrajectoryStore(tmp_path)
    store.write_manifest({"campaign": {"n_frames": 3}})
    assert store.manifest == {"campaign": {"n_frames": 3}}
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataFileError, match="manifest"):
        store.manifest


@pytest.mark.parametrize("coordinates, metadata, fragment", [
    (np.zeros(5), {}, "shape [n_frames, dim]"),
    (np.zeros((0, 1)), {}, "shape [n_frames, dim]"),
    (np.zeros((5, 2)), {"dim": 1}, "dim 1"),
    (np.zeros((5, 1)), {"x": object()}, "cannot be stored"),
])
def test_write_validates(tmp_path, coordinates, metadata, fragment):
    with pytest.raises(InvalidInputError, match=fragment.replace("[", r"\[")):
        TrajectoryStore(tmp_path).write(0, coordinates, metadata)
    with pytest.raises(InvalidInputError, match="non-negative"):
        TrajectoryStore(tmp_path).write(-1, np.zeros((5, 1)))


def test_constructor_does_no_io(tmp_path):
    store = TrajectoryStore(tmp_path / "later")
    assert not (tmp_path / "later").exists()
    assert repr(store).startswith("TrajectoryStore(")
