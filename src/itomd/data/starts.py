r"""Start points of trajectories: every source in one module.

All functions return float64 arrays ``[n, dim]`` (one row per trajectory or walker).

* :func:`equilibrium_samples` — independent samples of a system's exact Boltzmann density
  (systems of dimension ≤ 2; a campaign's ``start="equilibrium"``).
* :func:`fixed_points` — one given point for every trajectory, or one given point per trajectory
  (a campaign's ``start="fixed"``).
* :func:`start_points_from_store` — frames drawn uniformly (with replacement) from a trajectory
  store (``itomd sample --from DIR``).
* :func:`read_start_points` and :func:`per_walker` — points from a ``.npy`` or text file
  (``itomd sample --x0 FILE``), one for all walkers or one each.
* :func:`equilibrium_model_start_points` — samples of a trained equilibrium model (a Boltzmann
  generator) or of a BoPITO model's prior, drawn once and cached in the output directory
  (``itomd simulate --from-equilibrium-model RUN``: BoPITO's data generation).
* :func:`default_sample_start_points` — what ``itomd sample`` starts from without ``--from`` or
  ``--x0``: exact equilibrium samples of the model's system, or for systems without an exact
  reference the samples of a BoPITO model's prior; :func:`sample_start_points` chooses among the
  three sources of ``itomd sample``.

Models are passed in as objects (anything with ``dim``, ``conditional``, ``is_bopito``, ``system``
and ``sample_equilibrium(n, generator=...)``, i.e. a :class:`~itomd.models.TransitionModel`); this
module does not import them.

Seeds
-----
Every draw is a function of its seed alone, with its own stream:
``SeedSequence(seed, spawn_key=(c, 1))`` for a campaign's chunk ``c`` (passed in by the campaign),
``SeedSequence(seed, spawn_key=(0, 1))`` for frames from a store, ``SeedSequence(seed,
spawn_key=(0, 2))`` for ``itomd sample``'s equilibrium default (a NumPy generator for exact samples;
the first 32-bit word of its state seeds the :class:`torch.Generator` of a BoPITO prior), and
``torch.Generator().manual_seed(seed)`` for equilibrium-model starts.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from itomd._files import write_atomically
from itomd.data.store import TrajectoryStore
from itomd.errors import DataFileError, InvalidInputError
from itomd.systems.system import System

#: Cache of the equilibrium-model start points inside the campaign's output directory.
START_POINTS_FILE = "equilibrium_starts.npz"
#: Samples drawn per network batch from an equilibrium model.
SAMPLE_CHUNK = 4096
#: Largest dimension with an exact equilibrium reference for start points.
MAX_EXACT_DIM = 2


# -- exact equilibrium samples and fixed points --------------------------------------------------------
def _exact_sampler(system: System):
    try:
        return _cached_exact_sampler(system)
    except TypeError:  # a system whose potential is not hashable
        return _build_exact_sampler(system)


def _build_exact_sampler(system: System):
    from itomd.systems.reference import exact_reference

    # samples depend only on the grid density, not on the number of eigenpairs
    return exact_reference(system, n_eigen=2)


_cached_exact_sampler = functools.lru_cache(maxsize=8)(_build_exact_sampler)


def equilibrium_samples(system: System, n: int, seed: np.random.SeedSequence | int) -> np.ndarray:
    """``n`` independent samples of ``system``'s exact Boltzmann density (its reference grid).

    Parameters
    ----------
    system : System
        Dimension ≤ 2 (:data:`MAX_EXACT_DIM`).
    n : int
    seed : SeedSequence or int
        Seeds ``numpy.random.default_rng``.

    Returns
    -------
    np.ndarray, shape [n, dim], float64

    Raises
    ------
    InvalidInputError
        For a system of dimension > 2 (one line).
    """
    if system.dim > MAX_EXACT_DIM:
        raise InvalidInputError(f"equilibrium start points need an exact reference (dimension ≤ {MAX_EXACT_DIM}); "
                                f"{system.name} has dimension {system.dim}")
    return _exact_sampler(system).sample(int(n), np.random.default_rng(seed))


def fixed_points(x0: np.ndarray, indices: range) -> np.ndarray:
    """The start points of trajectories ``indices`` when they are given.

    Parameters
    ----------
    x0 : np.ndarray, shape [dim] or [n_trajectories, dim]
        One point for every trajectory, or one per trajectory.
    indices : range

    Returns
    -------
    np.ndarray, shape [len(indices), dim], float64
        A copy.
    """
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.ndim == 1:
        return np.tile(x0, (len(indices), 1))
    return x0[indices.start:indices.stop].copy()


# -- points from a store or a file ----------------------------------------------------------------
def start_points_from_store(path: str | os.PathLike, n_walkers: int, seed: int, dim: int) -> np.ndarray:
    """``n_walkers`` frames drawn uniformly (with replacement) from a trajectory store.

    Parameters
    ----------
    path : path
        The store.
    n_walkers : int
    seed : int
        The draw uses ``SeedSequence(seed, spawn_key=(0, 1))``.
    dim : int
        The expected dimension (the model's).

    Returns
    -------
    np.ndarray, shape [n_walkers, dim], float64
    """
    trajectories = TrajectoryStore(path).trajectories()
    width = trajectories[0].shape[1] if trajectories else 0
    if width != dim:
        raise InvalidInputError(f"{path} holds {width}-dimensional frames; the model is {dim}-dimensional")
    return start_points_from_trajectories(trajectories, n_walkers, seed)


def start_points_from_trajectories(trajectories: list[np.ndarray], n_walkers: int, seed: int) -> np.ndarray:
    """``n_walkers`` frames drawn uniformly (with replacement) from trajectories [T_i, dim]
    (``SeedSequence(seed, spawn_key=(0, 1))``, as :func:`start_points_from_store`); [n_walkers, dim]."""
    frames = np.concatenate(trajectories)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0, 1)))
    return frames[rng.integers(len(frames), size=n_walkers)]


def read_start_points(path: str | os.PathLike, dim: int) -> np.ndarray:
    """Start points from a ``.npy`` file or a text file of numbers.

    Returns
    -------
    np.ndarray, shape [W, dim], float64
        A file of shape [dim] gives one point (W = 1).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"no start-point file at {path}")
    try:
        points = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, ndmin=2, delimiter=None)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFileError(f"cannot read start points from {path}: {str(exc).splitlines()[0]}") from exc
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 1:
        points = points[None, :] if points.shape[0] == dim else points[:, None]
    if points.ndim != 2 or points.shape[1] != dim:
        raise InvalidInputError(f"start points in {path} must have shape [W, {dim}], got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise InvalidInputError(f"start points in {path} contain NaN or inf")
    return points


def per_walker(points: np.ndarray, n_walkers: int, source: str | os.PathLike = "the start points") -> np.ndarray:
    """One point per walker: a single point repeated, or exactly ``n_walkers`` points.

    Returns
    -------
    np.ndarray, shape [n_walkers, dim]
    """
    if len(points) == 1:
        return np.repeat(points, n_walkers, axis=0)
    if len(points) != n_walkers:
        raise InvalidInputError(f"{source} holds {len(points)} start points for {n_walkers} walkers "
                                "(give one point or one per walker)")
    return points


# -- samples of models ----------------------------------------------------------------------------
def equilibrium_model_start_points(model: Any, model_file: str | os.PathLike, out_dir: str | os.PathLike, n: int,
                                   seed: int, dim: int, progress: bool = False,
                                   source: str | os.PathLike | None = None) -> np.ndarray:
    """``n`` start points drawn from an equilibrium model (or a BoPITO model's prior), cached.

    Many short trajectories started from equilibrium samples cover every metastable state with
    little simulation, which is what BoPITO's dynamic part needs (Viguera Díez et al. 2024). The
    samples are drawn once per (model file, seed, count) and cached next to the campaign's
    trajectories (:data:`START_POINTS_FILE`, written atomically), so a resumed campaign starts from
    exactly the same points whatever the threads or hardware of the resuming process.

    Parameters
    ----------
    model : TransitionModel
        Loaded from ``model_file``: an equilibrium model (``itomd train --equilibrium``) or a BoPITO
        model.
    model_file : path
        Its file; the cache is keyed on the file's SHA-256.
    out_dir : path
        The campaign's output directory (the cache lives there; created if needed).
    n : int
        Number of trajectories.
    seed : int
        Seeds the draw (``torch.Generator().manual_seed(seed)``).
    dim : int
        The system's dimension (checked against the model's).
    progress : bool
    source : path, optional
        How to name the model in messages (default ``model_file``).

    Returns
    -------
    np.ndarray, shape [n, dim], float64
    """
    source = model_file if source is None else source
    if model.conditional and not model.is_bopito:
        raise InvalidInputError(f"{source} is an ITO transition model; --from-equilibrium-model needs an "
                                "equilibrium model (itomd train --equilibrium) or a BoPITO model")
    if model.dim != dim:
        raise InvalidInputError(f"{source} models {model.dim}-dimensional states but the system is {dim}-dimensional")
    fingerprint = hashlib.sha256(Path(model_file).read_bytes()).hexdigest()
    cache = Path(out_dir) / START_POINTS_FILE
    cached = _read_cache(cache)
    if cached is not None and cached["model_sha256"] == fingerprint and cached["seed"] == seed and len(cached["points"]) == n:
        return cached["points"]

    generator = torch.Generator().manual_seed(int(seed))
    parts = []
    with tqdm(total=n, disable=not progress, unit="sample", desc="equilibrium-model starts") as bar:
        for start in range(0, n, SAMPLE_CHUNK):
            count = min(SAMPLE_CHUNK, n - start)
            parts.append(model.sample_equilibrium(count, generator=generator).double().cpu().numpy())
            bar.update(count)
    points = np.concatenate(parts)
    if not np.all(np.isfinite(points)):
        raise InvalidInputError(f"{source} produced non-finite samples; retrain the equilibrium model")
    cache.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, points=points, model_sha256=np.array(fingerprint), seed=np.array(int(seed)))
    write_atomically(cache, lambda temporary: temporary.write_bytes(buffer.getvalue()))
    return points


def _read_cache(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            return {"points": np.asarray(data["points"], dtype=np.float64), "model_sha256": str(data["model_sha256"]),
                    "seed": int(data["seed"])}
    except (OSError, ValueError, KeyError) as exc:
        raise DataFileError(f"{path} is corrupt ({str(exc).splitlines()[0]}); delete it to draw new start points") from None


def default_sample_start_points(model: Any, n_walkers: int, seed: int) -> np.ndarray:
    """Equilibrium start points for a rollout of ``model`` when none are given.

    Exact samples of the model's recorded system (dimension ≤ 2); otherwise, for a BoPITO model,
    samples of its frozen equilibrium part (a Boltzmann generator). Both from
    ``SeedSequence(seed, spawn_key=(0, 2))``.

    Returns
    -------
    np.ndarray, shape [n_walkers, dim], float64

    Raises
    ------
    InvalidInputError
        For an ITO model without a recorded system of dimension ≤ 2 (one line: give start points).
    """
    sequence = np.random.SeedSequence(seed, spawn_key=(0, 2))
    if model.system is None or model.dim > MAX_EXACT_DIM:
        if model.is_bopito:  # its frozen equilibrium part is a Boltzmann generator
            generator = torch.Generator().manual_seed(int(sequence.generate_state(1)[0]))
            return model.sample_equilibrium(n_walkers, generator=generator).double().numpy()
        raise InvalidInputError("give start points with --from DIR (a trajectory store) or --x0 FILE")
    return equilibrium_samples(model.system.build(), n_walkers, sequence)


def sample_start_points(model: Any, n_walkers: int, seed: int, from_store: str | os.PathLike | None = None,
                        x0_file: str | os.PathLike | None = None) -> np.ndarray:
    """The start points of ``itomd sample``: frames of a store, a file, or the equilibrium default.

    Parameters
    ----------
    model : TransitionModel
    n_walkers, seed : int
    from_store : path, optional
        Draw frames from this store (:func:`start_points_from_store`).
    x0_file : path, optional
        Read them from this file (:func:`read_start_points`; one point or one per walker).

    Returns
    -------
    np.ndarray, shape [n_walkers, dim], float64
    """
    if from_store is not None and x0_file is not None:
        raise InvalidInputError("give start points either with --from DIR or with --x0 FILE, not both")
    if from_store is not None:
        return start_points_from_store(from_store, n_walkers, seed, model.dim)
    if x0_file is not None:
        return per_walker(read_start_points(x0_file, model.dim), n_walkers, source=x0_file)
    return default_sample_start_points(model, n_walkers, seed)


__all__ = ["equilibrium_samples", "fixed_points", "start_points_from_store", "read_start_points", "per_walker",
           "equilibrium_model_start_points", "default_sample_start_points", "sample_start_points",
           "START_POINTS_FILE", "MAX_EXACT_DIM"]
