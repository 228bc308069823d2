"""User-facing errors.

Every error a user can cause with bad input (an unknown system, a wrong dimension, a non-positive
lag, NaN in data, a missing or corrupt file) is raised as an :class:`ItomdError` with a message that
fits on one line. The command-line interface prints it as ``itomd: error: <message>`` and exits
with status 2; library users can catch it like any other exception.
"""

from __future__ import annotations


class ItomdError(Exception):
    """An error caused by invalid input, reported to the user in one line."""


class InvalidInputError(ItomdError, ValueError):
    """Input of the wrong shape, value or type (wrong dimension, non-positive lag, NaN...)."""


class UnknownSystemError(ItomdError, KeyError):
    """A system specification that names no shipped system and no loadable file."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0]) if self.args else ""


class DataFileError(ItomdError, OSError):
    """A file that is missing, unreadable or corrupt."""
