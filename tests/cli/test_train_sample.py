"""``itomd train`` / ``itomd sample``: end to end, kill -9 and exact resume, DDP with gloo, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from itomd.checkpoint import load_file
from itomd.cli import main
from itomd.data.store import TrajectoryStore

TINY = ("max_lag = 10\nhidden = 32\nn_blocks = 1\nn_frequencies = 4\nbatch_size = 64\nwarmup_steps = 5\n"
        "checkpoint_every = 10\nlog_every = 10\ndevice = \"cpu\"\n")


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "itomd", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def prinz_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train") / "prinz"
    assert main(["simulate", "--system", "prinz", "--out", str(out), "--n-traj", "16", "--n-frames", "200",
                 "--seed", "5", "--workers", "0", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def tiny_toml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(TINY)
    return path


def _weights(run: Path, part: str = "denoiser") -> dict[str, torch.Tensor]:
    checkpoint = load_file(run / "checkpoint.pt")
    return checkpoint[part] if part != "ema" else checkpoint["ema"]["module"]


def test_train_sample_analyze_end_to_end(prinz_data, tiny_toml, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "rollout"
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--config", str(tiny_toml),
                 "--max-steps", "30", "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 30 and not summary["stopped_by_budget"]
    assert main(["sample", str(run), "--lag", "5", "--n-jumps", "12", "--n-walkers", "6", "--out", str(out),
                 "--from", str(prinz_data), "--n-steps", "4", "--tolerance", "100", "--quiet", "--json"]) == 0
    sampled = json.loads(capsys.readouterr().out)
    assert sampled["frame_interval"] == pytest.approx(5 * 5e-3)
    store = TrajectoryStore(out)
    assert len(store) == 6 and all(t.shape == (13, 1) for t in store.trajectories())
    assert store.metadata["frame_interval"] == pytest.approx(0.025)
    assert main(["analyze", str(out), "--reference", "--lags", "1,2", "--json", "--quiet"]) == 0
    analysis = json.loads(capsys.readouterr().out)
    assert analysis["implied_timescales"]["lag_times"] == pytest.approx([0.025, 0.05])
    assert analysis["js_divergence"] is not None


def test_sample_is_reproducible_and_resumes(prinz_data, tiny_toml, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--config", str(tiny_toml),
                 "--max-steps", "20", "--quiet"]) == 0
    common = ["--lag", "3", "--n-jumps", "5", "--n-walkers", "10", "--chunk-size", "4", "--n-steps", "4",
              "--tolerance", "100", "--seed", "7", "--quiet"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["sample", str(run), "--out", str(a), *common]) == 0
    assert main(["sample", str(run), "--out", str(b), *common]) == 0
    first = TrajectoryStore(a).trajectories()
    assert all(np.array_equal(x, y) for x, y in zip(first, TrajectoryStore(b).trajectories()))
    # lose the middle chunk (walkers 4..7) and resume
    for index in (4, 6):
        TrajectoryStore(a).file_path(index).unlink()
    assert main(["sample", str(run), "--out", str(a), *common]) == 0
    assert all(np.array_equal(x, y) for x, y in zip(first, TrajectoryStore(a).trajectories()))
    assert_one_line_error(run_cli("sample", str(run), "--out", str(a), *common[:-3], "--seed", "8"),
                          "different parameters")


def test_kill_9_during_training_then_resume_matches_uninterrupted(prinz_data, tiny_toml, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    args = ["--data", str(prinz_data), "--config", str(tiny_toml), "--max-steps", "400", "--quiet"]
    assert run_cli("train", "--out", str(straight), *args).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "itomd", "train", "--out", str(killed), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if (killed / "checkpoint.pt").exists() and load_file(killed / "checkpoint.pt")["step"] >= 50:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill = load_file(killed / "checkpoint.pt")["step"]
    assert 50 <= step_at_kill < 400, "the run finished before it could be killed; make it longer"
    assert run_cli("train", "--out", str(killed), *args, "--resume").returncode == 0
    for part in ("denoiser", "ema"):
        a, b = _weights(straight, part), _weights(killed, part)
        assert all(torch.equal(a[k], b[k]) for k in a), part
    rows = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert rows == list(range(10, 401, 10))


def test_minutes_budget_then_resume(prinz_data, tiny_toml, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--config", str(tiny_toml),
                 "--max-steps", "100000", "--minutes", "0.05", "--quiet", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["stopped_by_budget"] and 0 < first["steps"] < 100000
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--max-steps", "100000",
                 "--minutes", "0.02", "--resume", "--quiet", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["steps"] > first["steps"]


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_ddp_two_gloo_processes_match_one_process(prinz_data, tiny_toml, tmp_path):
    """Data-parallel training on 2 CPU processes follows the 1-process run with the same global batch."""
    args = ["--data", str(prinz_data), "--config", str(tiny_toml), "--max-steps", "25", "--quiet"]
    single, double = tmp_path / "single", tmp_path / "double"
    assert run_cli("train", "--out", str(single), *args).returncode == 0
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "itomd", "train",
                           "--out", str(double), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = _weights(single), _weights(double)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=2e-5, rtol=1e-4), (k, (a[k] - b[k]).abs().max())
    assert any(not torch.equal(a[k], _weights(single, "ema")[k]) for k in a)


@pytest.mark.parametrize("args, fragment", [
    (["train", "--data", "/nonexistent/store", "--out", "{tmp}/r"], "/nonexistent/store"),
    (["train", "--data", "{data}", "--out", "{tmp}/r", "--max-lag", "0"], "positive"),
    (["train", "--data", "{data}", "--out", "{tmp}/r", "--max-lag", "500"], "not shorter than any trajectory"),
    (["train", "--data", "{data}", "--out", "{tmp}/r", "--resume"], "nothing to resume"),
    (["train", "--data", "{data}", "--out", "{tmp}/r", "--config", "{tmp}/missing.toml"], "no config file"),
    (["sample", "{tmp}/norun", "--lag", "1", "--n-jumps", "1", "--n-walkers", "1", "--out", "{tmp}/o"], "no model file"),
    (["sample", "{tmp}/corrupt", "--lag", "1", "--n-jumps", "1", "--n-walkers", "1", "--out", "{tmp}/o"], "corrupt"),
    (["sample", "{tmp}/corrupt", "--lag", "0", "--n-jumps", "1", "--n-walkers", "1", "--out", "{tmp}/o"], "positive"),
])
def test_bad_input_gives_one_line_errors(args, fragment, prinz_data, tmp_path):
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "model.pt").write_bytes(b"PK\x03\x04 not really a torch file")
    args = [a.format(tmp=tmp_path, data=prinz_data) for a in args]
    assert_one_line_error(run_cli(*args), fragment)


def test_sample_reports_blow_up_instead_of_writing_garbage(prinz_data, tiny_toml, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--config", str(tiny_toml),
                 "--max-steps", "10", "--quiet"]) == 0
    # an untrained model with a tiny tolerance leaves the data range at once
    proc = run_cli("sample", str(run), "--lag", "10", "--n-jumps", "5", "--n-walkers", "8", "--out",
                   str(tmp_path / "o"), "--tolerance", "1e-9", "--n-steps", "2", "--quiet")
    assert_one_line_error(proc, "blew up at jump 1")
    assert len(TrajectoryStore(tmp_path / "o").indices) == 0


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
