"""Failure injection through the ``itomd`` entry point: SIGINT, SIGTERM and ``kill -9`` at seeded random
points of a campaign, a training run and a rollout, a disk that fills up mid-write, a forbidden output
directory and a failing dask worker. Each ends in one line (never a traceback), keeps the completed
work, and the resumed output equals an uninterrupted run bit for bit."""

from __future__ import annotations

import errno
import os
import pathlib
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from itomd._files import TEMPORARY_MARKER
from itomd.checkpoint import load_file
from itomd.cli import main
from itomd.data.store import TrajectoryStore
from tests.cli.helpers import run_cli

#: Seeded delays after the first sign of progress, so that each signal lands at a different point.
DELAYS = random.Random(13)

SIMULATE = ["simulate", "--system", "prinz", "--n-traj", "6", "--n-frames", "40", "--chunk-size", "1", "--seed", "2",
            "--workers", "0", "--quiet"]


def _sample_args(run: Path) -> list[str]:
    return ["sample", str(run), "--lag", "3", "--n-jumps", "6", "--n-walkers", "6", "--chunk-size", "1", "--n-steps",
            "4", "--seed", "4", "--quiet"]


def _train_args(data: Path, config: Path) -> list[str]:
    return ["train", "--data", str(data), "--config", str(config), "--max-steps", "120", "--quiet"]


@pytest.fixture(scope="module")
def tiny_run(prinz_data, tiny_toml, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("failures") / "run"
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--config", str(tiny_toml), "--max-steps", "20",
                 "--quiet"]) == 0
    return run


@pytest.fixture(scope="module")
def references(prinz_data, tiny_toml, tiny_run, tmp_path_factory) -> dict[str, Path]:
    """Uninterrupted runs to compare against."""
    root = tmp_path_factory.mktemp("reference")
    assert main([*SIMULATE, "--out", str(root / "campaign")]) == 0
    assert main([*_train_args(prinz_data, tiny_toml), "--out", str(root / "train")]) == 0
    assert main([*_sample_args(tiny_run), "--out", str(root / "rollout")]) == 0
    return {"campaign": root / "campaign", "train": root / "train", "rollout": root / "rollout"}


def _same_store(a: Path, b: Path) -> None:
    left, right = TrajectoryStore(a), TrajectoryStore(b)
    assert left.indices == right.indices
    for index in left.indices:
        assert np.array_equal(left.read(index), right.read(index)), index


def _same_training(a: Path, b: Path) -> None:
    left, right = load_file(a / "checkpoint.pt"), load_file(b / "checkpoint.pt")
    assert left["step"] == right["step"]
    for part in ("denoiser", "ema"):
        one = left[part] if part == "denoiser" else left[part]["module"]
        other = right[part] if part == "denoiser" else right[part]["module"]
        assert all(torch.equal(one[k], other[k]) for k in one), part


def _no_temporaries(directory: Path) -> None:
    assert not [p.name for p in directory.iterdir() if TEMPORARY_MARKER in p.name]


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def _start(argv: list[str]) -> subprocess.Popen:
    # Ctrl-C must reach the child even when the suite runs in the background (which ignores SIGINT,
    # an ignored disposition that children inherit)
    return subprocess.Popen([sys.executable, "-m", "itomd", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(DELAYS.uniform(0.0, 0.4))


def _interrupt(proc: subprocess.Popen, signum: int) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


# -- signals ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGINT, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)])
def test_a_signalled_campaign_and_rollout_resume_bit_for_bit(references, tiny_run, tmp_path, signum):
    for name, argv in (("campaign", SIMULATE), ("rollout", _sample_args(tiny_run))):
        out = tmp_path / name
        proc = _start([*argv, "--out", str(out)])
        _wait_for(proc, lambda: out.is_dir() and len(list(out.glob("traj_*.h5"))) >= 1)
        code, stderr = _interrupt(proc, signum)
        assert "Traceback" not in stderr, stderr
        if signum == signal.SIGINT and code != 0:  # 0: it had finished before the signal came
            assert code == 130 and len(_lines(stderr)) == 1, stderr
            kept = int(re.search(r"interrupted; (\d+) of 6 trajectories are complete and kept", stderr).group(1))
            assert kept == len(list(out.glob("traj_*.h5"))) and "re-running the same command resumes" in stderr
        elif signum == signal.SIGKILL:
            assert code in (0, -signal.SIGKILL)
        assert main([*argv, "--out", str(out)]) == 0  # the same command resumes
        _same_store(out, references[name])
        _no_temporaries(out)


@pytest.mark.parametrize("signals", [(signal.SIGINT,), pytest.param((signal.SIGTERM,), marks=pytest.mark.slow),
                                     pytest.param((signal.SIGINT, signal.SIGINT), marks=pytest.mark.slow)],
                         ids=["ctrl-c", "sigterm", "ctrl-c-twice"])
def test_a_signalled_training_run_checkpoints_and_resumes_bit_for_bit(prinz_data, tiny_toml, references, tmp_path,
                                                                      signals):
    out = tmp_path / "run"
    argv = [*_train_args(prinz_data, tiny_toml), "--out", str(out)]
    proc = _start(argv)
    _wait_for(proc, lambda: (out / "checkpoint.pt").exists())
    if proc.poll() is None:
        for signum in signals:
            proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert "Traceback" not in stderr and len(_lines(stderr)) <= 1, stderr
    if proc.returncode != 0:
        assert proc.returncode == (143 if signals[0] == signal.SIGTERM else 130), stderr
        if len(signals) == 1:  # one signal: a checkpoint at the current step and the exact resume command
            match = re.search(r"(interrupted|terminated) at step (\d+) of 120; checkpoint written to .*; "
                              r"continue with: (itomd train .*)$", stderr.strip())
            assert match, stderr
            assert load_file(out / "checkpoint.pt")["step"] == int(match.group(2))
            resume = shlex.split(match.group(3))[1:]
            assert resume == [*argv, "--resume"]
    assert main([*argv, "--resume"]) == 0
    _same_training(out, references["train"])


# -- a full disk, a forbidden directory -----------------------------------------------------------------
def _failing_writes(monkeypatch, fail_at: int, code: int = errno.ENOSPC) -> dict[str, int]:
    """Make the ``fail_at``-th file write of this process fail like a full disk (half the bytes written,
    then ENOSPC) or a forbidden directory (EACCES); every itomd file goes through ``Path.write_bytes``."""
    calls = {"n": 0, "failed": 0}
    real = pathlib.Path.write_bytes

    def write_bytes(self, data):
        calls["n"] += 1
        if calls["n"] == fail_at:
            calls["failed"] += 1
            if code == errno.ENOSPC:
                real(self, bytes(data)[: len(data) // 2])
            raise OSError(code, os.strerror(code), str(self))
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)
    return calls


@pytest.mark.parametrize("fail_at", [3, pytest.param(1, marks=pytest.mark.slow), pytest.param(5, marks=pytest.mark.slow)])
def test_a_full_disk_is_one_line_keeps_the_work_and_the_same_command_completes(
        references, tiny_run, prinz_data, tiny_toml, tmp_path, monkeypatch, capsys, fail_at):
    commands = {"campaign": SIMULATE, "rollout": _sample_args(tiny_run), "train": _train_args(prinz_data, tiny_toml)}
    for name, argv in commands.items():
        out = tmp_path / name
        with monkeypatch.context() as patch:
            calls = _failing_writes(patch, fail_at)
            code = main([*argv, "--out", str(out)])
        err = capsys.readouterr().err
        assert calls["failed"] == 1 and code == 2, (name, err)
        assert len(_lines(err)) == 1 and "Traceback" not in err, err
        assert f"itomd {argv[0]}: error: no space left on the device holding " in err, err
        resume = [*argv, "--out", str(out)]
        if name == "train":
            assert ("continue with: itomd train" in err and "--resume" in err) or "no checkpoint was written yet" in err
            resume += ["--resume"] if (out / "checkpoint.pt").exists() else []
        else:
            assert "are complete and kept" in err and "re-running the same command resumes" in err, err
        if out.is_dir():
            _no_temporaries(out)
        assert main(resume) == 0
        capsys.readouterr()
        (_same_training if name == "train" else _same_store)(out, references[name])


def test_a_forbidden_output_directory_is_one_line(tiny_run, tmp_path, monkeypatch, capsys):
    with monkeypatch.context() as patch:
        _failing_writes(patch, 1, errno.EACCES)
        code = main([*SIMULATE, "--out", str(tmp_path / "denied")])
    err = capsys.readouterr().err
    assert code == 2 and len(_lines(err)) == 1 and "Traceback" not in err, err
    assert "cannot write to" in err and "permission denied" in err, err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only directory")
def test_a_read_only_output_directory_is_one_line(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for argv in (SIMULATE, ["simulate", "--system", "prinz", "--n-traj", "1", "--n-frames", "5", "--workers", "0"]):
            proc = run_cli(*argv, "--out", str(locked / "store"))
            assert proc.returncode == 2 and len(_lines(proc.stderr)) == 1 and "Traceback" not in proc.stderr
        proc = run_cli(*SIMULATE, "--out", str(locked))
        assert proc.returncode == 2 and len(_lines(proc.stderr)) == 1 and "Traceback" not in proc.stderr
    finally:
        locked.chmod(0o755)


# -- a failing dask worker ------------------------------------------------------------------------------
def _blowing_up_campaign(tmp_path: Path, n_trajectories: int) -> list[str]:
    """``itomd simulate`` arguments of a campaign on 2 dask workers whose potential is unbounded below
    (U = −x⁴ at timestep 0.01): every trajectory blows up within a few frames."""
    potential = tmp_path / "unbounded.py"
    potential.write_text("def U(x):\n    return -x[..., 0] ** 4\n")
    return ["simulate", "--system", f"{potential}:U", "--dim", "1", "--timestep", "0.01", "--x0", "1.0",
            "--n-traj", str(n_trajectories), "--chunk-size", "1", "--n-frames", "100", "--workers", "2", "--quiet",
            "--out", str(tmp_path / "out")]


def test_a_worker_error_on_a_local_cluster_is_one_line_without_the_worker_traceback(tmp_path):
    proc = run_cli(*_blowing_up_campaign(tmp_path, 4))
    assert proc.returncode == 2, proc.stderr
    assert _lines(proc.stderr) == [line for line in _lines(proc.stderr) if line.startswith("itomd simulate: error:")]
    assert len(_lines(proc.stderr)) == 1 and "coordinates became non-finite" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "distributed" not in proc.stderr


@pytest.mark.slow
def test_debug_shows_the_worker_traceback(tmp_path):
    debug = run_cli("--debug", *_blowing_up_campaign(tmp_path, 2))  # --debug shows everything, the worker's traceback too
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "raised on a dask worker" in debug.stderr


# -- no progress bar before the arguments are checked -----------------------------------------------------
def test_errors_in_arguments_come_before_any_progress_bar(tiny_run, prinz_data, tmp_path, capsys):
    bad = [["sample", str(tiny_run), "--lag", "3", "--n-jumps", "2", "--n-walkers", "2", "--sampler", "bogus",
            "--out", str(tmp_path / "s")],
           ["sample", str(tiny_run), "--lag", "3", "--n-jumps", "2", "--n-walkers", "2", "--out", str(prinz_data)],
           ["simulate", "--system", "prinz", "--n-traj", "2", "--n-frames", "5", "--x0", "0,1", "--workers", "0",
            "--out", str(tmp_path / "c")],
           ["train", "--data", str(prinz_data), "--out", str(tmp_path / "t"), "--resume"],
           ["analyze", str(prinz_data), "--n-states", "100000"]]  # a dense MSM of 75 GiB: refused up front
    for argv in bad:  # progress bars are on (no --quiet); tqdm writes to the captured stderr
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(_lines(err)) == 1 and "%|" not in err and "error:" in err, (argv, err)
