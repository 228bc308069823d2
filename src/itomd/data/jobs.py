r"""Resumable chunked writing of a trajectory store: the one runner behind campaigns and rollouts.

A *job* writes ``n_items`` trajectories (``traj_<index>.h5``) into a
:class:`~itomd.data.store.TrajectoryStore`, grouped into chunks of ``chunk_size`` consecutive
indices; chunk ``c`` holds indices ``c*chunk_size ...`` up to the next chunk. :meth:`ChunkedJob.run`

1. opens (creates) the store directory — one-line :class:`~itomd.errors.DataFileError` if it cannot;
2. holds an exclusive advisory lock on it (a second writer gets a one-line
   :class:`~itomd.errors.InvalidInputError`);
3. claims the store with the job's parameters (``manifest.json``: a new store records them, a store
   made with the same ones is resumed, different ones are refused);
4. removes temporary files that interrupted writes left;
5. writes the store files of the system (:meth:`System.write_store_files
   <itomd.systems.system.System.write_store_files>`: a molecule's ``topology.pdb``);
6. finds the completed chunks — every file present and accepted by the job's ``chunk_complete`` check;
7. runs the other chunks, in this process or through an executor (e.g. dask workers), with a
   progress bar over trajectories.

The caller supplies what differs: the parameters, ``make_task(chunk, store_dir)`` (in the calling
process: seeds and start points of the chunk), ``run_task(task)`` (simulates or samples the chunk, writes it
with :func:`write_chunk` and returns how many trajectories it wrote) and the validity check. Every
random number of a chunk must derive from the job's seed and the chunk index (:func:`chunk_seed`):
then the store is a function of the parameters alone, whatever the executor, the order in which
chunks run, or how often the job was interrupted — a resumed job equals an uninterrupted one bit
for bit.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Iterator, Mapping, Protocol, TypeVar

import numpy as np
from tqdm.auto import tqdm

from itomd._files import exclusive_lock
from itomd.data.store import TrajectoryStore
from itomd.errors import DataFileError, InvalidInputError
from itomd.validation import require_int

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``function`` on every task and yields the results as they complete (in any order).

    ``n_tasks`` is the number of tasks (e.g. to size a cluster). Closing the returned iterator early
    must cancel what has not run.
    """

    def __call__(self, function: Callable[[T], R], tasks: Iterable[T], n_tasks: int) -> Iterator[R]: ...


def in_process(function: Callable[[T], R], tasks: Iterable[T], n_tasks: int) -> Iterator[R]:
    """The default :class:`Executor`: one task after the other in the calling process."""
    for task in tasks:
        yield function(task)


def chunk_seed(seed: int, *key: int) -> int:
    """The integer ``SeedSequence(seed, spawn_key=key).generate_state(1, uint64)[0]`` (in [0, 2⁶⁴)).

    Campaigns seed chunk ``c``'s dynamics with ``chunk_seed(seed, c, 0)``, rollouts their sampler
    with ``chunk_seed(seed, c) % 2**63``.
    """
    return int(np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in key))
               .generate_state(1, dtype=np.uint64)[0])


def chunk_items(chunk: int, chunk_size: int, n_items: int) -> range:
    """Indices of the trajectories in ``chunk`` (the last chunk may hold fewer than ``chunk_size``)."""
    n_chunks = -(-n_items // chunk_size)
    if not 0 <= chunk < n_chunks:
        raise InvalidInputError(f"chunk must be in [0, {n_chunks}), got {chunk}")
    first = chunk * chunk_size
    return range(first, min(first + chunk_size, n_items))


def open_store(out_dir: str | os.PathLike) -> TrajectoryStore:
    """The store at ``out_dir`` (absolute), its directory created if needed.

    Raises
    ------
    DataFileError
        If the directory cannot be created (one line).
    """
    store = TrajectoryStore(Path(out_dir).absolute())
    try:
        store.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataFileError(f"cannot create the output directory {store.path}: {exc.strerror or exc}") from exc
    return store


def write_chunk(store_dir: str | os.PathLike, first_index: int, trajectories: np.ndarray,
                metadata: Mapping[str, Any]) -> int:
    """Write trajectories ``first_index, first_index + 1, ...`` atomically, each with ``metadata``.

    Parameters
    ----------
    store_dir : path
    first_index : int
    trajectories : array_like, shape [W, n_frames, dim]
        Stored as float64.
    metadata : mapping
        Stored with every trajectory (the store adds the index, version and time).

    Returns
    -------
    int
        W, the number written.
    """
    store = TrajectoryStore(store_dir)
    for offset, trajectory in enumerate(trajectories):
        store.write(first_index + offset, trajectory, metadata)
    return len(trajectories)


@dataclass(frozen=True, eq=False)
class ChunkedJob(Generic[T]):
    """A resumable job that writes ``n_items`` trajectories in chunks (see the module docstring).

    Parameters
    ----------
    section : str
        The manifest section it claims (``"campaign"``, ``"rollout"``).
    parameters : mapping
        Everything that determines the data, JSON-ready; recorded in (or checked against) the manifest.
    n_items : int
        Number of trajectories (positive).
    chunk_size : int
        Trajectories per chunk (positive).
    make_task : callable
        ``make_task(chunk, store_dir) -> task``, in the calling process (``store_dir``: the store's
        absolute path); the task must be picklable when the executor sends it elsewhere.
    run_task : callable
        ``run_task(task) -> int``: computes the chunk, writes it (:func:`write_chunk`) and returns the
        number of trajectories written. A module-level function when the executor pickles it.
    chunk_complete : callable, optional
        ``chunk_complete(store, chunk) -> bool``, asked only for chunks whose files are all present:
        whether they read back valid and belong to this job (default: yes).
    system : System, optional
        Its :meth:`~itomd.systems.system.System.write_store_files` are written into the store.
    description, unit : str
        Progress-bar label and unit.
    """

    section: str
    parameters: Mapping[str, Any]
    n_items: int
    chunk_size: int
    make_task: Callable[[int, Path], T]
    run_task: Callable[[T], int]
    chunk_complete: Callable[[TrajectoryStore, int], bool] | None = None
    system: Any = None
    description: str = ""
    unit: str = "traj"

    def __post_init__(self) -> None:
        for name in ("n_items", "chunk_size"):
            require_int(name, getattr(self, name))

    @property
    def n_chunks(self) -> int:
        """Number of chunks."""
        return -(-self.n_items // self.chunk_size)

    def chunk_items(self, chunk: int) -> range:
        """Indices of the trajectories in ``chunk``."""
        return chunk_items(chunk, self.chunk_size, self.n_items)

    def completed_chunks(self, store: TrajectoryStore) -> list[int]:
        """Chunks whose trajectory files all exist in ``store`` and pass ``chunk_complete``."""
        if not store.path.is_dir():
            return []
        present = set(store.indices)
        return [c for c in range(self.n_chunks)
                if all(i in present for i in self.chunk_items(c))
                and (self.chunk_complete is None or self.chunk_complete(store, c))]

    def run(self, out_dir: str | os.PathLike, executor: Executor | None = None,
            progress: bool = True) -> TrajectoryStore:
        """Write (or resume) the job into ``out_dir`` and return the complete store.

        Parameters
        ----------
        out_dir : path
            Store directory (created if needed).
        executor : Executor, optional
            Runs the pending chunks' tasks; default :func:`in_process`.
        progress : bool
            A progress bar over trajectories.

        Raises
        ------
        DataFileError
            If the directory cannot be created.
        InvalidInputError
            If the store was made with other parameters or by something else, or another process
            writes to it.
        """
        executor = in_process if executor is None else executor
        store = open_store(out_dir)
        with exclusive_lock(store.path):
            store.claim(self.section, self.parameters)
            foreign = [i for i in store.indices if i >= self.n_items]
            if foreign:  # e.g. copied in by hand from another store: not ours to overwrite or keep
                raise InvalidInputError(f"{store.file_path(foreign[0])} is not one of the {self.n_items} trajectories "
                                        f"of this {self.section}; remove it (or use a new --out)")
            store.remove_temporary_files()
            if self.system is not None:
                self.system.write_store_files(store.path)
            done = self.completed_chunks(store)
            pending = [c for c in range(self.n_chunks) if c not in set(done)]
            if done:
                logger.info("resuming %s: %d of %d chunks already complete", store.path, len(done), self.n_chunks)
            already = sum(len(self.chunk_items(c)) for c in done)
            with tqdm(total=self.n_items, initial=already, disable=not progress, unit=self.unit,
                      desc=self.description or None, dynamic_ncols=True) as bar:
                if pending:
                    tasks = (self.make_task(chunk, store.path) for chunk in pending)
                    with contextlib.closing(executor(self.run_task, tasks, len(pending))) as results:
                        for written in results:
                            bar.update(written)
        return store


__all__ = ["ChunkedJob", "Executor", "in_process", "chunk_seed", "chunk_items", "open_store", "write_chunk"]
