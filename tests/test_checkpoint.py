"""Atomic torch files: written by write-then-rename, read with weights_only=True — a truncated file, a
non-dict or a pickle that would run code are one-line DataFileErrors, and the code never runs."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from itomd.checkpoint import load_file, save_atomically
from itomd.errors import DataFileError


def test_round_trip_of_tensors_and_plain_values(tmp_path):
    payload = {"step": 7, "name": "run", "weights": {"w": torch.arange(6.0).reshape(2, 3)}, "lags": [1, 2, 3],
               "scale": 0.25, "none": None, "generator": torch.Generator().manual_seed(3).get_state()}
    path = save_atomically(payload, tmp_path / "new" / "dir" / "checkpoint.pt")
    assert path == tmp_path / "new" / "dir" / "checkpoint.pt" and [p.name for p in path.parent.iterdir()] == [
        "checkpoint.pt"]
    loaded = load_file(path)
    assert loaded.keys() == payload.keys() and torch.equal(loaded["weights"]["w"], payload["weights"]["w"])
    assert {k: loaded[k] for k in ("step", "name", "lags", "scale", "none")} == {
        k: payload[k] for k in ("step", "name", "lags", "scale", "none")}
    assert torch.equal(loaded["generator"], payload["generator"])
    save_atomically({"step": 8}, path)  # replaced whole
    assert load_file(path) == {"step": 8}


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_missing_truncated_and_non_dict_files_are_one_line_errors(tmp_path):
    with pytest.raises(DataFileError, match="no model file at") as error:
        load_file(tmp_path / "missing.pt", what="model")
    _one_line(error)
    path = save_atomically({"w": torch.zeros(1000)}, tmp_path / "checkpoint.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataFileError, match="is not an itomd checkpoint or is truncated") as error:
        load_file(path)
    assert "`itomd train` writes checkpoint files (checkpoint.pt" in _one_line(error)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(DataFileError, match="is not an itomd checkpoint") as error:
        load_file(tmp_path / "list.pt")
    _one_line(error)


class _Armed:
    """Unpickling this calls os.mkdir(marker): code that a weights-only load must never run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_pickle_that_would_run_code_is_refused_and_the_code_does_not_run(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"weights": torch.zeros(2), "payload": _Armed(marker)}, tmp_path / "torch-format.pt")
    with open(tmp_path / "plain.pt", "wb") as handle:
        pickle.dump({"payload": _Armed(marker)}, handle, protocol=2)
    for name in ("torch-format.pt", "plain.pt"):
        with pytest.raises(DataFileError, match=f"{name} is not an itomd model or is truncated: not a torch file of tensors") as error:
            load_file(tmp_path / name, what="model")
        message = _one_line(error)
        assert "weights_only" not in message and "itomd train" in message  # never advise an unsafe load
        assert not marker.exists()
    # negative control: the files are armed — an unrestricted load runs the code
    with open(tmp_path / "plain.pt", "rb") as handle:
        pickle.load(handle)
    assert marker.is_dir()
