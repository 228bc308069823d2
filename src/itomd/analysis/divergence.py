r"""Jensen–Shannon divergence between histograms of samples (or samples and an exact density).

.. math::
    \mathrm{JS}(P\,\Vert\,Q) = \tfrac12 \mathrm{KL}(P\,\Vert\,M) + \tfrac12 \mathrm{KL}(Q\,\Vert\,M),
    \qquad M = \tfrac12 (P + Q),

in **nats** (natural logarithm), between 0 and ln 2 ≈ 0.693. This is the *divergence*; scipy's
``scipy.spatial.distance.jensenshannon`` returns the JS *distance*, its square root. Every number
is reported with its bins and range, since JS depends on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from itomd.errors import InvalidInputError


def js_divergence_of_histograms(p: np.ndarray, q: np.ndarray) -> float:
    """JS divergence (nats) of two histograms of the same shape (normalised here)."""
    p = np.asarray(p, dtype=float).ravel()
    q = np.asarray(q, dtype=float).ravel()
    if p.shape != q.shape:
        raise InvalidInputError(f"histograms differ in size: {p.size} vs {q.size}")
    if p.sum() <= 0 or q.sum() <= 0:
        raise InvalidInputError("cannot compare an empty histogram")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / m[mask])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


@dataclass
class JSDivergence:
    """A JS divergence with what it was computed on.

    Attributes
    ----------
    value : float
        JS divergence in nats.
    bins : list of int
        Bins per dimension.
    range : list of (low, high)
        Histogram range per dimension.
    n_samples : int
        Samples in the first set.
    against : str
        ``"samples"`` or ``"exact"``.
    """

    value: float
    bins: list[int]
    range: list[tuple[float, float]]
    n_samples: int
    against: str

    def to_dict(self) -> dict:
        return {"value": self.value, "unit": "nats", "bins": self.bins, "range": [list(r) for r in self.range],
                "n_samples": self.n_samples, "against": self.against}


def _edges(samples: np.ndarray, bins: int | Sequence[int], range_: Sequence[tuple[float, float]] | None):
    dim = samples.shape[1]
    bins = [int(bins)] * dim if np.isscalar(bins) else [int(b) for b in bins]
    if len(bins) != dim or min(bins) < 1:
        raise InvalidInputError(f"need a positive number of bins for each of {dim} dimensions, got {bins}")
    if range_ is None:
        range_ = [(float(samples[:, d].min()), float(samples[:, d].max())) for d in range(dim)]
    range_ = [(float(lo), float(hi)) for lo, hi in range_]
    if len(range_) != dim or any(not hi > lo for lo, hi in range_):
        raise InvalidInputError(f"histogram range must give low < high for each of {dim} dimensions, got {range_}")
    return [np.linspace(lo, hi, b + 1) for (lo, hi), b in zip(range_, bins)], bins, range_


def js_divergence(
    p_samples: np.ndarray,
    q_samples: np.ndarray | None = None,
    *,
    reference=None,
    bins: int | Sequence[int] = 50,
    range: Sequence[tuple[float, float]] | None = None,  # noqa: A002 - numpy's name
) -> JSDivergence:
    """JS divergence (nats) between two sample sets, or between samples and an exact density.

    Parameters
    ----------
    p_samples : np.ndarray, shape [n, dim]
    q_samples : np.ndarray, shape [m, dim], optional
        Second sample set; give this or ``reference``.
    reference : ExactReference, optional
        Exact density; its probability mass per bin is compared (renormalised to the range).
    bins : int or sequence of int
        Bins per dimension.
    range : sequence of (low, high), optional
        Histogram range; defaults to the reference's box, else the range of ``p_samples``.

    Returns
    -------
    JSDivergence
    """
    p_samples = np.asarray(p_samples, dtype=float)
    if p_samples.ndim == 1:
        p_samples = p_samples[:, None]
    if p_samples.ndim != 2 or len(p_samples) == 0:
        raise InvalidInputError(f"samples must have shape [n, dim], got {p_samples.shape}")
    if not np.all(np.isfinite(p_samples)):
        raise InvalidInputError("samples contain NaN or inf values")
    if (q_samples is None) == (reference is None):
        raise InvalidInputError("give exactly one of q_samples or reference")
    if range is None and reference is not None:
        range = reference.box
    edges, bins, range = _edges(p_samples, bins, range)
    p, _ = np.histogramdd(p_samples, bins=edges)
    if q_samples is not None:
        q_samples = np.asarray(q_samples, dtype=float)
        if q_samples.ndim == 1:
            q_samples = q_samples[:, None]
        if q_samples.ndim != 2 or q_samples.shape[1] != p_samples.shape[1]:
            raise InvalidInputError(f"sample sets differ in dimension: {p_samples.shape} vs {q_samples.shape}")
        q, _ = np.histogramdd(q_samples, bins=edges)
        against = "samples"
    else:
        if reference.dim != p_samples.shape[1]:
            raise InvalidInputError(f"samples are {p_samples.shape[1]}-D but the reference is {reference.dim}-D")
        q = reference.bin_probabilities(edges)
        against = "exact"
    if p.sum() == 0:
        raise InvalidInputError("no samples fall inside the histogram range")
    return JSDivergence(value=js_divergence_of_histograms(p, q), bins=bins, range=range,
                        n_samples=len(p_samples), against=against)
