r"""Normalised time-autocorrelation functions,

.. math::
    C(N) = \frac{\langle (f(x_t) - m)(f(x_{t+N}) - m) \rangle}{\mathrm{Var}\, f},

pooled over trajectories with the global mean m and variance (the estimator for equilibrium data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from itomd.analysis._validation import check_frame_interval, check_lags, check_trajectories
from itomd.errors import InvalidInputError

Observable = Callable[[np.ndarray], np.ndarray]


def first_coordinate(x: np.ndarray) -> np.ndarray:
    """The default observable: f(x) = x₁ (shape [n, dim] → [n])."""
    return x[..., 0]


@dataclass
class AutocorrelationResult:
    """Autocorrelation of an observable vs lag, with the exact curve when a reference is known.

    Attributes
    ----------
    lags : np.ndarray, shape [L]  (frames)
    lag_times : np.ndarray, shape [L]
    values : np.ndarray, shape [L]
    reference : np.ndarray, shape [L], optional
    observable : str
    """

    lags: np.ndarray
    lag_times: np.ndarray
    values: np.ndarray
    observable: str
    reference: np.ndarray | None = None

    def max_abs_error(self) -> float | None:
        return None if self.reference is None else float(np.max(np.abs(self.values - self.reference)))

    def to_dict(self) -> dict:
        return {"lags": self.lags.tolist(), "lag_times": self.lag_times.tolist(), "values": self.values.tolist(),
                "reference": None if self.reference is None else self.reference.tolist(),
                "observable": self.observable, "max_abs_error_vs_reference": self.max_abs_error()}

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(5.5, 4))[1]
        ax.plot(self.lag_times, self.values, "o-", ms=3, label="samples")
        if self.reference is not None:
            ax.plot(self.lag_times, self.reference, "k--", label="exact")
        ax.set_xscale("log")
        ax.set_xlabel("lag time")
        ax.set_ylabel(f"C(τ) of {self.observable}")
        ax.set_title("autocorrelation")
        ax.legend()
        return ax


def autocorrelation(
    trajectories: Sequence[np.ndarray],
    frame_interval: float,
    lags: Sequence[int],
    observable: Observable | None = None,
    reference=None,
    name: str | None = None,
) -> AutocorrelationResult:
    """Normalised autocorrelation of an observable, pooled over trajectories.

    Parameters
    ----------
    trajectories : list of np.ndarray, each [n_frames, dim]
    frame_interval : float
    lags : sequence of int
        Lags in frames.
    observable : callable, optional
        ``f(x)`` mapping [n, dim] to [n]; default: the first coordinate.
    reference : ExactReference, optional
        Adds the exact C(τ) from the reference's eigenpairs.
    name : str, optional
        Observable name for plots.

    Returns
    -------
    AutocorrelationResult
    """
    trajectories = check_trajectories(trajectories)
    frame_interval = check_frame_interval(frame_interval)
    lags = check_lags(lags, trajectories)
    f = observable or first_coordinate
    values = [np.asarray(f(t), dtype=float) for t in trajectories]
    if any(v.shape != (len(t),) for v, t in zip(values, trajectories)):
        raise InvalidInputError("observable must map [n_frames, dim] to [n_frames]")
    allv = np.concatenate(values)
    mean, var = allv.mean(), allv.var()
    if var <= 0:
        raise InvalidInputError("observable is constant along the trajectories")
    corr = []
    for lag in lags:
        num, cnt = 0.0, 0
        for v in values:
            if len(v) > lag:
                num += float(np.dot(v[:-lag] - mean, v[lag:] - mean))
                cnt += len(v) - lag
        corr.append(num / cnt / var if cnt else np.nan)
    lag_times = np.asarray(lags) * frame_interval
    exact = None
    if reference is not None:
        exact = reference.autocorrelation(np.asarray(f(reference.points), dtype=float), lag_times)
    return AutocorrelationResult(lags=np.asarray(lags), lag_times=lag_times, values=np.asarray(corr),
                                 observable=name or getattr(f, "__name__", "f"), reference=exact)
