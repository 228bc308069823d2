"""Input checks of the public API, in one place: each failure is one line (an
:class:`~itomd.errors.InvalidInputError`) that names the argument and the value it got."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from itomd.errors import InvalidInputError


def as_real_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 array, refusing what would convert badly: strings, ragged nesting and
    complex numbers (NumPy would drop their imaginary parts) are one line naming ``name``.

    Returns
    -------
    np.ndarray, ``value``'s shape, float64
    """
    try:
        array = np.asarray(value)
        if array.dtype.kind == "O":  # e.g. a list mixing Python ints and floats
            array = array.astype(np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be an array of real numbers") from None
    if array.dtype.kind not in "biuf":
        got = "complex numbers" if array.dtype.kind == "c" else f"values of type {array.dtype}"
        raise InvalidInputError(f"{name} must hold real numbers, got {got}")
    return array.astype(np.float64)


def check_trajectories(trajectories: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Validate trajectories: a non-empty list of finite [n_frames, dim] arrays of one dimension.

    A single 2-D array is taken as one trajectory, a 3-D array [n_trajectories, n_frames, dim] as
    many, and 1-D arrays as one-dimensional trajectories [n_frames].

    Returns
    -------
    list of np.ndarray, each [n_frames_i, dim], float64
    """
    if isinstance(trajectories, np.ndarray):
        trajectories = [trajectories] if trajectories.ndim <= 2 else list(trajectories)
    try:
        trajectories = list(trajectories)
    except TypeError:
        raise InvalidInputError("trajectories must be a list of numeric arrays [n_frames, dim]") from None
    trajectories = [as_real_array(t, f"trajectory {i}") for i, t in enumerate(trajectories)]
    if not trajectories:
        raise InvalidInputError("no trajectories given")
    out = []
    for i, t in enumerate(trajectories):
        if t.ndim == 1:
            t = t[:, None]
        if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
            raise InvalidInputError(f"trajectory {i} must have shape [n_frames, dim], got {t.shape}")
        if not np.all(np.isfinite(t)):
            raise InvalidInputError(f"trajectory {i} contains NaN or inf values")
        out.append(t)
    dims = {t.shape[1] for t in out}
    if len(dims) != 1:
        raise InvalidInputError(f"trajectories have different dimensions: {sorted(dims)}")
    return out


def check_samples(samples: np.ndarray, name: str = "samples") -> np.ndarray:
    """Validate a set of configurations: a finite, non-empty array [n, dim] (1-D input is [n])."""
    samples = as_real_array(samples, name)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[0] == 0 or samples.shape[1] == 0:
        raise InvalidInputError(f"{name} must have shape [n, dim], got {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise InvalidInputError(f"{name} contain NaN or inf values")
    return samples


def check_lags(lags: Sequence[int] | int, trajectories: Sequence[np.ndarray]) -> list[int]:
    """Validate lags (frames): positive integers, each shorter than the longest trajectory.

    Returns
    -------
    list of int
        The distinct lags, ascending.
    """
    values = np.atleast_1d(np.asarray(lags, dtype=object))
    if values.ndim != 1 or values.size == 0:
        raise InvalidInputError(f"lags must be a non-empty list of positive integers (frames), got {lags!r}")
    checked = []
    for value in values:
        if not (is_number(value) and np.isfinite(value) and float(value) == int(value)):
            raise InvalidInputError(f"lags must be positive integers (frames), got {value!r}")
        checked.append(int(value))
    if min(checked) < 1:
        raise InvalidInputError(f"lags must be positive integers (frames), got {min(checked)}")
    longest = max(len(t) for t in trajectories)
    if max(checked) >= longest:
        raise InvalidInputError(
            f"lag {max(checked)} frames is not shorter than the longest trajectory ({longest} frames)")
    return sorted(set(checked))


def check_frame_interval(frame_interval: float) -> float:
    """Validate the physical time between frames (a positive finite number)."""
    if not (is_number(frame_interval) and np.isfinite(frame_interval) and frame_interval > 0):
        raise InvalidInputError(f"frame interval must be a positive number, got {frame_interval!r}")
    return float(frame_interval)


def check_positive(value: float, name: str) -> float:
    """Validate a positive finite number such as kT."""
    if not (is_number(value) and np.isfinite(value) and value > 0):
        raise InvalidInputError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def is_number(value: Any) -> bool:
    """A real number (Python or NumPy), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def is_finite_number(value: Any) -> bool:
    """A finite real number, not a bool."""
    return is_number(value) and math.isfinite(value)


def require_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum`` (1 or 0), else "NAME must be a positive/non-negative integer, got V"."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        kind = "a positive" if minimum >= 1 else "a non-negative"
        raise InvalidInputError(f"{name} must be {kind} integer, got {value!r}")
    return int(value)
