"""The command line: end-to-end runs and one-line errors with a non-zero exit for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from itomd.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "itomd", *args], capture_output=True, text=True, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def prinz_store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "prinz"
    assert main(["simulate", "--system", "prinz", "--out", str(out), "--n-traj", "8", "--n-frames", "400",
                 "--seed", "3", "--workers", "0", "--quiet"]) == 0
    return out


def test_simulate_analyze_report_roundtrip(prinz_store, tmp_path, capsys):
    capsys.readouterr()
    assert main(["analyze", str(prinz_store), "--reference", "--lags", "5,10", "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    its = out["implied_timescales"]
    assert its["lags"] == [5, 10]
    assert np.allclose(its["lag_times"], [0.025, 0.05])
    assert its["reference"][0] == pytest.approx(0.834, rel=1e-2)
    assert out["js_divergence"] is not None and out["js_divergence"] >= 0
    report = tmp_path / "report.html"
    assert main(["report", str(prinz_store), "--reference", "--out", str(report), "--quiet"]) == 0
    assert "data:image/png;base64," in report.read_text()


def test_simulate_twice_resumes_and_keeps_data(prinz_store, capsys):
    from itomd.data.store import TrajectoryStore

    before = TrajectoryStore(prinz_store).trajectories()
    assert main(["simulate", "--system", "prinz", "--out", str(prinz_store), "--n-traj", "8", "--n-frames", "400",
                 "--seed", "3", "--workers", "0", "--quiet"]) == 0
    after = TrajectoryStore(prinz_store).trajectories()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_reference_json_contract(capsys):
    assert main(["reference", "--system", "muller-brown", "--grid", "120", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["implied_timescales"][0] == pytest.approx(5.0, rel=0.02)
    assert out["implied_timescales"] == sorted(out["implied_timescales"], reverse=True)
    assert set(out["stationary"]) >= {"mean", "std", "mode"}


@pytest.mark.parametrize("args, fragment", [
    (["reference", "--system", "nope"], "unknown system 'nope'"),
    (["reference", "--system", "muller-brown", "--dim", "3"], "2-dimensional"),
    (["reference", "--system", "harmonic", "--dim", "5"], "dimension ≤ 3"),
    (["reference", "--system", "prinz", "--box", "-1,1,0,1"], "--box needs 2 numbers"),
    (["reference", "--system", "prinz", "--timestep", "0"], "must be a positive number"),
    (["reference", "--system", "prinz", "--frame-interval", "-0.1"], "must be a positive number"),
    (["reference", "--system", "missing_file.py:f", "--dim", "1"], "not found"),
    (["simulate", "--system", "prinz", "--out", "x", "--n-traj", "0", "--n-frames", "5"], "positive integer"),
    (["simulate", "--system", "prinz", "--out", "x", "--n-traj", "2", "--n-frames", "5", "--x0", "0,1"], "--x0 needs 1"),
    (["analyze", "/nonexistent/store", "--json"], "no trajectory store"),
    (["analyze", "/tmp", "--lags", "0"], "lags must be positive"),
    (["analyze", "/tmp", "--lags", "-3"], "lags must be positive"),
])
def test_bad_input_one_line(args, fragment):
    assert_one_line_error(run_cli(*args), fragment)


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


def test_help_lists_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("simulate", "reference", "train", "sample", "analyze", "report", "demo"):
        assert cmd in proc.stdout


@pytest.mark.slow
def test_demo_quick(tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("demo", "--out", str(out), "--quick", "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.html").exists() and (out / "run" / "model.pt").exists()
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["comparison"]["label"] == "MD" and summary["js_divergence"] is not None
    assert "Comparison with MD" in (out / "report.html").read_text()
    # a second run reuses the data, the model and the rollout
    rollout_file = sorted((out / "rollout").glob("traj_*.h5"))[0]
    before = rollout_file.stat().st_mtime_ns
    proc = run_cli("demo", "--out", str(out), "--quick", "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert rollout_file.stat().st_mtime_ns == before
