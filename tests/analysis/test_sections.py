"""Sections: a featurizer's additions to an analysis — its JSON entry, its comparison, its report HTML and
the standard figures it replaces."""

import re

import numpy as np
import pytest
from matplotlib.figure import Figure

from itomd.analysis import CoordinateFeaturizer, Section, analyze, compare, write_report
from itomd.analysis.sections import CK_TEST_FIGURE


class _TailSection(Section):
    """A test section: the fraction of frames beyond a threshold, shown instead of the CK test."""

    key = "tail"
    replaces_figures = (CK_TEST_FIGURE,)

    def __init__(self, fraction: float):
        self.fraction, self.comparison_fraction = fraction, None

    def to_dict(self) -> dict:
        return {"fraction": self.fraction, "comparison_fraction": self.comparison_fraction}

    def add_comparison(self, trajectories, features, kT) -> None:
        self.comparison_fraction = float(np.mean(np.concatenate(features)[:, 0] > 0.5))

    def summary(self) -> str:
        return f"tail {self.fraction:.3f}"

    def report_html(self, result) -> str:
        return f"<h2>Tail</h2><p>{self.fraction:.3f} vs {result.comparison.label}</p>"

    def report_figures(self, result):
        fig = Figure()
        fig.subplots().plot([0, 1], [0, self.fraction])
        return [("tail fraction", fig)]


class _TailFeaturizer(CoordinateFeaturizer):
    def sections(self, trajectories, features):
        return [_TailSection(float(np.mean(np.concatenate(features)[:, 0] > 0.5)))]


def test_a_featurizer_adds_sections_that_compare_completes_and_the_report_shows(prinz_system, prinz_trajectories,
                                                                               tmp_path):
    tau = prinz_system.frame_interval
    data = prinz_trajectories[:20]
    result = analyze(data, tau, prinz_system.kT, lags=[1, 5], n_samples=0, featurizer=_TailFeaturizer())
    tail = result.section(_TailSection)
    expected = float(np.mean(np.concatenate(data)[:, 0] > 0.5))
    assert 0 < tail.fraction == expected < 1
    compare(result, [t[t[:, 0] > 0.5] for t in prinz_trajectories[20:40] if (t[:, 0] > 0.5).sum() > 20], tau,
            label="right", n_samples=0)
    assert tail.comparison_fraction == 1.0  # completed with the second set's features
    out = result.to_dict()
    assert out["tail"] == {"fraction": expected, "comparison_fraction": 1.0} and out["molecular"] is None
    text = write_report(result, tmp_path / "report.html").read_text(encoding="utf-8")
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", text)
    assert captions[:4] == ["Implied timescales vs lag time (exact: dashed; hollow grey: unresolved)", "Free energy (exact: dashed)",
                            "tail fraction", "Autocorrelation (exact: dashed; right: squares, same lag times)"]
    assert "Chapman–Kolmogorov" not in text and f"<p>{expected:.3f} vs right</p>" in text
    assert text.index("<h2>Tail</h2>") < text.index("<h2>Plots</h2>")


def test_a_section_must_give_its_dictionary_and_has_empty_defaults_otherwise():
    from itomd.analysis.sections import STANDARD_FIGURES

    with pytest.raises(TypeError):
        Section()  # to_dict is abstract

    class Minimal(Section):
        key = "minimal"

        def to_dict(self):
            return {"n": 1}

    section = Minimal()
    assert section.replaces_figures == () and CK_TEST_FIGURE in STANDARD_FIGURES
    assert section.add_comparison([np.zeros((3, 1))], [np.zeros((3, 1))], 1.0) is None
    assert section.summary() is None and section.report_html(None) == "" and section.report_figures(None) == []
