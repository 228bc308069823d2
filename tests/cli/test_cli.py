"""The command line across commands: one-line errors with a non-zero exit for bad input, ``--help``,
``--debug``, negative numbers as option values. (Each command's own behaviour: tests/cli/test_<command>.py.)"""

import json

import numpy as np
import pytest

import itomd.cli.reference
from itomd.cli import _join_negative_values, main
from itomd.data.store import TrajectoryStore
from itomd.errors import UnknownSystemError
from tests.cli.helpers import assert_one_line_error, assert_one_line_exit, run_cli


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


def test_help_lists_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("simulate", "reference", "train", "sample", "analyze", "report", "demo"):
        assert cmd in proc.stdout


@pytest.mark.parametrize("args, fragment", [
    (["train", "--data", "/nonexistent/store", "--out", "{tmp}/r"], "/nonexistent/store"),
    (["train", "--data", "{data}", "--out", "{tmp}/r", "--max-lag", "0"], "positive"),
    (["train", "--data", "{data}", "--out", "{tmp}/r", "--start-balance", "1.5"], "a number in [0, 1]"),
    (["train", "--data", "{data}", "--out", "{tmp}/r", "--lag-distribution", "gaussian"], "lag_distribution must be one of"),
    (["train", "--data", "{data}", "--out", "{tmp}/r", "--max-lag", "500"], "need a trajectory longer than"),
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


def _error(capsys, argv: list[str], fragment: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err


def test_bopito_errors_are_one_line(bopito_runs, tmp_path, capsys):
    observable = tmp_path / "c.txt"
    observable.write_text("5 0.9\n")
    _error(capsys, ["fit-interpolation", str(bopito_runs["exact"]), "--observable", str(observable)], "no lag beyond")
    _error(capsys, ["fit-interpolation", str(bopito_runs["eq"]), "--observable", str(observable)], "not a BoPITO model")
    _error(capsys, ["fit-interpolation", str(bopito_runs["exact"]), "--observable", str(tmp_path / "none.txt")],
           "no correlation file")
    _error(capsys, ["sample", str(bopito_runs["exact"]), "--lag", "2", "--n-jumps", "1", "--n-walkers", "2", "--out",
                    str(tmp_path / "r"), "--lambda-int", "2"], "lambda_int must be in (0, 1]")
    _error(capsys, ["train", "--data", str(bopito_runs["data"]), "--out", str(tmp_path / "t"), "--config",
                    str(bopito_runs["config"]), "--lambda-hat", "0.9"], "needs a prior")
    _error(capsys, ["train", "--data", str(bopito_runs["data"]), "--out", str(tmp_path / "t2"), "--config",
                    str(bopito_runs["config"]), "--prior", str(tmp_path / "missing")], "missing")
    _error(capsys, ["simulate", "--system", "muller-brown", "--out", str(tmp_path / "s"), "--n-traj", "2",
                    "--n-frames", "3", "--from-equilibrium-model", str(bopito_runs["eq"]), "--workers", "0"],
           "1-dimensional states but the system is 2-dimensional")


def test_debug_shows_the_traceback_instead_of_the_one_line_error(capsys):
    assert_one_line_exit(capsys, main(["reference", "--system", "nope"]), "itomd reference: error: unknown system")
    with pytest.raises(UnknownSystemError, match="unknown system 'nope'"):
        main(["--debug", "reference", "--system", "nope"])


def test_unexpected_failures_and_interrupts_are_one_line_too(monkeypatch, capsys):
    def fail(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(itomd.cli.reference, "run", fail)
    assert main(["reference", "--system", "prinz"]) == 1
    err = capsys.readouterr().err
    assert err == ("itomd reference: internal error: RuntimeError: boom "
                   "(rerun with --debug for the traceback)\n")
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", "reference", "--system", "prinz"])

    def interrupt(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(itomd.cli.reference, "run", interrupt)
    assert main(["reference", "--system", "prinz"]) == 130
    assert capsys.readouterr().err == ("itomd reference: interrupted; no partial output was left (files are written "
                                       "whole); re-run the same command\n")


def test_negative_numbers_after_box_and_x0_are_values_not_options(tmp_path, capsys):
    assert _join_negative_values(["--box", "-1.5,1.2", "--x0", "-0.5", "--lag", "-3", "--x0", "--json", "--box"]) == [
        "--box=-1.5,1.2", "--x0=-0.5", "--lag", "-3", "--x0", "--json", "--box"]
    assert main(["reference", "--system", "double-well", "--box", "-2.5,2.5", "--grid", "60", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["grid"]["box"] == [[-2.5, 2.5]]
    out = tmp_path / "store"
    assert main(["simulate", "--system", "double-well", "--out", str(out), "--n-traj", "2", "--n-frames", "3",
                 "--x0", "-0.5", "--workers", "0", "--quiet"]) == 0
    assert np.array_equal([t[0, 0] for t in TrajectoryStore(out).trajectories()], [-0.5, -0.5])


def test_main_runs_outside_the_main_thread(capsys):
    """Signal handlers can only be set in the main thread; main() called from another thread still
    gives its one-line answer instead of a ValueError."""
    import threading

    codes = []
    worker = threading.Thread(target=lambda: codes.append(main(["reference", "--system", "prinz", "--grid", "1"])))
    worker.start()
    worker.join()
    assert codes == [2] and "≥ 4 cells" in capsys.readouterr().err


def test_a_signal_while_the_executable_exits_changes_nothing():
    """A Ctrl-C that lands after the command finished (here: from an exit handler) is ignored: exit 0,
    no traceback; one that lands before main() set its handlers is one line and exit 130."""
    import subprocess
    import sys

    # the default Ctrl-C handler first: a test run in the background inherits SIGINT ignored
    late = ("import atexit, os, signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "import itomd.cli as cli\n"
            "atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))\n"
            "cli.main = lambda: 0\ncli.run_command()\n")
    done = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (0, "")
    early = ("import os, signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\nimport itomd.cli as cli\n"
             "cli.main = lambda: os.kill(os.getpid(), signal.SIGINT)\ncli.run_command()\n")
    done = subprocess.run([sys.executable, "-c", early], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (130, "itomd: interrupted\n")
