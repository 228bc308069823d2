"""``itomd demo``: the whole Müller–Brown pipeline end to end — once in process with the quick sizes (in
``make test``), and as two subprocess runs, the second reusing every stage (slow: ``make test-slow``)."""

import json

import pytest

from itomd.cli import main
from tests.cli.helpers import run_cli


def test_demo_quick_runs_every_stage_in_process(tmp_path, capsys):
    """The real pipeline (no stand-ins, unlike tests/test_demo.py) at the quick sizes: 200 × 101 frames,
    150 training steps, 200 walkers × 20 jumps; ~35 s on one core."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick", "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    assert f"demo finished: open {out / 'report.html'}" in printed
    assert "slowest implied timescale: exact 5.000" in printed
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["comparison"]["label"] == "MD" and summary["model"]["steps"] == 150
    assert set(summary["timings_seconds"]) == {"simulate", "train", "rollout", "analyze"}
    md = json.loads((out / "analysis_md.json").read_text())
    assert md["n_trajectories"] == 200 and md["n_frames"] == 200 * 101
    assert 0 <= md["js_divergence"] < summary["js_divergence"]  # the training MD is closer to exact than the model
    page = (out / "report.html").read_text()
    assert "Comparison with MD" in page and "MD data (the training set) analysed alone" in page
    assert (out / "run" / "model.pt").exists() and json.loads((out / "run" / "finished").read_text()) == 150


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
