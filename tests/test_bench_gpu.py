"""``bench/gpu.py --device cpu --smoke``: the GPU benchmark's whole path (MD data, training, distillation,
OpenMM replicas against surrogate walkers) runs on any machine and writes every number it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from itomd.training.distillation import DEFAULT_SAMPLING_STEPS

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_benchmark_runs_its_cpu_smoke_mode(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", "cpu", "--smoke", "--work",
                           str(tmp_path / "work"), "--out", str(tmp_path / "results"), "--threads", "1"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "results" / "gpu_smoke.json").read_text())
    assert result["device"].startswith("cpu") and result["still_to_take_on_a_gpu"]
    assert result["training"]["steps"] > 0 and result["training"]["steps_per_second"] > 0
    assert result["distillation"]["steps"] > 0 and result["distillation"]["steps_per_second"] > 0
    assert result["openmm"]["rate_ps_per_second"] > 0 and result["openmm"]["best"] in result["openmm"]["trials"]
    assert result["openmm_installation"]["platforms"] and not result["skipped"]
    rows = result["surrogate"]
    assert sorted((r["model"], r["sampler"], r["precision"], r["walkers"]) for r in rows) == sorted(
        [("teacher", "heun-churn", "float32", 8)]
        + [("teacher", "dpmpp-2m", p, w) for p in ("float32", "bfloat16") for w in (8, 16)]
        + [("student", "consistency", "float32", w) for w in (8, 16)] + [("student", "consistency", "bfloat16", 16)])
    assert all(r["rate_ps_per_second"] > 0 and r["ratio_to_openmm"] > 0 for r in rows)
    assert {r["network_evaluations"] for r in rows if r["model"] == "student"} == {DEFAULT_SAMPLING_STEPS}
    assert {r["network_evaluations"] for r in rows if r["sampler"] == "heun-churn"} == {49}
    assert {r["network_evaluations"] for r in rows if r["sampler"] == "dpmpp-2m"} == {10}


def test_a_failed_or_late_stage_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    """A stage that raises leaves its one-line error in the results file (written at once), the next
    stage still runs, and a stage past the time budget is skipped and listed."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import gpu

    path = tmp_path / "gpu.json"
    run = gpu.Run(path, budget_seconds=3600.0, result={"device": "cpu"})

    def broken():
        raise RuntimeError("no CUDA platform here\nsecond line")

    assert run.stage("openmm", broken) is None
    written = json.loads(path.read_text())
    assert written["openmm"] == {"error": "RuntimeError: no CUDA platform here"} and "openmm" in written["stages"]
    assert run.stage("training", lambda: {"steps_per_second": 2.0}) == {"steps_per_second": 2.0}
    run.budget = 0.0
    assert run.stage("distillation", lambda: {"steps": 1}) is None
    written = json.loads(path.read_text())
    assert written["training"] == {"steps_per_second": 2.0} and written["skipped"] == ["distillation"]
    assert "distillation" not in written
