"""analyze() and compare() end to end and the analysis dictionary (the HTML report: test_report.py;
sections a featurizer adds: test_sections.py). ``prinz_result`` is in tests/analysis/conftest.py."""

import json

import numpy as np
import pytest

from itomd.analysis import CoordinateFeaturizer, analyze, compare, default_lags
from itomd.errors import InvalidInputError

#: Keys of today's (before the sections refactor) JSON of an analysis; tests, bench scripts and users
#: read them. "molecular" is null for systems without atoms.
#: (``energy`` added by issue 14: the potential-energy check, None where the analysis had no energies)
TOP_LEVEL_KEYS = {"autocorrelation", "ck_test", "comparison", "dim", "discretization", "energy", "features",
                  "frame_interval", "free_energy", "implied_timescales", "js_divergence", "js_divergence_details", "kT",
                  "molecular", "n_frames", "n_trajectories", "notes", "time_unit",
                  "mfpt"}  # added by issue 14 (first passage times)
COMPARISON_KEYS = {"frame_interval", "implied_timescales", "js_divergence", "js_divergence_details", "label",
                   "n_frames", "n_trajectories", "slowest_timescale_ratio",
                   "mfpt", "mfpt_ratio",  # added by issue 14
                   "autocorrelation", "autocorrelation_max_abs_difference"}  # the comparison's own autocorrelation


def test_default_lags():
    assert default_lags([2000] * 5) == [1, 3, 6, 16, 41, 104, 263, 666]
    assert default_lags([2000, 1000, 10]) == default_lags([1000])  # a stub does not limit the lags
    assert default_lags([4]) == [1] and default_lags([2]) == [1]


#: Bounds on ``analyze`` of the Prinz data (``prinz_result``) against the exact reference, from the fixture's
#: seed and two more sets of 200 × 2000 frames (values: this seed; other seeds; the same analysis of data
#: simulated 10 % / 30 % too hot). Slowest ITS at lags 16 and 41, relative error: −0.1 %, −0.6 %; +1.2 %,
#: −5.2 %; −20 %, −44 %. JS (100 bins, nats): 6.2e-5; 2.0e-4, 8.3e-5; 5.0e-4, 2.6e-3. Free-energy RMS
#: deviation (kT): 0.046; 0.053, 0.046; 0.107, 0.358. CK max deviation: 0.0009; 0.0022, 0.0036; 0.0013,
#: 0.0012 (a self-consistency check, blind to the temperature). Autocorrelation max deviation: 0.028;
#: 0.055, 0.033; 0.078, 0.165.
PRINZ_ITS_RELATIVE_ERROR = 0.05  # between-seed spread ~3 %: the fixture's seed has room, others not all
PRINZ_JS_BOUND = 3.5e-4  # mean + 3σ of the three seeds
PRINZ_FES_RMS_BOUND = 0.07  # mean 0.048 ± 0.004
PRINZ_CK_BOUND = 0.008  # mean 0.0022 ± 0.0014
PRINZ_ACF_BOUND = 0.05  # 0.028 here; seeds spread 0.028–0.055


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
    assert np.all(np.abs(slowest[converged] / its["reference"][0] - 1) < PRINZ_ITS_RELATIVE_ERROR)
    assert d["js_divergence"] < PRINZ_JS_BOUND
    assert d["js_divergence_details"]["unit"] == "nats" and d["js_divergence_details"]["bins"] == [100]
    assert d["free_energy"]["rms_deviation_kT"] < PRINZ_FES_RMS_BOUND
    assert d["ck_test"]["max_deviation"] < PRINZ_CK_BOUND
    assert d["autocorrelation"]["max_abs_deviation"] < PRINZ_ACF_BOUND


def test_analyze_prinz_against_the_exact_answer_at_a_wrong_temperature_fails_the_bounds(
        prinz_system, prinz_trajectories):
    """Negative control: the same data against the exact Prinz reference at kT = 1.2 (the Boltzmann
    density and kinetics 20 % too hot) break the ITS, JS and free-energy bounds above (measured: ITS ratio
    1.52, JS 1.2e-3, free-energy RMS 0.23 kT; 3.3 s)."""
    from itomd.systems import resolve_system
    from itomd.systems.reference import exact_reference

    hot = exact_reference(resolve_system("prinz", kT=1.2))
    d = analyze(prinz_trajectories, prinz_system.frame_interval, prinz_system.kT, reference=hot, lags=[16],
                n_samples=0).to_dict()
    its = d["implied_timescales"]
    assert abs(its["timescales"][0][0] / its["reference"][0] - 1) > PRINZ_ITS_RELATIVE_ERROR
    assert d["js_divergence"] > PRINZ_JS_BOUND
    assert d["free_energy"]["rms_deviation_kT"] > PRINZ_FES_RMS_BOUND


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


def test_toy_json_keys_are_unchanged_and_compare_sees_coordinates(prinz_system, prinz_trajectories, prinz_reference):
    tau = prinz_system.frame_interval
    analysed = prinz_trajectories[:40]
    result = analyze(analysed, tau, prinz_system.kT, reference=prinz_reference, lags=[1, 5, 10], n_samples=0)
    out = result.to_dict()
    assert set(out) == TOP_LEVEL_KEYS and out["molecular"] is None and out["comparison"] is None
    assert out["energy"] is None  # toy systems: their stationary density is compared exactly
    assert result.sections == [] and isinstance(result.featurizer, CoordinateFeaturizer)

    same = compare(result, analysed, tau, n_samples=0)  # the same frames on the same states
    assert same.js_divergence.value == pytest.approx(0.0, abs=1e-12)
    assert same.autocorrelation_difference() == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(same.slowest_timescale_ratio(), 1.0)
    assert np.allclose(same.mfpt_ratio()[[0, 1], [1, 0]], 1.0)  # the same first passage times

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
    # the MFPT lag (1 frame) is no whole number of the half-rate data's frames: skipped, with a note
    assert out["comparison"]["mfpt"] is None and any(n.startswith("half MFPTs skipped") for n in out["notes"])
    with pytest.raises(InvalidInputError, match="cannot compare 2-dimensional data with 1-dimensional"):
        compare(result, [np.zeros((50, 2))], tau)


#: max |C_main − C_comparison| over the autocorrelation lags (1…200 frames) of two independent sets of 64 × 400
#: frames of the exact OU process (decay 0.9 per frame): 0.071, 0.069, 0.051 for three second seeds; the same
#: data every second frame but declared at one frame (the wrong lag: decay 0.81): 0.29, 0.27, 0.26.
OU_ACF_SAME_PROCESS_BOUND, OU_ACF_WRONG_LAG_BOUND = 0.1, 0.2


def test_compare_puts_the_second_sets_autocorrelation_beside_the_first(ou_trajectories, ou_decay):
    first, second = ou_trajectories(64, 400, seed=0), ou_trajectories(64, 400, seed=1)
    result = analyze(first, 1.0, 1.0, lags=[1, 2, 5], n_samples=0)
    comparison = compare(result, second, 1.0, label="MD", n_samples=0)
    theirs = comparison.autocorrelation
    assert np.array_equal(theirs.lag_times, result.autocorrelation.lag_times)
    assert theirs.observable == result.autocorrelation.observable
    assert np.allclose(theirs.values[:3], ou_decay ** theirs.lags[:3], atol=0.03)  # exact 0.9^N at short lags
    assert comparison.autocorrelation_difference() < OU_ACF_SAME_PROCESS_BOUND
    # wrong lag: the process seen every second frame but declared at one frame decorrelates twice as fast
    wrong = compare(result, [t[::2] for t in second], 1.0, n_samples=0)
    assert wrong.autocorrelation_difference() > OU_ACF_WRONG_LAG_BOUND
    # declared right (2 frames): only the even lag times, and the same curve there
    half = compare(result, [t[::2] for t in second], 2.0, n_samples=0)
    assert np.all(half.autocorrelation.lag_times % 2 == 0) and len(half.autocorrelation.lags) < len(theirs.lags)
    assert half.autocorrelation_difference() < OU_ACF_SAME_PROCESS_BOUND
    out = json.loads(json.dumps(result.to_dict(), allow_nan=False))["comparison"]
    assert out["autocorrelation_max_abs_difference"] == pytest.approx(half.autocorrelation_difference())
    assert out["autocorrelation"]["lag_times"] == half.autocorrelation.lag_times.tolist()


def test_comparison_ratio_leaves_out_unresolved_estimates(prinz_system, prinz_trajectories):
    """Long lags (τ = 1.5, 2.5 > exact t₂ = 0.834) give noise on both sides; the ratio keeps only resolved lags."""
    tau = prinz_system.frame_interval
    first, second = prinz_trajectories[:100], prinz_trajectories[100:]
    result = analyze(first, tau, prinz_system.kT, lags=[20, 100, 300, 500], n_states=30, n_samples=0,
                     n_timescales=1)
    comparison = compare(result, second, tau, n_samples=0)
    ratio = comparison.slowest_timescale_ratio()
    resolved = result.implied_timescales.resolved[:, 0] & comparison.implied_timescales.resolved[:, 0]
    assert resolved.tolist() == [True, True, False, False]
    assert np.all(np.abs(ratio[resolved] - 1) < 0.1) and np.isnan(ratio[~resolved]).all()
    # negative control: the raw estimates at the unresolved lags are noise that a ratio would have kept
    raw = result.implied_timescales.timescales[:, 0] / comparison.implied_timescales.timescales[:, 0]
    assert np.isfinite(raw).all()
    assert comparison.to_dict()["slowest_timescale_ratio"][2:] == [None, None]
