"""File-system primitives: atomic write-then-rename and an advisory directory lock.

The lowest layer of itomd's input/output: the trajectory store, model files and checkpoints,
reports and JSON results all write through :func:`write_atomically`, so a crash (even ``kill -9``)
leaves either the complete old file, the complete new file, or a stray temporary file
(``<name>.tmp-<pid>-<random>``) that readers ignore and the next write of the same file removes.
Nothing here knows about trajectories, models or systems.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable, Iterator

from itomd.errors import InvalidInputError

#: Marker in the names of temporary files (``<name>.tmp-<pid>-<random>``).
TEMPORARY_MARKER = ".tmp-"
#: Name of the advisory lock file that :func:`exclusive_lock` holds in a directory.
LOCK_FILE = ".lock"


def json_normalised(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples → lists, NumPy scalars refused, NaN refused):
    what a manifest records and later compares against."""
    return json.loads(json.dumps(value, allow_nan=False))


def write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Write ``target`` via a temporary file in the same directory, fsync, then rename over it.

    Parameters
    ----------
    target : Path
        The file to (re)place; its directory must exist.
    write : callable
        ``write(temporary)`` writes the complete content to the path it is given.
    """
    directory = target.parent
    for entry in os.scandir(directory):  # leftovers of earlier interrupted writes of this file
        if entry.name.startswith(target.name + TEMPORARY_MARKER):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass
    temporary = directory / f"{target.name}{TEMPORARY_MARKER}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        write(temporary)
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some file systems cannot fsync a directory
        pass


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write a text file (UTF-8) atomically: temporary file, fsync, rename; parent created.

    The one home of write-then-rename for reports, JSON results and the like; trajectory files use
    the same mechanism.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    return path


@contextlib.contextmanager
def exclusive_lock(directory: Path) -> Iterator[None]:
    """Hold an advisory lock on ``directory`` so that one process writes it at a time (released by
    the OS even after ``kill -9``).

    Raises
    ------
    InvalidInputError
        If another process holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(Path(directory) / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InvalidInputError(f"another itomd process is writing to {directory}; wait for it or use a new --out") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


__all__ = ["write_atomically", "write_text_atomically", "exclusive_lock", "TEMPORARY_MARKER", "LOCK_FILE"]
