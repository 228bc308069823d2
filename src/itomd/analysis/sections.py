"""Sections: the parts of an analysis that only some kinds of data have.

An :class:`~itomd.analysis.pipeline.AnalysisResult` holds what every analysis computes (implied
timescales, CK test, free energy, JS divergence, autocorrelation) plus a list of sections that its
:class:`~itomd.analysis.features.Featurizer` added — for molecules the chemical validity and the
Ramachandran free energy (:class:`~itomd.analysis.molecular.MolecularSection`). A section knows

* its JSON key and value (:attr:`Section.key`, :meth:`Section.to_dict`) and a one-line summary
  (:meth:`Section.summary`),
* how a second data set completes it (:meth:`Section.add_comparison`, called by
  :func:`~itomd.analysis.pipeline.compare`),
* how it shows in the HTML report (:meth:`Section.report_html`, :meth:`Section.report_figures`).

The pipeline and the report loop over sections and never ask what kind of data they analyse.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from itomd.analysis.fes import FreeEnergySurface

#: Names of the report's standard plots, in their order on the page; a section may replace some
#: (:attr:`Section.replaces_figures`).
IMPLIED_TIMESCALES_FIGURE = "implied_timescales"
FREE_ENERGY_FIGURE = "free_energy"
CK_TEST_FIGURE = "ck_test"
AUTOCORRELATION_FIGURE = "autocorrelation"
STANDARD_FIGURES = (IMPLIED_TIMESCALES_FIGURE, FREE_ENERGY_FIGURE, CK_TEST_FIGURE, AUTOCORRELATION_FIGURE)


class ComparisonView(Protocol):
    """What a section may read of the result's comparison (:class:`~itomd.analysis.pipeline.Comparison`)."""

    label: str


class AnalysisView(Protocol):
    """What a section may read of the result it belongs to when it renders.

    :class:`~itomd.analysis.pipeline.AnalysisResult` provides it; a protocol, so that sections (and
    the featurizers that make them) need not import the pipeline.
    """

    free_energy: "FreeEnergySurface"
    comparison: ComparisonView | None


class Section(ABC):
    """A part of an analysis result added by a featurizer.

    Attributes
    ----------
    key : str
        Its entry in :meth:`~itomd.analysis.pipeline.AnalysisResult.to_dict`.
    replaces_figures : tuple of str
        Standard plots (names from :data:`STANDARD_FIGURES`) that this section's
        :meth:`report_figures` take the place of; its figures appear where the first of them would
        have. Without any, its figures follow the standard plots.
    """

    key: ClassVar[str]
    replaces_figures: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable value of :attr:`key`."""

    def add_comparison(self, trajectories: Sequence[np.ndarray], features: Sequence[np.ndarray], kT: float) -> None:
        """Complete the section with a second data set (e.g. MD); by default nothing to add.

        Parameters
        ----------
        trajectories : list of np.ndarray, each [n_frames_i, dim]
            The second data set as given to :func:`~itomd.analysis.pipeline.compare`.
        features : list of np.ndarray, each [n_frames_i, n_features]
            Its features from the result's featurizer.
        kT : float
            The result's thermal energy (free energies are in its unit).
        """

    def summary(self) -> str | None:
        """One line for ``itomd analyze``'s text output (None: nothing to print)."""
        return None

    def report_html(self, result: AnalysisView) -> str:
        """HTML fragment (with its own ``<h2>``) placed after the report's key-number tables; "" for none."""
        return ""

    def report_figures(self, result: AnalysisView) -> list[tuple[str, "Figure"]]:
        """(caption, figure) pairs for the report's plots (see :attr:`replaces_figures`)."""
        return []
