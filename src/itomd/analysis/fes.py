r"""Free-energy surfaces from samples, with the exact reference on the same bins.

Free energies are in units of kT (dimensionless), whatever the energy unit of the system:

.. math::
    \frac{F(b)}{kT} = -\ln \frac{n_b}{N\,V_b} - \min_{b'} \frac{F(b')}{kT},

for bins *b* with :math:`n_b` of N samples and volume :math:`V_b`; empty bins are NaN. The exact
surface uses the reference's probability mass in the same bins instead of :math:`n_b/N`.
(Müller–Brown at kT = 10 spans ~9 kT over its minima, not 90 energy units.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from itomd.analysis._histogram import (Range, histogram, histogram_edges, reference_bin_mass, reference_range,
                                       select_features)
from itomd.validation import check_positive, check_samples

if TYPE_CHECKING:
    import matplotlib.axes

    from itomd.systems.reference import ExactReference

#: Bins with fewer samples than this are left out of :meth:`FreeEnergySurface.rms_deviation`.
DEFAULT_MIN_COUNT = 20


@dataclass
class FreeEnergySurface:
    """A free-energy surface on a regular histogram of 1 or 2 features.

    Attributes
    ----------
    edges : tuple of np.ndarray, each [n_bins_k + 1]
        Bin edges per feature.
    free_energy : np.ndarray, shape [n_bins_1, (n_bins_2)]
        F/kT = −ln p in units of kT, minimum 0; NaN in empty bins.
    counts : np.ndarray, shape [n_bins_1, (n_bins_2)]
        Samples per bin.
    kT : float
        Thermal energy of the samples in the system's energy unit (recorded; F is already in kT).
    features : tuple of int
        Coordinates histogrammed.
    n_samples : int
        All samples given (including those outside the edges).
    n_outside : int
        Samples outside the edges (not in any bin).
    reference : np.ndarray, shape [n_bins_1, (n_bins_2)], optional
        Exact free energy on the same bins in units of kT, minimum 0; NaN where the exact mass is zero.
    """

    edges: tuple[np.ndarray, ...]
    free_energy: np.ndarray
    counts: np.ndarray
    kT: float
    features: tuple[int, ...]
    n_samples: int
    n_outside: int
    reference: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return len(self.edges)

    @property
    def centers(self) -> tuple[np.ndarray, ...]:
        """Bin centres per feature, each [n_bins_k]."""
        return tuple(0.5 * (e[1:] + e[:-1]) for e in self.edges)

    def rms_deviation(self, min_count: int = DEFAULT_MIN_COUNT) -> float | None:
        """Root-mean-square difference to the exact surface, in units of kT.

        Taken over bins with at least ``min_count`` samples and non-zero exact mass, after removing
        the mean offset over those bins (free energies are defined up to a constant).

        Returns
        -------
        float or None
            None without a reference or without such bins.
        """
        if self.reference is None:
            return None
        mask = (self.counts >= min_count) & np.isfinite(self.reference) & np.isfinite(self.free_energy)
        if not mask.any():
            return None
        diff = (self.free_energy - self.reference)[mask]
        return float(np.sqrt(np.mean((diff - diff.mean()) ** 2)))

    def to_dict(self) -> dict:
        """JSON-serialisable summary (NaN becomes null)."""
        return {
            "features": list(self.features),
            "bins": [len(e) - 1 for e in self.edges],
            "range": [[float(e[0]), float(e[-1])] for e in self.edges],
            "edges": [e.tolist() for e in self.edges],
            "kT": self.kT,
            "unit": "kT",
            "free_energy": _to_json(self.free_energy),
            "reference": None if self.reference is None else _to_json(self.reference),
            "n_samples": self.n_samples,
            "n_outside": self.n_outside,
            "rms_deviation_kT": self.rms_deviation(),
            "rms_min_count": DEFAULT_MIN_COUNT,
        }

    def plot(self, ax: "matplotlib.axes.Axes | None" = None, max_free_energy: float | None = None) -> "matplotlib.axes.Axes":
        """Draw the surface.

        1-D: F against the coordinate, the exact surface dashed. 2-D: filled contours of F with the
        exact surface overlaid as dashed contour lines at the same levels. F is in units of kT.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Axes to draw on; a new figure is made otherwise.
        max_free_energy : float, optional
            Upper end of the colour scale / y axis in kT; default the smaller of 10 and the largest F.

        Returns
        -------
        matplotlib.axes.Axes
        """
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        if ax is None:
            ax = plt.subplots(figsize=(5.5, 4.0))[1]
        finite = self.free_energy[np.isfinite(self.free_energy)]
        top = max_free_energy or (min(10.0, float(finite.max())) if finite.size else 10.0)
        top = top if top > 0 else 1.0
        names = [f"x[{f}]" for f in self.features]
        if self.dim == 1:
            (x,) = self.centers
            ax.plot(x, self.free_energy, "-", color="C0", label="samples")
            if self.reference is not None:
                ax.plot(x, self.reference, "--", color="k", lw=1.2, label="exact")
            ax.set_ylim(-0.05 * top, top * 1.05)
            ax.set_xlabel(names[0])
            ax.set_ylabel("free energy (kT)")
            ax.legend(fontsize=8)
        else:
            x, y = self.centers
            levels = MaxNLocator(12).tick_values(0.0, top)  # round numbers of kT
            levels = levels[levels >= 0.0]
            shown = np.where(np.isfinite(self.free_energy), np.minimum(self.free_energy, levels[-1]), np.nan)
            filled = ax.contourf(x, y, shown.T, levels=levels, cmap="viridis")
            ax.figure.colorbar(filled, ax=ax, label="free energy (kT)")
            if self.reference is not None:
                exact = np.where(np.isfinite(self.reference), self.reference, np.nan)
                ax.contour(x, y, exact.T, levels=levels[1:-1], colors="w", linestyles="--", linewidths=0.8)
                ax.plot([], [], "--", color="0.4", label="exact (contours)")
                ax.legend(fontsize=7, loc="upper right")
            ax.set_xlabel(names[0])
            ax.set_ylabel(names[1])
        rms = self.rms_deviation()
        suffix = "" if rms is None else f", RMS vs exact {rms:.2f} kT"
        ax.set_title(f"Free energy ({' × '.join(str(len(e) - 1) for e in self.edges)} bins{suffix})", fontsize=10)
        return ax


def free_energy_surface(
    samples: np.ndarray,
    kT: float,
    bins: int | Sequence[int] | None = None,
    range: Range | tuple[float, float] | None = None,
    reference: "ExactReference | None" = None,
    features: Sequence[int] | None = None,
) -> FreeEnergySurface:
    """Histogram free-energy surface of samples, optionally with the exact one on the same bins.

    Parameters
    ----------
    samples : np.ndarray, shape [n, dim]
        Configurations (e.g. all frames of all trajectories); 1-D input is taken as [n].
    kT : float
        Thermal energy of the samples (recorded with the surface; F is in units of kT).
    bins : int or sequence of int, optional
        Bins per feature (default 100 in 1-D, 50 × 50 in 2-D).
    range : sequence of (low, high), optional
        Histogram range per feature; default the reference's box if a reference is given, else
        the range of the samples.
    reference : ExactReference, optional
        Adds the exact free energy on the same bins (marginalised over coordinates not in
        ``features``).
    features : sequence of int, optional
        One or two coordinates to histogram; default all (which must then be 1 or 2).

    Returns
    -------
    FreeEnergySurface
    """
    samples = check_samples(samples)
    kT = check_positive(kT, "kT")
    selected, features = select_features(samples, features, max_dim=2)
    default_range = None if reference is None else reference_range(reference, features)
    edges = histogram_edges([selected], bins, range, default_range)
    counts, n_outside = histogram(selected, edges)
    volume = np.prod(np.meshgrid(*[np.diff(e) for e in edges], indexing="ij"), axis=0)
    free_energy = _free_energy(counts / max(len(selected), 1) / volume)
    exact = None
    if reference is not None:
        exact = _free_energy(reference_bin_mass(reference, edges, features) / volume)
    return FreeEnergySurface(edges=edges, free_energy=free_energy, counts=counts, kT=kT, features=features,
                             n_samples=len(selected), n_outside=n_outside, reference=exact)


def _free_energy(density: np.ndarray) -> np.ndarray:
    """−ln density in kT with minimum 0; NaN where the density is 0."""
    with np.errstate(divide="ignore"):
        f = np.where(density > 0, -np.log(density), np.nan)
    return f - np.nanmin(f) if np.any(np.isfinite(f)) else f


def _to_json(values: np.ndarray):
    return np.where(np.isfinite(values), values, None).tolist()
