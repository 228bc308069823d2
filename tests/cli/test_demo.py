"""``itomd demo``: the whole Müller–Brown pipeline end to end, and a second run that reuses every stage
(slow: ``make test-slow``)."""

import json

import pytest

from tests.cli.helpers import run_cli


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
