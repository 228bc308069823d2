"""The resumable chunked writer: resume after crashes bit for bit, claims, locks, executors, store files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from itomd.data.jobs import ChunkedJob, chunk_items, chunk_seed, in_process, write_chunk
from itomd._files import exclusive_lock
from itomd.data.store import TrajectoryStore
from itomd.errors import DataFileError, InvalidInputError

N_ITEMS, CHUNK, N_FRAMES, DIM = 7, 3, 5, 2


def random_walks(task: tuple[int, range, Path, int]) -> int:
    """A chunk of random walks from the chunk's seed (module level: picklable)."""
    chunk, items, store_dir, seed = task
    rng = np.random.default_rng(chunk_seed(seed, chunk, 0))
    walks = np.cumsum(rng.normal(size=(len(items), N_FRAMES, DIM)), axis=1)
    return write_chunk(store_dir, items.start, walks, {"chunk": chunk, "seed": seed, "frame_interval": 0.1})


def make_job(seed: int = 3, run_task=random_walks, chunk_complete=None, system=None, section="campaign") -> ChunkedJob:
    def make_task(chunk: int, store_dir: Path):
        return chunk, chunk_items(chunk, CHUNK, N_ITEMS), store_dir, seed

    return ChunkedJob(section=section, parameters={"seed": seed, "n": N_ITEMS}, n_items=N_ITEMS, chunk_size=CHUNK,
                      make_task=make_task, run_task=run_task, chunk_complete=chunk_complete, system=system)


def identities(store: TrajectoryStore) -> dict[int, tuple[int, int]]:
    return {i: (os.stat(store.file_path(i)).st_ino, os.stat(store.file_path(i)).st_mtime_ns) for i in store.indices}


def same(a: TrajectoryStore, b: TrajectoryStore) -> bool:
    ta, tb = a.trajectories(), b.trajectories()
    return len(ta) == len(tb) and all(np.array_equal(x, y) for x, y in zip(ta, tb))


@pytest.fixture
def uninterrupted(tmp_path) -> TrajectoryStore:
    return make_job().run(tmp_path / "uninterrupted", progress=False)


def test_layout_manifest_and_chunks(uninterrupted):
    assert uninterrupted.indices == list(range(N_ITEMS))
    assert [uninterrupted.read_metadata(i)["chunk"] for i in range(N_ITEMS)] == [0, 0, 0, 1, 1, 1, 2]
    assert uninterrupted.manifest["campaign"] == {"seed": 3, "n": N_ITEMS}
    assert all(t.shape == (N_FRAMES, DIM) for t in uninterrupted.trajectories())
    assert make_job().n_chunks == 3 and list(make_job().chunk_items(2)) == [6]


def test_resume_after_a_crash_in_a_chunk_equals_the_uninterrupted_run(uninterrupted, tmp_path):
    calls = []

    def crash_in_chunk_1(task):
        calls.append(task[0])
        if task[0] == 1:
            raise KeyboardInterrupt  # the process dies while chunk 1 runs
        return random_walks(task)

    out = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        make_job(run_task=crash_in_chunk_1).run(out, progress=False)
    assert calls == [0, 1] and TrajectoryStore(out).indices == [0, 1, 2]
    (out / "traj_000004.h5.tmp-4242-0badf00d").write_bytes(b"half a file")  # what a kill -9 mid-write leaves
    kept = identities(TrajectoryStore(out))
    resumed = make_job().run(out, progress=False)
    assert same(uninterrupted, resumed)
    assert {i: identities(resumed)[i] for i in kept} == kept  # chunk 0 was not recomputed
    assert not list(out.glob("*.tmp-*"))


def test_a_lost_or_damaged_chunk_is_recomputed_alone(uninterrupted, tmp_path):
    import shutil

    out = tmp_path / "damaged"
    shutil.copytree(uninterrupted.path, out)
    store = TrajectoryStore(out)
    store.file_path(4).unlink()  # chunk 1
    store.file_path(6).write_bytes(store.file_path(6).read_bytes()[:100])  # chunk 2, truncated

    def valid(store: TrajectoryStore, chunk: int) -> bool:
        try:
            return all(store.read(i).shape == (N_FRAMES, DIM) for i in chunk_items(chunk, CHUNK, N_ITEMS))
        except DataFileError:
            return False

    job = make_job(chunk_complete=valid)
    assert job.completed_chunks(store) == [0]
    assert make_job().completed_chunks(store) == [0, 2]  # without a check, present files count as done
    before = identities(store)
    job.run(out, progress=False)
    after = identities(store)
    assert same(uninterrupted, store)
    assert sorted(i for i in after if before.get(i) != after[i]) == [3, 4, 5, 6]


def test_rerunning_a_complete_job_writes_nothing(uninterrupted):
    before = identities(uninterrupted)
    make_job().run(uninterrupted.path, progress=False)
    assert identities(uninterrupted) == before


def test_executor_order_does_not_change_the_data(uninterrupted, tmp_path):
    seen = []

    def backwards(function, tasks, n_tasks):
        tasks = list(tasks)
        seen.append(n_tasks)
        for task in reversed(tasks):
            yield function(task)

    assert same(uninterrupted, make_job().run(tmp_path / "backwards", executor=backwards, progress=False))
    assert seen == [3]
    assert list(in_process(len, ["ab", "c"], 2)) == [2, 1]


def test_other_parameters_or_another_kind_of_writer_are_refused(uninterrupted):
    with pytest.raises(InvalidInputError, match="different parameters: seed 3 != 4; use a new --out") as info:
        make_job(seed=4).run(uninterrupted.path, progress=False)
    assert "\n" not in str(info.value)
    with pytest.raises(InvalidInputError, match="not made by a rollout"):
        make_job(section="rollout").run(uninterrupted.path, progress=False)


def test_a_second_writer_is_refused(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    with exclusive_lock(tmp_path):
        with pytest.raises(InvalidInputError, match="another itomd process is writing"):
            make_job().run(tmp_path, progress=False)


def test_an_uncreatable_directory_is_a_one_line_data_file_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(DataFileError, match="cannot create the output directory") as info:
        make_job().run(tmp_path / "file" / "out", progress=False)
    assert "\n" not in str(info.value)


def test_the_system_writes_its_store_files_inside_the_lock(tmp_path):
    class Recorder:
        def __init__(self):
            self.calls = []

        def write_store_files(self, directory):
            self.calls.append(Path(directory))
            assert (Path(directory) / ".lock").exists() and (Path(directory) / "manifest.json").exists()
            return []

    system = Recorder()
    store = make_job(system=system).run(tmp_path / "out", progress=False)
    assert system.calls == [store.path] and store.path.is_absolute()


def test_chunk_seeds_and_items():
    assert chunk_seed(5, 2, 0) == int(np.random.SeedSequence(5, spawn_key=(2, 0)).generate_state(1, np.uint64)[0])
    assert chunk_seed(5, 2, 0) != chunk_seed(5, 2, 1) != chunk_seed(5, 2)
    assert list(chunk_items(0, 4, 10)) == [0, 1, 2, 3] and list(chunk_items(2, 4, 10)) == [8, 9]
    with pytest.raises(InvalidInputError, match=r"chunk must be in \[0, 3\)"):
        chunk_items(3, 4, 10)
    with pytest.raises(InvalidInputError, match="chunk_size must be a positive integer"):
        ChunkedJob("campaign", {}, n_items=3, chunk_size=0, make_task=None, run_task=None)
