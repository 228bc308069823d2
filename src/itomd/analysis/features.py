r"""Featurizers: what an analysis looks at — the one home for the differences between kinds of data.

:func:`~itomd.analysis.pipeline.analyze` is one pipeline for every system; a :class:`Featurizer`
decides what differs:

* the features of each frame (:meth:`Featurizer.transform`),
* the MSM states on them (:meth:`Featurizer.discretize`),
* the bins and range of the free energy and the JS divergence, and which features they use,
* the observable of the autocorrelation,
* whether an exact reference applies, and
* the sections it adds to the result (:meth:`Featurizer.sections`).

Two implementations ship: :class:`CoordinateFeaturizer` (the raw coordinates: toy systems and any
array data) and :class:`BackboneTorsionFeaturizer` (φ/ψ of a molecule, see
:mod:`itomd.analysis.molecular`). :meth:`itomd.representation.Representation.featurizer` picks one for a system.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import numpy as np

from itomd.validation import check_trajectories
from itomd.analysis.correlation import Observable
from itomd.analysis.discretize import Discretization, discretize
from itomd.analysis.molecular import (MSM_GRID, RAMACHANDRAN_BINS, TORUS, MolecularSection, atom_count,
                                      backbone_dihedrals, chemical_validity, dihedral_grid, sin_phi)
from itomd.analysis.sections import Section
from itomd.errors import InvalidInputError

if TYPE_CHECKING:
    import mdtraj

    from itomd.analysis._histogram import Range

#: JSON keys of the sections the shipped featurizers add. Every result's dictionary has each of
#: them (null where its featurizer added no such section), so readers see one layout for every system.
SECTION_KEYS: tuple[str, ...] = (MolecularSection.key,)


class Featurizer(ABC):
    """How :func:`~itomd.analysis.pipeline.analyze` turns trajectories into what it analyses.

    Attributes
    ----------
    name : str
        What the features are, for notes and messages.
    histogram_bins : int, sequence of int or None
        Bins of the free energy and JS divergence (None: the defaults of
        :func:`~itomd.analysis.fes.free_energy_surface` and :func:`~itomd.analysis.divergence.js_divergence`).
    histogram_range : sequence of (low, high) or None
        Their range (None: the reference's box or the data's range).
    observable : callable or None
        Observable of the autocorrelation on features [n, n_features] → [n] (None: the first feature).
    supports_reference : bool
        Whether the features are the system's coordinates, so that an exact reference (a density
        and dynamics on those coordinates) applies.
    """

    name: ClassVar[str]
    supports_reference: ClassVar[bool] = False
    histogram_bins: int | Sequence[int] | None = None
    histogram_range: "Range | None" = None
    observable: Observable | None = None

    @abstractmethod
    def transform(self, trajectories: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Features of every frame.

        Parameters
        ----------
        trajectories : list of np.ndarray, each [n_frames_i, dim]

        Returns
        -------
        list of np.ndarray, each [n_frames_i, n_features], float64
        """

    @abstractmethod
    def discretize(self, features: Sequence[np.ndarray], n_states: int | None = None, seed: int = 0) -> Discretization:
        """MSM states fitted on ``features`` (their discrete trajectories stored in the result).

        Parameters
        ----------
        features : list of np.ndarray, each [n_frames_i, n_features]
        n_states : int, optional
            Number of states where the featurizer lets the caller choose it.
        seed : int

        Returns
        -------
        Discretization
            Its ``transform`` takes features of other data (e.g. MD to compare with).
        """

    def histogram_features(self, n_features: int) -> tuple[int, ...]:
        """Features of the free energy and the JS divergence: all if at most two, else the first two."""
        return tuple(range(min(n_features, 2)))

    def note(self, n_features: int) -> str | None:
        """What this featurizer chose, for the result's notes (None: nothing to say)."""
        return None

    def sections(self, trajectories: Sequence[np.ndarray], features: Sequence[np.ndarray]) -> list[Section]:
        """Sections this featurizer adds to the result (none by default).

        Parameters
        ----------
        trajectories : list of np.ndarray, each [n_frames_i, dim]
            As given to :func:`~itomd.analysis.pipeline.analyze`.
        features : list of np.ndarray, each [n_frames_i, n_features]
            Their features from :meth:`transform`.
        """
        return []


@dataclass(frozen=True)
class CoordinateFeaturizer(Featurizer):
    """The raw coordinates: states by :func:`~itomd.analysis.discretize.discretize` (a uniform grid in
    1-D, seeded k-means otherwise), the free energy and JS divergence on the first two coordinates,
    the autocorrelation of the first coordinate. Adds no sections."""

    name: ClassVar[str] = "coordinates"
    supports_reference: ClassVar[bool] = True

    def transform(self, trajectories: Sequence[np.ndarray]) -> list[np.ndarray]:
        return check_trajectories(trajectories)

    def discretize(self, features: Sequence[np.ndarray], n_states: int | None = None, seed: int = 0) -> Discretization:
        return discretize(features, n_states=n_states, seed=seed)

    def note(self, n_features: int) -> str | None:
        if n_features > 2:
            return f"free energy and JS divergence on the first two of {n_features} coordinates"
        return None


@dataclass(frozen=True, eq=False)
class BackboneTorsionFeaturizer(Featurizer):
    """Backbone torsions φ, ψ of a molecule (alanine dipeptide) — see :mod:`itomd.analysis.molecular`.

    Trajectories are flattened positions [n_frames, 3·n_atoms] in nm. Features: (φ, ψ) in radians
    from mdtraj. MSM states: the populated cells of a regular ``n_cells`` × ``n_cells`` grid on the
    torus (:func:`~itomd.analysis.molecular.dihedral_grid`). Free energy and JS divergence: 36 × 36
    bins on the torus (−π, π]². Autocorrelation: sin φ (the slow φ transition). Adds a
    :class:`~itomd.analysis.molecular.MolecularSection` with the chemical validity of every frame.

    Parameters
    ----------
    topology : mdtraj.Topology
    n_cells : int
        Grid cells per dihedral of the MSM states.
    validity_options : mapping, optional
        Keyword arguments of :func:`~itomd.analysis.molecular.chemical_validity`.
    """

    name: ClassVar[str] = "backbone torsions"
    histogram_bins: ClassVar[int] = RAMACHANDRAN_BINS
    histogram_range: ClassVar["Range"] = TORUS
    observable: ClassVar[Observable] = staticmethod(sin_phi)

    topology: "mdtraj.Topology"
    n_cells: int = MSM_GRID
    validity_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        atom_count(self.topology)  # one-line error for anything but an mdtraj Topology

    def transform(self, trajectories: Sequence[np.ndarray]) -> list[np.ndarray]:
        return backbone_dihedrals(trajectories, self.topology)

    def discretize(self, features: Sequence[np.ndarray], n_states: int | None = None, seed: int = 0) -> Discretization:
        if n_states is not None:
            raise InvalidInputError(f"a number of states (--n-states) does not apply to molecules: their MSM states "
                                    f"are a {self.n_cells}×{self.n_cells} φ/ψ grid")
        return dihedral_grid(features, self.n_cells)

    def note(self, n_features: int) -> str | None:
        return (f"molecular features: backbone φ/ψ (radians); MSM states a {self.n_cells}×{self.n_cells} grid on "
                f"the torus; free energy and JS divergence on {RAMACHANDRAN_BINS}×{RAMACHANDRAN_BINS} bins")

    def sections(self, trajectories: Sequence[np.ndarray], features: Sequence[np.ndarray]) -> list[Section]:
        validity = chemical_validity(trajectories, self.topology, **dict(self.validity_options or {}))
        return [MolecularSection(topology=self.topology, validity=validity)]
