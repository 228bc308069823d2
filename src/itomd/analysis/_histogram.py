"""Histogram helpers shared by the free-energy surface and the JS divergence: features, edges, and
the exact reference's probability mass on the same bins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from itomd.errors import InvalidInputError

if TYPE_CHECKING:
    from itomd.systems.reference import ExactReference

#: Default number of bins per axis by the number of histogrammed features.
DEFAULT_BINS = {1: 100, 2: 50, 3: 20}

Range = Sequence[tuple[float, float]]


def select_features(samples: np.ndarray, features: Sequence[int] | None, max_dim: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Columns ``features`` of ``samples`` [n, dim] (all columns if None), at most ``max_dim`` of them.

    Returns
    -------
    selected : np.ndarray, shape [n, len(features)]
    features : tuple of int
    """
    dim = samples.shape[1]
    if features is None:
        if dim > max_dim:
            raise InvalidInputError(
                f"samples are {dim}-dimensional: choose at most {max_dim} coordinates with features=...")
        features = tuple(range(dim))
    else:
        features = tuple(int(f) for f in np.atleast_1d(features))
        if not features or len(features) > max_dim:
            raise InvalidInputError(f"choose between 1 and {max_dim} features, got {features}")
        if len(set(features)) != len(features) or min(features) < 0 or max(features) >= dim:
            raise InvalidInputError(f"features must be distinct coordinate indices below {dim}, got {features}")
    return samples[:, list(features)], features


def histogram_edges(
    data: Sequence[np.ndarray],
    bins: int | Sequence[int] | None,
    range: Range | tuple[float, float] | None,
    default_range: Range | None = None,
) -> tuple[np.ndarray, ...]:
    """Regular bin edges per axis.

    Parameters
    ----------
    data : sequence of np.ndarray, each [n_i, d]
        Samples that the range should cover when neither ``range`` nor ``default_range`` is given.
    bins : int or sequence of int, optional
        Bins per axis; :data:`DEFAULT_BINS` by dimension if None.
    range : sequence of (low, high), optional
        Per axis; a single (low, high) pair is accepted for d = 1.
    default_range : sequence of (low, high), optional
        Used when ``range`` is None (e.g. the reference's box).

    Returns
    -------
    tuple of np.ndarray, each [n_bins_k + 1]
    """
    d = data[0].shape[1]
    if bins is None:
        bins = DEFAULT_BINS.get(d, 10)
    bins = np.broadcast_to(np.asarray(bins), (d,)) if np.ndim(bins) == 0 else np.asarray(bins)
    if bins.shape != (d,) or np.any(bins < 1) or np.any(bins != np.round(bins)):
        raise InvalidInputError(f"bins must be a positive integer or one per axis ({d}), got {bins.tolist()}")
    if range is None:
        range = default_range
    if range is None:
        stacked = np.concatenate(list(data))
        range = list(zip(stacked.min(0), stacked.max(0)))
    else:
        range = np.asarray(range, dtype=float)
        if range.shape == (2,) and d == 1:
            range = range[None]
        if range.shape != (d, 2) or not np.all(np.isfinite(range)):
            raise InvalidInputError(f"range must give (low, high) for each of {d} axes, got {range.tolist()}")
    edges = []
    for (low, high), n in zip(range, bins):
        low, high = float(low), float(high)
        if high == low:  # degenerate data: widen symmetrically
            low, high = low - 0.5, high + 0.5
        if not high > low:
            raise InvalidInputError(f"range must satisfy low < high, got ({low}, {high})")
        edges.append(np.linspace(low, high, int(n) + 1))
    return tuple(edges)


def histogram(samples: np.ndarray, edges: Sequence[np.ndarray]) -> tuple[np.ndarray, int]:
    """Counts of ``samples`` [n, d] in the bins, and the number of samples outside the edges."""
    counts, _ = np.histogramdd(samples, bins=list(edges))
    return counts, int(len(samples) - counts.sum())


def reference_range(reference: "ExactReference", features: tuple[int, ...]) -> list[tuple[float, float]]:
    """The reference's box along ``features``."""
    _check_reference_features(reference, features)
    return [tuple(reference.box[f]) for f in features]


def reference_bin_mass(reference: "ExactReference", edges: Sequence[np.ndarray], features: tuple[int, ...]) -> np.ndarray:
    """Exact stationary probability mass in the bins over ``features`` (overlap-weighted; see
    :meth:`ExactReference.bin_probabilities`), shape [n_bins_1, ..., n_bins_d]."""
    _check_reference_features(reference, features)
    return reference.bin_probabilities(edges, features)


def _check_reference_features(reference: "ExactReference", features: tuple[int, ...]) -> None:
    if max(features) >= reference.dim:
        raise InvalidInputError(
            f"features {features} do not exist in the {reference.dim}-dimensional reference")
