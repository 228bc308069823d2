r"""Resumable simulation campaigns: many trajectories, simulated in chunks, fanned out on dask.

A campaign simulates ``n_trajectories`` trajectories of ``n_frames`` frames each. Trajectories are
grouped into *chunks* of ``chunk_size`` walkers that one task simulates together with the
campaign's :class:`~itomd.simulate.engines.Engine`; chunk ``c`` holds trajectories
``c*chunk_size ...`` up to the next chunk. Each task writes its trajectories to the
:class:`~itomd.data.store.TrajectoryStore` with atomic write-then-rename. A campaign is its
parameters, its seeds and its engine; the resumable writing is :class:`~itomd.data.jobs.ChunkedJob`
(shared with rollouts), the start points come from :mod:`itomd.data.starts`.

Determinism
-----------
Every random number of chunk ``c`` comes from ``numpy.random.SeedSequence(seed, spawn_key=(c, k))``:
``k = 0`` gives the integer seed of the chunk's engine run (a :class:`torch.Generator` for the
integrator noise and BAOAB velocities; OpenMM's per-walker seeds), ``k = 1`` draws the equilibrium
start points. The data are therefore a function of the campaign parameters
alone, identical whatever the number of workers, the order in which chunks run, or how often the
campaign was interrupted. ``chunk_size`` is a campaign parameter (it changes which walkers share a
generator), the number of workers is not.

Resuming
--------
The store's ``manifest.json`` records the campaign parameters (and the resolved system). Running
a campaign into a directory that already has a manifest with the same parameters skips every chunk
whose files all exist and read back valid and recomputes the rest; after ``kill -9`` and a re-run
the store equals that of an uninterrupted run bit for bit. Different parameters are refused with an
:class:`~itomd.errors.InvalidInputError`. Only one campaign may write to a directory at a time
(an advisory lock enforces it).

Systems
-------
Defaults come from the system (no campaign code asks whether it is a molecule): the integrator is
``system.default_integrator``, the chunk size ``system.default_chunk_size``, the start
``system.default_start()`` (``None``: equilibrium samples), and the store gets
``system.write_store_files``. A molecule (``SystemSpec("ala2")``, a
:class:`~itomd.systems.openmm.MolecularSystem`) thus runs OpenMM's Langevin integrator
(``"langevin-middle"``) on ``platform`` (default ``"Reference"``, part of the parameters since
other platforms give other, equally valid trajectories), from the shipped structure, in chunks of
4 walkers (each walker is its own OpenMM context, so small chunks balance the workers), and its
store holds ``topology.pdb``.

Execution
---------
By default chunks run on a dask ``LocalCluster`` of worker processes (one thread each, dashboard
off). Pass ``scheduler="tcp://host:8786"`` to use an existing cluster: its workers must be able to
import itomd, read a user's ``file.py`` system and write to the output directory (a shared file
system). ``n_workers=0`` runs everything in the calling process without dask, with the same
results. Scripts that start a ``LocalCluster`` need the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np

from itomd._files import json_normalised
from itomd.data.jobs import ChunkedJob, chunk_items, chunk_seed, write_chunk
from itomd.data.starts import MAX_EXACT_DIM, equilibrium_samples, fixed_points
from itomd.data.store import TrajectoryStore
from itomd.errors import DataFileError, InvalidInputError
from itomd.simulate.engines import Engine, make_engine
from itomd.systems.registry import SystemSpec
from itomd.systems.system import System
from itomd.validation import require_int

logger = logging.getLogger(__name__)

#: Walkers per chunk of a toy system unless given (``System.default_chunk_size``).
DEFAULT_CHUNK_SIZE = System.default_chunk_size
#: Start-point modes.
START_MODES = ("equilibrium", "fixed")
#: System metadata that every trajectory file of a campaign must repeat for a resume to keep it.
_SYSTEM_KEYS = ("system", "dim", "kT", "friction", "timestep", "frame_interval")

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, eq=False)
class Campaign:
    """The parameters of a simulation campaign; :meth:`run` executes (or resumes) it.

    Parameters
    ----------
    spec : SystemSpec
        Picklable recipe of the system; workers build the system from it.
    n_trajectories : int
        Number of trajectories (positive).
    n_frames : int
        Frames per trajectory including the start point (positive).
    seed : int
        Campaign seed (non-negative); all chunk seeds derive from it.
    integrator : str, optional
        One of the system's integrators (``system.integrators``: ``"overdamped"`` or ``"baoab"`` for
        toy systems, ``"langevin-middle"`` (OpenMM) for molecules). Default:
        ``system.default_integrator``.
    start : {"equilibrium", "fixed"} or array_like, optional
        ``"equilibrium"``: independent samples of the exact Boltzmann density (systems of
        dimension ≤ 2). ``"fixed"``: the points in ``x0``. An array is shorthand for ``"fixed"``
        with ``x0`` equal to it. Default: ``"equilibrium"``, or ``"fixed"`` from
        ``system.default_start()`` where the system has one (a molecule's shipped structure), which
        is then also the default ``x0``.
    x0 : array_like, shape [dim] or [n_trajectories, dim], optional
        Start point of every trajectory, or one per trajectory (``start="fixed"`` only).
    chunk_size : int, optional
        Walkers simulated together in one task. Part of the campaign's identity: a different chunk
        size gives different (equally valid) data. Default ``system.default_chunk_size`` (64; 4 for
        molecules).
    platform : {"Reference", "CPU", "CUDA", "OpenCL"}, optional
        OpenMM platform (OpenMM engines only; default ``"Reference"``). Recorded in the parameters.
    """

    spec: SystemSpec
    n_trajectories: int
    n_frames: int
    seed: int
    integrator: str | None = None
    start: str | np.ndarray | None = None
    x0: np.ndarray | None = None
    chunk_size: int | None = None
    platform: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.spec, SystemSpec):
            raise InvalidInputError(f"spec must be a SystemSpec, got {type(self.spec).__name__}")
        system = self.system
        if self.chunk_size is None:
            object.__setattr__(self, "chunk_size", system.default_chunk_size)
        default_start = system.default_start()
        if self.start is None:
            object.__setattr__(self, "start", "equilibrium" if default_start is None else "fixed")
        if default_start is not None and isinstance(self.start, str) and self.start == "fixed" and self.x0 is None:
            object.__setattr__(self, "x0", default_start)
        for name, minimum in (("n_trajectories", 1), ("n_frames", 1), ("seed", 0), ("chunk_size", 1)):
            object.__setattr__(self, name, require_int(name, getattr(self, name), minimum))
        engine = make_engine(system, self.integrator, self.platform)
        object.__setattr__(self, "integrator", engine.integrator)
        object.__setattr__(self, "platform", engine.parameters().get("platform"))
        self.__dict__["engine"] = engine
        start, x0 = self.start, self.x0
        if not isinstance(start, str):
            if x0 is not None:
                raise InvalidInputError("give the start points either as start=array or as x0, not both")
            start, x0 = "fixed", start
        if start not in START_MODES:
            raise InvalidInputError(f"start must be 'equilibrium', 'fixed' or an array of points, got {start!r}")
        if start == "fixed":
            if x0 is None:
                raise InvalidInputError("start='fixed' needs start points x0 of shape [dim] or [n_trajectories, dim]")
            x0 = np.array(x0, dtype=np.float64)
            if x0.ndim not in (1, 2) or x0.shape[-1] < 1 or (x0.ndim == 2 and x0.shape[0] != self.n_trajectories):
                raise InvalidInputError(
                    f"x0 must have shape [dim] or [n_trajectories={self.n_trajectories}, dim], got {x0.shape}")
            if not np.all(np.isfinite(x0)):
                raise InvalidInputError("x0 contains NaN or inf")
            x0.setflags(write=False)
        elif x0 is not None:
            raise InvalidInputError("x0 is given but start='equilibrium'; pass start='fixed' to use x0")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "x0", x0)

    # -- structure ------------------------------------------------------------------------------
    @property
    def n_chunks(self) -> int:
        """Number of chunks (the last may hold fewer than ``chunk_size`` walkers)."""
        return -(-self.n_trajectories // self.chunk_size)

    def chunk_trajectories(self, chunk: int) -> range:
        """Indices of the trajectories in ``chunk``."""
        return chunk_items(chunk, self.chunk_size, self.n_trajectories)

    def chunk_seed_sequences(self, chunk: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
        """Seed sequences of ``chunk``: (integrator noise, start points)."""
        return (np.random.SeedSequence(self.seed, spawn_key=(chunk, 0)),
                np.random.SeedSequence(self.seed, spawn_key=(chunk, 1)))

    def chunk_torch_seed(self, chunk: int) -> int:
        """Seed of ``chunk``'s engine run (for torch engines, of the :class:`torch.Generator`)."""
        return chunk_seed(self.seed, chunk, 0)

    @functools.cached_property
    def system(self) -> System:
        """The system built from :attr:`spec` (built on first use)."""
        return self.spec.build()

    @functools.cached_property
    def engine(self) -> Engine:
        """The engine that simulates the campaign (``make_engine(system, integrator, platform)``)."""
        return make_engine(self.system, self.integrator, self.platform)

    def start_points(self, chunk: int) -> np.ndarray:
        """Start points of the trajectories in ``chunk``.

        Returns
        -------
        np.ndarray, shape [len(chunk_trajectories(chunk)), dim], float64
        """
        indices = self.chunk_trajectories(chunk)
        if self.start == "fixed":
            return fixed_points(self.x0, indices)
        return equilibrium_samples(self.system, len(indices), self.chunk_seed_sequences(chunk)[1])

    def parameters(self) -> dict[str, Any]:
        """Everything that determines the data, JSON-ready; recorded in the store's manifest."""
        engine = dict(self.engine.parameters())
        return json_normalised({
            "system_spec": self.spec.to_dict(),
            "system": self.system.metadata(),
            "n_trajectories": self.n_trajectories,
            "n_frames": self.n_frames,
            "seed": self.seed,
            "integrator": engine.pop("integrator"),
            "start": self.start,
            "x0": None if self.x0 is None else self.x0.tolist(),
            "chunk_size": self.chunk_size,
            **engine,  # the engine's other parameters (OpenMM: platform); none for torch engines
        })

    def trajectory_metadata(self) -> dict[str, Any]:
        """Metadata stored with every trajectory (the store adds index, version and time)."""
        engine = dict(self.engine.parameters())
        return {
            **self.system.metadata(),
            "spec": json.dumps(self.spec.to_dict()),
            "integrator": engine.pop("integrator"),
            "n_frames": self.n_frames,
            "seed": self.seed,
            "chunk_size": self.chunk_size,
            "n_trajectories": self.n_trajectories,
            "start": self.start,
            **engine,
        }

    # -- resuming -------------------------------------------------------------------------------
    def completed_chunks(self, store: TrajectoryStore) -> list[int]:
        """Chunks whose trajectory files all exist in ``store`` and read back valid."""
        return self._job().completed_chunks(store)

    def _chunk_valid(self, store: TrajectoryStore, chunk: int) -> bool:
        expected_shape = (self.n_frames, self.system.dim)
        system = self.system.metadata()  # a file of another system's store copied in is recomputed
        for index in self.chunk_trajectories(chunk):
            try:
                coordinates = store.read(index)
                metadata = store.read_metadata(index)
            except (DataFileError, InvalidInputError) as exc:
                logger.info("recomputing chunk %d: %s", chunk, exc)
                return False
            if (coordinates.shape != expected_shape or metadata.get("chunk") != chunk
                    or metadata.get("seed") != self.seed or metadata.get("trajectory") != index
                    or any(metadata.get(key) != system[key] for key in _SYSTEM_KEYS if key in system)):
                logger.info("recomputing chunk %d: %s does not match the campaign", chunk, store.file_path(index).name)
                return False
        return True

    # -- running --------------------------------------------------------------------------------
    def _job(self) -> ChunkedJob["_ChunkTask"]:
        spec = self.spec.with_absolute_paths()  # workers in other directories find the files it names
        metadata = self.trajectory_metadata()
        engine_parameters = self.engine.parameters()

        def make_task(chunk: int, store_dir: Path) -> _ChunkTask:
            return _ChunkTask(spec=spec.with_structure(store_dir), out_dir=str(store_dir), chunk=chunk,
                              first_index=self.chunk_trajectories(chunk).start,
                              start_points=self.start_points(chunk), n_frames=self.n_frames,
                              engine=engine_parameters, seed=self.chunk_torch_seed(chunk), metadata=metadata)

        return ChunkedJob(section="campaign", parameters=self.parameters(), n_items=self.n_trajectories,
                          chunk_size=self.chunk_size, make_task=make_task, run_task=_run_chunk,
                          chunk_complete=self._chunk_valid, system=self.system,
                          description=f"simulate {self.system.name}", unit="traj")

    def run(
        self,
        out_dir: str | os.PathLike,
        scheduler: str | None = None,
        n_workers: int | None = None,
        progress: bool = True,
    ) -> TrajectoryStore:
        """Simulate the campaign into ``out_dir``, skipping chunks already there.

        Parameters
        ----------
        out_dir : str or os.PathLike
            Trajectory store directory (created if needed).
        scheduler : str, optional
            Address of a running dask scheduler; by default a ``LocalCluster`` is started.
        n_workers : int, optional
            ``LocalCluster`` worker processes (default: CPU count, at most the number of chunks
            left); ``0`` runs in this process without dask.
        progress : bool
            Show a progress bar over trajectories.

        Returns
        -------
        TrajectoryStore
            The complete store.

        Raises
        ------
        InvalidInputError
            For a directory made with different parameters, impossible start points, or another
            campaign writing to the same directory.
        """
        if n_workers is not None:
            require_int("n_workers", n_workers, 0)
        if scheduler is not None and n_workers is not None:
            raise InvalidInputError("give either a scheduler address or a number of local workers, not both")
        system = self.system
        if self.start == "equilibrium" and system.dim > MAX_EXACT_DIM:
            raise InvalidInputError(
                f"equilibrium start points need an exact reference (dimension ≤ {MAX_EXACT_DIM}); {system.name} has "
                f"dimension {system.dim}: give start points with x0 (--x0)")
        if self.start == "fixed" and self.x0.shape[-1] != system.dim:
            raise InvalidInputError(f"x0 has {self.x0.shape[-1]} coordinates per point but {system.name} has dimension {system.dim}")
        self.engine.check()  # e.g. a missing OpenMM platform: one line before any worker starts
        executor = None if n_workers == 0 else _DaskExecutor(scheduler, n_workers)
        return self._job().run(out_dir, executor=executor, progress=progress)


def run_campaign(
    spec: SystemSpec,
    out_dir: str | os.PathLike,
    n_trajectories: int,
    n_frames: int,
    seed: int,
    integrator: str | None = None,
    start: str | np.ndarray | None = None,
    x0: np.ndarray | Sequence[float] | None = None,
    chunk_size: int | None = None,
    platform: str | None = None,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = True,
) -> TrajectoryStore:
    """Run (or resume) a campaign of many trajectories and return the store.

    ``run_campaign(spec, out, ...)`` is ``Campaign(spec, ...).run(out, ...)``; see :class:`Campaign`
    for the parameters that define the data and :meth:`Campaign.run` for the execution options.

    Returns
    -------
    TrajectoryStore
        ``n_trajectories`` trajectories of shape [n_frames, dim].

    Examples
    --------
    >>> from itomd.systems import SystemSpec
    >>> store = run_campaign(SystemSpec("prinz"), "runs/prinz", n_trajectories=100,
    ...                      n_frames=2000, seed=1)                  # doctest: +SKIP
    """
    campaign = Campaign(spec, n_trajectories=n_trajectories, n_frames=n_frames, seed=seed,
                        integrator=integrator, start=start, x0=x0, chunk_size=chunk_size, platform=platform)
    return campaign.run(out_dir, scheduler=scheduler, n_workers=n_workers, progress=progress)


# -- the task a worker runs -----------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class _ChunkTask:
    """Everything a worker needs for one chunk (picklable, small): the system's spec and the engine's
    parameters, from which the worker builds the engine."""

    spec: SystemSpec
    out_dir: str
    chunk: int
    first_index: int
    start_points: np.ndarray  # [walkers, dim]
    n_frames: int
    engine: dict  # Engine.parameters(): integrator (and platform)
    seed: int
    metadata: dict


@functools.lru_cache(maxsize=8)
def _build_system(spec: SystemSpec) -> System:
    return spec.build()


def _run_chunk(task: _ChunkTask) -> int:
    """Simulate one chunk and write its trajectories atomically; returns the number written."""
    engine = make_engine(_build_system(task.spec), **task.engine)
    coordinates = engine.run(task.start_points, task.n_frames, task.seed)
    metadata = {**task.metadata, "chunk": task.chunk, "chunk_torch_seed": task.seed}
    return write_chunk(task.out_dir, task.first_index, coordinates, metadata)


# -- dask -----------------------------------------------------------------------------------------
class _DaskExecutor:
    """Runs tasks on dask: a fresh ``LocalCluster`` (one thread per worker process, no dashboard) or
    the scheduler at ``scheduler``."""

    def __init__(self, scheduler: str | None, n_workers: int | None):
        if scheduler is not None:
            check_scheduler_address(scheduler)
        self.scheduler = scheduler
        self.n_workers = n_workers

    def __call__(self, function: Callable[[T], R], tasks: Iterable[T], n_tasks: int) -> Iterator[R]:
        from dask.distributed import Client, LocalCluster, as_completed

        cluster = None
        if self.scheduler is None:
            workers = min(self.n_workers or os.cpu_count() or 1, n_tasks)
            # no dashboard; the scheduler's small health/metrics HTTP server takes any free local
            # port instead of 8787, so that concurrent clusters do not warn about the port
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                   silence_logs=logging.CRITICAL)
            # CRITICAL: task errors come back as values (_TaskFailure) and a dead worker as an
            # exception here; what workers would still log are teardown records (a heartbeat to a
            # scheduler that is closing after an error) that would print tracebacks before the one line
            client = Client(cluster)
        else:
            try:
                client = Client(self.scheduler, timeout="30s")
            except (OSError, TimeoutError) as exc:
                raise InvalidInputError(f"cannot connect to the dask scheduler at {self.scheduler}: {exc}") from exc
        futures = []
        try:
            futures = [client.submit(_reporting_failures, function, task, pure=False) for task in tasks]
            for future in as_completed(futures):
                result = future.result()
                if isinstance(result, _TaskFailure):
                    result.raise_here()
                yield result
        finally:
            if futures:
                client.cancel(futures)
            client.close()
            if cluster is not None:
                cluster.close()


@dataclass(frozen=True)
class _TaskFailure:
    """An exception a task raised on a worker, returned as its result: dask would log the worker's
    traceback (an ERROR record on the worker's terminal) before the client saw the one-line error."""

    error: BaseException
    worker_traceback: str

    def raise_here(self) -> None:
        """Raise the worker's exception in this process (its traceback as a note, for ``--debug``)."""
        self.error.add_note(f"raised on a dask worker:\n{self.worker_traceback}")
        raise self.error


def _reporting_failures(function: Callable[[T], R], task: T) -> "R | _TaskFailure":
    """``function(task)``, or the exception it raised as a :class:`_TaskFailure`."""
    try:
        return function(task)
    except Exception as exc:  # noqa: BLE001 - every failure travels back to the client as a value
        failure = _TaskFailure(exc, traceback.format_exc())
        try:
            pickle.dumps(failure)
        except Exception:  # noqa: BLE001 - an exception that cannot travel: its type and message do
            failure = _TaskFailure(RuntimeError(f"{type(exc).__name__}: {exc}"), failure.worker_traceback)
        return failure


#: Seconds :func:`check_scheduler_address` waits for a TCP connection (dask's own attempt then waits 30 s).
SCHEDULER_PROBE_TIMEOUT = 10.0


def check_scheduler_address(address: str, timeout: float = SCHEDULER_PROBE_TIMEOUT) -> None:
    """Refuse, in one line and at once, a scheduler address that cannot work.

    A malformed address, an unknown host, a closed port ("connection refused") or a host that does
    not answer within ``timeout`` seconds raise :class:`~itomd.errors.InvalidInputError` before any
    work starts (dask itself would retry a refused connection for 30 s). Addresses of protocols other
    than ``tcp``/``tls`` are left to dask.
    """
    import socket

    from distributed.comm.addressing import parse_address, parse_host_port

    prefix = f"cannot connect to the dask scheduler at {address!r}"
    try:
        protocol, location = parse_address(address)
        if protocol not in ("tcp", "tls"):
            return
        host, port = parse_host_port(location)
        if not host or not 0 < int(port) < 65536:
            raise ValueError(location)
    except (ValueError, TypeError):
        raise InvalidInputError(f"{prefix}: not a scheduler address (expected tcp://HOST:PORT)") from None
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except ConnectionRefusedError:
        raise InvalidInputError(f"{prefix}: connection refused (is a scheduler running there?)") from None
    except socket.gaierror:
        raise InvalidInputError(f"{prefix}: unknown host {host!r}") from None
    except TimeoutError:
        raise InvalidInputError(f"{prefix}: no answer within {timeout:g} s") from None
    except (OSError, UnicodeError) as exc:
        raise InvalidInputError(f"{prefix}: {getattr(exc, 'strerror', None) or exc}") from None
