"""Atomic torch files: models and training checkpoints survive ``kill -9`` at any moment.

A file is written to a temporary name in the same directory, fsynced and renamed over the old one
(:func:`itomd._files.write_atomically`), so a reader sees either the previous complete file
or the new complete file, never a torn one. Files hold only tensors and plain Python values and
are read with ``torch.load(weights_only=True)``: loading a file never runs code from it.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from itomd._files import create_directory, write_bytes_atomically
from itomd.errors import DataFileError

#: What ``itomd train`` names the files that :func:`load_file` reads, by kind.
WRITTEN_BY_TRAIN = {"model": "model.pt", "checkpoint": "checkpoint.pt"}


def save_atomically(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save(payload)`` to ``path`` via write-then-rename; parent directories created."""
    path = Path(path)
    create_directory(path.parent)
    buffer = io.BytesIO()  # written by Python: a full disk is a plain OSError (see write_bytes_atomically)
    torch.save(payload, buffer)
    write_bytes_atomically(path, buffer.getvalue())
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
    produced_by = f"`itomd train` writes {what} files ({WRITTEN_BY_TRAIN[what]} in its run directory)" \
        if what in WRITTEN_BY_TRAIN else "`itomd train` writes them"
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's business
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, AttributeError,
            IndexError, KeyError, TypeError, UnicodeDecodeError) as exc:
        # one message whatever torch says: never repeat its advice to load the file with weights_only=False
        raise DataFileError(f"{path} is not an itomd {what} or is truncated: not a torch file of tensors and plain "
                            f"values (itomd never loads other objects: they could run code); {produced_by}") from exc
    if not isinstance(payload, dict):
        raise DataFileError(f"{path} is not an itomd {what}; {produced_by}")
    return payload
