"""Discretisation of trajectories into Markov states with deeptime's clustering."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from deeptime.clustering import ClusterModel, KMeans, RegularSpace

from itomd.validation import check_trajectories
from itomd.errors import InvalidInputError

#: Cluster centres are fitted on at most this many frames (an even stride through all frames).
MAX_FIT_FRAMES = 20_000

#: Default number of states.
DEFAULT_N_STATES = 100
#: Most states an MSM may have here: its dense count and transition matrices need 8·n² bytes each
#: (5000 states: 200 MB), and more states than that leave too few counts per state anyway.
MAX_N_STATES = 5000

METHODS = ("auto", "uniform", "regspace", "kmeans")


@dataclass
class Discretization:
    """A fitted state decomposition and the discrete trajectories of the data it was fitted on.

    Attributes
    ----------
    method : str
        ``"uniform"``, ``"regspace"`` or ``"kmeans"``.
    model : deeptime.clustering.ClusterModel
        The fitted deeptime model; it assigns each frame to its nearest centre.
    dtrajs : list of np.ndarray, each [n_frames_i], int32
        State index of every frame of the fitted trajectories.
    """

    method: str
    model: ClusterModel
    dtrajs: list[np.ndarray]

    @property
    def centers(self) -> np.ndarray:
        """Cluster centres, shape [n_states, dim]."""
        return np.asarray(self.model.cluster_centers)

    @property
    def n_states(self) -> int:
        return len(self.centers)

    @property
    def dim(self) -> int:
        return self.centers.shape[1]

    def transform(self, trajectories: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Assign frames of new trajectories to states.

        Parameters
        ----------
        trajectories : list of np.ndarray, each [n_frames_i, dim]

        Returns
        -------
        list of np.ndarray, each [n_frames_i], int32
        """
        trajectories = check_trajectories(trajectories)
        if trajectories[0].shape[1] != self.dim:
            raise InvalidInputError(
                f"trajectories are {trajectories[0].shape[1]}-dimensional but the states are {self.dim}-dimensional")
        return self._assign(trajectories)

    def _assign(self, trajectories: list[np.ndarray]) -> list[np.ndarray]:
        return [self.model.transform(np.ascontiguousarray(t)).astype(np.int32) for t in trajectories]


def discretize(
    trajectories: Sequence[np.ndarray],
    method: str = "auto",
    n_states: int | None = None,
    seed: int = 0,
) -> Discretization:
    """Fit a state decomposition to trajectories (deeptime clustering).

    Parameters
    ----------
    trajectories : list of np.ndarray, each [n_frames_i, dim]
    method : {"auto", "uniform", "regspace", "kmeans"}
        ``uniform``: ``n_states`` evenly spaced centres spanning the data (1-D only).
        ``regspace``: deeptime's regular-space clustering with minimal centre distance
        span / ``n_states`` (typically gives 70–100 % of ``n_states`` centres).
        ``kmeans``: k-means++ with a fixed seed, fitted on at most :data:`MAX_FIT_FRAMES` frames.
        ``auto``: ``uniform`` in 1-D, ``kmeans`` otherwise.
    n_states : int, optional
        Target number of states; default :data:`DEFAULT_N_STATES`.
    seed : int
        Seed of the k-means initialisation.

    Returns
    -------
    Discretization
    """
    trajectories = check_trajectories(trajectories)
    if method not in METHODS:
        raise InvalidInputError(f"unknown discretisation '{method}': choose one of {', '.join(METHODS)}")
    dim = trajectories[0].shape[1]
    if method == "auto":
        method = "uniform" if dim == 1 else "kmeans"
    frames = np.concatenate(trajectories)
    n_states = check_n_states(n_states)
    fit_frames = np.ascontiguousarray(frames[:: max(1, len(frames) // MAX_FIT_FRAMES)])

    if method == "uniform":
        if dim != 1:
            raise InvalidInputError(f"uniform discretisation is for 1-D data, got {dim}-D; use kmeans or regspace")
        low, high = float(frames.min()), float(frames.max())
        if not high > low:
            raise InvalidInputError("all frames are identical: nothing to discretise")
        step = (high - low) / n_states
        centers = low + (np.arange(n_states) + 0.5) * step
        model = ClusterModel(cluster_centers=centers[:, None], metric="euclidean")
    elif method == "regspace":
        span = float(np.max(np.ptp(fit_frames, axis=0)))
        if not span > 0:
            raise InvalidInputError("all frames are identical: nothing to discretise")
        model = RegularSpace(dmin=span / n_states, max_centers=50 * n_states).fit(fit_frames).fetch_model()
    else:
        n_distinct = len(np.unique(fit_frames, axis=0))
        if n_distinct < 2:
            raise InvalidInputError("all frames are identical: nothing to discretise")
        model = KMeans(n_clusters=min(n_states, n_distinct), init_strategy="kmeans++", max_iter=300,
                       tolerance=1e-6, fixed_seed=int(seed) % 2**31, n_jobs=1).fit(fit_frames).fetch_model()
    discretization = Discretization(method=method, model=model, dtrajs=[])
    discretization.dtrajs = discretization._assign(trajectories)
    return discretization


def check_n_states(n_states: int | None) -> int:
    """The number of MSM states to use: ``n_states`` (default :data:`DEFAULT_N_STATES`) checked to be
    an integer in [2, :data:`MAX_N_STATES`], one-line :class:`InvalidInputError` otherwise. (More
    states than distinct frames is fine: k-means then keeps one centre per distinct frame.)"""
    n_states = DEFAULT_N_STATES if n_states is None else n_states
    if isinstance(n_states, bool) or not isinstance(n_states, (int, np.integer)) or n_states < 2:
        raise InvalidInputError(f"need an integer number of states ≥ 2, got {n_states}")
    if n_states > MAX_N_STATES:
        raise InvalidInputError(f"{n_states} states are too many: at most {MAX_N_STATES} (a dense MSM of n states "
                                f"needs 8·n² bytes per matrix)")
    return int(n_states)
