"""analyze() end to end, its dictionary, and the HTML report."""

import json
import re

import numpy as np
import pytest
from matplotlib.figure import Figure

from itomd.analysis import CoordinateFeaturizer, Section, analyze, compare, default_lags, write_report
from itomd.analysis.sections import CK_TEST_FIGURE
from itomd.errors import InvalidInputError

#: Keys of today's (before the sections refactor) JSON of an analysis; tests, bench scripts and users
#: read them. "molecular" is null for systems without atoms.
TOP_LEVEL_KEYS = {"autocorrelation", "ck_test", "comparison", "dim", "discretization", "features", "frame_interval",
                  "free_energy", "implied_timescales", "js_divergence", "js_divergence_details", "kT", "molecular",
                  "n_frames", "n_trajectories", "notes"}
COMPARISON_KEYS = {"frame_interval", "implied_timescales", "js_divergence", "js_divergence_details", "label",
                   "n_frames", "n_trajectories", "slowest_timescale_ratio"}


@pytest.fixture(scope="module")
def prinz_result(prinz_system, prinz_trajectories, prinz_reference):
    return analyze(prinz_trajectories, prinz_system.frame_interval, prinz_system.kT, reference=prinz_reference,
                   n_samples=20)


def test_default_lags():
    assert default_lags([2000] * 5) == [1, 3, 6, 16, 41, 104, 263, 666]
    assert default_lags([2000, 1000, 10]) == default_lags([1000])  # a stub does not limit the lags
    assert default_lags([4]) == [1] and default_lags([2]) == [1]


def test_analyze_prinz_dictionary(prinz_result, prinz_system):
    d = prinz_result.to_dict()
    json.dumps(d, allow_nan=False)
    assert set(d) >= {"implied_timescales", "js_divergence", "js_divergence_details", "free_energy", "ck_test",
                      "autocorrelation", "n_trajectories", "n_frames", "frame_interval"}
    assert d["n_trajectories"] == 200 and d["n_frames"] == 400_000
    assert d["frame_interval"] == prinz_system.frame_interval
    its = d["implied_timescales"]
    assert set(its) >= {"lags", "lag_times", "timescales", "lower", "upper", "reference"}
    assert its["reference"][0] == pytest.approx(0.834, rel=2e-3)
    lags = np.array(its["lags"])
    slowest = np.array([row[0] for row in its["timescales"]])
    converged = (lags >= 10) & (lags <= 100)
    assert np.all(np.abs(slowest[converged] / its["reference"][0] - 1) < 0.05)
    assert d["js_divergence"] < 0.005
    assert d["js_divergence_details"]["unit"] == "nats" and d["js_divergence_details"]["bins"] == [100]
    assert d["free_energy"]["rms_deviation_kT"] < 0.3
    assert d["ck_test"]["max_deviation"] < 0.03
    assert d["autocorrelation"]["max_abs_deviation"] < 0.05


def test_analyze_high_dimensional_data_without_reference():
    rng = np.random.default_rng(0)
    x = np.zeros((10, 300, 3))
    for t in range(1, 300):
        x[:, t] = 0.95 * x[:, t - 1] + 0.3 * rng.normal(size=(10, 3))
    result = analyze(list(x), 0.1, 1.0, n_states=20, n_samples=5, progress=True)
    d = result.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["features"] == [0, 1] and d["free_energy"]["features"] == [0, 1]
    assert any("first two" in note for note in d["notes"])
    assert d["js_divergence"] is None and d["implied_timescales"]["reference"] is None


def test_write_report(prinz_result, tmp_path):
    extra = Figure()
    extra.subplots().plot([0, 1], [1, 0])
    path = write_report(prinz_result, tmp_path / "new" / "report.html", title="Prinz <test>",
                        extra_sections={"Training": "<p>loss 0.1</p>", "Extra figure": extra})
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert text.count('<img src="data:image/png;base64,') == 5  # ITS, FES, CK, ACF + the extra one
    assert f"{prinz_result.js_divergence.value:.4g}" in text and "nats" in text
    assert "100 bins" in text and "Prinz &lt;test&gt;" in text and "<p>loss 0.1</p>" in text
    assert "<figcaption>Free energy (exact: dashed)</figcaption>" in text and "Chemical validity" not in text
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]  # no temporary left over


def test_toy_json_keys_are_unchanged_and_compare_sees_coordinates(prinz_system, prinz_trajectories, prinz_reference):
    tau = prinz_system.frame_interval
    analysed = prinz_trajectories[:40]
    result = analyze(analysed, tau, prinz_system.kT, reference=prinz_reference, lags=[1, 5, 10], n_samples=0)
    out = result.to_dict()
    assert set(out) == TOP_LEVEL_KEYS and out["molecular"] is None and out["comparison"] is None
    assert result.sections == [] and isinstance(result.featurizer, CoordinateFeaturizer)

    same = compare(result, analysed, tau, n_samples=0)  # the same frames on the same states
    assert same.js_divergence.value == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(same.slowest_timescale_ratio(), 1.0)

    # the same process seen every second frame: only lag times that are whole multiples of 2τ remain,
    # and there the implied timescale is the same (independent 40-trajectory sets differ by ~20 %)
    other = [t[::2] for t in analysed]
    comparison = compare(result, other, 2 * tau, label="half", n_samples=0)
    assert np.allclose(comparison.implied_timescales.lag_times, [10 * tau])
    assert comparison.implied_timescales.lags.tolist() == [5]
    assert 0 < comparison.js_divergence.value < 0.005 and comparison.js_divergence.bins == [100]
    assert abs(comparison.slowest_timescale_ratio()[0] - 1) < 0.02
    out = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(out) == TOP_LEVEL_KEYS and set(out["comparison"]) == COMPARISON_KEYS
    assert out["comparison"]["label"] == "half" and out["molecular"] is None
    with pytest.raises(InvalidInputError, match="cannot compare 2-dimensional data with 1-dimensional"):
        compare(result, [np.zeros((50, 2))], tau)


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
    assert captions[:4] == ["Implied timescales vs lag time (exact: dashed)", "Free energy (exact: dashed)",
                            "tail fraction", "Autocorrelation (exact: dashed)"]
    assert "Chapman–Kolmogorov" not in text and f"<p>{expected:.3f} vs right</p>" in text
    assert text.index("<h2>Tail</h2>") < text.index("<h2>Plots</h2>")
