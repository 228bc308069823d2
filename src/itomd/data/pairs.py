r"""Multi-lag pair data for ITO training: (x_t, x_{t+Nτ}, N) with N drawn from a lag sampler.

Lag samplers have an exact, documented support on {1, …, N_max} (``N_max`` can be drawn):

* :class:`FixedLag` — always N.
* :class:`UniformLag` — P(N) = 1/N_max.
* :class:`LogUniformLag` — P(N) = ln((N+1)/N) / ln(N_max+1), i.e. ``floor(exp(U))`` with
  U ~ Uniform[0, ln(N_max+1)): log-uniform in continuous lag, discretised without losing N_max.

Given N, a pair is drawn among all *valid* start frames of all trajectories: frame t of
trajectory i is valid iff t + N ≤ T_i − 1, so trajectory i offers max(T_i − N, 0) starts and a
trajectory shorter than N + 1 frames offers none. Starts are uniform, or drawn in proportion to
per-frame weights (:func:`balanced_start_weights`: rare states drawn more often, which leaves the
conditional density p(x_{t+N} | x_t) that a transition model learns unchanged). Trajectories that
cannot serve the largest lag are reported once with a warning. All randomness comes from an
explicit :class:`torch.Generator` (training draws every global batch from one seeded generator, so batches do not depend on the number
of data-parallel processes).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from itomd.errors import InvalidInputError
from itomd.validation import as_real_array, is_finite_number

#: Rounds of rejection sampling in :meth:`PairSampler.sample_indices` before the exact per-lag draw.
REJECTION_ROUNDS = 8


class LagSampler:
    """Distribution of lags N on {1, …, max_lag}; subclasses define :meth:`probabilities`."""

    max_lag: int

    def probabilities(self) -> np.ndarray:
        """Exact probability of each lag, shape [max_lag] (entry k is P(N = k + 1))."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` lags, int64 tensor of shape [n]."""
        p = torch.as_tensor(self.probabilities(), dtype=torch.float64)
        return torch.multinomial(p, n, replacement=True, generator=generator) + 1


def _check_max_lag(max_lag: int) -> int:
    if isinstance(max_lag, bool) or int(max_lag) != max_lag or max_lag < 1:
        raise InvalidInputError(f"lags must be positive integers, got {max_lag!r}")
    return int(max_lag)


@dataclass(frozen=True)
class FixedLag(LagSampler):
    """Always the lag ``lag``."""

    lag: int

    def __post_init__(self) -> None:
        _check_max_lag(self.lag)

    @property
    def max_lag(self) -> int:  # type: ignore[override]
        return int(self.lag)

    def probabilities(self) -> np.ndarray:
        p = np.zeros(self.max_lag)
        p[-1] = 1.0
        return p

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.full((n,), int(self.lag), dtype=torch.int64)


@dataclass(frozen=True)
class UniformLag(LagSampler):
    """N uniform on {1, …, max_lag}."""

    max_lag: int

    def __post_init__(self) -> None:
        _check_max_lag(self.max_lag)

    def probabilities(self) -> np.ndarray:
        return np.full(self.max_lag, 1.0 / self.max_lag)


@dataclass(frozen=True)
class LogUniformLag(LagSampler):
    """P(N) = ln((N+1)/N) / ln(max_lag+1) on {1, …, max_lag} (``floor`` of a log-uniform variable)."""

    max_lag: int

    def __post_init__(self) -> None:
        _check_max_lag(self.max_lag)

    def probabilities(self) -> np.ndarray:
        n = np.arange(1, self.max_lag + 1, dtype=float)
        return np.log1p(1.0 / n) / math.log(self.max_lag + 1)


def make_lag_sampler(kind: str, max_lag: int) -> LagSampler:
    """``fixed`` | ``uniform`` | ``log-uniform`` with the given (maximum) lag."""
    kinds = {"fixed": FixedLag, "uniform": UniformLag, "log-uniform": LogUniformLag, "loguniform": LogUniformLag}
    if kind not in kinds:
        raise InvalidInputError(f"unknown lag sampler '{kind}': choose fixed, uniform or log-uniform")
    return kinds[kind](max_lag)


class PairSampler:
    """Draws of valid (x_t, x_{t+N}) pairs from a set of trajectories for given lags N.

    Parameters
    ----------
    trajectories : sequence of array-like, each [n_frames_i, dim]
    lag_sampler : LagSampler
        Distribution of lags (frames).
    start_weights : array-like, shape [n_frames], optional
        A non-negative weight for every frame (all trajectories concatenated): a start is drawn with
        probability proportional to its weight among the valid starts at its lag. None: uniform.
        :func:`balanced_start_weights` makes them.
    """

    def __init__(self, trajectories: Sequence[np.ndarray], lag_sampler: LagSampler,
                 start_weights: np.ndarray | None = None):
        trajs = [torch.as_tensor(as_real_array(t, f"trajectory {i}")) for i, t in enumerate(trajectories)]
        if not trajs:
            raise InvalidInputError("no trajectories given")
        for i, t in enumerate(trajs):
            if t.ndim != 2:
                raise InvalidInputError(f"trajectory {i} must have shape [n_frames, dim], got {tuple(t.shape)}")
            if not torch.all(torch.isfinite(t)):
                raise InvalidInputError(f"trajectory {i} contains NaN or inf values")
        if len({t.shape[1] for t in trajs}) != 1:
            raise InvalidInputError("trajectories have different dimensions")
        self.trajectories = trajs
        self.lag_sampler = lag_sampler
        self.lengths = torch.tensor([len(t) for t in trajs], dtype=torch.int64)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(self.lengths, 0)[:-1]])
        self.frames = torch.cat(trajs)
        # frames that follow each frame in its trajectory (its last frame's index minus its own):
        # frame i starts a valid pair at lag N iff N ≤ this
        last = torch.repeat_interleave(self.offsets + self.lengths - 1, self.lengths)
        self.frames_after = last - torch.arange(len(self.frames))
        too_short = int((self.lengths <= lag_sampler.max_lag).sum())
        if int((self.lengths > 1).sum()) == 0 or self.n_valid_starts(1) == 0:
            raise InvalidInputError("no trajectory has two frames: no pairs can be formed")
        supported = [n for n in range(1, lag_sampler.max_lag + 1) if lag_sampler.probabilities()[n - 1] > 0]
        unusable = [n for n in supported if self.n_valid_starts(n) == 0]
        if unusable:
            longest = int(self.lengths.max())
            raise InvalidInputError(
                f"lags up to {lag_sampler.max_lag} frames need a trajectory longer than {min(unusable)} frames (longest: "
                f"{longest} frames): choose a max_lag (--max-lag) below {longest} or simulate longer trajectories")
        self.start_weights = None if start_weights is None else _checked_weights(start_weights, len(self.frames))
        # cumulative start distribution over all frames (float64: millions of frames); None: uniform
        self._start_cdf = None
        if self.start_weights is not None:
            cdf = torch.cumsum(self.start_weights, 0)
            self._start_cdf = cdf / cdf[-1]
            if float(self.start_weights[self.frames_after >= max(supported)].sum()) == 0:  # the fewest valid starts
                raise InvalidInputError("the start weights are zero on every valid start of some lag")
        if too_short:
            warnings.warn(f"{too_short} of {len(trajs)} trajectories are too short for lags up to "
                          f"{lag_sampler.max_lag} frames; they serve only shorter lags", stacklevel=2)

    @property
    def dim(self) -> int:
        return int(self.frames.shape[1])

    def n_valid_starts(self, lag: int) -> int:
        """Number of valid (trajectory, start frame) pairs at ``lag``."""
        return int(torch.clamp(self.lengths - lag, min=0).sum())

    def sample_indices(self, lags: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Global frame indices of starts and ends for the given lags, each int64 [n].

        Each start is drawn among the valid starts at its lag (uniformly, or in proportion to the
        start weights) by rejection: a frame of all trajectories, kept if its trajectory has ``lag``
        more frames after it — one vectorised draw for every lag of the batch (a per-lag loop cost
        ~5 ms per batch of mixed lags, a quarter of a small model's training step). Pairs still
        rejected after :data:`REJECTION_ROUNDS` rounds (lags near the longest trajectory's length)
        are drawn exactly among that lag's valid starts.
        """
        lags = torch.as_tensor(lags, dtype=torch.int64)
        starts = torch.empty_like(lags)
        pending = torch.arange(len(lags))
        for _ in range(REJECTION_ROUNDS):
            if len(pending) == 0:
                break
            candidate = self._draw_frames(len(pending), generator)
            kept = self.frames_after[candidate] >= lags[pending]
            starts[pending[kept]] = candidate[kept]
            pending = pending[~kept]
        for lag in torch.unique(lags[pending]).tolist():
            chosen = pending[lags[pending] == lag]
            if self.start_weights is None:
                u = torch.randint(self.n_valid_starts(lag), (len(chosen),), generator=generator)
                starts[chosen] = self.pair_indices(lag, u)[0]
            else:
                valid = torch.nonzero(self.frames_after >= lag).squeeze(1)
                picked = torch.multinomial(self.start_weights[valid], len(chosen), replacement=True, generator=generator)
                starts[chosen] = valid[picked]
        return starts, starts + lags

    def _draw_frames(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """``n`` frame indices of all trajectories, uniform or in proportion to the start weights."""
        if self._start_cdf is None:
            return torch.randint(len(self.frames), (n,), generator=generator)
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.clamp(torch.searchsorted(self._start_cdf, u, right=True), max=len(self.frames) - 1)

    def pair_indices(self, lag: int, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global frame indices (start, end) of the valid pairs numbered ``u`` at ``lag``.

        The valid starts at ``lag`` are numbered 0 … :meth:`n_valid_starts` − 1, trajectory by
        trajectory; drawing ``u`` uniformly draws pairs uniformly. Both int64 tensors of ``u``'s shape.
        """
        counts = torch.clamp(self.lengths - lag, min=0)
        cum = torch.cumsum(counts, 0)
        u = torch.as_tensor(u, dtype=torch.int64)
        traj = torch.searchsorted(cum, u, right=True)
        starts = self.offsets[traj] + u - (cum[traj] - counts[traj])
        return starts, starts + lag

    def sample(self, batch_size: int, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A batch (x_t [B, dim], x_{t+N} [B, dim], N [B])."""
        lags = self.lag_sampler.sample(batch_size, generator)
        i0, i1 = self.sample_indices(lags, generator)
        return self.frames[i0], self.frames[i1], lags


def _checked_weights(weights: np.ndarray, n_frames: int) -> torch.Tensor:
    weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    if weights.shape != (n_frames,):
        raise InvalidInputError(f"start weights must have one entry per frame ({n_frames}), got shape {tuple(weights.shape)}")
    if not bool(torch.all(torch.isfinite(weights))) or bool(torch.any(weights < 0)) or not float(weights.sum()) > 0:
        raise InvalidInputError("start weights must be finite, non-negative and not all zero")
    return weights


#: Histogram cells per axis of :func:`balanced_start_weights` (1-D: twice as many).
BALANCE_BINS = 25
#: The histogram's box leaves out this fraction of the frames on each side of each axis.
BALANCE_BOX_QUANTILE = 1e-3


def balanced_start_weights(coordinates: Sequence[np.ndarray], exponent: float, bins: int = BALANCE_BINS) -> np.ndarray:
    """Start weights that draw rarely visited states more often: w(x) = max(n(x), n̄)^(−exponent).

    n(x) is the number of frames in x's cell of a regular histogram of ``coordinates`` (one or two
    columns: the system's slow coordinates, or their TICA plane —
    :func:`~itomd.analysis.features.slow_plane`), and n̄ the
    count of a cell if the frames filled the histogram's box evenly. At exponent 1 starts are drawn
    from the data's density capped at that even density: every cell denser than even is drawn as
    often as an even one, sparser cells (high-energy excursions, a few frames each) in proportion to
    their frames (without the cap, the 1 % of Müller–Brown's frames with the largest weights, in
    sparse cells at the edges, took 81 % of the draws). A transition model learns
    p(x_{t+N} | x_t) for each x_t; the minimiser of its loss does not depend on how
    often each x_t is drawn, but the training signal does. Equilibrium data visit a metastable state
    in proportion to its population, so the escapes that set the slowest timescales — from a basin
    holding a few per cent of the frames — are a few pairs per batch, and their rate varies from one
    training run to the next. Exponent 0 draws starts uniformly.

    Parameters
    ----------
    coordinates : sequence of np.ndarray, each [n_frames_i, k], k ∈ {1, 2}
    exponent : float
        ≥ 0.
    bins : int
        Cells per axis (1-D: 2 × bins), spanning the data's range but its outermost
        :data:`BALANCE_BOX_QUANTILE` on each side (those frames join the edge cells).

    Returns
    -------
    np.ndarray, shape [Σ n_frames_i], float64
        Weights normalised to mean 1.
    """
    points = np.concatenate([np.asarray(c, dtype=np.float64) for c in coordinates])
    if points.ndim != 2 or points.shape[1] not in (1, 2):
        raise InvalidInputError(f"balanced start weights need one or two coordinates per frame, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise InvalidInputError("the coordinates of the start weights contain NaN or inf values")
    if not (is_finite_number(exponent) and exponent >= 0):
        raise InvalidInputError(f"the balance exponent must be a non-negative number, got {exponent!r}")
    n_cells = 2 * bins if points.shape[1] == 1 else bins
    cells = np.zeros(len(points), dtype=np.int64)
    for column in points.T:  # the box spans all but the outermost 0.1 % each side, which join the edge cells
        low, high = np.quantile(column, [BALANCE_BOX_QUANTILE, 1 - BALANCE_BOX_QUANTILE])
        index = np.zeros(len(column), dtype=np.int64) if not high > low else \
            np.clip(np.floor((column - low) / (high - low) * n_cells), 0, n_cells - 1).astype(np.int64)
        cells = cells * n_cells + index
    _, inverse, counts = np.unique(cells, return_inverse=True, return_counts=True)
    even = len(points) / n_cells ** points.shape[1]
    weights = np.maximum(counts[inverse].astype(np.float64), even) ** (-float(exponent))
    return weights / weights.mean()

