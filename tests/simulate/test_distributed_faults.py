"""Distributed faults (issue 13): a dask worker killed with SIGKILL while a campaign's chunks run, and a
scheduler address where no scheduler is.

A killed worker's chunks are recomputed on the others (dask reschedules them; a half-written file is
a temporary file that the chunk's next write removes), and since every random number of a chunk
derives from the campaign seed and the chunk index, the store equals an undisturbed in-process run
bit for bit. A scheduler address that cannot work (nothing listens, malformed, unknown host) is
refused in one line before any work starts: a closed port at once (dask alone retries for 30 s), a
host that does not answer after ``SCHEDULER_PROBE_TIMEOUT`` (10 s); something listening that is not
a dask scheduler is left to dask's 30 s connection timeout.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from itomd.data import TrajectoryStore
from itomd.errors import InvalidInputError
from itomd.simulate.campaign import Campaign, check_scheduler_address
from itomd.systems import SystemSpec
from tests.cli.helpers import assert_one_line_exit

#: 8 chunks of 2 Prinz walkers, 40 frames (2,000 integrator steps) each.
CAMPAIGN = Campaign(SystemSpec("prinz"), n_trajectories=16, n_frames=40, seed=11, chunk_size=2)


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes (each under a nanny, which restarts a killed worker)."""
    from dask.distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, silence_logs=50)
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory) -> list[np.ndarray]:
    return CAMPAIGN.run(tmp_path_factory.mktemp("undisturbed") / "store", n_workers=0, progress=False).trajectories()


def worker_pids(cluster) -> list[int]:
    from dask.distributed import Client

    with Client(cluster) as client:
        return sorted(client.run(os.getpid).values())


def kill_when_first_file_appears(store: Path, pid: int, record: dict, timeout: float = 60.0) -> threading.Thread:
    """A thread that SIGKILLs ``pid`` as soon as the first trajectory file is complete, and records how many
    files were complete then."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = len(TrajectoryStore(store).indices) if store.is_dir() else 0
            if done:
                os.kill(pid, signal.SIGKILL)
                record["complete_at_kill"] = done
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_campaign_survives_a_killed_worker_bit_for_bit(cluster, undisturbed, tmp_path):
    out = tmp_path / "store"
    victim = worker_pids(cluster)[0]
    record: dict = {}
    watcher = kill_when_first_file_appears(out, victim, record)
    store = CAMPAIGN.run(out, scheduler=cluster.scheduler_address, progress=False)
    watcher.join(5)
    # the fault happened, mid-campaign: the worker is gone and most chunks were still to come
    assert 0 < record["complete_at_kill"] < CAMPAIGN.n_trajectories
    time.sleep(0.1)
    assert not pid_alive(victim)
    # ... and changed nothing
    disturbed = store.trajectories()
    assert len(disturbed) == CAMPAIGN.n_trajectories
    assert all(np.array_equal(a, b) for a, b in zip(disturbed, undisturbed))
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name]


def test_the_comparison_sees_a_changed_chunk(undisturbed, tmp_path):
    """Negative control: another seed for one chunk (what a worker drawing its own randomness would
    produce after a restart) breaks the bit-for-bit comparison."""
    other = Campaign(SystemSpec("prinz"), n_trajectories=16, n_frames=40, seed=12, chunk_size=2)
    replaced = list(undisturbed)
    replaced[4:6] = list(other.engine.run(CAMPAIGN.start_points(2), CAMPAIGN.n_frames, other.chunk_torch_seed(2)))
    assert not all(np.array_equal(a, b) for a, b in zip(replaced, undisturbed))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_scheduler_at_nothing_is_one_line_at_once(tmp_path, capsys):
    from itomd.cli import main

    address = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.perf_counter()
    code = main(["simulate", "--system", "prinz", "--out", str(tmp_path / "s"), "--n-traj", "2", "--n-frames", "5",
                 "--scheduler", address, "--quiet"])
    elapsed = time.perf_counter() - t0
    assert_one_line_exit(capsys, code, f"cannot connect to the dask scheduler at '{address}': connection refused")
    assert elapsed < 5, f"{elapsed:.1f} s (dask alone retries for 30 s)"
    assert not (tmp_path / "s").exists()  # refused before the store was made


@pytest.mark.parametrize("address, fragment", [
    ("nonsense", "not a scheduler address"),
    ("tcp://", "not a scheduler address"),
    ("tcp://127.0.0.1:99999", "not a scheduler address"),
    ("tcp://no-such-host.invalid:8786", "unknown host"),
])
def test_malformed_scheduler_addresses_are_refused(address, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        check_scheduler_address(address)


def test_a_running_scheduler_passes_the_probe(cluster):
    check_scheduler_address(cluster.scheduler_address)
