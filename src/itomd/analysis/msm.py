r"""Markov state models with deeptime: implied timescales with Bayesian confidence, CK tests.

At each lag τ (frames) a reversible maximum-likelihood MSM is estimated on the largest connected
set of a :class:`~itomd.analysis.discretize.Discretization` from sliding-window counts. Its
eigenvalues :math:`\lambda_i(\tau)` give the implied timescales

.. math::
    t_i = -\frac{\tau\,\Delta t}{\ln |\lambda_i(\tau)|},

with :math:`\Delta t` the frame interval. Confidence intervals come from reversible transition
matrices sampled from deeptime's Bayesian MSM posterior (Trendelkamp-Schroer et al. 2015) given the
*effective* counts (sliding counts divided by τ, deeptime's ``"sliding-effective"`` mode), drawn with
a fixed seed so that results are reproducible. On simulated Prinz data their width matches the
spread between independent data sets; deeptime's ``"effective"`` mode gave intervals ~10× too narrow
there and is ~10× slower. Where the effective counts become sparse (long lags, roughly fewer than
~50 per state) the posterior skews towards long timescales and may no longer contain the maximum-
likelihood value: :attr:`ImpliedTimescalesResult.effective_counts` records the counts per lag.

**Resolved estimates.** An implied timescale is only meaningful where the process survives one lag
with room to spare for the statistical noise; beyond that the estimate is the noise floor of the
eigenvalue, :math:`t \approx -\tau\Delta t / \ln(\text{noise})`, and grows with τ whatever the
dynamics. Each estimate is therefore marked *resolved* (:attr:`ImpliedTimescalesResult.resolved`)
when its eigenvalue exceeds :math:`e^{-1}` (that is, :math:`t_i > \tau\Delta t`) by
:data:`RESOLUTION_Z` standard errors:

.. math::
    |\hat\lambda_i| - z\,\hat\sigma_i > e^{-1}, \qquad
    \hat\sigma_i^2 = \frac{1}{N_\mathrm{eff}} \sum_{ab} \pi_a P_{ab}
        \Big(\psi_a\psi_b - \hat\lambda_i \frac{\psi_a^2 + \psi_b^2}{2}\Big)^2,

the first-order (delta-method) variance of the eigenvalue estimated from :math:`N_\mathrm{eff}`
independent transition pairs (the effective counts), with :math:`\psi` the MSM's right eigenvector
(:math:`\sum_a \pi_a \psi_a^2 = 1`) and :math:`\pi_a P_{ab}` the pair distribution. For a
process between a rare state of population *p* and the rest, :math:`N_\mathrm{eff}/\hat\sigma^2`
scales with the number of transitions out of the rare state, so few observed transitions leave an
estimate unresolved even where :math:`t > \tau`. The criterion needs no posterior samples (the
Bayesian intervals skew towards long timescales exactly where counts are sparse). Summaries against
references or other data (:meth:`ImpliedTimescalesResult.relative_error_vs_reference`,
:meth:`~itomd.analysis.pipeline.Comparison.slowest_timescale_ratio`) leave unresolved estimates out.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from math import sqrt
from typing import TYPE_CHECKING, Sequence

import numpy as np
from deeptime.markov import BayesianMSMPosterior, TransitionCountEstimator, TransitionCountModel
from deeptime.markov._observables import MembershipsObservable
from deeptime.markov.msm import MarkovStateModel, MaximumLikelihoodMSM
from deeptime.markov.tools.estimation.dense.tmat_sampling.tmatrix_sampler import TransitionMatrixSampler
from deeptime.util.validation import ck_test as deeptime_ck_test

from itomd.validation import check_frame_interval, check_lags, check_trajectories
from itomd.analysis._axes import DEFAULT_TIME_UNIT
from itomd.analysis.discretize import Discretization, discretize
from itomd.errors import InvalidInputError

if TYPE_CHECKING:
    import matplotlib.axes
    import matplotlib.figure

    from itomd.systems.reference import ExactReference

#: Default number of Bayesian posterior samples per lag.
DEFAULT_N_SAMPLES = 50

#: Standard errors by which an eigenvalue must exceed e⁻¹ (t > τ) for its timescale to count as resolved.
RESOLUTION_Z = 2.0


# -- estimation helpers ---------------------------------------------------------------------------
def _count_model(dtrajs: list[np.ndarray], lag: int, mode: str,
                 restrict_to: np.ndarray | None = None) -> TransitionCountModel:
    """Counts at ``lag`` on the largest connected set (optionally within the states ``restrict_to``)."""
    counts = TransitionCountEstimator(lag, mode).fit(dtrajs).fetch_model()
    if restrict_to is not None:
        counts = counts.submodel(restrict_to[restrict_to < counts.n_states_full])
    return counts.submodel_largest()


def _estimate_msm(dtrajs: list[np.ndarray], lag: int, n_samples: int, seed: int,
                  restrict_to: np.ndarray | None = None) -> MarkovStateModel | BayesianMSMPosterior | None:
    """Reversible MLE MSM at ``lag``, or a Bayesian posterior around it if ``n_samples > 0``.

    Returns None where the largest connected set has fewer than two states.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # effective counts (sliding / lag) give the same MLE as sliding counts and a sound posterior
        counts = _count_model(dtrajs, lag, "sliding-effective", restrict_to)
        if counts.n_states < 2:
            return None
        msm = MaximumLikelihoodMSM(reversible=True, lagtime=lag).fit(counts).fetch_model()
        if n_samples <= 0:
            return msm
        return BayesianMSMPosterior(prior=msm, samples=_posterior_samples(msm, n_samples, seed))


def _posterior_samples(msm: MarkovStateModel, n_samples: int, seed: int) -> list[MarkovStateModel]:
    """Reversible transition matrices from deeptime's Bayesian MSM sampler, with a fixed seed.

    This is what ``deeptime.markov.msm.BayesianMSM`` does, except that its sampler is not seeded.
    """
    count_model = msm.count_model
    sampler = TransitionMatrixSampler(count_model.count_matrix, reversible=True, P0=msm.transition_matrix,
                                      n_steps=int(sqrt(count_model.n_states_full)), seed=int(seed) % 2**31)
    matrices, stationary = sampler.sample(nsamples=n_samples, return_statdist=True)
    if n_samples == 1:
        matrices, stationary = matrices[None], stationary[None]
    return [MarkovStateModel(P, stationary_distribution=pi, reversible=True, count_model=count_model,
                             transition_matrix_tolerance=msm.transition_matrix_tolerance)
            for P, pi in zip(matrices, stationary)]


def eigenvalue_standard_errors(msm: MarkovStateModel, n_effective: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The k slowest non-unit eigenvalues of a reversible MSM and their standard errors.

    The error is the first-order spread of the eigenvalue's Rayleigh-quotient estimate from
    ``n_effective`` independent transition pairs distributed as :math:`\pi_a P_{ab}` (see the module
    docstring).

    Parameters
    ----------
    msm : MarkovStateModel
        Reversible, with n states.
    n_effective : float
        Effective number of independent transition pairs (effective counts on the active set).
    k : int
        Number of eigenvalues (at most n − 1).

    Returns
    -------
    eigenvalues : np.ndarray, shape [k]
        Sorted by decreasing modulus (the order of ``msm.timescales``).
    standard_errors : np.ndarray, shape [k]
    """
    pi = np.asarray(msm.stationary_distribution, dtype=float)
    transition = np.asarray(msm.transition_matrix, dtype=float)
    root = np.sqrt(pi)
    symmetric = root[:, None] * transition / root[None, :]
    values, vectors = np.linalg.eigh(0.5 * (symmetric + symmetric.T))
    order = np.argsort(-np.abs(values))[1:k + 1]  # the first is the stationary eigenvalue 1
    values = values[order]
    psi = vectors[:, order] / root[:, None]  # right eigenvectors with sum_a pi_a psi_a² = 1
    pairs = pi[:, None] * transition  # [n, n] joint distribution of (a, b)
    errors = np.empty(len(order))
    for i in range(len(order)):
        g = np.outer(psi[:, i], psi[:, i]) - values[i] * 0.5 * (psi[:, i, None] ** 2 + psi[None, :, i] ** 2)
        errors[i] = sqrt(max(float(np.sum(pairs * g**2)), 0.0) / max(float(n_effective), 1e-300))
    return values, errors


def _check_confidence(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise InvalidInputError(f"confidence must lie in (0, 1), got {confidence}")
    return float(confidence)


def _prepare(trajectories, frame_interval, discretization, seed):
    trajectories = check_trajectories(trajectories)
    frame_interval = check_frame_interval(frame_interval)
    if discretization is None:
        discretization = discretize(trajectories, seed=seed)
        dtrajs = discretization.dtrajs
    else:
        dtrajs = discretization.transform(trajectories)
    return trajectories, frame_interval, discretization, dtrajs


# -- implied timescales ---------------------------------------------------------------------------
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
        Maximum-likelihood implied timescales (NaN where an MSM has too few states).
    lower, upper : np.ndarray, shape [L, k]
        Bounds of the Bayesian confidence interval (NaN where not computed).
    confidence : float
        Level of the interval (e.g. 0.95).
    n_states : int
        States of the discretisation.
    active_states : np.ndarray, shape [L]
        States in the largest connected set at each lag.
    effective_counts : np.ndarray, shape [L]
        Total effective transition counts (sliding counts / lag) on the active set at each lag.
    reference : np.ndarray, shape [k], optional
        Exact implied timescales, slowest first.
    resolved : np.ndarray of bool, shape [L, k]
        Whether each estimate resolves its process: eigenvalue above e⁻¹ (t > lag time) by
        :data:`RESOLUTION_Z` standard errors (module docstring). Unresolved estimates are left out
        of every summary; default all False.
    time_unit : str
        Unit of the lag times and timescales (the system's ``time_unit``).
    """

    lags: np.ndarray
    lag_times: np.ndarray
    timescales: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    confidence: float
    n_states: int
    active_states: np.ndarray
    effective_counts: np.ndarray
    reference: np.ndarray | None = None
    resolved: np.ndarray | None = None
    time_unit: str = DEFAULT_TIME_UNIT

    def __post_init__(self) -> None:
        if self.resolved is None:
            self.resolved = np.zeros(self.timescales.shape, dtype=bool)
        self.resolved = np.asarray(self.resolved, dtype=bool) & np.isfinite(self.timescales)

    @property
    def n_timescales(self) -> int:
        return self.timescales.shape[1]

    def resolved_timescales(self) -> np.ndarray:
        """The timescales with unresolved estimates replaced by NaN, shape [L, k] — the input of summaries."""
        return np.where(self.resolved, self.timescales, np.nan)

    def relative_error_vs_reference(self) -> np.ndarray | None:
        """Relative error (estimate − exact) / exact of the resolved estimates, shape [L, k'] (k' the
        timescales with a reference); NaN where unresolved; None without a reference."""
        if self.reference is None:
            return None
        k = min(self.n_timescales, len(self.reference))
        return self.resolved_timescales()[:, :k] / self.reference[None, :k] - 1.0

    def to_dict(self) -> dict:
        """JSON-serialisable summary (NaN becomes null); times in physical units."""
        error = self.relative_error_vs_reference()
        return {
            "lags": [int(l) for l in self.lags],
            "lag_times": [float(t) for t in self.lag_times],
            "timescales": _to_json(self.timescales),
            "lower": _to_json(self.lower),
            "upper": _to_json(self.upper),
            "confidence": float(self.confidence),
            "n_states": int(self.n_states),
            "active_states": [int(n) for n in self.active_states],
            "effective_counts": [float(n) for n in self.effective_counts],
            "resolved": [[bool(r) for r in row] for row in self.resolved],
            "resolution_z": RESOLUTION_Z,
            "time_unit": self.time_unit,
            "reference": None if self.reference is None else _to_json(self.reference),
            "relative_error_slowest": None if error is None else _to_json(error[:, 0]),
        }

    def plot(self, ax: "matplotlib.axes.Axes | None" = None) -> "matplotlib.axes.Axes":
        """Implied timescales vs lag time, both on log scales.

        Resolved estimates are filled markers, unresolved ones hollow grey markers (see
        :attr:`resolved`); confidence bands are shaded, exact timescales are dashed horizontal
        lines, and the grey region below the dotted line t = τ marks timescales too fast to resolve
        at that lag. Axes are labelled in :attr:`time_unit`.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on; a new figure is made otherwise.

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt

        from itomd.analysis._axes import log_time_axis

        if ax is None:
            ax = plt.subplots(figsize=(5.5, 4.0))[1]
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i in range(self.n_timescales):
            color = colors[i % len(colors)]
            resolved = self.resolved[:, i]
            ax.plot(self.lag_times, self.timescales[:, i], "-", color=color, lw=1, alpha=0.5)
            ax.plot(self.lag_times[resolved], self.timescales[resolved, i], "o", color=color, ms=4,
                    label=f"MSM $t_{i + 2}$")
            band = np.isfinite(self.lower[:, i]) & np.isfinite(self.upper[:, i]) & resolved
            if band.any():
                ax.fill_between(self.lag_times, np.where(band, self.lower[:, i], np.nan),
                                np.where(band, self.upper[:, i], np.nan), color=color, alpha=0.2, lw=0)
            if self.reference is not None and i < len(self.reference):
                ax.axhline(self.reference[i], color=color, ls="--", lw=1.2, label=f"exact $t_{i + 2}$")
        unresolved = ~self.resolved & np.isfinite(self.timescales)
        if unresolved.any():
            lag_grid = np.broadcast_to(self.lag_times[:, None], self.timescales.shape)
            ax.plot(lag_grid[unresolved], self.timescales[unresolved], "o", mfc="none", mec="0.45", ms=5,
                    label="unresolved")
        values = [self.timescales[np.isfinite(self.timescales)]]
        if self.reference is not None:
            values.append(self.reference[: self.n_timescales])
        values = np.concatenate(values)
        values = values[values > 0]
        low, high = (values.min() / 3, values.max() * 3) if values.size else (self.lag_times.min(), 1.0)
        low = min(low, self.lag_times.min() / 2)
        high = max(high, self.lag_times.max() * 1.5)
        edge = np.geomspace(self.lag_times.min() / 1.5, self.lag_times.max() * 1.5, 200)
        ax.fill_between(edge, low, np.maximum(edge, low), color="0.88", zorder=0, label="t < τ (unresolvable)")
        ax.plot(edge, edge, ":", color="0.3", lw=1, zorder=1, label="t = τ")
        ax.set_yscale("log")
        ax.set_ylim(low, high)
        ax.set_xlim(edge[0], edge[-1])
        log_time_axis(ax)
        ax.set_xlabel(f"lag time τ ({self.time_unit})")
        ax.set_ylabel(f"implied timescale ({self.time_unit})")
        ax.set_title(f"Implied timescales ({self.n_states} states, {self.confidence:.0%} CI)", fontsize=10)
        ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
        return ax


def implied_timescales(
    trajectories: Sequence[np.ndarray],
    frame_interval: float,
    lags: Sequence[int],
    n_timescales: int = 3,
    discretization: Discretization | None = None,
    n_samples: int = DEFAULT_N_SAMPLES,
    confidence: float = 0.95,
    reference: "ExactReference | None" = None,
    seed: int = 0,
    time_unit: str = DEFAULT_TIME_UNIT,
) -> ImpliedTimescalesResult:
    """Implied timescales of reversible MSMs estimated at several lags (deeptime).

    Parameters
    ----------
    trajectories : list of np.ndarray, each [n_frames_i, dim]
    frame_interval : float
        Physical time between frames.
    lags : sequence of int
        Lags in frames (positive; each shorter than the longest trajectory).
    n_timescales : int
        Number of timescales per lag, slowest first.
    discretization : Discretization, optional
        State decomposition; defaults to :func:`~itomd.analysis.discretize.discretize` (automatic).
    n_samples : int
        Bayesian posterior samples per lag for the confidence interval (0: no interval).
    confidence : float
        Level of the interval, in (0, 1).
    reference : ExactReference, optional
        Supplies exact timescales for the plot and the relative errors.
    seed : int
        Seed of the discretisation and of the posterior sampler.
    time_unit : str
        Unit of ``frame_interval`` (the system's ``time_unit``), for labels.

    Returns
    -------
    ImpliedTimescalesResult
        With each estimate marked resolved or not (:attr:`ImpliedTimescalesResult.resolved`).
    """
    trajectories, frame_interval, discretization, dtrajs = _prepare(trajectories, frame_interval,
                                                                     discretization, seed)
    lags = check_lags(lags, trajectories)
    if int(n_timescales) != n_timescales or n_timescales < 1:
        raise InvalidInputError(f"n_timescales must be a positive integer, got {n_timescales}")
    if n_samples < 0:
        raise InvalidInputError(f"n_samples must be ≥ 0, got {n_samples}")
    confidence = _check_confidence(confidence)
    n_timescales = int(n_timescales)

    timescales = np.full((len(lags), n_timescales), np.nan)
    lower, upper = timescales.copy(), timescales.copy()
    resolved = np.zeros((len(lags), n_timescales), dtype=bool)
    active = np.zeros(len(lags), dtype=int)
    counts = np.zeros(len(lags))
    for i, lag in enumerate(lags):
        model = _estimate_msm(dtrajs, lag, int(n_samples), seed + i)
        if model is None:
            continue
        msm = model.prior if isinstance(model, BayesianMSMPosterior) else model
        active[i] = msm.n_states
        counts[i] = msm.count_model.count_matrix.sum()
        k = min(n_timescales, msm.n_states - 1)
        timescales[i, :k] = msm.timescales(k) * frame_interval
        eigenvalues, errors = eigenvalue_standard_errors(msm, counts[i], k)
        resolved[i, :k] = np.abs(eigenvalues) - RESOLUTION_Z * errors > np.exp(-1.0)
        if isinstance(model, BayesianMSMPosterior):
            with warnings.catch_warnings():  # sparse counts: samples with several unit eigenvalues
                warnings.simplefilter("ignore")
                stats = model.gather_stats("timescales", k=k, confidence=confidence)
            lower[i, :k] = np.asarray(stats.L) * frame_interval
            upper[i, :k] = np.asarray(stats.R) * frame_interval
    exact = None if reference is None else np.asarray(reference.implied_timescales(n_timescales), dtype=float)
    return ImpliedTimescalesResult(lags=np.asarray(lags), lag_times=np.asarray(lags) * frame_interval,
                                   timescales=timescales, lower=lower, upper=upper, confidence=confidence,
                                   n_states=discretization.n_states, active_states=active, effective_counts=counts,
                                   reference=exact, resolved=resolved, time_unit=str(time_unit))


# -- Chapman–Kolmogorov test ----------------------------------------------------------------------
@dataclass
class CKTestResult:
    r"""Chapman–Kolmogorov test on PCCA+ metastable sets.

    ``predictions[t, i, j]`` is the probability to be in set *j* at time :math:`k\tau` after
    starting in set *i* (stationary weights within the set), from the lag-τ model propagated k times;
    ``estimates`` is the same from MSMs estimated directly at lag kτ.

    Attributes
    ----------
    lag : int
        Lag (frames) of the tested model.
    lag_times : np.ndarray, shape [T]
        Physical times k·τ, k = 0..mlags.
    predictions, estimates : np.ndarray, shape [T, m, m]
    predictions_lower, predictions_upper, estimates_lower, estimates_upper : np.ndarray or None
        Bayesian confidence bounds, shape [T, m, m] (None without posterior samples).
    set_populations : np.ndarray, shape [m]
        Stationary probability of each metastable set.
    confidence : float
    time_unit : str
        Unit of ``lag_times`` (the system's ``time_unit``).
    """

    lag: int
    lag_times: np.ndarray
    predictions: np.ndarray
    estimates: np.ndarray
    set_populations: np.ndarray
    confidence: float = 0.95
    predictions_lower: np.ndarray | None = None
    predictions_upper: np.ndarray | None = None
    estimates_lower: np.ndarray | None = None
    estimates_upper: np.ndarray | None = None
    time_unit: str = DEFAULT_TIME_UNIT

    @property
    def n_metastable(self) -> int:
        return self.predictions.shape[1]

    @property
    def max_deviation(self) -> float:
        """Largest |prediction − estimate| over all times and set pairs."""
        return float(np.nanmax(np.abs(self.predictions - self.estimates)))

    def to_dict(self) -> dict:
        """JSON-serialisable summary including ``max_deviation``."""
        bounds = {name: None if getattr(self, name) is None else _to_json(getattr(self, name))
                  for name in ("predictions_lower", "predictions_upper", "estimates_lower", "estimates_upper")}
        return {"lag": int(self.lag), "lag_times": [float(t) for t in self.lag_times],
                "n_metastable": self.n_metastable, "set_populations": _to_json(self.set_populations),
                "predictions": _to_json(self.predictions), "estimates": _to_json(self.estimates),
                "confidence": float(self.confidence), **bounds, "max_deviation": self.max_deviation,
                "time_unit": self.time_unit}

    def plot(self, fig: "matplotlib.figure.Figure | None" = None) -> "matplotlib.figure.Figure":
        """An m × m grid of panels: prediction (line, band) vs direct estimate (markers, error bars).

        Parameters
        ----------
        fig : matplotlib.figure.Figure, optional
            Figure to draw into; a new one is made otherwise.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        m = self.n_metastable
        if fig is None:
            fig = plt.figure(figsize=(2.3 * m + 1.2, 2.0 * m + 0.8))
        axes = fig.subplots(m, m, sharex=True, sharey=True, squeeze=False)
        for i in range(m):
            for j in range(m):
                ax = axes[i, j]
                ax.plot(self.lag_times, self.predictions[:, i, j], "-", color="C0", label="prediction")
                if self.predictions_lower is not None:
                    ax.fill_between(self.lag_times, self.predictions_lower[:, i, j],
                                    self.predictions_upper[:, i, j], color="C0", alpha=0.2, lw=0)
                if self.estimates_lower is not None:
                    err = np.stack([self.estimates[:, i, j] - self.estimates_lower[:, i, j],
                                    self.estimates_upper[:, i, j] - self.estimates[:, i, j]]).clip(min=0)
                    ax.errorbar(self.lag_times, self.estimates[:, i, j], yerr=err, fmt="o--", color="C1",
                                ms=4, lw=1, label="estimate")
                else:
                    ax.plot(self.lag_times, self.estimates[:, i, j], "o--", color="C1", ms=4, lw=1,
                            label="estimate")
                ax.set_title(f"set {i + 1} → set {j + 1}", fontsize=8)
                ax.set_ylim(-0.05, 1.05)
        axes[0, 0].legend(fontsize=7)
        for ax in axes[-1]:
            ax.set_xlabel(f"time ({self.time_unit})")
        for ax in axes[:, 0]:
            ax.set_ylabel("probability", fontsize=8)
        fig.suptitle(f"Chapman–Kolmogorov test (lag {self.lag} frames, max |Δ| = {self.max_deviation:.3f})",
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
    n_samples: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    time_unit: str = DEFAULT_TIME_UNIT,
) -> CKTestResult:
    """Chapman–Kolmogorov test of the MSM at ``lag`` on PCCA+ metastable sets (deeptime).

    The memberships of the PCCA+ decomposition of the lag-τ model define the observable; models at
    lags kτ are estimated on (the largest connected part of) the same active set so that the sets
    map one to one.

    Parameters
    ----------
    trajectories : list of np.ndarray, each [n_frames_i, dim]
    frame_interval : float
        Physical time between frames.
    lag : int
        Lag τ of the tested model, in frames.
    n_metastable : int
        Number of PCCA+ sets (≥ 2).
    mlags : int
        Largest multiple k of the lag tested (k = 1..mlags); reduced to fit the longest trajectory.
    discretization : Discretization, optional
        Defaults to :func:`~itomd.analysis.discretize.discretize` (automatic).
    n_samples : int
        Bayesian posterior samples per model for confidence bounds (0: none).
    confidence : float
        Level of the bounds.
    seed : int
        Seed of the discretisation and of the posterior sampler.
    time_unit : str
        Unit of ``frame_interval`` (the system's ``time_unit``), for labels.

    Returns
    -------
    CKTestResult
    """
    trajectories, frame_interval, discretization, dtrajs = _prepare(trajectories, frame_interval,
                                                                     discretization, seed)
    (lag,) = check_lags([lag], trajectories)
    confidence = _check_confidence(confidence)
    if int(n_metastable) != n_metastable or n_metastable < 2:
        raise InvalidInputError(f"the CK test needs an integer number ≥ 2 of metastable sets, got {n_metastable}")
    if n_samples < 0:
        raise InvalidInputError(f"n_samples must be ≥ 0, got {n_samples}")
    longest = max(len(t) for t in trajectories)
    mlags = min(int(mlags), (longest - 1) // lag)
    if mlags < 2:
        raise InvalidInputError(f"lag {lag} frames leaves no room for a CK test in trajectories of {longest} frames")

    test_model = _estimate_msm(dtrajs, lag, n_samples, seed)
    if test_model is None:
        raise InvalidInputError(f"the MSM at lag {lag} frames has fewer than two connected states")
    prior = test_model.prior if isinstance(test_model, BayesianMSMPosterior) else test_model
    if n_metastable > prior.n_states:
        raise InvalidInputError(f"{n_metastable} metastable sets requested but the MSM has {prior.n_states} states")
    active = prior.count_model.state_symbols
    models = [test_model]
    for k in range(2, mlags + 1):
        model = _estimate_msm(dtrajs, k * lag, n_samples, seed + k, restrict_to=active)
        if model is None:
            break
        models.append(model)
    priors = [m.prior if isinstance(m, BayesianMSMPosterior) else m for m in models]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pcca = prior.pcca(int(n_metastable))
        # transition matrices are real and lags are integer multiples: skip deeptime's per-model
        # eigendecomposition that only checks for complex values
        observable = MembershipsObservable(prior, pcca, initial_distribution=prior.stationary_distribution,
                                           ignore_imaginary_parts=True)
        result = deeptime_ck_test(priors, observable, test_model=prior, include_lag0=True)
        bounds = {}
        if isinstance(test_model, BayesianMSMPosterior):
            # the observable on posterior samples: of the lag-τ model propagated k times (integer k keeps
            # the propagation real and cheap), and of each model estimated directly at lag kτ
            identity = np.eye(n_metastable)[None]
            predicted = [identity] + [np.stack([observable(s, mlag=k) for s in test_model.samples])
                                      for k in range(1, len(models) + 1)]
            estimated = [identity] + [np.stack([observable(s, mlag=1) for s in m.samples]) for m in models]
            alpha = (1.0 - confidence) / 2
            for name, samples in (("predictions", predicted), ("estimates", estimated)):
                bounds[f"{name}_lower"] = np.stack([np.quantile(x, alpha, axis=0) for x in samples])
                bounds[f"{name}_upper"] = np.stack([np.quantile(x, 1.0 - alpha, axis=0) for x in samples])
    return CKTestResult(lag=lag, lag_times=np.asarray(result.lagtimes) * frame_interval,
                        predictions=np.real(np.asarray(result.predictions)),
                        estimates=np.real(np.asarray(result.estimates)),
                        set_populations=np.asarray(pcca.coarse_grained_stationary_probability),
                        confidence=confidence, time_unit=str(time_unit), **bounds)


def _to_json(values):
    """Nested lists of floats with NaN/inf as None."""
    array = np.asarray(values, dtype=float)
    if array.ndim == 0:
        return float(array) if np.isfinite(array) else None
    return np.where(np.isfinite(array), array, None).tolist()


# -- slowest eigenvalue (BoPITO's λ̂) ----------------------------------------------------------------
def slowest_eigenvalue(
    trajectories: Sequence[np.ndarray],
    lag: int = 1,
    discretization: Discretization | None = None,
    seed: int = 0,
) -> float:
    r"""The slowest non-unit eigenvalue per frame, :math:`\hat\lambda = |\lambda_2(\tau)|^{1/\tau}`.

    From a reversible maximum-likelihood MSM at ``lag`` frames on the largest connected set of the
    discretisation (default: :func:`~itomd.analysis.discretize.discretize`'s). The MSM's
    discretisation error makes it an underestimate of the true eigenvalue (faster decay); it
    converges from below as the states get finer or the lag longer.

    Parameters
    ----------
    trajectories : list of np.ndarray, each [n_frames_i, dim]
    lag : int
        MSM lag in frames.
    discretization : Discretization, optional
    seed : int
        Seed of the clustering.

    Returns
    -------
    float
        In (0, 1).
    """
    trajectories, _, discretization, dtrajs = _prepare(trajectories, 1.0, discretization, seed)
    lag = check_lags([lag], trajectories)[0]
    msm = _estimate_msm(dtrajs, lag, n_samples=0, seed=seed)
    if msm is None:
        raise InvalidInputError("the trajectories never leave one state at this lag: cannot estimate λ̂")
    value = float(np.sort(np.abs(msm.eigenvalues(min(msm.n_states, 3))))[::-1][1])
    if not 0 < value < 1:
        raise InvalidInputError(f"the MSM's second eigenvalue is {value}; cannot estimate λ̂ from these data")
    return value ** (1.0 / lag)
