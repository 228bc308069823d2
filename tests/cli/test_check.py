"""``itomd check``: self-consistency of a model across time scales, from the command line (issue 14, item 1)."""

from __future__ import annotations

import json

import pytest

from itomd.cli import main
from tests.cli.helpers import assert_one_line_error, assert_one_line_exit, run_cli


@pytest.fixture(scope="module")
def prinz_run(prinz_data, tiny_toml, tmp_path_factory):
    run = tmp_path_factory.mktemp("check") / "run"
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--config", str(tiny_toml),
                 "--max-steps", "20", "--quiet"]) == 0
    return run


def test_check_reports_records_against_the_exact_dynamics_and_the_report_shows_them(prinz_run, prinz_data, tmp_path,
                                                                                     capsys):
    capsys.readouterr()
    assert main(["check", str(prinz_run), "--lags", "4", "--splits", "2,4,3", "--n-starts", "2", "--n-samples", "300",
                 "--n-steps", "3", "--tolerance", "1000", "--from", str(prinz_data), "--json",
                 "--out", str(tmp_path / "check.json")]) == 0
    result = json.loads(capsys.readouterr().out)
    records = result["self_consistency"]
    assert [(r["lag"], r["k"]) for r in records] == [(4, 2), (4, 4)]  # k = 3 does not divide 4
    for r in records:
        assert 0 <= r["js_divergence"] <= 0.7 and r["js_floor"] > 0 and r["n_samples"] == 300
        assert r["flagged"] == (r["js_divergence"] > result["flag_factor"] * r["js_floor"])
        # Prinz is a toy system: its own Langevin integrator samples the exact transfer operator
        assert r["js_exact_floor"] > 0 and r["js_direct_vs_exact"] >= 0 and r["delta_expectation_direct_vs_exact"] >= 0
    assert result["observables"][:1] == ["eigenfunction 1"] and len(result["starts"]) == 2
    assert json.loads((prinz_run / "check.json").read_text())["self_consistency"] == records
    assert json.loads((tmp_path / "check.json").read_text())["self_consistency"] == records
    rollout = tmp_path / "rollout"
    assert main(["sample", str(prinz_run), "--lag", "2", "--n-jumps", "20", "--n-walkers", "4", "--out", str(rollout),
                 "--from", str(prinz_data), "--n-steps", "3", "--tolerance", "1000", "--quiet"]) == 0
    assert main(["report", str(rollout), "--out", str(tmp_path / "report.html"), "--lags", "1,2", "--quiet"]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "Self-consistency: one jump of N vs k jumps of N/k" in page and "exact vs exact" in page


def test_check_kinetics_against_the_md_of_from(prinz_run, prinz_data, tmp_path, capsys):
    capsys.readouterr()
    assert main(["check", str(prinz_run), "--lags", "4", "--splits", "2", "--n-starts", "1", "--n-samples", "50",
                 "--n-steps", "3", "--tolerance", "1000", "--from", str(prinz_data), "--kinetics", "1,2",
                 "--kinetics-walkers", "32", "--kinetics-jumps", "30", "--redraws", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    kinetics = result["kinetics"]
    assert [k["lag"] for k in kinetics] == [1, 2] and all(len(k["lag_times"]) == 4 for k in kinetics)
    for k in kinetics:
        assert k["n_walkers"] == 32 and k["n_jumps"] == 30 and 0 <= k["js_divergence"] <= 0.7 and k["redrawn_jumps"] >= 0
        tol = k["tolerance"]
        for t, ratio, model, md, model_raw, md_raw, flagged in zip(
                k["lag_times"], k["ratio"], k["slowest_timescale_model"], k["slowest_timescale_data"],
                k["timescale_estimate_model"], k["timescale_estimate_data"], k["flagged_lag_times"]):
            assert (ratio is None) or ratio == pytest.approx(model / md)
            # the rule of KineticsRecord.flagged_lag_times: off by more than the tolerance, or only one side resolved
            # and off the other's bound (the larger of the lag time and its unresolved estimate) by more than that
            model_bound, md_bound = max(model_raw or t, t), max(md_raw or t, t)
            expected = ((ratio is not None and abs(ratio - 1) > tol)
                        or (model is None and md is not None and md * (1 - tol) > model_bound)
                        or (md is None and model is not None and model > (1 + tol) * md_bound))
            assert flagged == expected
    assert result["flagged"] == (any(k["flagged"] for k in kinetics) or any(r["flagged"] for r in result["self_consistency"]))
    rollout = tmp_path / "rollout"
    assert main(["sample", str(prinz_run), "--lag", "2", "--n-jumps", "20", "--n-walkers", "4", "--out", str(rollout),
                 "--from", str(prinz_data), "--n-steps", "3", "--tolerance", "1000", "--quiet"]) == 0
    assert main(["report", str(rollout), "--out", str(tmp_path / "report.html"), "--lags", "1,2", "--quiet"]) == 0
    assert "Kinetics against MD: rollouts from MD frames" in (tmp_path / "report.html").read_text()


def test_check_refuses_bad_requests_in_one_line(prinz_run, bopito_runs, capsys):
    assert_one_line_exit(capsys, main(["check", str(bopito_runs["eq"])]), "equilibrium model")
    assert_one_line_exit(capsys, main(["check", str(prinz_run), "--lags", "11"]), "beyond the model's largest")
    assert_one_line_exit(capsys, main(["check", str(prinz_run), "--lags", "5", "--splits", "2"]), "no split k")
    assert_one_line_exit(capsys, main(["check", str(prinz_run), "--n-samples", "1"]), "at least 2")
    assert_one_line_exit(capsys, main(["check", str(prinz_run), "--kinetics", "2"]), "--from DIR")
    assert_one_line_exit(capsys, main(["check", str(prinz_run), "--kinetics", "2", "--from", "x",
                                       "--kinetics-jumps", "3"]), "at least 6 jumps")
    assert_one_line_exit(capsys, main(["check", str(prinz_run), "--kinetics", "20", "--from", "x"]),
                         "beyond the model's largest")


def test_check_of_a_missing_run_is_one_line(tmp_path):
    assert_one_line_error(run_cli("check", str(tmp_path / "nothing")), "no model file at")
