"""File-system primitives: atomic write-then-rename leaves the old file or the new one, never a torn or
temporary one; the directory lock admits one holder; JSON normalisation is what a manifest compares."""

from __future__ import annotations

import json
import math

import pytest

from itomd._files import (LOCK_FILE, TEMPORARY_MARKER, exclusive_lock, json_normalised, write_atomically,
                          write_text_atomically)
from itomd.errors import InvalidInputError


def _half_then_fail(error: BaseException):
    def write(temporary):
        temporary.write_text("half a fi")
        raise error

    return write


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failing_writer_leaves_no_partial_file_and_the_old_one_intact(tmp_path, error):
    target = tmp_path / "data.json"
    with pytest.raises(type(error)):
        write_atomically(target, _half_then_fail(error))
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary

    target.write_text("old content")
    with pytest.raises(type(error)):
        write_atomically(target, _half_then_fail(error))
    assert target.read_text() == "old content" and [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_a_complete_write_replaces_the_file_and_clears_its_own_leftovers(tmp_path):
    target = tmp_path / "data.json"
    stale = tmp_path / f"data.json{TEMPORARY_MARKER}123-deadbeef"  # of an earlier write killed mid-way
    other = tmp_path / f"other.json{TEMPORARY_MARKER}123-deadbeef"
    stale.write_text("torn")
    other.write_text("someone else's")
    target.write_text("old")
    write_atomically(target, lambda temporary: temporary.write_text("new"))
    assert target.read_text() == "new" and not stale.exists() and other.read_text() == "someone else's"


def test_text_files_get_their_directories_and_utf8(tmp_path):
    path = write_text_atomically(tmp_path / "a" / "b" / "report.html", "λ̂ ≥ 0.9 — ok")
    assert path == tmp_path / "a" / "b" / "report.html" and path.read_bytes() == "λ̂ ≥ 0.9 — ok".encode("utf-8")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


def test_the_lock_refuses_a_second_holder_until_released(tmp_path):
    with exclusive_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).exists()
        with pytest.raises(InvalidInputError, match="another itomd process is writing to") as error:
            with exclusive_lock(tmp_path):
                pass
        assert "\n" not in str(error.value)
    with exclusive_lock(tmp_path):  # released on exit
        pass
    with pytest.raises(RuntimeError):
        with exclusive_lock(tmp_path):
            raise RuntimeError("a writer failed")
    with exclusive_lock(tmp_path):  # and released when the holder fails
        pass


def test_json_normalised_is_what_json_gives_back():
    value = {"shape": (3, 2), "nested": [{"box": ((0.0, 1.0),)}], "name": "x", "n": None, "ok": True}
    normalised = json_normalised(value)
    assert normalised == {"shape": [3, 2], "nested": [{"box": [[0.0, 1.0]]}], "name": "x", "n": None, "ok": True}
    assert normalised == json.loads(json.dumps(normalised)) and normalised != value  # tuples are now lists
    assert json_normalised({1: "a"}) == {"1": "a"}
    for bad in (math.nan, math.inf, {"x": [1.0, -math.inf]}):
        with pytest.raises(ValueError):
            json_normalised(bad)


def test_describe_write_failure_names_full_disks_and_forbidden_locations_only(tmp_path):
    import errno

    from itomd._files import describe_write_failure

    temporary = tmp_path / f"traj_000001.h5{TEMPORARY_MARKER}1-ab"
    assert describe_write_failure(OSError(errno.ENOSPC, "No space left on device", str(temporary))) == \
        f"no space left on the device holding {tmp_path}"
    hdf5 = OSError(errno.ENOSPC, "Can't synchronously write data (file write failed: errno = 28, error message = "
                                 "'No space left on device')")
    assert describe_write_failure(hdf5, tmp_path / "out") == f"no space left on the device holding {tmp_path / 'out'}"
    torch_text = RuntimeError("[enforce fail] file write failed: No space left on device")
    assert describe_write_failure(torch_text, "run").startswith("no space left on the device holding run")
    assert "permission denied" in describe_write_failure(PermissionError(errno.EACCES, "Permission denied", "x"))
    assert "read-only" in describe_write_failure(OSError(errno.EROFS, "Read-only file system", "x"))
    for other in (FileNotFoundError(errno.ENOENT, "No such file", "x"), ValueError("bad"), RuntimeError("boom")):
        assert describe_write_failure(other, "out") is None  # negative control: other errors are not write failures
