"""What the command-line tests share: running ``python -m itomd`` in a subprocess, the one-line error
checks, and a tiny training config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: A tiny training config (TOML) for the toy systems.
TINY = ("max_lag = 10\nhidden = 32\nn_blocks = 1\nn_frequencies = 4\nbatch_size = 64\nwarmup_steps = 5\n"
        "checkpoint_every = 10\nlog_every = 10\ndevice = \"cpu\"\n")


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "itomd", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def kill_9_after_checkpoint(args: list[str], run, step: int, timeout: float = 120) -> int:
    """Start ``itomd *args`` (a training-like run into the directory ``run``), send it SIGKILL once
    ``run/checkpoint.pt`` holds at least ``step`` steps (or after ``timeout`` s); the checkpoint's step."""
    from itomd.checkpoint import load_file

    checkpoint = Path(run) / "checkpoint.pt"
    proc = subprocess.Popen([sys.executable, "-m", "itomd", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if checkpoint.exists() and load_file(checkpoint)["step"] >= step:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return load_file(checkpoint)["step"]


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert fragment in lines[0], lines[0]


def assert_one_line_exit(capsys, code: int, fragment: str) -> None:
    """The in-process form: ``main`` returned ``code`` and printed one error line holding ``fragment``."""
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert fragment in lines[0], lines[0]
