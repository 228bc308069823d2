"""What every command shares: argument types with one-line messages, the system options, the recorded
frame interval, JSON output of NumPy values and paths, one-line usage errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from itomd.cli._common import (EXIT_USAGE, Parser, add_system_options, box_ranges, emit, float_list, json_default,
                               lag_list, nonnegative_int, positive_float, positive_int, recorded_frame_interval,
                               system_spec, write_json)
from itomd.errors import InvalidInputError, UnknownSystemError


@pytest.mark.parametrize("parse, text, expected", [
    (positive_int, "3", 3), (nonnegative_int, "0", 0), (positive_float, "2.5e-3", 2.5e-3),
    (float_list, "-1,2.5,", [-1.0, 2.5]), (lag_list, "10,1,10,3", [1, 3, 10]),
])
def test_argument_types_parse(parse, text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize("parse, text, fragment", [
    (positive_int, "0", "must be a positive integer, got 0"), (positive_int, "1.5", "expected a positive integer"),
    (nonnegative_int, "-1", "must be a non-negative integer"), (positive_float, "x", "expected a positive number"),
    (positive_float, "0", "must be a positive number"), (positive_float, "inf", "must be a positive number"),
    (positive_float, "nan", "must be a positive number"), (float_list, "1,a", "comma-separated numbers"),
    (float_list, ",", "finite comma-separated"), (float_list, "1,nan", "finite comma-separated"),
    (lag_list, "1,x", "comma-separated integers"), (lag_list, "2,0", "lags must be positive"),
])
def test_argument_types_refuse_in_one_line(parse, text, fragment):
    with pytest.raises(argparse.ArgumentTypeError, match=fragment) as error:
        parse(text)
    assert "\n" not in str(error.value)


def test_box_ranges_pair_the_numbers_per_dimension():
    assert box_ranges(None, 2) is None
    assert box_ranges([-1.0, 1.0, 0.0, 2.0], 2) == ((-1.0, 1.0), (0.0, 2.0))
    with pytest.raises(InvalidInputError, match="--box needs 2 numbers .* 1-D system, got 4"):
        box_ranges([-1.0, 1.0, 0.0, 2.0], 1)


def _system_args(*argv: str) -> argparse.Namespace:
    parser = Parser(prog="itomd test")
    add_system_options(parser)
    return parser.parse_args(list(argv))


def test_system_options_build_the_spec_and_the_system_once():
    spec, system = system_spec(_system_args("--system", "double-well", "--dim", "2", "--kT", "0.5", "--box=-2,2,-3,3"))
    assert spec.spec == "double-well" and spec.dim == 2 and spec.kT == 0.5 and spec.box == ((-2.0, 2.0), (-3.0, 3.0))
    assert system.dim == 2 and system.kT == 0.5 and system.box == ((-2.0, 2.0), (-3.0, 3.0))
    spec, system = system_spec(_system_args("--system", "prinz", "--frame-interval", "0.01"))
    assert spec.box is None and system.frame_interval == 0.01 and system.steps_per_frame == 100
    with pytest.raises(UnknownSystemError):
        system_spec(_system_args("--system", "nope"))
    with pytest.raises(InvalidInputError, match="--box needs 2 numbers"):
        system_spec(_system_args("--system", "prinz", "--box=-1,1,0,1"))


def test_the_recorded_frame_interval_or_a_one_line_error():
    assert recorded_frame_interval({"frame_interval": "0.25"}, Path("s")) == 0.25
    with pytest.raises(InvalidInputError, match="s does not record its frame interval"):
        recorded_frame_interval({"frame_interval": None}, Path("s"))


def test_json_output_takes_numpy_values_and_paths(tmp_path, capsys):
    payload = {"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(3), "p": tmp_path / "f"}
    emit(payload, True, "not printed")
    assert json.loads(capsys.readouterr().out) == {"n": 3, "x": 0.5, "a": [0, 1, 2], "p": str(tmp_path / "f")}
    emit(payload, False, "the text")
    assert capsys.readouterr().out == "the text\n"
    write_json(tmp_path / "deep" / "out.json", payload)
    assert json.loads((tmp_path / "deep" / "out.json").read_text())["a"] == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["out.json"]
    with pytest.raises(TypeError, match="not JSON-serialisable: set"):
        json_default({1})


def test_usage_errors_are_one_line_with_the_usage_exit_status(capsys):
    parser = Parser(prog="itomd sample")
    parser.add_argument("--lag", type=positive_int, required=True)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--lag", "0"])
    assert exit_.value.code == EXIT_USAGE == 2
    assert capsys.readouterr().err == "itomd sample: error: argument --lag: must be a positive integer, got 0\n"



def test_interrupt_requests_work_outside_the_main_thread():
    """Signal handlers can only be set in the main thread: elsewhere the context does nothing
    (instead of a ValueError), and the main thread's handlers stay as they were."""
    import signal
    import threading

    from itomd.cli._common import InterruptRequests

    before = signal.getsignal(signal.SIGINT)
    seen = []

    def work():
        with InterruptRequests() as interrupts:
            seen.append(interrupts.requested)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert seen == [False] and signal.getsignal(signal.SIGINT) is before
