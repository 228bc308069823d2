"""One call from trajectories to every number: :func:`analyze` → :class:`AnalysisResult`, and
:func:`compare` for a second data set on the same states.

One pipeline for every kind of data: a :class:`~itomd.analysis.features.Featurizer` decides features,
states, histograms, observable and the extra :class:`~itomd.analysis.sections.Section` objects of the
result (coordinates by default; backbone torsions for molecules).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Sequence, TypeVar

import numpy as np
from tqdm.auto import tqdm

from itomd.validation import check_frame_interval, check_lags, check_positive, check_trajectories
from itomd.analysis._axes import DEFAULT_TIME_UNIT
from itomd.analysis.correlation import AutocorrelationResult, Observable, autocorrelation
from itomd.analysis.discretize import Discretization, check_n_states
from itomd.analysis.divergence import JSDivergence, js_divergence
from itomd.analysis.features import SECTION_KEYS, CoordinateFeaturizer, Featurizer
from itomd.analysis.fes import FreeEnergySurface, free_energy_surface
from itomd.analysis.mfpt import (Basins, MFPTResult, exact_mean_first_passage_times, mean_first_passage_times,
                                 pcca_basins)
from itomd.analysis.msm import (DEFAULT_N_SAMPLES, CKTestResult, ImpliedTimescalesResult, _estimate_msm, ck_test,
                                implied_timescales)
from itomd.analysis.sections import Section
from itomd.errors import InvalidInputError

if TYPE_CHECKING:
    from itomd.analysis._histogram import Range
    from itomd.systems.reference import ExactReference

SectionType = TypeVar("SectionType", bound=Section)

#: Trajectories shorter than this fraction of the longest one do not limit the default lags.
USEFUL_LENGTH_FRACTION = 0.1


@dataclass
class AnalysisResult:
    """Everything :func:`analyze` computed.

    Attributes
    ----------
    implied_timescales : ImpliedTimescalesResult
    ck_test : CKTestResult or None
        None where the test was impossible (see ``notes``).
    mfpt : MFPTResult or None
        Mean first passage times between basin cores (:mod:`itomd.analysis.mfpt`) from the MSM at
        ``mfpt_lag`` (default the shortest lag): the featurizer's named basins, else the cores of
        the PCCA+ sets of the MSM at the CK lag; exact values with a reference. None where
        impossible (see ``notes``).
    free_energy : FreeEnergySurface
    js_divergence : JSDivergence or None
        Against the exact reference; None without one.
    autocorrelation : AutocorrelationResult
    discretization : Discretization
    n_trajectories, n_frames : int
        Trajectories and frames in all.
    frame_interval, kT : float
    features : tuple of int
        Features (columns of ``feature_trajectories``) used for the free energy and the JS divergence.
    notes : list of str
        What was chosen automatically or skipped.
    comparison : Comparison or None
        Set by :func:`compare`.
    sections : list of Section
        What the featurizer added (for molecules a
        :class:`~itomd.analysis.molecular.MolecularSection`); each is one entry of :meth:`to_dict`
        and one part of the report.
    featurizer : Featurizer
        How the trajectories were seen; :func:`compare` sees a second data set the same way.
    feature_trajectories : list of np.ndarray, each [n_frames_i, n_features]
        The analysed features (for :func:`compare`'s JS divergence); not in :meth:`to_dict`.
    histogram_bins, histogram_range :
        Bins and range of the free energy and JS divergence (None: the defaults).
    time_unit : str
        Unit of the frame interval and of every time (the system's ``time_unit``).
    inputs : dict or None
        The trajectories and arguments given to :func:`analyze` (for :func:`compare` to redo the
        analysis on a featurizer refitted on the comparison data); not in :meth:`to_dict`.
    observable : callable or None
        The observable whose autocorrelation was computed (the ``observable`` argument, else the
        featurizer's); :func:`compare` computes the comparison's with the same one.
    """

    implied_timescales: ImpliedTimescalesResult
    ck_test: CKTestResult | None
    free_energy: FreeEnergySurface
    js_divergence: JSDivergence | None
    autocorrelation: AutocorrelationResult
    discretization: Discretization
    n_trajectories: int
    n_frames: int
    frame_interval: float
    kT: float
    features: tuple[int, ...]
    notes: list[str] = field(default_factory=list)
    comparison: "Comparison | None" = None
    mfpt: MFPTResult | None = None
    sections: list[Section] = field(default_factory=list)
    featurizer: Featurizer = field(default_factory=CoordinateFeaturizer)
    feature_trajectories: list[np.ndarray] = field(default_factory=list, repr=False)
    histogram_bins: int | Sequence[int] | None = None
    histogram_range: "Range | None" = None
    time_unit: str = DEFAULT_TIME_UNIT
    inputs: dict | None = field(default=None, repr=False)
    observable: Observable | None = field(default=None, repr=False)

    def section(self, kind: type[SectionType]) -> SectionType | None:
        """The section of type ``kind`` (e.g. ``MolecularSection``), or None if the featurizer added none."""
        return next((s for s in self.sections if isinstance(s, kind)), None)

    def to_dict(self) -> dict:
        """JSON-serialisable summary; times in physical units, JS divergence in nats.

        Besides the common entries it has one entry per section key of the shipped featurizers
        (:data:`~itomd.analysis.features.SECTION_KEYS`, e.g. ``"molecular"``): the section's
        dictionary, or None where this result has no such section.
        """
        out = {
            "implied_timescales": self.implied_timescales.to_dict(),
            "js_divergence": None if self.js_divergence is None else self.js_divergence.value,
            "js_divergence_details": None if self.js_divergence is None else self.js_divergence.to_dict(),
            "free_energy": self.free_energy.to_dict(),
            "ck_test": None if self.ck_test is None else self.ck_test.to_dict(),
            "mfpt": None if self.mfpt is None else self.mfpt.to_dict(),
            "autocorrelation": self.autocorrelation.to_dict(),
            "n_trajectories": self.n_trajectories,
            "n_frames": self.n_frames,
            "frame_interval": self.frame_interval,
            "time_unit": self.time_unit,
            "kT": self.kT,
            "dim": self.discretization.dim,
            "features": list(self.features),
            "discretization": {"method": self.discretization.method, "n_states": self.discretization.n_states},
            "notes": list(self.notes),
            "comparison": None if self.comparison is None else self.comparison.to_dict(),
        }
        out.update({key: None for key in SECTION_KEYS})
        out.update({section.key: section.to_dict() for section in self.sections})
        return out


@dataclass
class Comparison:
    """A second data set (e.g. MD next to surrogate rollouts) analysed on the same discretisation.

    Attributes
    ----------
    label : str
        What the second data set is ("MD").
    implied_timescales : ImpliedTimescalesResult
        Its MSM implied timescales at the same lag *times* as the main analysis (where its frame
        interval divides them).
    js_divergence : JSDivergence
        Between the two sets of frames (nats), on the main analysis' features.
    frame_interval : float
        The second data set's frame interval.
    n_trajectories, n_frames : int
    main_slowest : np.ndarray or None, shape [L']
        The main analysis' slowest implied timescale at this comparison's lag times
        (:meth:`slowest_timescale_ratio` divides it by this data's).
    main_slowest_resolved : np.ndarray of bool or None, shape [L']
        Whether those estimates are resolved (:attr:`ImpliedTimescalesResult.resolved`); None: all are.
    mfpt : MFPTResult or None
        Its mean first passage times between the main analysis' basins at the same lag time (None
        where the main analysis has none or the lag time is not a whole number of its frames).
    autocorrelation : AutocorrelationResult or None
        Its autocorrelation of the main analysis' observable at the main analysis' autocorrelation
        lag times that are whole numbers of its frames and shorter than its trajectories (None: none is).
    main_autocorrelation : np.ndarray or None, shape [L'']
        The main analysis' autocorrelation at those lag times.
    """

    label: str
    implied_timescales: ImpliedTimescalesResult
    js_divergence: JSDivergence
    frame_interval: float
    n_trajectories: int
    n_frames: int
    main_slowest: np.ndarray | None = None
    main_slowest_resolved: np.ndarray | None = None
    mfpt: MFPTResult | None = None
    main_mfpt: np.ndarray | None = None
    autocorrelation: AutocorrelationResult | None = None
    main_autocorrelation: np.ndarray | None = None

    def autocorrelation_difference(self) -> float | None:
        """max |C_main − C_this| over the common autocorrelation lag times; None without them."""
        if self.autocorrelation is None or self.main_autocorrelation is None:
            return None
        return float(np.max(np.abs(np.asarray(self.main_autocorrelation) - self.autocorrelation.values)))

    def mfpt_ratio(self) -> np.ndarray | None:
        """Main analysis' MFPT / this data's per (from, to) basin pair, [m, m]; None without MFPTs."""
        if self.mfpt is None or self.main_mfpt is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self.main_mfpt, dtype=float) / self.mfpt.times

    def slowest_timescale_ratio(self) -> np.ndarray | None:
        """Main analysis' slowest implied timescale / this data's, per lag time of this comparison, [L'].

        NaN where either estimate is unresolved (:attr:`ImpliedTimescalesResult.resolved`).
        """
        if self.main_slowest is None:
            return None
        mine = np.asarray(self.main_slowest, dtype=float)
        if self.main_slowest_resolved is not None:
            mine = np.where(self.main_slowest_resolved, mine, np.nan)
        return mine / self.implied_timescales.resolved_timescales()[:, 0]

    def to_dict(self) -> dict:
        ratio = self.slowest_timescale_ratio()
        mfpt_ratio = self.mfpt_ratio()
        return {"label": self.label, "implied_timescales": self.implied_timescales.to_dict(),
                "mfpt": None if self.mfpt is None else self.mfpt.to_dict(),
                "mfpt_ratio": None if mfpt_ratio is None else _json_matrix(mfpt_ratio),
                "slowest_timescale_ratio": None if ratio is None
                else [float(r) if np.isfinite(r) else None for r in ratio],
                "js_divergence": self.js_divergence.value, "js_divergence_details": self.js_divergence.to_dict(),
                "autocorrelation": None if self.autocorrelation is None else self.autocorrelation.to_dict(),
                "autocorrelation_max_abs_difference": self.autocorrelation_difference(),
                "frame_interval": self.frame_interval, "n_trajectories": self.n_trajectories, "n_frames": self.n_frames}


def compare(result: AnalysisResult, trajectories: Sequence[np.ndarray], frame_interval: float, label: str = "MD",
            seed: int = 0, n_samples: int = DEFAULT_N_SAMPLES) -> Comparison:
    """Analyse ``trajectories`` like ``result`` (same featurizer, states and lag times); attach the comparison.

    The second data set is featurised by ``result.featurizer``; its implied timescales are computed
    on ``result``'s states, its JS divergence against ``result``'s frames on the same histogram, and
    every section of ``result`` is completed with it (:meth:`Section.add_comparison`, e.g. the MD
    validity and Ramachandran free energy of a molecule).

    The second data set is the reference: where ``analyze`` fitted the featurizer on the analysed
    data itself (the TICA plane of a molecule with more than one φ/ψ pair,
    :attr:`Featurizer.refit_on_comparison`), the featurizer is refitted on the second data set and
    ``result`` is first recomputed on that plane (same arguments), so that both data sets are
    projected by the reference's model.

    Parameters
    ----------
    result : AnalysisResult
        The main analysis (e.g. of surrogate rollouts); its ``comparison`` is set.
    trajectories : list of np.ndarray, each [n_frames_i, dim]
        The data to compare with (e.g. MD), in the form ``result``'s trajectories had.
    frame_interval : float
        Their frame interval; lag times of ``result`` that are not whole multiples of it, or too long
        for the trajectories, are left out.
    label : str
        What the second data set is ("MD").
    seed, n_samples :
        As for :func:`analyze`.

    Returns
    -------
    Comparison
    """
    frame_interval = check_frame_interval(frame_interval)
    if not result.feature_trajectories:
        raise InvalidInputError("the result holds no analysed trajectories to compare with (make it with analyze())")
    if result.featurizer.refit_on_comparison:
        _redo_on_reference(result, trajectories, label)
    features = check_trajectories(result.featurizer.transform(trajectories))
    if features[0].shape[1] != result.discretization.dim:
        raise InvalidInputError(f"cannot compare {features[0].shape[1]}-dimensional data with "
                                f"{result.discretization.dim}-dimensional data")
    lags = [lag for lag, _ in _lags_in_frames(result.implied_timescales.lag_times, frame_interval, features)]
    if not lags:
        raise InvalidInputError(f"none of the lag times {result.implied_timescales.lag_times.tolist()} is a whole "
                                f"multiple of the comparison's frame interval {frame_interval:g} shorter than its trajectories")
    its = implied_timescales(features, frame_interval, lags, n_timescales=result.implied_timescales.n_timescales,
                             discretization=result.discretization, n_samples=n_samples, seed=seed,
                             time_unit=result.time_unit)
    frames = np.concatenate(features)
    js = js_divergence(np.concatenate(result.feature_trajectories), frames, features=result.features,
                       bins=result.histogram_bins, range=result.histogram_range)
    mine = result.implied_timescales
    matching = np.array([np.argmin(np.abs(mine.lag_times - t)) for t in its.lag_times])
    comparison = Comparison(label=label, implied_timescales=its, js_divergence=js, frame_interval=frame_interval,
                            n_trajectories=len(features), n_frames=int(len(frames)),
                            main_slowest=mine.timescales[matching, 0], main_slowest_resolved=mine.resolved[matching, 0])
    if result.mfpt is not None:
        mfpt_lag = _whole_frames(result.mfpt.lag_time, frame_interval)
        if mfpt_lag is not None:
            try:
                comparison.mfpt = mean_first_passage_times(
                    result.discretization.transform(features), frame_interval, mfpt_lag, result.mfpt.basins,
                    n_samples=n_samples, seed=seed, time_unit=result.time_unit)
                comparison.main_mfpt = result.mfpt.times
            except (ValueError, np.linalg.LinAlgError) as error:
                result.notes.append(f"{label} MFPTs skipped: {_first_line(error)}")
        else:
            result.notes.append(f"{label} MFPTs skipped: the MFPT lag time {result.mfpt.lag_time:g} is not a whole "
                                f"number of {label}'s frames ({frame_interval:g})")
    _compare_autocorrelation(result, comparison, features)
    for section in result.sections:
        section.add_comparison(trajectories, features, result.kT)
    result.comparison = comparison
    return comparison


def _compare_autocorrelation(result: AnalysisResult, comparison: Comparison, features: Sequence[np.ndarray]) -> None:
    """The comparison's autocorrelation of the main analysis' observable at its lag times (those that
    are whole numbers of the comparison's frames and shorter than its trajectories)."""
    mine = result.autocorrelation
    pairs = _lags_in_frames(mine.lag_times, comparison.frame_interval, features)
    if not pairs:
        result.notes.append(f"no {comparison.label} autocorrelation: none of the lag times "
                            f"{[float(t) for t in mine.lag_times]} is a whole number of its frames within its trajectories")
        return
    comparison.autocorrelation = autocorrelation(features, comparison.frame_interval, [lag for lag, _ in pairs],
                                                 observable=result.observable, name=mine.observable, time_unit=result.time_unit)
    comparison.main_autocorrelation = mine.values[[i for _, i in pairs]]


def _lags_in_frames(lag_times: Sequence[float], frame_interval: float,
                    trajectories: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """(lag in frames, index in ``lag_times``) of the lag times that a data set of ``frame_interval`` and
    these ``trajectories`` can use: whole numbers of its frames, shorter than its longest trajectory;
    sorted by lag, one entry per lag."""
    longest = max(len(t) for t in trajectories)
    found: dict[int, int] = {}
    for i, lag_time in enumerate(lag_times):
        lag = _whole_frames(float(lag_time), frame_interval)
        if lag is not None and lag < longest:
            found.setdefault(lag, i)
    return sorted(found.items())


def _whole_frames(lag_time: float, frame_interval: float) -> int | None:
    """``lag_time`` as a whole number (≥ 1) of frames of ``frame_interval``; None where it is not one."""
    lag = int(round(lag_time / frame_interval))
    return lag if lag >= 1 and abs(lag * frame_interval - lag_time) <= 1e-6 * lag_time else None


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _json_matrix(values: np.ndarray) -> list[list[float | None]]:
    return [[float(v) if np.isfinite(v) else None for v in row] for row in np.asarray(values, dtype=float)]


def _redo_on_reference(result: AnalysisResult, trajectories: Sequence[np.ndarray], label: str) -> None:
    """Recompute ``result`` with its featurizer refitted on ``trajectories`` (the reference)."""
    inputs = result.inputs
    if inputs is None or inputs.get("discretization") is not None:
        raise InvalidInputError(f"cannot project on a {result.featurizer.name} model fitted on {label}: fit the "
                                f"featurizer on {label} first (featurizer.fit(...)) and pass it to analyze()")
    featurizer = result.featurizer.fit(trajectories, label=label)
    redone = analyze(inputs["trajectories"], **{**inputs["arguments"], "featurizer": featurizer})
    redone.notes.append(f"{result.featurizer.name} refitted on {label} (the comparison) and this analysis "
                        f"redone on its plane, so that both data sets are projected by {label}'s model")
    for f in fields(AnalysisResult):
        setattr(result, f.name, getattr(redone, f.name))


def useful_length(trajectory_lengths: Sequence[int]) -> int:
    """The shortest trajectory length among those at least a tenth as long as the longest."""
    lengths = np.asarray(trajectory_lengths, dtype=int)
    return int(lengths[lengths >= USEFUL_LENGTH_FRACTION * lengths.max()].min())


def default_lags(trajectory_lengths: Sequence[int], n_lags: int = 8) -> list[int]:
    """About ``n_lags`` log-spaced MSM lags (frames) from 1 to a third of the useful trajectory length.

    Parameters
    ----------
    trajectory_lengths : sequence of int
        Frames per trajectory.
    n_lags : int

    Returns
    -------
    list of int
        Distinct lags, ascending (fewer than ``n_lags`` for short trajectories).
    """
    top = max(1, useful_length(trajectory_lengths) // 3)
    return sorted({int(round(v)) for v in np.geomspace(1, top, n_lags)})


def analyze(
    trajectories: Sequence[np.ndarray],
    frame_interval: float,
    kT: float,
    reference: "ExactReference | None" = None,
    lags: Sequence[int] | None = None,
    n_timescales: int = 3,
    n_states: int | None = None,
    seed: int = 0,
    progress: bool = False,
    *,
    n_samples: int = DEFAULT_N_SAMPLES,
    ck_lag: int | None = None,
    n_metastable: int = 2,
    mfpt_lag: int | None = None,
    observable: Observable | None = None,
    discretization: Discretization | None = None,
    histogram_bins: int | Sequence[int] | None = None,
    histogram_range: "Range | None" = None,
    featurizer: Featurizer | None = None,
    time_unit: str = DEFAULT_TIME_UNIT,
) -> AnalysisResult:
    """MSM implied timescales, CK test, free energy, JS divergence and autocorrelation in one call.

    Everything is computed on the features of ``featurizer`` (default: the raw coordinates), which
    also chooses the states, the histogram, the observable and adds its sections (for alanine
    dipeptide, :class:`~itomd.analysis.features.BackboneTorsionFeaturizer`: φ/ψ, a torus grid, 36 × 36
    Ramachandran bins, sin φ, chemical validity; for other molecules
    :class:`~itomd.analysis.features.TorsionTICAFeaturizer`: the TICA plane of every φ/ψ/χ₁, k-means
    states). A featurizer that needs fitting (TICA) and was not fitted is fitted here on
    ``trajectories``, provisionally: :func:`compare` refits it on its (reference) data.

    Automatic choices (recorded in ``notes``): lags from :func:`default_lags`; the CK test at the
    middle of the lags that leave room for four multiples; free energy and JS divergence on the
    features if there are at most two, else on the first two; the JS divergence only with a
    reference; the autocorrelation at 16 log-spaced lags up to half the useful trajectory length.
    Frames are assumed to be drawn from equilibrium.

    Parameters
    ----------
    trajectories : list of np.ndarray, each [n_frames_i, dim]
        Coordinates (for molecules flattened positions [n_frames_i, 3·n_atoms] in nm).
    frame_interval : float
        Physical time between frames.
    kT : float
        Thermal energy (free energies are in its unit).
    reference : ExactReference, optional
        Adds exact timescales, the exact free energy, the JS divergence and the exact autocorrelation
        (only for featurizers whose features are the coordinates).
    lags : sequence of int, optional
        MSM lags in frames.
    n_timescales : int
        Implied timescales per lag.
    n_states : int, optional
        States of the discretisation (default 100; not for featurizers with fixed states).
    seed : int
        Seed of the clustering and the posterior sampling.
    progress : bool
        Show a progress bar over the steps.
    n_samples : int
        Bayesian MSM samples per lag for confidence intervals (0: none).
    ck_lag : int, optional
        Lag (frames) of the CK-tested model.
    n_metastable : int
        PCCA+ sets of the CK test (and the basins of the first passage times where the featurizer
        names none).
    mfpt_lag : int, optional
        Lag (frames) of the MSM of the mean first passage times; default the shortest of ``lags``:
        an MSM sees the data every τ and misses excursions shorter than τ, so its passage times
        approach the continuous-time ones from above as τ shrinks (Prinz: +8 % at 1 frame, +24 % at 16).
    observable : callable, optional
        Observable of the autocorrelation on features, [n, n_features] → [n]; default the
        featurizer's (the first coordinate for coordinates).
    discretization : Discretization, optional
        MSM states to use (its ``transform`` must take the features); default the featurizer's,
        fitted here.
    histogram_bins, histogram_range : optional
        Bins and range of the free energy and JS divergence; default the featurizer's (coordinates:
        100 / 50×50 bins on the reference's box or the data's range).
    featurizer : Featurizer, optional
        Default :class:`~itomd.analysis.features.CoordinateFeaturizer`; see
        :meth:`~itomd.representation.Representation.featurizer`.
    time_unit : str
        Unit of ``frame_interval`` (the system's ``time_unit``: "ps" for molecules), for tables and plots.

    Returns
    -------
    AnalysisResult
    """
    arguments = dict(frame_interval=frame_interval, kT=kT, reference=reference, lags=lags,
                     n_timescales=n_timescales, n_states=n_states, seed=seed, progress=progress, n_samples=n_samples,
                     ck_lag=ck_lag, n_metastable=n_metastable, mfpt_lag=mfpt_lag, observable=observable,
                     discretization=discretization, histogram_bins=histogram_bins, histogram_range=histogram_range,
                     time_unit=time_unit)
    featurizer = CoordinateFeaturizer() if featurizer is None else featurizer
    if reference is not None and not featurizer.supports_reference:
        raise InvalidInputError(f"an exact reference applies to coordinates, not to {featurizer.name}")
    if featurizer.needs_fit:
        featurizer = featurizer.fit(trajectories, label="the analysed data", provisional=True)
    raw_trajectories = trajectories
    trajectories = check_trajectories(featurizer.transform(trajectories))
    frame_interval = check_frame_interval(frame_interval)
    kT = check_positive(kT, "kT")
    dim = trajectories[0].shape[1]
    if reference is not None and reference.dim != dim:
        raise InvalidInputError(f"trajectories are {dim}-dimensional but the reference is {reference.dim}-dimensional")
    observable = featurizer.observable if observable is None else observable
    histogram_bins = featurizer.histogram_bins if histogram_bins is None else histogram_bins
    histogram_range = featurizer.histogram_range if histogram_range is None else histogram_range
    lengths = [len(t) for t in trajectories]
    if max(lengths) < 2:
        raise InvalidInputError("trajectories need at least 2 frames for a dynamical analysis")
    usable = useful_length(lengths)
    notes = []
    if lags is None:
        lags = default_lags(lengths)
        notes.append(f"lags {lags} frames chosen automatically (up to 1/3 of {usable} frames)")
    lags = check_lags(lags, trajectories)
    if discretization is None and n_states is not None:  # checked before any work (featurizers may fix states)
        check_n_states(n_states)

    steps = tqdm(total=8, desc="analyze", disable=not progress, leave=False)

    def step(name: str) -> None:
        steps.set_postfix_str(name)

    step("discretise")
    if discretization is None:
        discretization = featurizer.discretize(trajectories, n_states=n_states, seed=seed)
    steps.update()

    step(featurizer.name)
    sections = featurizer.sections(raw_trajectories, trajectories)
    steps.update()

    step("implied timescales")
    its = implied_timescales(trajectories, frame_interval, lags, n_timescales=n_timescales,
                             discretization=discretization, n_samples=n_samples, reference=reference, seed=seed,
                             time_unit=time_unit)
    steps.update()

    step("CK test")
    ck = None
    if ck_lag is None:
        candidates = [lag for lag in lags if 4 * lag < usable] or lags[:1]
        ck_lag = candidates[len(candidates) // 2]
    try:
        ck = ck_test(trajectories, frame_interval, ck_lag, n_metastable=n_metastable,
                     discretization=discretization, n_samples=n_samples, seed=seed, time_unit=time_unit)
    except (ValueError, AssertionError, np.linalg.LinAlgError) as error:  # InvalidInputError is a ValueError
        notes.append(f"CK test skipped: {_first_line(error)}")
    steps.update()

    step("first passage times")
    mfpt = None
    try:
        (mfpt_lag,) = check_lags([lags[0] if mfpt_lag is None else mfpt_lag], trajectories)
        mfpt = _first_passage_times(discretization, featurizer, frame_interval, mfpt_lag, ck_lag, n_metastable,
                                    reference, n_samples, seed, time_unit)
        notes.append(f"MFPTs between {mfpt.basins.definition}, from the MSM at lag {mfpt_lag} frames")
    except (ValueError, AssertionError, np.linalg.LinAlgError) as error:
        notes.append(f"MFPTs skipped: {_first_line(error)}")
    steps.update()

    features = featurizer.histogram_features(dim)
    if (note := featurizer.note(dim)) is not None:
        notes.append(note)
    frames = np.concatenate(trajectories)

    step("free energy")
    fes = free_energy_surface(frames, kT, bins=histogram_bins, range=histogram_range, reference=reference,
                              features=features)
    steps.update()

    step("JS divergence")
    js = None
    if reference is not None:
        js = js_divergence(frames, reference=reference, features=features, bins=histogram_bins, range=histogram_range)
    elif featurizer.supports_reference:
        notes.append("no JS divergence: it needs an exact reference")
    steps.update()

    step("autocorrelation")
    acf_lags = sorted({int(round(v)) for v in np.geomspace(1, max(1, usable // 2), 16)})
    acf = autocorrelation(trajectories, frame_interval, acf_lags, observable=observable, reference=reference,
                          time_unit=time_unit)
    steps.update()
    steps.close()
    return AnalysisResult(implied_timescales=its, ck_test=ck, mfpt=mfpt, free_energy=fes, js_divergence=js,
                          autocorrelation=acf,
                          discretization=discretization, n_trajectories=len(trajectories), n_frames=int(sum(lengths)),
                          frame_interval=frame_interval, kT=kT, features=features, notes=notes, sections=sections,
                          featurizer=featurizer, feature_trajectories=trajectories, histogram_bins=histogram_bins,
                          histogram_range=histogram_range, time_unit=str(time_unit),
                          inputs={"trajectories": raw_trajectories, "arguments": arguments}, observable=observable)


def _first_passage_times(discretization: Discretization, featurizer: Featurizer, frame_interval: float, lag: int,
                         basin_lag: int, n_metastable: int, reference: "ExactReference | None", n_samples: int,
                         seed: int, time_unit: str) -> MFPTResult:
    """MFPTs at ``lag`` between the featurizer's basins (else the PCCA+ cores of the MSM at ``basin_lag``),
    exact ones with a reference."""
    basins: Basins | None = featurizer.basins(discretization)
    if basins is None:
        msm = _estimate_msm(discretization.dtrajs, basin_lag, 0, seed)
        if msm is None:
            raise InvalidInputError(f"the MSM at lag {basin_lag} frames has fewer than two connected states")
        basins = pcca_basins(msm, n_metastable, discretization.n_states)
    result = mean_first_passage_times(discretization.dtrajs, frame_interval, lag, basins, n_samples=n_samples,
                                      seed=seed, time_unit=time_unit)
    if reference is not None:
        result.reference = exact_mean_first_passage_times(reference, discretization, basins)
    return result
