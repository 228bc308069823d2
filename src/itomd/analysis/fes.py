"""Free-energy surfaces F = −kT ln p on one or two features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from itomd.errors import InvalidInputError


@dataclass
class FreeEnergySurface:
    """A histogram free energy, optionally with the exact one on the same bins.

    Attributes
    ----------
    edges : list of np.ndarray
        Bin edges per dimension (1 or 2 dimensions).
    free_energy : np.ndarray, shape [bins_1(, bins_2)]
        F = −kT ln p, minimum 0, NaN where no sample fell.
    reference : np.ndarray or None
        Exact F on the same bins (minimum 0, NaN where the exact mass is 0).
    kT : float
    """

    edges: list[np.ndarray]
    free_energy: np.ndarray
    kT: float
    reference: np.ndarray | None = None
    feature_names: tuple[str, ...] = ("x", "y")

    @property
    def centers(self) -> list[np.ndarray]:
        return [0.5 * (e[1:] + e[:-1]) for e in self.edges]

    def rmse_vs_reference(self, max_free_energy: float | None = None) -> float | None:
        """RMS difference to the exact F over bins where both are defined (and F_exact < cut)."""
        if self.reference is None:
            return None
        cut = 5 * self.kT if max_free_energy is None else max_free_energy
        mask = np.isfinite(self.free_energy) & np.isfinite(self.reference) & (self.reference < cut)
        if not mask.any():
            return None
        # compare shapes up to a constant: align the means over the compared bins
        d = self.free_energy[mask] - self.reference[mask]
        return float(np.sqrt(np.mean((d - d.mean()) ** 2)))

    def to_dict(self) -> dict:
        nan = lambda a: None if a is None else np.where(np.isfinite(a), a, None).tolist()
        return {"edges": [e.tolist() for e in self.edges], "free_energy": nan(self.free_energy),
                "reference": nan(self.reference), "kT": self.kT, "rmse_vs_reference_below_5kT": self.rmse_vs_reference()}

    def plot(self, ax=None):
        """1-D: F and the exact F; 2-D: filled contours of F with exact contour lines."""
        import matplotlib.pyplot as plt

        if len(self.edges) == 1:
            ax = ax or plt.subplots(figsize=(5.5, 4))[1]
            c = self.centers[0]
            ax.plot(c, self.free_energy, "o-", ms=3, label="samples")
            if self.reference is not None:
                ax.plot(c, self.reference, "k--", label="exact")
            ax.set_xlabel(self.feature_names[0])
            ax.set_ylabel("free energy")
            ax.legend()
        else:
            ax = ax or plt.subplots(figsize=(5.5, 4.5))[1]
            cx, cy = self.centers
            vmax = np.nanpercentile(self.free_energy, 99) if np.isfinite(self.free_energy).any() else 1.0
            cs = ax.contourf(cx, cy, np.ma.masked_invalid(self.free_energy).T, levels=np.linspace(0, vmax, 16),
                             cmap="viridis")
            plt.colorbar(cs, ax=ax, label="free energy")
            if self.reference is not None:
                ax.contour(cx, cy, np.ma.masked_invalid(np.minimum(self.reference, vmax)).T,
                           levels=np.linspace(0, vmax, 8), colors="w", linewidths=0.8)
            ax.set_xlabel(self.feature_names[0])
            ax.set_ylabel(self.feature_names[1])
        ax.set_title("free-energy surface" + (" (exact: dashed/white)" if self.reference is not None else ""))
        return ax


def _free_energy(hist: np.ndarray, kT: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        f = -kT * np.log(hist / hist.sum())
    f[~np.isfinite(f)] = np.nan
    return f - np.nanmin(f)


def free_energy_surface(
    samples: np.ndarray,
    kT: float,
    bins: int | Sequence[int] = 50,
    range: Sequence[tuple[float, float]] | None = None,  # noqa: A002 - numpy's name
    reference=None,
) -> FreeEnergySurface:
    """Histogram free energy of samples on their 1 or 2 coordinates.

    Parameters
    ----------
    samples : np.ndarray, shape [n, 1] or [n, 2]
        Feature values.
    kT : float
        Thermal energy (F is reported in its unit).
    bins : int or sequence of int
    range : sequence of (low, high), optional
        Defaults to the reference's box, else the data range.
    reference : ExactReference, optional

    Returns
    -------
    FreeEnergySurface
    """
    samples = np.asarray(samples, dtype=float)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[1] not in (1, 2) or len(samples) == 0:
        raise InvalidInputError(f"free-energy surfaces take samples of shape [n, 1] or [n, 2], got {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise InvalidInputError("samples contain NaN or inf values")
    if not (np.isfinite(kT) and kT > 0):
        raise InvalidInputError(f"kT must be positive, got {kT}")
    from itomd.analysis.divergence import _edges

    if range is None and reference is not None:
        range = reference.box
    edges, _, _ = _edges(samples, bins, range)
    hist, _ = np.histogramdd(samples, bins=edges)
    ref = None
    if reference is not None:
        ref = _free_energy(reference.bin_probabilities(edges), kT)
    return FreeEnergySurface(edges=edges, free_energy=_free_energy(hist, kT), kT=float(kT), reference=ref)
