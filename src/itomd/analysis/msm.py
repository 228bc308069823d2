"""Markov state models with deeptime: implied timescales with bootstrap confidence, CK tests."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from deeptime.markov import TransitionCountEstimator, TransitionCountModel
from deeptime.markov.msm import MaximumLikelihoodMSM
from deeptime.markov.tools.estimation import count_matrix

from itomd.analysis._validation import check_frame_interval, check_lags, check_trajectories
from itomd.analysis.discretize import Discretization, discretize
from itomd.errors import InvalidInputError


def _fit_msm(dtrajs: list[np.ndarray], lag: int):
    """Reversible maximum-likelihood MSM on the largest connected set (sliding-window counts)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts = TransitionCountEstimator(lag, "sliding").fit(dtrajs).fetch_model().submodel_largest()
        return MaximumLikelihoodMSM(reversible=True, lagtime=lag).fit(counts).fetch_model()


def _block_counts(dtrajs: list[np.ndarray], lag: int, n_states: int, n_blocks: int) -> np.ndarray:
    """Sliding-window count matrices of ``n_blocks`` interleaved blocks of trajectories, [B, n, n]."""
    blocks = []
    for b in range(n_blocks):
        members = [d for d in dtrajs[b::n_blocks] if len(d) > lag]
        blocks.append(count_matrix(members, lag, sliding=True, nstates=n_states).toarray()
                      if members else np.zeros((n_states, n_states)))
    return np.asarray(blocks)


def _bootstrap_timescales(dtrajs: list[np.ndarray], lag: int, n_states: int, k: int, n_bootstrap: int,
                          rng: np.random.Generator) -> np.ndarray:
    """Implied timescales (frames) of MSMs on resampled trajectory blocks, [n_bootstrap, k]."""
    n_blocks = min(len(dtrajs), 50)
    if n_blocks < 2:
        # a single trajectory: resample contiguous segments of it instead
        d = dtrajs[0]
        n_seg = max(2, min(50, len(d) // max(4 * lag, 1)))
        dtrajs = [s for s in np.array_split(d, n_seg) if len(s) > lag]
        n_blocks = len(dtrajs)
        if n_blocks < 2:
            return np.full((0, k), np.nan)
    blocks = _block_counts(dtrajs, lag, n_states, n_blocks)
    out = np.full((n_bootstrap, k), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b in range(n_bootstrap):
            weights = rng.multinomial(n_blocks, np.full(n_blocks, 1.0 / n_blocks))
            counts = TransitionCountModel(np.tensordot(weights, blocks, axes=1), lagtime=lag).submodel_largest()
            if counts.n_states < 2:
                continue
            msm = MaximumLikelihoodMSM(reversible=True, lagtime=lag).fit(counts).fetch_model()
            kk = min(k, msm.n_states - 1)
            out[b, :kk] = np.real(msm.timescales(kk))
    return out


@dataclass
class ImpliedTimescalesResult:
    """Implied timescales of MSMs across lags, in physical time, slowest first.

    Attributes
    ----------
    lags : np.ndarray, shape [L]
        Lags in frames.
    lag_times : np.ndarray, shape [L]
        Lags in physical time.
    timescales : np.ndarray, shape [L, k]
        Maximum-likelihood implied timescales t_i = −τ / ln λ_i (NaN where an MSM has fewer states).
    lower, upper : np.ndarray, shape [L, k]
        Percentile bounds of a bootstrap over trajectories (NaN if not computed). Trajectories
        are resampled in up to 50 interleaved blocks (segments of a single trajectory), the
        honest error for many short trajectories whose slow process is carried by rare events.
    confidence : float
        Level of the interval.
    reference : np.ndarray, shape [k], optional
        Exact implied timescales.
    n_states : int
        States of the discretisation.
    """

    lags: np.ndarray
    lag_times: np.ndarray
    timescales: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    confidence: float
    n_states: int
    reference: np.ndarray | None = None

    def relative_error(self) -> np.ndarray | None:
        """(estimate − exact) / exact, shape [L, k], or None without a reference."""
        if self.reference is None:
            return None
        k = min(self.timescales.shape[1], len(self.reference))
        return self.timescales[:, :k] / self.reference[None, :k] - 1.0

    def to_dict(self) -> dict:
        err = self.relative_error()
        return {
            "lags": self.lags.tolist(),
            "lag_times": self.lag_times.tolist(),
            "timescales": _nan_to_none(self.timescales),
            "lower": _nan_to_none(self.lower),
            "upper": _nan_to_none(self.upper),
            "confidence": self.confidence,
            "n_states": self.n_states,
            "reference": None if self.reference is None else self.reference.tolist(),
            "relative_error_slowest": None if err is None else _nan_to_none(err[:, 0]),
        }

    def plot(self, ax=None):
        """Implied timescales vs lag time (log scale) with confidence bands and exact lines."""
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(5.5, 4))[1]
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i in range(self.timescales.shape[1]):
            c = colors[i % len(colors)]
            ax.plot(self.lag_times, self.timescales[:, i], "o-", color=c, label=f"MSM t{i + 2}")
            if np.any(np.isfinite(self.lower[:, i])):
                ax.fill_between(self.lag_times, self.lower[:, i], self.upper[:, i], color=c, alpha=0.2)
            if self.reference is not None and i < len(self.reference):
                ax.axhline(self.reference[i], color=c, ls="--", lw=1, label=f"exact t{i + 2}")
        lt = np.linspace(0, self.lag_times.max() * 1.05, 50)
        ax.fill_between(lt, 1e-12, lt, color="0.85", zorder=0)
        ax.set_yscale("log")
        finite = self.timescales[np.isfinite(self.timescales)]
        if finite.size:
            lo = min(finite.min(), self.reference.min() if self.reference is not None else np.inf)
            hi = max(finite.max(), self.reference.max() if self.reference is not None else 0)
            ax.set_ylim(lo / 2, hi * 2)
        ax.set_xlabel("lag time τ")
        ax.set_ylabel("implied timescale")
        ax.set_title(f"implied timescales ({self.n_states} states, {int(self.confidence * 100)}% bootstrap CI)")
        ax.legend(fontsize=7, ncol=2)
        return ax


def implied_timescales(
    trajectories: Sequence[np.ndarray],
    frame_interval: float,
    lags: Sequence[int],
    n_timescales: int = 3,
    discretization: Discretization | None = None,
    n_bootstrap: int = 50,
    confidence: float = 0.95,
    reference=None,
    seed: int = 0,
) -> ImpliedTimescalesResult:
    """Implied timescales of reversible maximum-likelihood MSMs at several lags (deeptime).

    Parameters
    ----------
    trajectories : list of np.ndarray, each [n_frames, dim]
    frame_interval : float
        Physical time between frames.
    lags : sequence of int
        Lags in frames.
    n_timescales : int
        Number of timescales per lag.
    discretization : Discretization, optional
        Defaults to :func:`~itomd.analysis.discretize.discretize` with its automatic choice.
    n_bootstrap : int
        Bootstrap resamples for the confidence interval (0: none).
    confidence : float
        Interval level.
    reference : ExactReference, optional
        For exact timescale lines and relative errors.
    seed : int
        Seed of the discretisation.

    Returns
    -------
    ImpliedTimescalesResult
    """
    trajectories = check_trajectories(trajectories)
    frame_interval = check_frame_interval(frame_interval)
    lags = check_lags(lags, trajectories)
    if n_timescales < 1:
        raise InvalidInputError(f"n_timescales must be positive, got {n_timescales}")
    discretization = discretization or discretize(trajectories, seed=seed)
    dtrajs = discretization.transform(trajectories)
    rng = np.random.default_rng(seed)
    ts = np.full((len(lags), n_timescales), np.nan)
    lo, hi = ts.copy(), ts.copy()
    alpha = (1.0 - confidence) / 2.0
    for i, lag in enumerate(lags):
        msm = _fit_msm(dtrajs, lag)
        k = min(n_timescales, msm.n_states - 1)
        if k < 1:
            continue
        ts[i, :k] = np.real(msm.timescales(k)) * frame_interval
        if n_bootstrap > 0:
            boot = _bootstrap_timescales(dtrajs, lag, discretization.n_states, k, n_bootstrap, rng)
            if len(boot):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    lo[i, :k] = np.nanquantile(boot, alpha, axis=0) * frame_interval
                    hi[i, :k] = np.nanquantile(boot, 1.0 - alpha, axis=0) * frame_interval
    ref = None if reference is None else np.asarray(reference.implied_timescales(n_timescales))
    return ImpliedTimescalesResult(lags=np.asarray(lags), lag_times=np.asarray(lags) * frame_interval, timescales=ts,
                                   lower=lo, upper=hi, confidence=confidence, n_states=discretization.n_states,
                                   reference=ref)


@dataclass
class CKTestResult:
    """Chapman–Kolmogorov test: probabilities of staying in/moving between metastable sets.

    Attributes
    ----------
    lag : int
        Lag (frames) of the tested model.
    lag_times : np.ndarray, shape [T]
        Physical times k·τ at which predictions and estimates are compared (0 included).
    predictions : np.ndarray, shape [T, m, m]
        Model at lag τ propagated k times: P(set j at kτ | set i at 0).
    estimates : np.ndarray, shape [T, m, m]
        The same from MSMs estimated directly at lag kτ.
    """

    lag: int
    lag_times: np.ndarray
    predictions: np.ndarray
    estimates: np.ndarray
    n_metastable: int

    @property
    def max_deviation(self) -> float:
        """Largest |prediction − estimate| over all lags and set pairs."""
        return float(np.nanmax(np.abs(self.predictions - self.estimates)))

    def to_dict(self) -> dict:
        return {"lag": self.lag, "lag_times": self.lag_times.tolist(), "n_metastable": self.n_metastable,
                "predictions": self.predictions.tolist(), "estimates": self.estimates.tolist(),
                "max_deviation": self.max_deviation}

    def plot(self, fig=None):
        """An m × m grid of panels: predicted (line) vs estimated (markers) set probabilities."""
        import matplotlib.pyplot as plt

        m = self.n_metastable
        fig = fig or plt.figure(figsize=(2.4 * m + 1, 2.2 * m + 0.5))
        axes = fig.subplots(m, m, sharex=True, sharey=True, squeeze=False)
        for i in range(m):
            for j in range(m):
                ax = axes[i, j]
                ax.plot(self.lag_times, self.predictions[:, i, j], "-", color="C0", label="prediction")
                ax.plot(self.lag_times, self.estimates[:, i, j], "o--", color="C1", ms=4, label="estimate")
                ax.set_title(f"{i + 1} → {j + 1}", fontsize=8)
                ax.set_ylim(-0.05, 1.05)
        axes[0, 0].legend(fontsize=7)
        for ax in axes[-1]:
            ax.set_xlabel("lag time")
        fig.suptitle(f"Chapman–Kolmogorov test (model lag {self.lag} frames; max dev {self.max_deviation:.3f})",
                     fontsize=9)
        fig.tight_layout()
        return fig


def ck_test(
    trajectories: Sequence[np.ndarray],
    frame_interval: float,
    lag: int,
    n_metastable: int = 2,
    mlags: int = 5,
    discretization: Discretization | None = None,
    seed: int = 0,
) -> CKTestResult:
    """Chapman–Kolmogorov test of the MSM at ``lag`` with PCCA+ metastable sets (deeptime).

    Parameters
    ----------
    trajectories : list of np.ndarray, each [n_frames, dim]
    frame_interval : float
    lag : int
        Lag of the tested model, in frames.
    n_metastable : int
        Number of PCCA+ sets.
    mlags : int
        Largest multiple k of the lag tested (k = 1..mlags); reduced to fit the data.
    discretization : Discretization, optional

    Returns
    -------
    CKTestResult
    """
    trajectories = check_trajectories(trajectories)
    frame_interval = check_frame_interval(frame_interval)
    (lag,) = check_lags([lag], trajectories)
    if n_metastable < 2:
        raise InvalidInputError(f"the CK test needs at least 2 metastable sets, got {n_metastable}")
    longest = max(len(t) for t in trajectories)
    mlags = int(min(mlags, (longest - 1) // lag))
    if mlags < 2:
        raise InvalidInputError(f"lag {lag} frames leaves no room for a CK test in trajectories of {longest} frames")
    discretization = discretization or discretize(trajectories, seed=seed)
    dtrajs = discretization.transform(trajectories)
    models = [_fit_msm(dtrajs, k * lag) for k in range(1, mlags + 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = models[0].ck_test(models, n_metastable_sets=n_metastable)
    return CKTestResult(lag=lag, lag_times=np.asarray(result.lagtimes) * frame_interval,
                        predictions=np.real(np.asarray(result.predictions)), estimates=np.real(np.asarray(result.estimates)),
                        n_metastable=n_metastable)


def _nan_to_none(a: np.ndarray):
    return np.where(np.isfinite(a), a, None).tolist() if np.ndim(a) else (float(a) if np.isfinite(a) else None)
