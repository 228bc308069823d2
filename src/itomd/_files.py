"""File-system primitives: atomic write-then-rename and an advisory directory lock.

The lowest layer of itomd's input/output: the trajectory store, model files and checkpoints,
reports and JSON results all write through :func:`write_atomically`, so a crash (even ``kill -9``)
leaves either the complete old file, the complete new file, or a stray temporary file
(``<name>.tmp-<pid>-<random>``) that readers ignore and the next write of the same file removes.
Nothing here knows about trajectories, models or systems.
"""

from __future__ import annotations

import contextlib
import errno
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
    if target.is_dir():
        raise InvalidInputError(f"{target} is a directory; give the name of a file to write")
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


def write_bytes_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (:func:`write_atomically`) with one Python ``write``.

    Files that a C library formats (HDF5 trajectories, torch checkpoints) are built in memory and
    written through here, so a full disk or a forbidden directory surfaces as an ordinary
    :class:`OSError` (``errno`` set, see :func:`describe_write_failure`) instead of an error deep in
    the C library, and the temporary file is removed.
    """
    write_atomically(target, lambda temporary: temporary.write_bytes(data))


#: ``errno`` values that mean "the output cannot be written here", and what to call them.
_WRITE_FAILURES = {errno.ENOSPC: "no space left on the device holding {path}",
                   errno.EDQUOT: "the disk quota of the device holding {path} is exhausted",
                   errno.EROFS: "cannot write to {path}: read-only file system",
                   errno.EACCES: "cannot write to {path}: permission denied",
                   errno.EPERM: "cannot write to {path}: operation not permitted"}


def describe_write_failure(exc: BaseException, path: "str | os.PathLike | None" = None) -> str | None:
    """One line naming a failed write (full disk, quota, read-only or forbidden location), or None
    for any other error.

    Recognises an :class:`OSError` by its ``errno`` and errors that C libraries raise with the
    system's message in their text (HDF5: "Can't synchronously write data ... errno = 28").

    Parameters
    ----------
    exc : BaseException
    path : path, optional
        Where the output was going; used when the error names no file.
    """
    code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    text = str(exc)
    if code not in _WRITE_FAILURES:
        code = next((c for c in _WRITE_FAILURES if f"errno = {c}," in text or os.strerror(c) in text), None)
    if code is None:
        return None
    filename = getattr(exc, "filename", None) if isinstance(exc, OSError) else None
    where = filename or path or "the output location"
    if code == errno.ENOSPC and filename and TEMPORARY_MARKER in Path(filename).name:
        where = Path(filename).parent  # the directory, not the temporary file that was being written
    return _WRITE_FAILURES[code].format(path=where)


def create_directory(path: str | os.PathLike) -> Path:
    """``mkdir -p path``; a file where a directory must be is one line
    (:class:`~itomd.errors.InvalidInputError`), other failures stay :class:`OSError`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InvalidInputError(f"cannot create the directory {path}: a file is in the way") from None
    return path


def write_text_atomically(path: str | os.PathLike, text: str) -> Path:
    """Write a text file (UTF-8) atomically: temporary file, fsync, rename; parent created.

    The one home of write-then-rename for reports, JSON results and the like; trajectory files use
    the same mechanism.
    """
    path = Path(path)
    create_directory(path.parent)
    write_bytes_atomically(path, text.encode("utf-8"))
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


__all__ = ["write_atomically", "write_bytes_atomically", "write_text_atomically", "describe_write_failure", "exclusive_lock", "TEMPORARY_MARKER", "LOCK_FILE"]
