"""Property-based tests of the command-line boundary (issue 13): random argument vectors for every
command end in exit 0, or in exactly one line ``itomd COMMAND: error: ...`` with exit status 2 —
never a traceback, never exit 1 ("internal error").

Each command starts from a cheap valid argument vector; hypothesis then sets, replaces or removes
options, with flags taken from the command's real parser and values drawn from nasty strings
(negative, zero, NaN, inf, huge, denormal, empty, unicode), files of the wrong kind (a missing path,
an empty directory, a text file, a store where a model is expected, a molecule's store where a toy
system's is expected) and plausible values. Options that set the amount of work (trajectories,
frames, steps, walkers, grid cells, workers) only get small values or unparsable ones, so that every
example is cheap. ``main`` runs in-process with captured stdout and stderr.

``make test`` runs a few derandomized examples per command; the ``slow`` variant runs many more.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itomd.cli import build_parser, main

#: The commands exercised (``demo`` runs a whole training; it has no input worth fuzzing).
COMMANDS = ("simulate", "train", "distill", "sample", "speed", "check", "analyze", "report", "export", "reference", "fit-interpolation")

#: Values no option should accept silently, or should accept and then handle.
NASTY = ("-1", "0", "-0", "nan", "NaN", "inf", "-inf", "1e308", "-1e308", "1e-320", "1e400", "99999999999999999999",
         "", " ", "ü", "∂x²", "1,2", ",", "1,,2", "1e", "0x10", "--", "-", "true", "None", "[1]", "1 2", "\t")
#: Options whose value sets the amount of work: small values (or unparsable ones) only.
WORK_OPTIONS = {"--n-traj", "--n-frames", "--max-steps", "--n-walkers", "--n-jumps", "--grid", "--n-states",
                "--batch-size", "--n-steps", "--chunk-size", "--max-lag", "--n-timescales", "--dim", "--workers",
                "--seconds", "--processes", "--n-starts", "--n-samples", "--probes"}
#: Path placeholders, made into files of each kind by the ``files`` fixture.
PATH_TOKENS = ("<missing>", "<empty-dir>", "<text-file>", "<unicode-dir>", "<store>", "<molecule-store>",
               "<model-run>", "<model-file>", "<equilibrium-run>", "<config>", "<observable>", "<x0-file>",
               "<nan-x0-file>", "<user-potential>", "<fresh>")
#: Plausible values per option (valid ones and near misses), beside NASTY and the path placeholders.
PLAUSIBLE = {
    "--system": ("prinz", "muller-brown", "double-well", "harmonic", "ala2", "nosuch", "x.py:f", ":", "<user-potential>",
                 "<missing>.py:f", "<text-file>:f"),
    "--kT": ("0.5", "1", "1e-300", "1e300"), "--temperature": ("300", "1e-300", "1e300"),
    # (a timestep 1e300 times shorter than the frame interval is valid, and runs for ever: not drawn)
    "--friction": ("1", "1e-300", "1e300"), "--timestep": ("1e-3", "2e-3", "0.3", "7"),
    "--frame-interval": ("1e-2", "0.3", "1e-300"),
    "--box": ("-1,1", "1,-1", "0,0", "-2,2,-1,1", "-1e308,1e308", "1e-320,2e-320", "-1,1,2"),
    "--x0": ("0", "0.5", "1e308", "-1e308", "0,0", "<x0-file>", "<nan-x0-file>", "<text-file>"),
    "--seed": ("0", "1", "4294967296", "18446744073709551616", "99999999999999999999"),
    "--lags": ("1", "1,2", "2,1", "0", "1,399", "1,400", "1,99999999999999999999", "a,b"),
    "--splits": ("2", "2,4", "1", "0", "3,5", "99999999999999999999"),
    "--lag": ("1", "10", "11", "400", "99999999999999999999"),
    "--steps": ("1", "2", "4", "5", "24"),
    "--mfpt-lag": ("1", "2", "400", "99999999999999999999"),
    "--minutes": ("1e-320", "1e-9", "1e308"),
    "--lambda-hat": ("0.5", "0.99", "1", "2", "1e-300"), "--lambda-int": ("0.5", "1", "2", "1e-300"),
    "--tolerance": ("1e-300", "100", "1e308"),
    "--coordinate": ("0", "1", "7"), "--device": ("cpu", "auto", "cuda", "cuda:7", "tpu", "meta"),
    "--prior": ("exact", "<equilibrium-run>", "<model-run>", "<store>"),
    "--sampler": ("heun-churn", "dpmpp-2m", "heun", "euler", "euler-maruyama", "ancestral", "flow", "consistency", "rk4"),
    "--scheduler": ("nonsense", "tcp://127.0.0.1:1", "tcp://", "tcp://127.0.0.1:99999", "inproc://x"),
    "--title": ("<script>alert(1)</script>", "&amp;", "ü"),
    "--compare-label": ("MD", "<b>", ""),
}


def _cheap_vectors() -> dict[str, list[str]]:
    """A valid and cheap argument vector per command (placeholders resolved per example)."""
    return {
        "simulate": ["--system", "prinz", "--out", "<fresh>", "--n-traj", "2", "--n-frames", "5", "--workers", "0",
                     "--quiet"],
        "train": ["--data", "<store>", "--out", "<fresh>", "--config", "<config>", "--max-steps", "2", "--quiet"],
        "distill": ["<model-run>", "--out", "<fresh>", "--max-steps", "2", "--quiet"],
        "sample": ["<model-run>", "--lag", "1", "--n-jumps", "2", "--n-walkers", "3", "--out", "<fresh>",
                   "--n-steps", "2", "--quiet"],
        "speed": ["<model-run>", "--seconds", "0.01", "--n-walkers", "3", "--n-steps", "2", "--processes", "1",
                  "--quiet"],
        "check": ["<model-run>", "--lags", "2", "--n-starts", "1", "--n-samples", "4", "--n-steps", "2", "--quiet"],
        "analyze": ["<store>", "--lags", "1,2", "--n-states", "5", "--n-timescales", "1", "--quiet"],
        "report": ["<store>", "--out", "<fresh>", "--lags", "1", "--n-states", "4", "--n-timescales", "1", "--quiet"],
        "export": ["<molecule-store>", "--format", "pdb", "--out", "<fresh>"],
        "reference": ["--system", "prinz", "--grid", "40", "--n-timescales", "1"],
        "fit-interpolation": ["<model-run>", "--observable", "<observable>", "--n-walkers", "3", "--quiet"],
    }


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


@dataclass(frozen=True)
class Option:
    flag: str
    takes_value: bool
    choices: tuple[str, ...]


def _options(command: str) -> list[Option]:
    """Every optional argument of the command's real parser (``--help`` aside)."""
    out = []
    for action in _subparser(command)._actions:
        flags = [s for s in action.option_strings if s.startswith("--")]
        if not flags or flags[0] == "--help":
            continue
        out.append(Option(flags[0], action.nargs != 0, tuple(str(c) for c in action.choices or ())))
    return out


def _values(option: Option) -> st.SearchStrategy[str]:
    plausible = PLAUSIBLE.get(option.flag, ()) + option.choices
    if option.flag in WORK_OPTIONS:
        # a LocalCluster takes seconds to start: --workers gets 0 (in this process) or unparsable values
        small = {"--workers": ("0",), "--seconds": ("0.01", "0.03"), "--processes": ("1",)}.get(option.flag,
                                                                                              ("1", "2", "3", "5"))
        nasty = tuple(v for v in NASTY if not _parses_as_large_int(v))
        return st.sampled_from(small + nasty)
    # one of three families, each equally likely: the option's own values, nasty strings, paths
    return st.one_of(*(st.sampled_from(family) for family in (plausible, NASTY, PATH_TOKENS) if family))


def _parses_as_large_int(text: str) -> bool:
    try:
        return int(text) > 5
    except ValueError:
        return False


@st.composite
def argument_vectors(draw, command: str) -> list[str]:
    """The command's cheap vector with 1–4 options set, replaced or removed (and maybe a bad positional)."""
    base = _cheap_vectors()[command]
    positional = [] if base[0].startswith("--") else [base[0]]
    pairs: dict[str, str | None] = {}
    rest = base[len(positional):]
    i = 0
    while i < len(rest):
        if i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            pairs[rest[i]] = rest[i + 1]
            i += 2
        else:
            pairs[rest[i]] = None
            i += 1
    options = _options(command)
    for option in draw(st.lists(st.sampled_from(options), min_size=1, max_size=4, unique_by=lambda o: o.flag)):
        if option.flag == "--quiet":
            continue
        if option.flag not in WORK_OPTIONS and draw(st.integers(0, 5)) == 0:  # removed (required, or the default)
            pairs.pop(option.flag, None)
        else:
            pairs[option.flag] = draw(_values(option)) if option.takes_value else None
    if positional and draw(st.integers(0, 4)) == 0:
        positional = [draw(st.sampled_from(PATH_TOKENS + ("", "ü")))]
    argv = [command, *positional]
    for flag, value in pairs.items():
        argv += [flag] if value is None else [flag, value]
    return argv


# -- files of every kind ------------------------------------------------------------------------------
class Files:
    """Placeholders → paths: copies of the session's stores and runs (commands may write into them),
    and files made once per module. Commands run in ``root/cwd``, where relative paths land."""

    def __init__(self, root: Path, store: Path, molecule_store: Path, model_run: Path, equilibrium_run: Path,
                 config: Path):
        self.root = root
        self._fresh = itertools.count()
        store, molecule_store, model_run, equilibrium_run = (
            Path(shutil.copytree(source, root / name)) for source, name in
            ((store, "store"), (molecule_store, "molecule-store"), (model_run, "run"), (equilibrium_run, "eq")))
        (root / "cwd").mkdir()
        (root / "empty").mkdir()
        (root / "ü∂ dir").mkdir()
        (root / "notes.txt").write_text("not a store, not a model\n")
        np.save(root / "x0.npy", np.array([[0.1], [0.2], [0.3]]))
        np.save(root / "nan_x0.npy", np.array([[0.1], [np.nan], [0.3]]))
        np.savetxt(root / "observable.txt", [[1, 0.99], [12, 0.9]])  # one lag beyond the runs' largest (10)
        (root / "potential.py").write_text("import torch\n\ndef f(x):\n    return (x**2).sum(-1)\n")
        self.paths = {"<missing>": root / "does-not-exist", "<empty-dir>": root / "empty",
                      "<text-file>": root / "notes.txt", "<unicode-dir>": root / "ü∂ dir", "<store>": store,
                      "<molecule-store>": molecule_store, "<model-run>": model_run,
                      "<model-file>": model_run / "model.pt", "<equilibrium-run>": equilibrium_run,
                      "<config>": config, "<observable>": root / "observable.txt", "<x0-file>": root / "x0.npy",
                      "<nan-x0-file>": root / "nan_x0.npy"}

    def resolve(self, token: str) -> str:
        if token == "<fresh>":
            return str(self.root / f"out{next(self._fresh)}")
        if token == "<user-potential>":
            return f"{self.root / 'potential.py'}:f"
        for name, path in self.paths.items():
            token = token.replace(name, str(path))
        return token


@pytest.fixture(scope="module")
def files(tmp_path_factory, prinz_store, ala2_runs, bopito_runs, tiny_toml) -> Files:
    return Files(tmp_path_factory.mktemp("fuzz"), prinz_store, ala2_runs["data"], bopito_runs["exact"],
                 bopito_runs["eq"], tiny_toml)


def run_in_process(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """``itomd.cli.main(argv)`` run in ``cwd`` with captured output: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse: usage errors and --help
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def assert_clean_outcome(argv: list[str], code: int, err: str) -> None:
    """Exit 0, or exactly one line ``itomd COMMAND: error: ...`` and exit 2; never a traceback."""
    shown = " ".join(repr(a) if not a or " " in a else a for a in argv)
    assert "Traceback" not in err, f"itomd {shown}\n{err}"
    assert code in (0, 2), f"itomd {shown} → exit {code}\n{err}"
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"itomd {argv[0]}: error: "), f"itomd {shown}\n{err}"


def check_command(files: Files, argv: list[str]) -> None:
    argv = [argv[0]] + [files.resolve(a) for a in argv[1:]]
    code, _, err = run_in_process(argv, files.root / "cwd")
    assert_clean_outcome(argv, code, err)


FAST = settings(max_examples=8, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
THOROUGH = settings(FAST, max_examples=60)


@pytest.mark.parametrize("command", COMMANDS)
def test_cheap_vectors_are_valid(files, command):
    """The starting point of every mutation runs (otherwise the properties would test only argparse)."""
    code, _, err = run_in_process([command] + [files.resolve(a) for a in _cheap_vectors()[command]], files.root)
    assert code == 0, err


@pytest.mark.parametrize("command", COMMANDS)
@FAST
@given(data=st.data())
def test_random_arguments_end_in_exit_0_or_one_line(files, command, data):
    check_command(files, data.draw(argument_vectors(command), label="argv"))


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
@THOROUGH
@given(data=st.data())
def test_many_random_arguments_end_in_exit_0_or_one_line(files, command, data):
    check_command(files, data.draw(argument_vectors(command), label="argv"))


def test_the_property_catches_a_traceback(files, monkeypatch):
    """Negative control: a command that fails deep inside with a plain exception breaks the property."""
    import itomd.cli.reference as reference

    def broken(args):
        raise ZeroDivisionError("deep inside")

    monkeypatch.setattr(reference, "run", broken)
    code, _, err = run_in_process(["reference", "--system", "prinz"], files.root)
    with pytest.raises(AssertionError):
        assert_clean_outcome(["reference", "--system", "prinz"], code, err)
