r"""Exact references for low-dimensional systems by the square-root approximation (SqRA).

The generator of overdamped Langevin dynamics is discretised on a regular grid of cells covering
the system's box (reflecting walls). The rate from cell *i* to a neighbouring cell *j* is

.. math::
    Q_{ij} = \frac{D}{h^2}\sqrt{\frac{\pi_j}{\pi_i}} = \frac{D}{h^2} e^{-(U_j - U_i)/(2kT)},

with :math:`D = kT/\gamma` and :math:`\pi \propto e^{-U/kT}` (Lie, Fackeldey & Weber 2013;
Donati et al. 2018). Q is reversible with respect to π, so :math:`S = \Pi^{1/2} Q \Pi^{-1/2}` is
symmetric (its off-diagonal entries are the constant D/h²) and its slowest eigenpairs are found by
shift-invert Lanczos. The eigenvalues :math:`\kappa_k \le 0` give implied timescales
:math:`t_k = -1/\kappa_k` and transfer-operator eigenvalues :math:`\lambda_k(\tau) = e^{\kappa_k \tau}`.
Discretisation error falls with the grid spacing; ``tests/systems/test_reference.py`` checks the
convergence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg
import torch

from itomd.errors import InvalidInputError
from itomd.systems.system import Box, System

#: Default number of cells per axis by dimension.
DEFAULT_GRID = {1: 1200, 2: 240, 3: 48}
#: Most cells an exact reference may have: the grid's points, energies and sparse generator scale with
#: the number of cells and its shift-invert eigensolver beyond it (10⁶ cells: ~1 GB, minutes).
MAX_GRID_CELLS = 1_000_000


@dataclass(frozen=True)
class ExactReference:
    r"""The exact (grid-converged) equilibrium and spectral properties of a system.

    Attributes
    ----------
    axes : tuple of np.ndarray, each shape [n_k]
        Cell centres along each dimension.
    energy : np.ndarray, shape [n_1, ..., n_d]
        Potential energy at the cell centres.
    log_density : np.ndarray, shape [n_1, ..., n_d]
        Log of the normalised stationary probability density (∫ρ dx = 1 over the box).
    rates : np.ndarray, shape [k]
        Generator eigenvalues κ, 0 first, then descending (all ≤ 0).
    eigenvectors : np.ndarray, shape [n_cells, k]
        Orthonormal eigenvectors of the symmetrised generator S (cells in C order).
    kT, diffusion : float
        Thermal energy and diffusion constant D = kT/γ of the system.
    """

    axes: tuple[np.ndarray, ...]
    energy: np.ndarray
    log_density: np.ndarray
    rates: np.ndarray
    eigenvectors: np.ndarray
    kT: float
    diffusion: float
    box: Box

    # -- equilibrium ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return len(self.axes)

    @property
    def spacing(self) -> tuple[float, ...]:
        """Grid spacing h per dimension."""
        return tuple(float(a[1] - a[0]) for a in self.axes)

    @property
    def cell_volume(self) -> float:
        return float(np.prod(self.spacing))

    @property
    def density(self) -> np.ndarray:
        """Stationary probability density on the grid, shape [n_1, ..., n_d]."""
        return np.exp(self.log_density)

    @property
    def cell_probabilities(self) -> np.ndarray:
        """Stationary probability of each cell, shape [n_1, ..., n_d]; sums to 1."""
        p = self.density * self.cell_volume
        return p / p.sum()

    @property
    def points(self) -> np.ndarray:
        """Cell centres, shape [n_cells, dim], in the C order of the grid arrays."""
        mesh = np.meshgrid(*self.axes, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=-1)

    def free_energy(self) -> np.ndarray:
        """Free energy F = −kT ln ρ on the grid (minimum shifted to 0), shape [n_1, ..., n_d]."""
        f = -self.kT * self.log_density
        return f - f.min()

    def expectation(self, values: np.ndarray) -> float:
        """Equilibrium average of an observable given on the grid (shape [n_1, ..., n_d] or [n_cells])."""
        return float((self.cell_probabilities.ravel() * np.asarray(values).ravel()).sum())

    def bin_probabilities(self, edges: list[np.ndarray] | tuple[np.ndarray, ...],
                          features: tuple[int, ...] | None = None) -> np.ndarray:
        """Stationary probability mass in the bins of a histogram (marginal over other coordinates).

        Each grid cell is a box of uniform density (what :meth:`sample` draws from); its mass is split
        among the bins in proportion to the overlap, so bins need not line up with cells.

        Parameters
        ----------
        edges : sequence of np.ndarray
            Bin edges per histogram dimension (as for ``np.histogramdd``).
        features : tuple of int, optional
            Coordinates the histogram is over (default: all, in order); the others are integrated out.

        Returns
        -------
        np.ndarray, shape [len(edges[0]) - 1, ...]
            Probabilities (sum ≤ 1; mass outside the edges is dropped).
        """
        features = tuple(range(self.dim)) if features is None else tuple(int(f) for f in features)
        if len(edges) != len(features) or not features or min(features) < 0 or max(features) >= self.dim \
                or len(set(features)) != len(features):
            raise InvalidInputError(
                f"need one edge array per feature {features} of the {self.dim}-dimensional reference, got {len(edges)}")
        mass = self.cell_probabilities
        for axis in range(self.dim):  # contract axis 0 each time; bin axes accumulate at the end
            if axis in features:
                e = np.asarray(edges[features.index(axis)], dtype=float)
                h = self.spacing[axis]
                low = np.maximum(self.axes[axis][:, None] - h / 2, e[None, :-1])
                high = np.minimum(self.axes[axis][:, None] + h / 2, e[None, 1:])
                mass = np.tensordot(mass, np.clip(high - low, 0.0, None) / h, axes=([0], [0]))
            else:
                mass = mass.sum(axis=0)
        order = sorted(features)
        return np.transpose(mass, [order.index(f) for f in features])

    def sample(self, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """Draw independent samples from the stationary density.

        Parameters
        ----------
        n : int
            Number of samples.
        seed : int or np.random.Generator, optional

        Returns
        -------
        np.ndarray, shape [n, dim]
        """
        rng = np.random.default_rng(seed)
        p = self.cell_probabilities.ravel()
        idx = rng.choice(p.size, size=n, p=p / p.sum())
        jitter = (rng.random((n, self.dim)) - 0.5) * np.asarray(self.spacing)
        return self.points[idx] + jitter

    # -- dynamics -------------------------------------------------------------------------------
    def implied_timescales(self, k: int | None = None) -> np.ndarray:
        """Implied timescales :math:`t_k = -1/\\kappa_k`, slowest first (stationary process excluded).

        Returns
        -------
        np.ndarray, shape [k]
        """
        ts = -1.0 / self.rates[1:]
        return ts if k is None else ts[:k]

    def transfer_eigenvalues(self, lag_time: float) -> np.ndarray:
        """Transfer-operator eigenvalues :math:`e^{\\kappa_k \\tau}` at lag time τ, 1 first.

        Returns
        -------
        np.ndarray, shape [k]
        """
        if not lag_time > 0:
            raise InvalidInputError(f"lag time must be positive, got {lag_time}")
        return np.exp(self.rates * lag_time)

    def autocorrelation(self, values: np.ndarray, lag_times: np.ndarray) -> np.ndarray:
        r"""Exact normalised autocorrelation of an observable f,

        .. math::
            C(t) = \frac{\langle (f(x_0) - \bar f)(f(x_t) - \bar f) \rangle_\pi}{\mathrm{Var}_\pi f}
                 = \sum_k e^{\kappa_k t} \frac{c_k^2}{\sum_j c_j^2},

        from the stored eigenpairs, where :math:`c_k` are the coefficients of
        :math:`\sqrt{\pi}(f - \bar f)`. Weight not captured by the stored modes decays at least as
        fast as the fastest stored mode; :meth:`autocorrelation_truncation` bounds it.

        Parameters
        ----------
        values : np.ndarray, shape [n_1, ..., n_d] or [n_cells]
            Observable at the cell centres.
        lag_times : np.ndarray, shape [L]

        Returns
        -------
        np.ndarray, shape [L]
        """
        coeff2, total = self._mode_weights(values)
        lag_times = np.asarray(lag_times, dtype=float)
        return (np.exp(np.outer(lag_times, self.rates[1:])) * coeff2[1:]).sum(-1) / total

    def autocorrelation_truncation(self, values: np.ndarray, lag_times: np.ndarray) -> np.ndarray:
        """Upper bound on the error of :meth:`autocorrelation` from modes not stored, shape [L]."""
        coeff2, total = self._mode_weights(values)
        missing = max(0.0, 1.0 - coeff2.sum() / total)
        return missing * np.exp(self.rates[-1] * np.asarray(lag_times, dtype=float))

    def _mode_weights(self, values: np.ndarray) -> tuple[np.ndarray, float]:
        f = np.asarray(values, dtype=float).ravel()
        p = self.cell_probabilities.ravel()
        if f.size != p.size:
            raise InvalidInputError(f"observable has {f.size} values but the grid has {p.size} cells")
        g = np.sqrt(p) * (f - (p * f).sum())
        total = float(g @ g)
        if total <= 0:
            raise InvalidInputError("observable is constant under the stationary distribution")
        coeff2 = (self.eigenvectors.T @ g) ** 2
        return coeff2, total

    def to_dict(self, n_timescales: int = 4) -> dict:
        """Summary: timescales and stationary-density statistics, JSON-serialisable."""
        p = self.cell_probabilities
        pts = self.points
        mean = (p.ravel()[:, None] * pts).sum(0)
        cov = np.cov(pts.T, aweights=p.ravel(), bias=True).reshape(self.dim, self.dim)
        mode = pts[int(np.argmax(p))]
        return {
            "implied_timescales": self.implied_timescales(n_timescales).tolist(),
            "rates": self.rates[: n_timescales + 1].tolist(),
            "stationary": {
                "mean": mean.tolist(),
                "std": np.sqrt(np.diag(cov)).tolist(),
                "mode": mode.tolist(),
                "min_energy": float(self.energy.min()),
                "mass_in_box_edge_cells": _edge_mass(p),
            },
            "grid": {"shape": list(self.energy.shape), "spacing": list(self.spacing), "box": [list(b) for b in self.box]},
            "kT": self.kT,
            "diffusion": self.diffusion,
        }


def _edge_mass(p: np.ndarray) -> float:
    mask = np.zeros(p.shape, dtype=bool)
    for ax in range(p.ndim):
        idx = [slice(None)] * p.ndim
        idx[ax] = 0
        mask[tuple(idx)] = True
        idx[ax] = -1
        mask[tuple(idx)] = True
    return float(p[mask].sum())


def sqra_generator(energy: np.ndarray, spacing: tuple[float, ...], kT: float, diffusion: float) -> sparse.csr_matrix:
    """The symmetrised SqRA generator S = Π^{1/2} Q Π^{-1/2} on a regular grid.

    Parameters
    ----------
    energy : np.ndarray, shape [n_1, ..., n_d]
        Energy at the cell centres.
    spacing : tuple of float, length d
        Grid spacing per dimension.
    kT, diffusion : float

    Returns
    -------
    scipy.sparse.csr_matrix, shape [n_cells, n_cells]
        Symmetric, negative semi-definite.
    """
    shape = energy.shape
    n = energy.size
    index = np.arange(n).reshape(shape)
    rows, cols, vals = [], [], []
    diag = np.zeros(n)
    for ax in range(energy.ndim):
        lo = [slice(None)] * energy.ndim
        hi = [slice(None)] * energy.ndim
        lo[ax] = slice(0, -1)
        hi[ax] = slice(1, None)
        i = index[tuple(lo)].ravel()
        j = index[tuple(hi)].ravel()
        du = (energy[tuple(hi)] - energy[tuple(lo)]).ravel() / (2.0 * kT)
        du = np.clip(du, -600.0, 600.0)
        k = diffusion / spacing[ax] ** 2
        # exit rates: i->j = k exp(-du), j->i = k exp(+du); symmetric off-diagonal = k
        np.add.at(diag, i, -k * np.exp(-du))
        np.add.at(diag, j, -k * np.exp(du))
        rows += [i, j]
        cols += [j, i]
        vals += [np.full(i.size, k), np.full(i.size, k)]
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(diag)
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


def exact_reference(
    system: System,
    box: Box | None = None,
    n_grid: int | tuple[int, ...] | None = None,
    n_eigen: int = 12,
) -> ExactReference:
    """Compute the exact reference of a low-dimensional system by SqRA.

    Parameters
    ----------
    system : System
        System of dimension ≤ 3 (overdamped dynamics with D = kT/γ).
    box : tuple of (low, high), optional
        Region to discretise; defaults to ``system.box``.
    n_grid : int or tuple of int, optional
        Cells per axis; defaults to :data:`DEFAULT_GRID`.
    n_eigen : int
        Number of eigenpairs (including the stationary one) to compute.

    Returns
    -------
    ExactReference
    """
    dim = system.dim
    if dim > 3:
        raise InvalidInputError(f"exact references are available for dimension ≤ 3, system has {dim}")
    box = box if box is not None else system.box
    if box is None:
        raise InvalidInputError(
            f"system '{system.name}' has no box: give one with --box xmin,xmax[,ymin,ymax]"
        )
    box = tuple((float(lo), float(hi)) for lo, hi in box)
    if len(box) != dim:
        raise InvalidInputError(f"box has {len(box)} ranges but the system is {dim}-dimensional")
    if any(not hi > lo for lo, hi in box):
        raise InvalidInputError(f"box ranges must satisfy low < high, got {box}")
    if n_grid is None:
        n_grid = DEFAULT_GRID[dim]
    shape = (n_grid,) * dim if np.isscalar(n_grid) else tuple(n_grid)
    if len(shape) != dim or any(int(s) < 4 for s in shape):
        raise InvalidInputError(f"grid must have ≥ 4 cells along each of {dim} axes, got {shape}")
    n_cells = int(np.prod([int(s) for s in shape]))
    if n_cells > MAX_GRID_CELLS:
        raise InvalidInputError(f"a grid of {' × '.join(str(int(s)) for s in shape)} = {n_cells:.3g} cells is too large "
                                f"for the exact reference: at most {MAX_GRID_CELLS:.0e} cells")
    n_eigen = int(min(n_eigen, n_cells - 2))
    if n_eigen < 2:
        raise InvalidInputError("n_eigen must be at least 2")

    axes = tuple(lo + (np.arange(n) + 0.5) * (hi - lo) / n for (lo, hi), n in zip(box, shape))
    spacing = tuple(float(a[1] - a[0]) for a in axes)
    if not all(math.isfinite(h) and h * h > 0 and math.isfinite(lo) and math.isfinite(hi) for h, (lo, hi) in zip(spacing, box)):
        raise InvalidInputError(f"box {box} gives grid cells of {spacing} on a grid of {shape}: "
                                "choose a box of finite, representable size")
    mesh = np.meshgrid(*axes, indexing="ij")
    points = torch.as_tensor(np.stack([m.ravel() for m in mesh], -1), dtype=torch.float64)
    with torch.no_grad():
        energy = system.potential.energy(points).detach().cpu().numpy().astype(float).reshape(shape)
    if not np.all(np.isfinite(energy)):
        bad = points[np.flatnonzero(~np.isfinite(energy.ravel()))[0]].tolist()
        raise InvalidInputError(f"energy is not finite on the reference grid, e.g. at x = {bad}; shrink --box")

    log_w = -(energy - energy.min()) / system.kT
    log_z = np.log(np.exp(log_w).sum() * np.prod(spacing))
    log_density = log_w - log_z

    generator = sqra_generator(energy, spacing, system.kT, system.diffusion)
    scale = system.diffusion / min(spacing) ** 2
    if not (math.isfinite(scale) and np.all(np.isfinite(generator.data))):
        raise InvalidInputError(f"the exact reference's rates overflow for kT={system.kT:g}, friction={system.friction:g} "
                                f"and cells of {min(spacing):.3g}: choose physical kT, friction and --box")
    try:
        vals, vecs = sparse_linalg.eigsh(generator.tocsc(), k=n_eigen, sigma=1e-9 * scale, which="LM")
    except (RuntimeError, sparse_linalg.ArpackError) as exc:  # singular or unconverged: degenerate rates
        raise InvalidInputError(f"the exact reference failed numerically for kT={system.kT:g}, "
                                f"friction={system.friction:g} ({exc}); choose physical kT, friction and --box") from None
    order = np.argsort(vals)[::-1]
    vals = np.minimum(vals[order], 0.0)
    vals[0] = 0.0
    vecs = vecs[:, order]
    return ExactReference(axes=axes, energy=energy, log_density=log_density, rates=vals,
                          eigenvectors=vecs, kT=system.kT, diffusion=system.diffusion, box=box)
