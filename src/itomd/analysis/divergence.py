r"""Jensen–Shannon divergence between histograms of samples, or of samples and an exact density.

.. math::
    \mathrm{JS}(P\,\Vert\,Q) = \tfrac12 \mathrm{KL}(P\,\Vert\,M) + \tfrac12 \mathrm{KL}(Q\,\Vert\,M),
    \qquad M = \tfrac12 (P + Q),

in **nats** (natural logarithm), so 0 ≤ JS ≤ ln 2 ≈ 0.693. This is the JS *divergence*:
``scipy.spatial.distance.jensenshannon`` returns the JS *distance*, its square root, which is not
comparable. JS of histograms depends on the bins and the range; every result carries both.

Samples that fall outside the histogram range are not dropped silently: each distribution gets one
extra "outside" bin holding that mass (the exact reference has none by construction, since its
bin mass is renormalised to the range), so samples that leave the range raise the divergence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
from scipy.special import rel_entr

from itomd.analysis._histogram import (Range, histogram, histogram_edges, reference_bin_mass, reference_range,
                                       select_features)
from itomd.validation import check_samples
from itomd.errors import InvalidInputError

if TYPE_CHECKING:
    from itomd.systems.reference import ExactReference

#: Histograms of more features than this are too sparse to be useful.
MAX_FEATURES = 3


@dataclass
class JSDivergence:
    """A Jensen–Shannon divergence (nats) and the histogram it was computed on.

    Attributes
    ----------
    value : float
        JS divergence in nats, in [0, ln 2].
    edges : tuple of np.ndarray, each [n_bins_k + 1]
        Bin edges per feature.
    features : tuple of int
        Coordinates histogrammed.
    against : str
        ``"samples"`` (two sample sets) or ``"exact"`` (samples vs an exact reference).
    n_samples : int
        Samples in the first set.
    n_other_samples : int or None
        Samples in the second set (None against an exact reference).
    fraction_outside : float
        Fraction of the first set outside the range (in the "outside" bin).
    other_fraction_outside : float
        The same for the second set (0 for an exact reference).
    """

    value: float
    edges: tuple[np.ndarray, ...]
    features: tuple[int, ...]
    against: str
    n_samples: int
    n_other_samples: int | None
    fraction_outside: float
    other_fraction_outside: float

    @property
    def bins(self) -> list[int]:
        """Bins per feature."""
        return [len(e) - 1 for e in self.edges]

    @property
    def range(self) -> list[tuple[float, float]]:
        """(low, high) per feature."""
        return [(float(e[0]), float(e[-1])) for e in self.edges]

    def describe(self) -> str:
        """One line: the value with its unit, bins, range and features."""
        bins = "×".join(map(str, self.bins))
        extent = ", ".join(f"[{lo:.3g}, {hi:.3g}]" for lo, hi in self.range)
        return (f"JS divergence {self.value:.4g} nats vs {self.against} "
                f"({bins} bins on {extent}, features {list(self.features)})")

    def to_dict(self) -> dict:
        """JSON-serialisable summary."""
        return {"value": self.value, "unit": "nats", "quantity": "Jensen-Shannon divergence (not distance)",
                "bins": self.bins, "range": [list(r) for r in self.range], "features": list(self.features),
                "against": self.against, "n_samples": self.n_samples, "n_other_samples": self.n_other_samples,
                "fraction_outside": self.fraction_outside, "other_fraction_outside": self.other_fraction_outside}


def js_divergence(
    p_samples: np.ndarray,
    q_samples: np.ndarray | None = None,
    *,
    reference: "ExactReference | None" = None,
    bins: int | Sequence[int] | None = None,
    range: Range | tuple[float, float] | None = None,
    features: Sequence[int] | None = None,
) -> JSDivergence:
    """Jensen–Shannon divergence (nats) between two sample sets or between samples and an exact density.

    Both are histogrammed on common regular bins. Note: this is the *divergence*, not scipy's
    ``jensenshannon`` *distance* (which is its square root).

    Parameters
    ----------
    p_samples : np.ndarray, shape [n, dim]
        Samples (1-D input is taken as [n]).
    q_samples : np.ndarray, shape [m, dim], optional
        Second sample set; give exactly one of ``q_samples`` and ``reference``.
    reference : ExactReference, optional
        Exact stationary density; its probability mass per bin on the same edges, renormalised to
        the range, is compared (marginalised over coordinates not in ``features``).
    bins : int or sequence of int, optional
        Bins per feature (default 100 in 1-D, 50 × 50 in 2-D, 20³ in 3-D).
    range : sequence of (low, high), optional
        Histogram range per feature; default the reference's box, else the range of both sample sets.
    features : sequence of int, optional
        Coordinates to histogram (at most 3); default all.

    Returns
    -------
    JSDivergence
    """
    p_samples = check_samples(p_samples, "p_samples")
    if (q_samples is None) == (reference is None):
        raise InvalidInputError("give exactly one of q_samples and reference")
    p_selected, features = select_features(p_samples, features, MAX_FEATURES)
    if q_samples is not None:
        q_samples = check_samples(q_samples, "q_samples")
        if q_samples.shape[1] != p_samples.shape[1]:
            raise InvalidInputError(
                f"sample sets differ in dimension: {p_samples.shape[1]} vs {q_samples.shape[1]}")
        q_selected = q_samples[:, list(features)]
        edges = histogram_edges([p_selected, q_selected], bins, range)
        q_counts, q_outside = histogram(q_selected, edges)
        q = np.append(q_counts.ravel(), q_outside) / len(q_selected)
        against, n_other, other_outside = "samples", len(q_selected), q_outside / len(q_selected)
    else:
        edges = histogram_edges([p_selected], bins, range, reference_range(reference, features))
        mass = reference_bin_mass(reference, edges, features)
        if not mass.sum() > 0:
            raise InvalidInputError("the reference has no probability inside the histogram range")
        q = np.append(mass.ravel() / mass.sum(), 0.0)
        against, n_other, other_outside = "exact", None, 0.0
    p_counts, p_outside = histogram(p_selected, edges)
    p = np.append(p_counts.ravel(), p_outside) / len(p_selected)
    return JSDivergence(value=js_divergence_of_distributions(p, q), edges=edges, features=features,
                        against=against, n_samples=len(p_selected), n_other_samples=n_other,
                        fraction_outside=p_outside / len(p_selected), other_fraction_outside=float(other_outside))


def js_divergence_of_distributions(p: np.ndarray, q: np.ndarray) -> float:
    """JS divergence (nats) of two discrete distributions of the same shape (normalised here).

    Parameters
    ----------
    p, q : np.ndarray, any shape, non-negative
        Histograms or probabilities over the same bins.

    Returns
    -------
    float
        In [0, ln 2].
    """
    p = np.asarray(p, dtype=float).ravel()
    q = np.asarray(q, dtype=float).ravel()
    if p.shape != q.shape:
        raise InvalidInputError(f"distributions differ in size: {p.size} vs {q.size}")
    if np.any(p < 0) or np.any(q < 0) or not (p.sum() > 0 and q.sum() > 0):
        raise InvalidInputError("distributions must be non-negative with positive total")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)
    value = 0.5 * rel_entr(p, m).sum() + 0.5 * rel_entr(q, m).sum()
    return float(min(max(value, 0.0), np.log(2.0)))
