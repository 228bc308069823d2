"""The potential-energy distribution of a molecule's frames against MD's: the clearest sign of strained
structures that bond-length thresholds let through.

:class:`EnergySection` (JSON key ``"energy"``) holds the energies (kT) of up to
:data:`MAX_ENERGY_FRAMES` frames spread evenly over the analysed data, as the system evaluates them
for analyses (:meth:`~itomd.systems.System.analysis_energies`: for molecules after the dynamics'
constraints, with the force field MD runs); after :func:`~itomd.analysis.pipeline.compare` also the
comparison's (e.g. MD), the difference of the means and the Wasserstein-1 distance between the two
distributions (scipy), both in kT, and a histogram of both in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import numpy as np

from itomd.analysis._html import html_table
from itomd.analysis.sections import AnalysisView, Section

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Frames whose energy is evaluated per data set (evenly spread over all frames).
MAX_ENERGY_FRAMES = 5000
#: Energies further than this many kT above the data's median are "strained" (counted, and left out
#: of the histogram's range so that a few exploded frames do not hide the distribution).
STRAIN_THRESHOLD = 50.0

EnergyFunction = Callable[[np.ndarray], "np.ndarray | None"]


def frame_energies(energy: EnergyFunction, trajectories: Sequence[np.ndarray],
                   max_frames: int = MAX_ENERGY_FRAMES) -> np.ndarray:
    """Energies (kT) of up to ``max_frames`` frames spread evenly over ``trajectories``; shape [n]."""
    frames = np.concatenate([np.asarray(t, dtype=np.float64) for t in trajectories])
    if len(frames) > max_frames:
        frames = frames[np.linspace(0, len(frames) - 1, max_frames).round().astype(int)]
    return np.asarray(energy(frames), dtype=np.float64)


def _summary(energies: np.ndarray) -> dict[str, Any]:
    finite = energies[np.isfinite(energies)]
    median = float(np.median(finite)) if len(finite) else float("nan")
    return {"n_frames": int(len(energies)), "n_finite": int(len(finite)),
            "mean": float(finite.mean()) if len(finite) else None, "std": float(finite.std()) if len(finite) else None,
            "median": median if len(finite) else None,
            "fraction_strained": float(np.mean(~np.isfinite(energies) | (energies > median + STRAIN_THRESHOLD)))
            if len(energies) else None}


@dataclass(eq=False)
class EnergySection(Section):
    """Potential energies of the analysed frames, and of the comparison's once compared (see module docs).

    Attributes
    ----------
    energies : np.ndarray, shape [n]
        Energies (kT) of the analysed frames (a subsample of at most :data:`MAX_ENERGY_FRAMES`).
    energy : callable
        The system's :meth:`~itomd.systems.System.analysis_energies` (for the comparison).
    comparison_energies : np.ndarray or None
    """

    key: ClassVar[str] = "energy"

    energies: np.ndarray
    energy: EnergyFunction = field(repr=False)
    comparison_energies: np.ndarray | None = None

    def add_comparison(self, trajectories: Sequence[np.ndarray], features: Sequence[np.ndarray], kT: float) -> None:
        self.comparison_energies = frame_energies(self.energy, trajectories)

    def _gap(self) -> tuple[float | None, float | None]:
        """(mean difference, Wasserstein-1 distance) in kT against the comparison, over finite energies."""
        if self.comparison_energies is None:
            return None, None
        from scipy.stats import wasserstein_distance

        mine = self.energies[np.isfinite(self.energies)]
        other = self.comparison_energies[np.isfinite(self.comparison_energies)]
        if not len(mine) or not len(other):
            return None, None
        return float(mine.mean() - other.mean()), float(wasserstein_distance(mine, other))

    def to_dict(self) -> dict[str, Any]:
        difference, wasserstein = self._gap()
        return {"unit": "kT", "frames_evaluated": "at most %d per data set, evenly spread" % MAX_ENERGY_FRAMES,
                "how": "force-field potential energy after the dynamics' constraints (System.analysis_energies)",
                **_summary(self.energies),
                "comparison": None if self.comparison_energies is None else _summary(self.comparison_energies),
                "mean_difference": difference, "wasserstein": wasserstein}

    def summary(self) -> str:
        s = _summary(self.energies)
        if s["mean"] is None:
            return "potential energy: no finite energies"
        line = f"potential energy {s['mean']:.2f} ± {s['std']:.2f} kT"
        difference, wasserstein = self._gap()
        if difference is not None:
            line += f" (comparison: mean {difference:+.2f} kT, Wasserstein {wasserstein:.2f} kT)"
        return line

    def report_html(self, result: AnalysisView) -> str:
        label = None if result.comparison is None else result.comparison.label
        columns = [("this data", _summary(self.energies))]
        if self.comparison_energies is not None:
            columns.append((label or "comparison", _summary(self.comparison_energies)))

        def number(value: float | None, fmt: str) -> str:
            return "–" if value is None else format(value, fmt)

        rows = [("mean (kT)", *(number(c["mean"], ".2f") for _, c in columns)),
                ("standard deviation (kT)", *(number(c["std"], ".2f") for _, c in columns)),
                (f"strained (> median + {STRAIN_THRESHOLD:g} kT, or not finite)",
                 *(number(c["fraction_strained"], ".2%") for _, c in columns)),
                ("frames evaluated", *(str(c["n_frames"]) for _, c in columns))]
        difference, wasserstein = self._gap()
        text = "<h2>Potential energy</h2>" + html_table(["", *(name for name, _ in columns)], rows)
        if difference is not None:
            text += (f"<p>Mean difference {difference:+.2f} kT; Wasserstein-1 distance between the distributions "
                     f"{wasserstein:.2f} kT.</p>")
        return text + ("<p class='note'>Force-field energies of the frames after the dynamics' constraints (bonds to "
                       "hydrogen set to their lengths), the same steps for both data sets.</p>")

    def report_figures(self, result: AnalysisView) -> list[tuple[str, "Figure"]]:
        from matplotlib.figure import Figure

        sets = [("this data", self.energies)]
        if self.comparison_energies is not None:
            sets.append((result.comparison.label if result.comparison is not None else "comparison",
                         self.comparison_energies))
        finite = [e[np.isfinite(e)] for _, e in sets]
        if not all(len(f) for f in finite):
            return []
        low = min(np.percentile(f, 0.5) for f in finite)
        high = max(min(np.percentile(f, 99.5), np.median(f) + STRAIN_THRESHOLD) for f in finite)
        fig = Figure(figsize=(5.5, 3.6))
        ax = fig.add_subplot()
        for (name, _), values in zip(sets, finite):
            ax.hist(values, bins=60, range=(low, high), density=True, histtype="step", linewidth=1.5, label=name)
        ax.set_xlabel("potential energy (kT)")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return [("Potential-energy distribution (kT)", fig)]


def energy_sections(energy: EnergyFunction | None, trajectories: Sequence[np.ndarray]) -> list[Section]:
    """[:class:`EnergySection`] of ``trajectories`` where the system evaluates energies, else []."""
    if energy is None:
        return []
    energies = frame_energies(energy, trajectories)
    return [EnergySection(energies=energies, energy=energy)]


__all__ = ["EnergySection", "MAX_ENERGY_FRAMES", "energy_sections", "frame_energies"]
