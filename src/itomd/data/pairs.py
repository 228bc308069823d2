r"""Multi-lag pair data for ITO training: (x_t, x_{t+Nτ}, N) with N drawn from a lag sampler.

Lag samplers have an exact, documented support on {1, …, N_max} (``N_max`` can be drawn):

* :class:`FixedLag` — always N.
* :class:`UniformLag` — P(N) = 1/N_max.
* :class:`LogUniformLag` — P(N) = ln((N+1)/N) / ln(N_max+1), i.e. ``floor(exp(U))`` with
  U ~ Uniform[0, ln(N_max+1)): log-uniform in continuous lag, discretised without losing N_max.

Given N, a pair is drawn uniformly among all *valid* start frames of all trajectories: frame t of
trajectory i is valid iff t + N ≤ T_i − 1, so trajectory i offers max(T_i − N, 0) starts and a
trajectory shorter than N + 1 frames offers none. Trajectories that cannot serve the largest lag
are reported once with a warning. All randomness comes from an explicit :class:`torch.Generator`
(training draws every global batch from one seeded generator, so batches do not depend on the number
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
from itomd.validation import as_real_array

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
    """Uniform draws of valid (x_t, x_{t+N}) pairs from a set of trajectories for given lags N.

    Parameters
    ----------
    trajectories : sequence of array-like, each [n_frames_i, dim]
    lag_sampler : LagSampler
        Distribution of lags (frames).
    """

    def __init__(self, trajectories: Sequence[np.ndarray], lag_sampler: LagSampler):
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

        Each start is uniform over the valid starts at its lag, drawn by rejection: a uniform frame
        of all trajectories, kept if its trajectory has ``lag`` more frames after it — one vectorised
        draw for every lag of the batch (a per-lag loop cost ~5 ms per batch of mixed lags, a
        quarter of a small model's training step). Pairs still rejected after
        :data:`REJECTION_ROUNDS` rounds (lags near the longest trajectory's length) are drawn exactly
        with :meth:`pair_indices`.
        """
        lags = torch.as_tensor(lags, dtype=torch.int64)
        starts = torch.empty_like(lags)
        pending = torch.arange(len(lags))
        for _ in range(REJECTION_ROUNDS):
            if len(pending) == 0:
                break
            candidate = torch.randint(len(self.frames), (len(pending),), generator=generator)
            kept = self.frames_after[candidate] >= lags[pending]
            starts[pending[kept]] = candidate[kept]
            pending = pending[~kept]
        for lag in torch.unique(lags[pending]).tolist():
            chosen = pending[lags[pending] == lag]
            u = torch.randint(self.n_valid_starts(lag), (len(chosen),), generator=generator)
            starts[chosen] = self.pair_indices(lag, u)[0]
        return starts, starts + lags

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
