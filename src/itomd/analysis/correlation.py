r"""Normalised time-autocorrelation functions of an observable,

.. math::
    C(N) = \frac{\langle (f(x_t) - m)(f(x_{t+N}) - m) \rangle}{\mathrm{Var}\, f},

pooled over all pairs of frames N apart within the same trajectory, with the global mean m and
variance over all frames (the estimator for equilibrium data). With an exact reference the exact
curve comes from its eigenpairs (:meth:`ExactReference.autocorrelation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from itomd.validation import check_frame_interval, check_lags, check_trajectories
from itomd.analysis._axes import DEFAULT_TIME_UNIT
from itomd.errors import InvalidInputError

if TYPE_CHECKING:
    import matplotlib.axes

    from itomd.systems.reference import ExactReference

#: An observable maps configurations [n, dim] to values [n].
Observable = Callable[[np.ndarray], np.ndarray]


def first_coordinate(x: np.ndarray) -> np.ndarray:
    """The default observable f(x) = x[0]: shape [n, dim] → [n]."""
    return x[:, 0]


@dataclass
class AutocorrelationResult:
    """Normalised autocorrelation of an observable against lag, with the exact curve if known.

    Attributes
    ----------
    lags : np.ndarray, shape [L]
        Lags in frames.
    lag_times : np.ndarray, shape [L]
        Lags in physical time.
    values : np.ndarray, shape [L]
        C(N) estimated from the trajectories.
    observable : str
        Name of the observable.
    n_pairs : np.ndarray, shape [L]
        Frame pairs averaged at each lag.
    reference : np.ndarray, shape [L], optional
        Exact C at the same lag times.
    time_unit : str
        Unit of ``lag_times`` (the system's ``time_unit``).
    """

    lags: np.ndarray
    lag_times: np.ndarray
    values: np.ndarray
    observable: str
    n_pairs: np.ndarray
    reference: np.ndarray | None = None
    time_unit: str = DEFAULT_TIME_UNIT

    def max_abs_deviation(self) -> float | None:
        """Largest |C − C_exact| over the lags; None without a reference."""
        return None if self.reference is None else float(np.max(np.abs(self.values - self.reference)))

    def to_dict(self) -> dict:
        """JSON-serialisable summary."""
        return {"observable": self.observable, "lags": [int(l) for l in self.lags],
                "lag_times": [float(t) for t in self.lag_times], "values": [float(v) for v in self.values],
                "reference": None if self.reference is None else [float(v) for v in self.reference],
                "n_pairs": [int(n) for n in self.n_pairs], "max_abs_deviation": self.max_abs_deviation(),
                "time_unit": self.time_unit}

    def plot(self, ax: "matplotlib.axes.Axes | None" = None, comparison: "AutocorrelationResult | None" = None,
             comparison_label: str = "MD") -> "matplotlib.axes.Axes":
        """C against lag time (log x, in :attr:`time_unit`), exact curve dashed, a second data set's squares.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on; a new figure is made otherwise.
        comparison : AutocorrelationResult, optional
            The same observable's autocorrelation from another data set (e.g. MD), drawn with squares.
        comparison_label : str
            Its name in the legend.

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        from itomd.analysis._axes import log_time_axis

        if ax is None:
            ax = plt.subplots(figsize=(5.5, 4.0))[1]
        ax.plot(self.lag_times, self.values, "o-", ms=3, color="C0",
                label="trajectories" if comparison is None else "this data")
        if comparison is not None:
            ax.plot(comparison.lag_times, comparison.values, "s-", ms=4, lw=1, color="C2", label=comparison_label)
        if self.reference is not None:
            ax.plot(self.lag_times, self.reference, "--", color="k", lw=1.2, label="exact")
        ax.axhline(0.0, color="0.7", lw=0.8)
        log_time_axis(ax)
        ax.set_xlabel(f"lag time ({self.time_unit})")
        ax.set_ylabel("normalised autocorrelation")
        ax.set_title(f"Autocorrelation of {self.observable}", fontsize=10)
        ax.legend(fontsize=8)
        return ax


def autocorrelation(
    trajectories: Sequence[np.ndarray],
    frame_interval: float,
    lags: Sequence[int],
    observable: Observable | None = None,
    reference: "ExactReference | None" = None,
    name: str | None = None,
    time_unit: str = DEFAULT_TIME_UNIT,
) -> AutocorrelationResult:
    """Normalised autocorrelation of an observable, pooled over trajectories.

    Parameters
    ----------
    trajectories : list of np.ndarray, each [n_frames_i, dim]
    frame_interval : float
        Physical time between frames.
    lags : sequence of int
        Lags in frames (positive, shorter than the longest trajectory).
    observable : callable, optional
        f mapping configurations [n, dim] to values [n]; default the first coordinate.
    reference : ExactReference, optional
        Adds the exact curve, with f evaluated at the reference's grid points.
    name : str, optional
        Name of the observable for plots; default ``"x[0]"`` or the function's name.
    time_unit : str
        Unit of ``frame_interval`` (the system's ``time_unit``), for labels.

    Returns
    -------
    AutocorrelationResult
    """
    trajectories = check_trajectories(trajectories)
    frame_interval = check_frame_interval(frame_interval)
    lags = check_lags(lags, trajectories)
    f = first_coordinate if observable is None else observable
    name = name or ("x[0]" if observable is None else getattr(observable, "__name__", "f"))
    values = np.concatenate([_evaluate(f, t) for t in trajectories])
    owner = np.repeat(np.arange(len(trajectories)), [len(t) for t in trajectories])
    centred = values - values.mean()
    variance = float(np.mean(centred**2))
    if not variance > 0:
        raise InvalidInputError("the observable is constant along the trajectories")
    estimate = np.empty(len(lags))
    n_pairs = np.empty(len(lags), dtype=np.int64)
    for i, lag in enumerate(lags):
        same = owner[:-lag] == owner[lag:]  # pairs within one trajectory
        n_pairs[i] = same.sum()
        estimate[i] = np.dot(centred[:-lag][same], centred[lag:][same]) / n_pairs[i] / variance
    lag_times = np.asarray(lags) * frame_interval
    exact = None
    if reference is not None:
        if reference.dim != trajectories[0].shape[1]:
            raise InvalidInputError(
                f"trajectories are {trajectories[0].shape[1]}-dimensional but the reference is {reference.dim}-dimensional")
        exact = np.asarray(reference.autocorrelation(_evaluate(f, reference.points), lag_times))
    return AutocorrelationResult(lags=np.asarray(lags), lag_times=lag_times, values=estimate, observable=name,
                                 n_pairs=n_pairs, reference=exact, time_unit=str(time_unit))


def _evaluate(f: Observable, x: np.ndarray) -> np.ndarray:
    values = np.asarray(f(x), dtype=float)
    if values.size != len(x):
        raise InvalidInputError(f"the observable must map [n, dim] to [n] values, got shape {values.shape}")
    values = values.reshape(len(x))
    if not np.all(np.isfinite(values)):
        raise InvalidInputError("the observable gave NaN or inf values")
    return values
