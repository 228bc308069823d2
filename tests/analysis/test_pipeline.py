"""analyze() end to end, its dictionary, and the HTML report."""

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from itomd.analysis import analyze, default_lags, write_report


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
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]  # no temporary left over
