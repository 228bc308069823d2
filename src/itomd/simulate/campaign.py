r"""Resumable simulation campaigns: many trajectories, simulated in chunks, fanned out on dask.

A campaign simulates ``n_trajectories`` trajectories of ``n_frames`` frames each. Trajectories are
grouped into *chunks* of ``chunk_size`` walkers that one task simulates together with
:func:`~itomd.simulate.simulate`; chunk ``c`` holds trajectories ``c*chunk_size ...`` up to the
next chunk. Each task writes its trajectories to the :class:`~itomd.data.store.TrajectoryStore`
with atomic write-then-rename.

Determinism
-----------
Every random number of chunk ``c`` comes from ``numpy.random.SeedSequence(seed, spawn_key=(c, k))``:
``k = 0`` seeds the chunk's :class:`torch.Generator` (integrator noise, BAOAB velocities), ``k = 1``
draws the equilibrium start points. The data are therefore a function of the campaign parameters
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

Molecules
---------
A campaign of a molecule (``SystemSpec("ala2")``, a
:class:`~itomd.systems.openmm.MolecularSystem`) runs OpenMM's Langevin integrator
(``integrator="langevin-middle"``, the default for molecules) through
:func:`~itomd.simulate.molecular.simulate_molecule` on ``platform`` (default ``"Reference"``, part
of the parameters since other platforms give other, equally valid trajectories). Chunk ``c`` passes
the integer drawn from ``SeedSequence(seed, spawn_key=(c, 0))`` as the seed, so molecules are as
independent of the worker count as the toy systems. Default starts: the shipped structure; default
chunk size: :data:`DEFAULT_MOLECULE_CHUNK_SIZE` walkers (each walker is its own OpenMM context, so
small chunks balance the workers). The store gets the molecule's ``topology.pdb``.

Execution
---------
By default chunks run on a dask ``LocalCluster`` of worker processes (one thread each, dashboard
off). Pass ``scheduler="tcp://host:8786"`` to use an existing cluster: its workers must be able to
import itomd, read a user's ``file.py`` system and write to the output directory (a shared file
system). ``n_workers=0`` runs everything in the calling process without dask, with the same
results. Scripts that start a ``LocalCluster`` need the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from itomd.data.store import TrajectoryStore, exclusive_lock
from itomd.errors import DataFileError, InvalidInputError
from itomd.simulate.integrators import INTEGRATORS, simulate
from itomd.simulate.molecular import DEFAULT_PLATFORM, MOLECULAR_INTEGRATOR, PLATFORMS
from itomd.systems.registry import SystemSpec
from itomd.systems.system import System

logger = logging.getLogger(__name__)

#: Walkers per chunk unless given.
DEFAULT_CHUNK_SIZE = 64
#: Walkers per chunk of a molecule unless given (one OpenMM context per walker, run in turn).
DEFAULT_MOLECULE_CHUNK_SIZE = 4
#: Start-point modes.
START_MODES = ("equilibrium", "fixed")


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
    integrator : {"overdamped", "baoab", "langevin-middle"}, optional
        Integrator passed to :func:`~itomd.simulate.simulate`, or ``"langevin-middle"`` (OpenMM)
        for molecules. Default: ``"overdamped"``, for molecules ``"langevin-middle"``.
    start : {"equilibrium", "fixed"} or array_like, optional
        ``"equilibrium"``: independent samples of the exact Boltzmann density (systems of
        dimension ≤ 2). ``"fixed"``: the points in ``x0``. An array is shorthand for ``"fixed"``
        with ``x0`` equal to it. Default: ``"equilibrium"``; for molecules ``"fixed"``, from the
        shipped structure unless ``x0`` is given.
    x0 : array_like, shape [dim] or [n_trajectories, dim], optional
        Start point of every trajectory, or one per trajectory (``start="fixed"`` only).
    chunk_size : int, optional
        Walkers simulated together in one task. Part of the campaign's identity: a different chunk
        size gives different (equally valid) data. Default :data:`DEFAULT_CHUNK_SIZE`, for
        molecules :data:`DEFAULT_MOLECULE_CHUNK_SIZE`.
    platform : {"Reference", "CPU", "CUDA", "OpenCL"}, optional
        OpenMM platform (molecules only; default ``"Reference"``). Recorded in the parameters.
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
        molecular = self.spec.is_molecular
        if self.chunk_size is None:
            object.__setattr__(self, "chunk_size", DEFAULT_MOLECULE_CHUNK_SIZE if molecular else DEFAULT_CHUNK_SIZE)
        if self.integrator is None:
            object.__setattr__(self, "integrator", MOLECULAR_INTEGRATOR if molecular else "overdamped")
        if self.platform is not None and not molecular:
            raise InvalidInputError(f"an OpenMM platform applies to molecules only, not to '{self.spec.spec}'")
        if molecular:
            platform = DEFAULT_PLATFORM if self.platform is None else self.platform
            if platform not in PLATFORMS:
                raise InvalidInputError(f"unknown OpenMM platform '{platform}': choose one of {', '.join(PLATFORMS)}")
            object.__setattr__(self, "platform", platform)
        if self.start is None:
            object.__setattr__(self, "start", "fixed" if molecular else "equilibrium")
        if molecular and isinstance(self.start, str) and self.start == "fixed" and self.x0 is None:
            from itomd.systems.openmm import molecular_system

            object.__setattr__(self, "x0", molecular_system(self.spec.spec.strip().lower()).initial_coordinates())
        for name, minimum in (("n_trajectories", 1), ("n_frames", 1), ("seed", 0), ("chunk_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                kind = "a positive" if minimum == 1 else "a non-negative"
                raise InvalidInputError(f"{name} must be {kind} integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.integrator not in (*INTEGRATORS, MOLECULAR_INTEGRATOR):
            raise InvalidInputError(f"unknown integrator '{self.integrator}': choose one of "
                                    f"{', '.join([*INTEGRATORS, MOLECULAR_INTEGRATOR])}")
        if molecular and self.integrator != MOLECULAR_INTEGRATOR:
            raise InvalidInputError(f"'{self.spec.spec}' is a molecule, simulated by OpenMM with integrator "
                                    f"'{MOLECULAR_INTEGRATOR}', not '{self.integrator}'")
        if not molecular and self.integrator == MOLECULAR_INTEGRATOR:
            raise InvalidInputError(f"integrator '{MOLECULAR_INTEGRATOR}' (OpenMM) is for molecules; choose one of "
                                    f"{', '.join(INTEGRATORS)} for '{self.spec.spec}'")
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
        if not 0 <= chunk < self.n_chunks:
            raise InvalidInputError(f"chunk must be in [0, {self.n_chunks}), got {chunk}")
        first = chunk * self.chunk_size
        return range(first, min(first + self.chunk_size, self.n_trajectories))

    def chunk_seed_sequences(self, chunk: int) -> tuple[np.random.SeedSequence, np.random.SeedSequence]:
        """Seed sequences of ``chunk``: (integrator noise, start points)."""
        return (np.random.SeedSequence(self.seed, spawn_key=(chunk, 0)),
                np.random.SeedSequence(self.seed, spawn_key=(chunk, 1)))

    def chunk_torch_seed(self, chunk: int) -> int:
        """Seed of the :class:`torch.Generator` that drives ``chunk``'s dynamics."""
        return int(self.chunk_seed_sequences(chunk)[0].generate_state(1, dtype=np.uint64)[0])

    @functools.cached_property
    def system(self) -> System:
        """The system built from :attr:`spec` (built on first use)."""
        return self.spec.build()

    @property
    def is_molecular(self) -> bool:
        """Whether the campaign simulates a molecule with OpenMM."""
        return self.spec.is_molecular

    @functools.cached_property
    def _equilibrium_sampler(self):
        from itomd.systems.reference import exact_reference

        # samples depend only on the grid density, not on the number of eigenpairs
        return exact_reference(self.system, n_eigen=2)

    def start_points(self, chunk: int) -> np.ndarray:
        """Start points of the trajectories in ``chunk``.

        Returns
        -------
        np.ndarray, shape [len(chunk_trajectories(chunk)), dim], float64
        """
        indices = self.chunk_trajectories(chunk)
        if self.start == "fixed":
            if self.x0.ndim == 1:
                return np.tile(self.x0, (len(indices), 1))
            return self.x0[indices.start:indices.stop].copy()
        rng = np.random.default_rng(self.chunk_seed_sequences(chunk)[1])
        return self._equilibrium_sampler.sample(len(indices), rng)

    def parameters(self) -> dict[str, Any]:
        """Everything that determines the data, JSON-ready; recorded in the store's manifest."""
        return _json_normalised({
            "system_spec": self.spec.to_dict(),
            "system": self.system.metadata(),
            "n_trajectories": self.n_trajectories,
            "n_frames": self.n_frames,
            "seed": self.seed,
            "integrator": self.integrator,
            "start": self.start,
            "x0": None if self.x0 is None else self.x0.tolist(),
            "chunk_size": self.chunk_size,
            # only molecules have a platform; toy manifests keep their earlier form
            **({"platform": self.platform} if self.is_molecular else {}),
        })

    def trajectory_metadata(self) -> dict[str, Any]:
        """Metadata stored with every trajectory (the store adds index, version and time)."""
        return {
            **self.system.metadata(),
            "spec": json.dumps(self.spec.to_dict()),
            "integrator": self.integrator,
            "n_frames": self.n_frames,
            "seed": self.seed,
            "chunk_size": self.chunk_size,
            "n_trajectories": self.n_trajectories,
            "start": self.start,
            **({"platform": self.platform} if self.is_molecular else {}),
        }

    # -- resuming -------------------------------------------------------------------------------
    def completed_chunks(self, store: TrajectoryStore) -> list[int]:
        """Chunks whose trajectory files all exist in ``store`` and read back valid."""
        if not store.path.is_dir():
            return []
        present = set(store.indices)
        return [c for c in range(self.n_chunks)
                if all(i in present for i in self.chunk_trajectories(c)) and self._chunk_valid(store, c)]

    def _chunk_valid(self, store: TrajectoryStore, chunk: int) -> bool:
        expected_shape = (self.n_frames, self.system.dim)
        for index in self.chunk_trajectories(chunk):
            try:
                coordinates = store.read(index)
                metadata = store.read_metadata(index)
            except (DataFileError, InvalidInputError) as exc:
                logger.info("recomputing chunk %d: %s", chunk, exc)
                return False
            if (coordinates.shape != expected_shape or metadata.get("chunk") != chunk
                    or metadata.get("seed") != self.seed or metadata.get("trajectory") != index):
                logger.info("recomputing chunk %d: %s does not match the campaign", chunk, store.file_path(index).name)
                return False
        return True

    # -- running --------------------------------------------------------------------------------
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
        if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, (int, np.integer))
                                      or n_workers < 0):
            raise InvalidInputError(f"n_workers must be a non-negative integer, got {n_workers!r}")
        if scheduler is not None and n_workers is not None:
            raise InvalidInputError("give either a scheduler address or a number of local workers, not both")
        system = self.system
        if self.start == "equilibrium" and system.dim > 2:
            raise InvalidInputError(
                f"equilibrium start points need an exact reference (dimension ≤ 2); {system.name} has "
                f"dimension {system.dim}: give start points with x0 (--x0)")
        if self.start == "fixed" and self.x0.shape[-1] != system.dim:
            raise InvalidInputError(f"x0 has {self.x0.shape[-1]} coordinates per point but {system.name} has dimension {system.dim}")
        if self.is_molecular:
            from itomd.simulate.molecular import get_platform

            get_platform(self.platform)  # a missing platform: one line before any worker starts
        store = TrajectoryStore(Path(out_dir).absolute())
        try:
            store.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataFileError(f"cannot create the output directory {store.path}: {exc.strerror or exc}") from exc
        with exclusive_lock(store.path):
            store.claim("campaign", self.parameters())
            store.remove_temporary_files()
            if self.is_molecular:
                from itomd.simulate.molecular import write_topology

                write_topology(store.path, system)
            done = self.completed_chunks(store)
            pending = sorted(set(range(self.n_chunks)) - set(done))
            if done:
                logger.info("resuming %s: %d of %d chunks already complete", store.path, len(done), self.n_chunks)
            already = sum(len(self.chunk_trajectories(c)) for c in done)
            with tqdm(total=self.n_trajectories, initial=already, disable=not progress, unit="traj",
                      desc=f"simulate {system.name}", dynamic_ncols=True) as bar:
                if pending and n_workers == 0:
                    for task in self._tasks(pending, store):
                        bar.update(_run_chunk(task))
                elif pending:
                    self._run_on_dask(pending, store, scheduler, n_workers, bar)
        return store

    def _tasks(self, chunks: Iterable[int], store: TrajectoryStore) -> Iterator["_ChunkTask"]:
        spec = _absolute_spec(self.spec)
        metadata = self.trajectory_metadata()
        for chunk in chunks:
            yield _ChunkTask(spec=spec, out_dir=str(store.path), chunk=chunk,
                             first_index=self.chunk_trajectories(chunk).start,
                             start_points=self.start_points(chunk), n_frames=self.n_frames,
                             integrator=self.integrator, torch_seed=self.chunk_torch_seed(chunk),
                             metadata=metadata, platform=self.platform)

    def _run_on_dask(self, pending: Sequence[int], store: TrajectoryStore, scheduler: str | None,
                     n_workers: int | None, bar: tqdm) -> None:
        from dask.distributed import Client, LocalCluster, as_completed

        cluster = None
        if scheduler is None:
            workers = min(n_workers or os.cpu_count() or 1, len(pending))
            # no dashboard; the scheduler's small health/metrics HTTP server takes any free local
            # port instead of 8787, so that concurrent clusters do not warn about the port
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                                   silence_logs=logging.ERROR)
            client = Client(cluster)
        else:
            try:
                client = Client(scheduler, timeout="30s")
            except (OSError, TimeoutError) as exc:
                raise InvalidInputError(f"cannot connect to the dask scheduler at {scheduler}: {exc}") from exc
        futures = []
        try:
            futures = [client.submit(_run_chunk, task, pure=False) for task in self._tasks(pending, store)]
            for future in as_completed(futures):
                bar.update(future.result())
        finally:
            if futures:
                client.cancel(futures)
            client.close()
            if cluster is not None:
                cluster.close()


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
    """Everything a worker needs for one chunk (picklable, small)."""

    spec: SystemSpec
    out_dir: str
    chunk: int
    first_index: int
    start_points: np.ndarray  # [walkers, dim]
    n_frames: int
    integrator: str
    torch_seed: int
    metadata: dict
    platform: str | None = None  # OpenMM platform (molecules)


@functools.lru_cache(maxsize=8)
def _build_system(spec: SystemSpec) -> System:
    return spec.build()


def _run_chunk(task: _ChunkTask) -> int:
    """Simulate one chunk and write its trajectories atomically; returns the number written."""
    system = _build_system(task.spec)
    if task.integrator == MOLECULAR_INTEGRATOR:
        from itomd.simulate.molecular import simulate_molecule

        coordinates = simulate_molecule(system, task.start_points, task.n_frames, seed=task.torch_seed,
                                        platform=task.platform or DEFAULT_PLATFORM)
        return _write_chunk(task, coordinates)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(task.torch_seed)
        x0 = torch.as_tensor(task.start_points, dtype=torch.float64)
        coordinates = simulate(system, x0, task.n_frames, integrator=task.integrator, generator=generator).numpy()
    finally:
        torch.set_num_threads(threads)
    return _write_chunk(task, coordinates)


def _write_chunk(task: _ChunkTask, coordinates: np.ndarray) -> int:
    store = TrajectoryStore(task.out_dir)
    metadata = {**task.metadata, "chunk": task.chunk, "chunk_torch_seed": task.torch_seed}
    for offset, trajectory in enumerate(coordinates):
        store.write(task.first_index + offset, trajectory, metadata)
    return len(coordinates)


# -- helpers --------------------------------------------------------------------------------------
def _absolute_spec(spec: SystemSpec) -> SystemSpec:
    """The spec with a user file's path made absolute, so workers in other directories find it."""
    if ":" in spec.spec:
        path, name = spec.spec.rsplit(":", 1)
        if path.endswith(".py"):
            return dataclasses.replace(spec, spec=f"{os.path.abspath(path)}:{name}")
    return spec


def _json_normalised(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=False))
