"""One call from trajectories to every number and plot: :func:`analyze` → :class:`AnalysisResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from itomd.analysis._validation import check_frame_interval, check_lags, check_trajectories
from itomd.analysis.correlation import AutocorrelationResult, autocorrelation
from itomd.analysis.discretize import discretize
from itomd.analysis.divergence import JSDivergence, js_divergence
from itomd.analysis.fes import FreeEnergySurface, free_energy_surface
from itomd.analysis.msm import CKTestResult, ImpliedTimescalesResult, ck_test, implied_timescales
from itomd.errors import InvalidInputError


@dataclass
class AnalysisResult:
    """Everything :func:`analyze` computed; ``to_dict()`` is the ``itomd analyze --json`` output."""

    implied_timescales: ImpliedTimescalesResult
    autocorrelation: AutocorrelationResult
    ck_test: CKTestResult | None
    free_energy: FreeEnergySurface | None
    js: JSDivergence | None
    n_trajectories: int
    n_frames: int
    frame_interval: float
    kT: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "implied_timescales": self.implied_timescales.to_dict(),
            "js_divergence": None if self.js is None else self.js.value,
            "js_divergence_details": None if self.js is None else self.js.to_dict(),
            "free_energy": None if self.free_energy is None else self.free_energy.to_dict(),
            "ck_test": None if self.ck_test is None else self.ck_test.to_dict(),
            "autocorrelation": self.autocorrelation.to_dict(),
            "n_trajectories": self.n_trajectories,
            "n_frames": self.n_frames,
            "frame_interval": self.frame_interval,
            "kT": self.kT,
            "notes": self.notes,
        }

    def figures(self) -> list[tuple[str, object]]:
        """(title, matplotlib Figure) for each plot, in report order."""
        import matplotlib.pyplot as plt

        figs = []
        ax = self.implied_timescales.plot()
        figs.append(("Implied timescales vs lag (exact: dashed)", ax.figure))
        if self.free_energy is not None:
            figs.append(("Free-energy surface", self.free_energy.plot().figure))
        if self.ck_test is not None:
            figs.append(("Chapman–Kolmogorov test", self.ck_test.plot(plt.figure())))
        figs.append(("Autocorrelation", self.autocorrelation.plot().figure))
        for _, fig in figs:
            fig.tight_layout()
        return figs


def default_lags(longest: int, n: int = 7) -> list[int]:
    """About ``n`` log-spaced lags (frames) from 1 to a third of the longest trajectory."""
    top = max(1, (longest - 1) // 3)
    return sorted({int(round(v)) for v in np.geomspace(1, top, n)})


def analyze(
    trajectories: Sequence[np.ndarray],
    frame_interval: float,
    kT: float,
    reference=None,
    lags: Sequence[int] | None = None,
    n_timescales: int = 3,
    n_states: int | None = None,
    n_bootstrap: int = 50,
    seed: int = 0,
    progress: bool = False,
) -> AnalysisResult:
    """MSM implied timescales, CK test, free energy, JS divergence and autocorrelation in one call.

    Parameters
    ----------
    trajectories : list of np.ndarray, each [n_frames, dim]
    frame_interval : float
        Physical time between frames.
    kT : float
        Thermal energy (free energies are reported in its unit).
    reference : ExactReference, optional
        Adds exact timescales, exact FES, JS divergence vs the exact density and exact C(τ).
    lags : sequence of int, optional
        MSM lags in frames (default: :func:`default_lags`).
    n_timescales : int
    n_states : int, optional
        States of the discretisation (default 100).
    n_bootstrap : int
        Bootstrap resamples for timescale intervals.
    seed : int
    progress : bool
        Show a progress bar over the steps.

    Returns
    -------
    AnalysisResult
    """
    trajectories = check_trajectories(trajectories)
    frame_interval = check_frame_interval(frame_interval)
    if not (np.isfinite(kT) and kT > 0):
        raise InvalidInputError(f"kT must be positive, got {kT}")
    longest = max(len(t) for t in trajectories)
    if longest < 3:
        raise InvalidInputError(f"trajectories need at least 3 frames for an analysis, the longest has {longest}")
    lags = check_lags(lags if lags is not None else default_lags(longest), trajectories)
    dim = trajectories[0].shape[1]
    notes = []
    if reference is not None and reference.dim != dim:
        raise InvalidInputError(f"trajectories are {dim}-D but the reference is {reference.dim}-D")
    steps = tqdm(total=5, desc="analyze", disable=not progress, leave=False)

    steps.set_postfix_str("discretise")
    discretization = discretize(trajectories, n_states=n_states, seed=seed)
    steps.update()

    steps.set_postfix_str("implied timescales")
    its = implied_timescales(trajectories, frame_interval, lags, n_timescales=n_timescales,
                             discretization=discretization, n_bootstrap=n_bootstrap, reference=reference, seed=seed)
    steps.update()

    steps.set_postfix_str("CK test")
    ck = None
    ck_candidates = [l for l in lags if 3 * l < longest]
    if ck_candidates:
        ck_lag = ck_candidates[len(ck_candidates) // 2]
        try:
            ck = ck_test(trajectories, frame_interval, ck_lag, n_metastable=2, mlags=5,
                         discretization=discretization, seed=seed)
        except (InvalidInputError, ValueError, RuntimeError) as exc:  # e.g. PCCA on a disconnected model
            notes.append(f"CK test skipped: {str(exc).splitlines()[0]}")
    steps.update()

    steps.set_postfix_str("free energy / JS")
    frames = np.concatenate(trajectories)
    fes, js = None, None
    features = frames if dim <= 2 else frames[:, :2]
    if dim > 2:
        notes.append("free energy on the first two coordinates")
    bins = 100 if features.shape[1] == 1 else 40
    use_reference = reference if dim <= 2 else None
    fes = free_energy_surface(features, kT, bins=bins, reference=use_reference)
    if use_reference is not None:
        js = js_divergence(frames, reference=use_reference, bins=bins)
    steps.update()

    steps.set_postfix_str("autocorrelation")
    acf_lags = sorted({int(round(v)) for v in np.geomspace(1, max(1, (longest - 1) // 2), 12)})
    acf = autocorrelation(trajectories, frame_interval, acf_lags, reference=use_reference, name="x₁")
    steps.update()
    steps.close()
    return AnalysisResult(implied_timescales=its, autocorrelation=acf, ck_test=ck, free_energy=fes, js=js,
                          n_trajectories=len(trajectories), n_frames=int(sum(len(t) for t in trajectories)),
                          frame_interval=frame_interval, kT=float(kT), notes=notes)
