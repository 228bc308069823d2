"""Campaigns: identical data whatever the execution (in-process, dask, interrupted), and physics."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from itomd.data import TrajectoryStore
from itomd.errors import DataFileError, InvalidInputError
from itomd._files import exclusive_lock
from itomd.simulate.campaign import Campaign, run_campaign
from itomd.systems import SystemSpec
from itomd.systems.reference import exact_reference

DOUBLE_WELL = SystemSpec("double-well")
PRINZ = SystemSpec("prinz")


def small(out, **overrides):
    """A small double-well campaign (6 chunks, the last one partial)."""
    args = dict(n_trajectories=11, n_frames=20, seed=5, chunk_size=2, n_workers=0, progress=False)
    args.update(overrides)
    spec = args.pop("spec", DOUBLE_WELL)
    return run_campaign(spec, out, **args)


def assert_same_store(a: TrajectoryStore, b: TrajectoryStore) -> None:
    ta, tb = a.trajectories(), b.trajectories()
    assert len(ta) == len(tb)
    assert all(np.array_equal(x, y) for x, y in zip(ta, tb))


def file_identities(store: TrajectoryStore) -> dict[int, tuple[int, int]]:
    return {i: (os.stat(store.file_path(i)).st_ino, os.stat(store.file_path(i)).st_mtime_ns) for i in store.indices}


@pytest.fixture(scope="module")
def scheduler_address():
    """A dask cluster of two worker processes whose working directory is not the test's."""
    from dask.distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, silence_logs=40)
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory) -> TrajectoryStore:
    return small(tmp_path_factory.mktemp("campaign") / "reference")


def test_store_shape_and_metadata(reference_store):
    trajectories = reference_store.trajectories()
    assert len(trajectories) == 11 and all(t.shape == (20, 1) for t in trajectories)
    meta = reference_store.metadata
    assert meta["frame_interval"] == 1e-2 and meta["dim"] == 1 and meta["seed"] == 5
    assert meta["integrator"] == "overdamped" and meta["start"] == "equilibrium"
    assert SystemSpec.from_dict(json.loads(meta["spec"])) == DOUBLE_WELL
    assert reference_store.read_metadata(10)["chunk"] == 5
    assert reference_store.manifest["campaign"]["n_trajectories"] == 11
    # different seeds give different data; every walker in a chunk differs
    assert not np.array_equal(trajectories[0], trajectories[1])


def test_in_process_equals_local_cluster_and_scheduler(reference_store, tmp_path, scheduler_address):
    assert_same_store(reference_store, small(tmp_path / "local", n_workers=2))
    assert_same_store(reference_store, small(tmp_path / "remote", n_workers=None, scheduler=scheduler_address))


def test_user_system_file_loads_in_workers(tmp_path, monkeypatch, scheduler_address):
    (tmp_path / "my_potential.py").write_text(textwrap.dedent("""
        def quartic(x):
            return (x[..., 0] ** 2 - 1.0) ** 2
    """))
    monkeypatch.chdir(tmp_path)  # a relative spec; the workers run elsewhere
    spec = SystemSpec("my_potential.py:quartic", dim=1, box=((-2.0, 2.0),), timestep=1e-3, frame_interval=1e-2)
    in_process = small("inproc", spec=spec, n_trajectories=4)
    on_cluster = small("cluster", spec=spec, n_trajectories=4, n_workers=None, scheduler=scheduler_address)
    assert_same_store(in_process, on_cluster)


def test_rerun_skips_everything_and_changes_nothing(reference_store):
    before = file_identities(reference_store)
    small(reference_store.path)
    assert file_identities(reference_store) == before


def test_damaged_chunk_is_recomputed_alone(reference_store, tmp_path):
    import shutil

    out = tmp_path / "damaged"
    shutil.copytree(reference_store.path, out)
    store = TrajectoryStore(out)
    campaign = Campaign(DOUBLE_WELL, n_trajectories=11, n_frames=20, seed=5, chunk_size=2)
    (out / "traj_000003.h5").write_bytes((out / "traj_000003.h5").read_bytes()[:200])   # chunk 1
    (out / "traj_000006.h5").unlink()                                                    # chunk 3
    (out / "traj_000004.h5.tmp-999-0badf00d").write_bytes(b"half")
    assert campaign.completed_chunks(store) == [0, 2, 4, 5]
    before = file_identities(store)
    small(out)
    after = file_identities(store)
    assert_same_store(reference_store, store)
    assert not list(out.glob("*.tmp-*"))
    rewritten = sorted(i for i in after if before.get(i) != after[i])
    assert rewritten == [2, 3, 6, 7]


def test_kill_minus_nine_then_resume_is_bit_identical(tmp_path):
    params = dict(n_trajectories=80, n_frames=120, seed=11, chunk_size=2)
    out = tmp_path / "killed"
    script = textwrap.dedent(f"""
        from itomd.simulate.campaign import run_campaign
        from itomd.systems import SystemSpec
        run_campaign(SystemSpec("double-well"), {str(out)!r}, n_workers=0, progress=False, **{params!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("traj_*.h5"))) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.15)  # land somewhere in the middle of a later chunk
        assert proc.poll() is None, f"campaign finished or failed before the kill: {proc.stderr.read()!r}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    store = TrajectoryStore(out)
    campaign = Campaign(DOUBLE_WELL, **params)
    done = campaign.completed_chunks(store)
    assert 2 <= len(done) < campaign.n_chunks
    kept = {i: file_identities(store)[i] for c in done for i in campaign.chunk_trajectories(c)}

    resumed = run_campaign(DOUBLE_WELL, out, n_workers=0, progress=False, **params)
    uninterrupted = run_campaign(DOUBLE_WELL, tmp_path / "uninterrupted", n_workers=0, progress=False, **params)
    assert_same_store(uninterrupted, resumed)
    assert len(resumed) == params["n_trajectories"]
    assert {i: file_identities(resumed)[i] for i in kept} == kept   # finished chunks were skipped
    assert not list(out.glob("*.tmp-*"))


def test_different_parameters_are_refused(reference_store):
    with pytest.raises(InvalidInputError, match="different parameters: n_frames 20 != 30; use a new --out") as exc_info:
        small(reference_store.path, n_frames=30)
    assert "\n" not in str(exc_info.value)
    with pytest.raises(InvalidInputError, match="seed 5 != 6"):
        small(reference_store.path, seed=6)
    with pytest.raises(InvalidInputError, match="system.kT 1.0 != 2.0"):
        small(reference_store.path, spec=SystemSpec("double-well", kT=2.0))


def test_directory_with_foreign_trajectories_is_refused(tmp_path):
    TrajectoryStore(tmp_path).write(0, np.zeros((3, 1)), {})
    with pytest.raises(InvalidInputError, match="no campaign manifest"):
        small(tmp_path)


def test_concurrent_campaign_is_refused(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    with exclusive_lock(tmp_path):
        with pytest.raises(InvalidInputError, match="another itomd process"):
            small(tmp_path)


def test_equilibrium_start_and_frames_match_exact_reference():
    # Started from the Boltzmann density, every frame is Boltzmann distributed: <U> matches the
    # exact value at the first and the last frame (independent walkers; 5 standard errors).
    campaign = Campaign(PRINZ, n_trajectories=512, n_frames=12, seed=3, chunk_size=128)
    system = campaign.system
    reference = exact_reference(system)
    energy = reference.energy
    mean_u = reference.expectation(energy)
    sd_u = np.sqrt(reference.expectation((energy - mean_u) ** 2))
    starts = np.concatenate([campaign.start_points(c) for c in range(campaign.n_chunks)])
    assert starts.shape == (512, 1)
    tolerance = 5 * sd_u / np.sqrt(512)
    u0 = system.potential.energy(torch.as_tensor(starts)).mean().item()
    assert u0 == pytest.approx(mean_u, abs=tolerance)
    # start points do not depend on which chunks are asked for, or in which order
    assert np.array_equal(campaign.start_points(2), starts[256:384])


def test_equilibrium_campaign_stays_in_equilibrium(tmp_path):
    store = run_campaign(PRINZ, tmp_path, n_trajectories=256, n_frames=12, seed=3, chunk_size=128,
                         n_workers=0, progress=False)
    system = PRINZ.build()
    reference = exact_reference(system)
    mean_u = reference.expectation(reference.energy)
    sd_u = np.sqrt(reference.expectation((reference.energy - mean_u) ** 2))
    last = torch.as_tensor(np.stack([t[-1] for t in store.trajectories()]))
    assert system.potential.energy(last).mean().item() == pytest.approx(mean_u, abs=5 * sd_u / np.sqrt(256))


def test_fixed_start_points(tmp_path):
    one = small(tmp_path / "one", start="fixed", x0=[0.25])
    assert all(t[0, 0] == 0.25 for t in one.trajectories())
    assert one.metadata["start"] == "fixed"
    per_walker = np.linspace(-1, 1, 11)[:, None]
    many = small(tmp_path / "many", start=per_walker, integrator="baoab")
    assert np.array_equal(np.stack([t[0] for t in many.trajectories()]), per_walker)
    assert many.metadata["integrator"] == "baoab"


@pytest.mark.parametrize("overrides, fragment", [
    (dict(n_trajectories=0), "n_trajectories must be a positive integer"),
    (dict(n_frames=2.5), "n_frames must be a positive integer"),
    (dict(seed=-1), "seed must be a non-negative integer"),
    (dict(chunk_size=0), "chunk_size must be a positive integer"),
    (dict(integrator="verlet"), "unknown integrator"),
    (dict(start="random"), "start must be"),
    (dict(start="fixed"), "needs start points"),
    (dict(x0=[0.0]), "start='fixed'"),
    (dict(start="fixed", x0=np.zeros((3, 1))), "x0 must have shape"),
    (dict(start="fixed", x0=[np.nan]), "NaN"),
    (dict(start="fixed", x0=[0.0, 1.0]), "x0 has 2 coordinates"),
    (dict(spec=SystemSpec("double-well", dim=3)), "dimension ≤ 2"),
    (dict(n_workers=-1), "n_workers"),
    (dict(scheduler="tcp://localhost:1"), "not both"),
])
def test_bad_parameters_are_one_line_errors(tmp_path, overrides, fragment):
    with pytest.raises(InvalidInputError, match=fragment.replace("(", r"\(")) as exc_info:
        small(tmp_path / "out", **overrides)
    assert "\n" not in str(exc_info.value)


def test_unwritable_output_is_a_data_file_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DataFileError, match="cannot create"):
        small(blocker / "out")


def test_seeds_derive_from_campaign_seed_and_chunk():
    a = Campaign(DOUBLE_WELL, n_trajectories=10, n_frames=5, seed=1, chunk_size=2)
    b = Campaign(DOUBLE_WELL, n_trajectories=99, n_frames=7, seed=1, chunk_size=2)
    assert [a.chunk_torch_seed(c) for c in range(5)] == [b.chunk_torch_seed(c) for c in range(5)]
    assert len({a.chunk_torch_seed(c) for c in range(5)}) == 5
    assert a.chunk_torch_seed(0) != Campaign(DOUBLE_WELL, 10, 5, seed=2).chunk_torch_seed(0)
    assert list(a.chunk_trajectories(4)) == [8, 9] and b.n_chunks == 50


def test_campaign_defaults_and_store_files_come_from_the_system(tmp_path):
    (tmp_path / "custom.py").write_text(textwrap.dedent("""
        from pathlib import Path

        import numpy as np

        from itomd.systems import System
        from itomd.systems.toy import HarmonicPotential

        class Custom(System):
            integrators = ("baoab",)
            default_chunk_size = 3

            def default_start(self):
                return np.full(self.dim, 0.5)

            def write_store_files(self, directory, frame=None):
                path = Path(directory) / "custom.txt"
                path.write_text("written by the system")
                return [path]

        SYSTEM = Custom(HarmonicPotential(), kT=1.0, box=((-6.0, 6.0),))
    """))
    spec = SystemSpec(f"{tmp_path / 'custom.py'}:SYSTEM")
    campaign = Campaign(spec, n_trajectories=7, n_frames=4, seed=1)
    assert (campaign.integrator, campaign.chunk_size, campaign.start, campaign.platform) == ("baoab", 3, "fixed", None)
    store = campaign.run(tmp_path / "out", n_workers=0, progress=False)
    assert all(t[0, 0] == 0.5 for t in store.trajectories()) and store.metadata["integrator"] == "baoab"
    assert store.read_metadata(6)["chunk"] == 2 and "platform" not in store.manifest["campaign"]
    assert (store.path / "custom.txt").read_text() == "written by the system"
    with pytest.raises(InvalidInputError, match="does not apply to"):
        Campaign(spec, n_trajectories=7, n_frames=4, seed=1, integrator="overdamped")
