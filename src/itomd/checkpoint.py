"""Atomic torch files: models and training checkpoints survive ``kill -9`` at any moment.

A file is written to a temporary name in the same directory, fsynced and renamed over the old one
(:func:`itomd._files.write_atomically`), so a reader sees either the previous complete file
or the new complete file, never a torn one. Files hold only tensors and plain Python values and
are read with ``torch.load(weights_only=True)``: loading a file never runs code from it.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from itomd._files import write_atomically
from itomd.errors import DataFileError


def save_atomically(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save(payload)`` to ``path`` via write-then-rename; parent directories created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda temporary: torch.save(payload, temporary))
    return path


def load_file(path: str | os.PathLike, what: str = "checkpoint") -> dict[str, Any]:
    """Load a file written by :func:`save_atomically` (on the CPU).

    Raises
    ------
    DataFileError
        If the file is missing, unreadable, truncated or not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"no {what} file at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError,
            AttributeError, IndexError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise DataFileError(f"{path} is not a readable {what} (corrupt or truncated): "
                            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    if not isinstance(payload, dict):
        raise DataFileError(f"{path} is not an itomd {what}")
    return payload
