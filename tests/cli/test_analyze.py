"""``itomd analyze`` / ``itomd report``: toy stores against the exact reference, rollouts compared with MD,
molecular stores on backbone torsions, and one-line errors for bad data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from itomd.cli import main
from itomd.data.store import save_trajectories
from tests.cli.helpers import assert_one_line_error, run_cli


def test_simulate_analyze_report_roundtrip(prinz_store, tmp_path, capsys):
    capsys.readouterr()
    assert main(["analyze", str(prinz_store), "--reference", "--lags", "5,10", "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    its = out["implied_timescales"]
    assert its["lags"] == [5, 10]
    assert np.allclose(its["lag_times"], [0.025, 0.05])
    assert its["reference"][0] == pytest.approx(0.834, rel=1e-2)
    assert out["js_divergence"] is not None and out["js_divergence"] >= 0
    assert out["mfpt"]["lag"] == 5 and out["mfpt"]["basins"] == ["S1", "S2"] and out["mfpt"]["reference"] is not None
    assert main(["analyze", str(prinz_store), "--reference", "--lags", "5,10", "--mfpt-lag", "10", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "mean first passage times (time units, MSM at 0.05): S1→S2 " in text and "(exact " in text
    report = tmp_path / "report.html"
    assert main(["report", str(prinz_store), "--reference", "--out", str(report), "--quiet"]) == 0
    assert "data:image/png;base64," in report.read_text()


def test_analyze_text_marks_unresolved_timescales_and_names_the_time_unit(prinz_store, capsys):
    """Lag times 0.025 and 1.0 against exact t₂ = 0.834: the second cannot resolve it and is shown in parentheses."""
    capsys.readouterr()
    assert main(["analyze", str(prinz_store), "--reference", "--lags", "5,200", "--n-states", "20", "--quiet"]) == 0
    text = capsys.readouterr().out
    first = text.splitlines()[0]
    assert first.startswith("2 lags; slowest implied timescale (time units) ") and "at lag times 0.025, 1 " in first
    values = first.split("(time units) ")[1].split(" at lag times")[0].split(", ")
    assert not values[0].startswith("(") and values[1].startswith("(")
    assert "(…): unresolved" in text


def test_nan_data_and_corrupt_file(prinz_store, tmp_path):
    import shutil

    import h5py

    nan_store = tmp_path / "nan"
    shutil.copytree(prinz_store, nan_store)
    first = sorted(nan_store.glob("*.h5"))[0]
    with h5py.File(first, "r+") as f:
        name = next(k for k in f.keys() if isinstance(f[k], h5py.Dataset))
        data = f[name][...]
        data[3] = np.nan
        f[name][...] = data
    assert_one_line_error(run_cli("analyze", str(nan_store), "--json"), "NaN")

    corrupt = tmp_path / "corrupt"
    shutil.copytree(prinz_store, corrupt)
    victim = sorted(corrupt.glob("*.h5"))[1]
    victim.write_bytes(victim.read_bytes()[:200])
    assert_one_line_error(run_cli("analyze", str(corrupt), "--json"), victim.name)


def test_lag_longer_than_data(prinz_store):
    assert_one_line_error(run_cli("analyze", str(prinz_store), "--lags", "5000", "--json"), "lag")


def test_analyze_and_report_compare_rollouts_with_md(prinz_data, tiny_toml, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "rollout"
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--config", str(tiny_toml),
                 "--max-steps", "20", "--quiet"]) == 0
    assert main(["sample", str(run), "--lag", "2", "--n-jumps", "40", "--n-walkers", "8", "--out", str(out),
                 "--from", str(prinz_data), "--n-steps", "3", "--tolerance", "100", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["analyze", str(out), "--reference", "--lags", "1,3", "--compare", str(prinz_data), "--json",
                 "--quiet"]) == 0
    comparison = json.loads(capsys.readouterr().out)["comparison"]
    assert comparison["label"] == "MD" and comparison["js_divergence"] >= 0
    assert comparison["implied_timescales"]["lags"] == [2, 6]  # MD frames for lag times 2τ and 6τ
    report = tmp_path / "r.html"
    assert main(["report", str(out), "--reference", "--lags", "1,3", "--compare", str(prinz_data), "--out",
                 str(report), "--quiet"]) == 0
    assert "Comparison with MD" in report.read_text()


# -- molecules -----------------------------------------------------------------------------------
FRAME_INTERVAL = 0.1  # ps: the frame interval of md_trajectories (tests/conftest.py)


def _store(path, trajectories, ala2, **extra):
    from itomd.systems import SystemSpec

    metadata = {**ala2.metadata(), "spec": json.dumps(SystemSpec(spec="ala2").to_dict()),
                "frame_interval": FRAME_INTERVAL, **extra}
    return save_trajectories(path, trajectories, metadata)


def test_itomd_analyze_on_a_molecular_store(md_trajectories, ala2, tmp_path, capsys):
    model = _store(tmp_path / "model", [t[:500] for t in md_trajectories], ala2).path
    md = _store(tmp_path / "md", md_trajectories, ala2).path
    assert main(["analyze", str(model), "--compare", str(md), "--lags", "1,2,5", "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["molecular"]["features"] == ["phi", "psi"]
    assert set(out["molecular"]["validity"]) >= {"fraction_valid", "fraction_bonds_ok", "fraction_no_clash",
                                                 "fraction_chirality_kept", "n_frames", "worst_offenders"}
    assert out["molecular"]["comparison_validity"]["n_frames"] == 2000
    comparison = out["comparison"]
    # the first halves of the same runs: similar, not equal (measured 0.014; halves of this MD give 0.013–0.022,
    # 600 K MD 0.10–0.22: HALF_OF_THE_MD_JS_BOUND in tests/analysis/test_molecular.py)
    assert 0.005 < comparison["js_divergence"] < 0.035
    assert len(comparison["implied_timescales"]["timescales"]) == 3 == len(comparison["slowest_timescale_ratio"])
    assert len(out["implied_timescales"]["timescales"]) == 3

    # first passage times between the Ramachandran cores, for the data and for MD at the same lag time
    assert out["mfpt"]["basins"] == ["αR", "β/PII", "αL"] and comparison["mfpt"]["lag_time"] == out["mfpt"]["lag_time"]
    assert len(comparison["mfpt_ratio"]) == 3

    report = tmp_path / "report.html"
    assert main(["report", str(model), "--compare", str(md), "--lags", "1,2,5", "--out", str(report), "--quiet"]) == 0
    page = report.read_text()
    assert "Ramachandran" in page and "αR → β/PII" in page


def test_itomd_analyze_molecular_errors_are_one_line(md_trajectories, ala2, tmp_path, capsys):
    wrong = save_trajectories(tmp_path / "wrong", [t[:, :60] for t in md_trajectories],
                              {**ala2.metadata(), "spec": json.dumps({"spec": "ala2"}), "frame_interval": FRAME_INTERVAL,
                               "dim": 60}).path
    assert main(["analyze", str(wrong), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "60-dimensional" in err and "22 atoms" in err

    good = _store(tmp_path / "good", md_trajectories, ala2).path
    flat = save_trajectories(tmp_path / "flat", [np.zeros((100, 2))], {"frame_interval": FRAME_INTERVAL}).path
    assert main(["analyze", str(good), "--compare", str(flat), "--lags", "1,2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2-dimensional" in err

    assert main(["analyze", str(good), "--n-states", "5", "--lags", "1,2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--n-states" in err and "20×20 φ/ψ grid" in err
