r"""Featurizers: what an analysis looks at — the one home for the differences between kinds of data.

:func:`~itomd.analysis.pipeline.analyze` is one pipeline for every system; a :class:`Featurizer`
decides what differs:

* the features of each frame (:meth:`Featurizer.transform`),
* the MSM states on them (:meth:`Featurizer.discretize`),
* the bins and range of the free energy and the JS divergence, and which features they use,
* the observable of the autocorrelation,
* whether an exact reference applies, and
* the sections it adds to the result (:meth:`Featurizer.sections`).

Three implementations ship: :class:`CoordinateFeaturizer` (the raw coordinates: toy systems and any
array data), :class:`BackboneTorsionFeaturizer` (φ/ψ of a molecule with one of each, alanine
dipeptide) and :class:`TorsionTICAFeaturizer` (the TICA plane of every φ, ψ, χ₁ and ligand torsion of
any other molecule, or of atom-pair distances where it has fewer than two torsions); see
:mod:`itomd.analysis.molecular`. :func:`torsion_featurizer` picks one of the two for a topology,
:meth:`itomd.representation.Representation.featurizer` one for a system.

A featurizer may be fitted to data (:meth:`Featurizer.fit`; the TICA model):
:func:`~itomd.analysis.pipeline.analyze` fits an unfitted one on the analysed data, and
:func:`~itomd.analysis.pipeline.compare` refits it on the comparison data (the reference, e.g. MD)
and redoes the analysis on that plane, so that both data sets are projected by the reference's model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

import numpy as np

from itomd.validation import check_trajectories
from itomd.analysis.correlation import Observable
from itomd.analysis.discretize import Discretization, check_n_states, discretize
from itomd.analysis.energy import EnergyFunction, EnergySection, energy_sections
from itomd.analysis.mfpt import Basins, ramachandran_basins
from itomd.analysis.molecular import (DEFAULT_TORSION_LAG, MSM_GRID, RAMACHANDRAN_BINS, TORUS, MolecularSection,
                                      TORSION_SYMBOLS, atom_count, backbone_dihedrals, chemical_validity,
                                      dihedral_grid, sin_phi, slow_input_features, slow_input_labels, slow_inputs,
                                      torsion_set)
from itomd.analysis.sections import Section
from itomd.errors import InvalidInputError

if TYPE_CHECKING:
    import mdtraj

    from itomd.analysis._histogram import Range

#: JSON keys of the sections the shipped featurizers add. Every result's dictionary has each of
#: them (null where its featurizer added no such section), so readers see one layout for every system.
SECTION_KEYS: tuple[str, ...] = (MolecularSection.key, EnergySection.key)


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

    @property
    def needs_fit(self) -> bool:
        """Whether :meth:`fit` must run before :meth:`transform` (False: nothing to fit)."""
        return False

    @property
    def refit_on_comparison(self) -> bool:
        """Whether :func:`~itomd.analysis.pipeline.compare` refits this featurizer on the comparison
        data (True for a model fitted by ``analyze`` on the analysed data)."""
        return False

    def fit(self, trajectories: Sequence[np.ndarray], label: str = "the analysed data",
            provisional: bool = False) -> "Featurizer":
        """This featurizer fitted on ``trajectories`` (a new object; stateless featurizers return themselves).

        Parameters
        ----------
        trajectories : list of np.ndarray, each [n_frames_i, dim]
        label : str
            What the data are, for notes ("MD").
        provisional : bool
            Fitted for want of a reference (by ``analyze`` on the analysed data):
            :func:`~itomd.analysis.pipeline.compare` refits it on its data.
        """
        return self

    def histogram_features(self, n_features: int) -> tuple[int, ...]:
        """Features of the free energy and the JS divergence: all if at most two, else the first two."""
        return tuple(range(min(n_features, 2)))

    def note(self, n_features: int) -> str | None:
        """What this featurizer chose, for the result's notes (None: nothing to say)."""
        return None

    def basins(self, discretization: Discretization) -> "Basins | None":
        """Named basins of the MSM states for first passage times (None: the MSM's PCCA+ sets,
        :func:`~itomd.analysis.mfpt.pcca_basins`)."""
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
    """Backbone torsions φ, ψ of a molecule with one of each (alanine dipeptide) — see
    :mod:`itomd.analysis.molecular`.

    Trajectories are flattened positions [n_frames, 3·n_atoms] in nm. Features: (φ, ψ) in radians
    from mdtraj. MSM states: the populated cells of a regular ``n_cells`` × ``n_cells`` grid on the
    torus (:func:`~itomd.analysis.molecular.dihedral_grid`). Free energy and JS divergence: 36 × 36
    bins on the torus (−π, π]². Autocorrelation: sin φ (the slow φ transition). Adds a
    :class:`~itomd.analysis.molecular.MolecularSection` with the chemical validity of every frame
    and the torsions (per-torsion JS divergences and PCCA+ populations once compared).

    Parameters
    ----------
    topology : mdtraj.Topology
    n_cells : int
        Grid cells per dihedral of the MSM states.
    validity_options : mapping, optional
        Keyword arguments of :func:`~itomd.analysis.molecular.chemical_validity`.
    reference_structure : np.ndarray, shape [3·n_atoms], optional
        The reference of the validity checks (default: the shipped structure of alanine dipeptide).
    energy : callable, optional
        The system's :meth:`~itomd.systems.System.analysis_energies`: adds an
        :class:`~itomd.analysis.energy.EnergySection` (potential-energy distribution).
    """

    name: ClassVar[str] = "backbone torsions"
    histogram_bins: ClassVar[int] = RAMACHANDRAN_BINS
    histogram_range: ClassVar["Range"] = TORUS
    observable: ClassVar[Observable] = staticmethod(sin_phi)

    topology: "mdtraj.Topology"
    n_cells: int = MSM_GRID
    validity_options: Mapping[str, Any] | None = None
    reference_structure: np.ndarray | None = None
    energy: EnergyFunction | None = None

    def __post_init__(self) -> None:
        atom_count(self.topology)  # one-line error for anything but an mdtraj Topology

    def transform(self, trajectories: Sequence[np.ndarray]) -> list[np.ndarray]:
        return backbone_dihedrals(trajectories, self.topology)

    def discretize(self, features: Sequence[np.ndarray], n_states: int | None = None, seed: int = 0) -> Discretization:
        if n_states is not None:
            raise InvalidInputError(f"a number of states (--n-states) does not apply to molecules: their MSM states "
                                    f"are a {self.n_cells}×{self.n_cells} φ/ψ grid")
        return dihedral_grid(features, self.n_cells)

    def basins(self, discretization: Discretization) -> Basins:
        """αR, β/PII and αL by the (φ, ψ) of each grid state (:func:`~itomd.analysis.mfpt.ramachandran_basins`)."""
        return ramachandran_basins(discretization.centers)

    def note(self, n_features: int) -> str | None:
        return (f"molecular features: backbone φ/ψ (radians); MSM states a {self.n_cells}×{self.n_cells} grid on "
                f"the torus; free energy and JS divergence on {RAMACHANDRAN_BINS}×{RAMACHANDRAN_BINS} bins")

    def sections(self, trajectories: Sequence[np.ndarray], features: Sequence[np.ndarray]) -> list[Section]:
        validity = chemical_validity(trajectories, self.topology, **_validity_options(self))
        torsions = torsion_set(self.topology)
        return [MolecularSection(topology=self.topology, validity=validity, plane="ramachandran", torsions=torsions,
                                 torsion_angles=torsions.compute(trajectories, self.topology), features=list(features),
                                 discretize=self.discretize), *energy_sections(self.energy, trajectories)]


def _validity_options(featurizer: "BackboneTorsionFeaturizer | TorsionTICAFeaturizer") -> dict[str, Any]:
    options = dict(featurizer.validity_options or {})
    if featurizer.reference_structure is not None:
        options.setdefault("reference_structure", featurizer.reference_structure)
    return options


def tic1(features: np.ndarray) -> np.ndarray:
    """The first TICA component of TICA-plane features [n, 2] → [n]: the slowest linear process."""
    return features[:, 0]


#: Bins per TICA component of the free energy and JS divergence on the TICA plane.
TICA_BINS = 50
#: Margin added on each side of the fitted data's extent on the TICA plane (fraction of the extent):
#: the histogram range of the free energies and JS divergences; frames beyond it count as "outside".
TICA_RANGE_MARGIN = 0.1


@dataclass(frozen=True, eq=False)
class TorsionTICAFeaturizer(Featurizer):
    """The TICA plane of every torsion of a molecule: the MSM space of molecules other than one φ/ψ
    pair — see :mod:`itomd.analysis.molecular`.

    Input features (:func:`~itomd.analysis.molecular.slow_input_features`): (cos, sin) of every φ, ψ,
    χ₁ and rotatable-bond torsion of a ligand (:func:`~itomd.analysis.molecular.torsion_set`); a
    molecule with fewer than two torsions (a rigid ligand, a host with its guest) gets atom-pair
    distances instead (:func:`~itomd.analysis.molecular.distance_pairs`).
    TICA (deeptime, kinetic-map scaling) at ``lag`` frames — :data:`~itomd.analysis.molecular.DEFAULT_TORSION_LAG`
    by default, capped at a tenth of the longest fitted trajectory — projects them to the two
    leading components, the *TICA plane*; its features are those two components. MSM states: deeptime
    k-means on the plane (:data:`~itomd.analysis.discretize.DEFAULT_N_STATES` unless given). Free
    energy and JS divergence: :data:`TICA_BINS` × :data:`TICA_BINS` bins on the fitted data's extent
    (plus :data:`TICA_RANGE_MARGIN`). Autocorrelation: the first TICA component. Adds a
    :class:`~itomd.analysis.molecular.MolecularSection` (validity, torsions, TICA model).

    The TICA model is fitted by :meth:`fit`: :func:`~itomd.analysis.pipeline.analyze` fits it on the
    analysed data, :func:`~itomd.analysis.pipeline.compare` refits it on the comparison (the
    reference, MD) so that both are projected by the reference's model; fit it on the reference
    first (``featurizer.fit(md)``) to analyse on that plane directly.

    Parameters
    ----------
    topology : mdtraj.Topology
    lag : int
        TICA lag in frames (before the cap).
    validity_options : mapping, optional
        Keyword arguments of :func:`~itomd.analysis.molecular.chemical_validity`.
    reference_structure : np.ndarray, shape [3·n_atoms], optional
        The reference of the validity checks (the system's start structure).
    energy : callable, optional
        The system's :meth:`~itomd.systems.System.analysis_energies`: adds an
        :class:`~itomd.analysis.energy.EnergySection` (potential-energy distribution).
    model : deeptime TransformerModel, optional
        The fitted TICA model (set by :meth:`fit`).
    fitted_on : str, optional
        What the model was fitted on.
    fitted_lag : int, optional
        The lag (frames) it was fitted at.
    histogram_range : ((low, high), (low, high)), optional
        The plane's histogram range (set by :meth:`fit`).
    provisional : bool
        Fitted by ``analyze`` on the analysed data for want of a reference (``compare`` refits it).
    """

    name: ClassVar[str] = "molecular TICA"
    histogram_bins: ClassVar[int] = TICA_BINS
    observable: ClassVar[Observable] = staticmethod(tic1)

    topology: "mdtraj.Topology"
    lag: int = DEFAULT_TORSION_LAG
    validity_options: Mapping[str, Any] | None = None
    reference_structure: np.ndarray | None = None
    model: Any = None
    fitted_on: str | None = None
    fitted_lag: int | None = None
    energy: EnergyFunction | None = None
    histogram_range: "Range | None" = None
    provisional: bool = False

    def __post_init__(self) -> None:
        atom_count(self.topology)
        if isinstance(self.lag, bool) or not isinstance(self.lag, (int, np.integer)) or self.lag < 1:
            raise InvalidInputError(f"the TICA lag must be an integer number of frames ≥ 1, got {self.lag!r}")
        slow_inputs(self.topology)  # one line if the molecule has nothing to project

    @property
    def needs_fit(self) -> bool:
        return self.model is None

    @property
    def refit_on_comparison(self) -> bool:
        return self.provisional

    def input_features(self, trajectories: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The TICA inputs (:func:`~itomd.analysis.molecular.slow_input_features`): (cos, sin) of every
        torsion, [n_frames_i, 2·n_torsions] per trajectory (all cosines, then all sines), or for a
        molecule with fewer than two torsions its atom-pair distances [n_frames_i, n_pairs]."""
        return slow_input_features(trajectories, self.topology)

    def fit(self, trajectories: Sequence[np.ndarray], label: str = "the analysed data",
            provisional: bool = False) -> "TorsionTICAFeaturizer":
        from dataclasses import replace

        inputs = self.input_features(check_trajectories(trajectories))
        model, lag = fit_tica_plane(inputs, self.lag)
        projected = np.concatenate([model.transform(t) for t in inputs])
        if projected.shape[1] < 2:
            raise InvalidInputError("the TICA inputs of the fitted data span fewer than two TICA components")
        low, high = projected.min(axis=0), projected.max(axis=0)
        margin = TICA_RANGE_MARGIN * np.maximum(high - low, 1e-12)
        extent = tuple((float(a), float(b)) for a, b in zip(low - margin, high + margin))
        return replace(self, model=model, fitted_on=str(label), fitted_lag=lag, histogram_range=extent,
                       provisional=bool(provisional))

    def transform(self, trajectories: Sequence[np.ndarray]) -> list[np.ndarray]:
        if self.model is None:
            raise InvalidInputError("the TICA featurizer is not fitted: call fit(reference trajectories) first")
        return [np.asarray(self.model.transform(t), dtype=np.float64)
                for t in self.input_features(check_trajectories(trajectories))]

    def discretize(self, features: Sequence[np.ndarray], n_states: int | None = None, seed: int = 0) -> Discretization:
        return discretize(features, method="kmeans", n_states=check_n_states(n_states), seed=seed)

    def note(self, n_features: int) -> str | None:
        return (f"molecular features: the TICA plane (2 leading components, kinetic map) of {self.inputs_described()}, "
                f"lag {self.fitted_lag} frames, fitted on {self.fitted_on}; MSM states k-means "
                f"on the plane; free energy and JS divergence on {TICA_BINS}×{TICA_BINS} bins")

    def inputs_described(self) -> str:
        """What the TICA inputs are, in words ("(cos, sin) of 8 torsions (φ/ψ/χ₁)", "45 atom-pair distances ...")."""
        torsions, pairs = slow_inputs(self.topology)
        if torsions is None:
            return (f"{len(pairs)} atom-pair distances (heavy atoms ≥ 3 bonds apart or in different molecules; "
                    "the molecule has fewer than two torsions)")
        kinds = "/".join(TORSION_SYMBOLS[k] for k in dict.fromkeys(torsions.kinds))
        return f"(cos, sin) of {len(torsions)} torsions ({kinds})"

    def tica_description(self) -> dict[str, Any]:
        """The TICA model for JSON: lag, input features, what it was fitted on, leading timescales (frames)."""
        timescales = np.asarray(self.model.timescales(lagtime=self.fitted_lag), dtype=float)[:2]
        return {"lag_frames": self.fitted_lag, "dim": 2, "scaling": "kinetic_map", "fitted_on": self.fitted_on,
                "input_features": slow_input_labels(self.topology), "inputs": self.inputs_described(),
                "timescales_frames": [float(t) if np.isfinite(t) else None for t in timescales],
                "histogram_range": [list(r) for r in self.histogram_range], "bins": [TICA_BINS, TICA_BINS]}

    def sections(self, trajectories: Sequence[np.ndarray], features: Sequence[np.ndarray]) -> list[Section]:
        validity = chemical_validity(trajectories, self.topology, **_validity_options(self))
        torsions = torsion_set(self.topology)
        angles = torsions.compute(trajectories, self.topology) if len(torsions) else []
        return [MolecularSection(topology=self.topology, validity=validity, plane="tica", torsions=torsions,
                                 torsion_angles=angles, features=list(features),
                                 discretize=self.discretize, lag=self.fitted_lag, histogram_bins=TICA_BINS,
                                 histogram_range=self.histogram_range, tica=self.tica_description()),
                *energy_sections(self.energy, trajectories)]


def torsion_featurizer(topology: "mdtraj.Topology", reference_structure: np.ndarray | None = None,
                       **options: Any) -> Featurizer:
    """The analysis of a molecule: :class:`BackboneTorsionFeaturizer` (the φ/ψ grid, kept exactly as it
    was for alanine dipeptide) for a molecule with exactly one φ and one ψ, else
    :class:`TorsionTICAFeaturizer` (the TICA plane of every φ, ψ, χ₁).

    Parameters
    ----------
    topology : mdtraj.Topology
    reference_structure : np.ndarray, shape [3·n_atoms], optional
        The reference of the chemical-validity checks.
    **options
        Further parameters of the chosen featurizer.
    """
    atom_count(topology)
    torsions = torsion_set(topology, ("phi", "psi"))
    if torsions.count("phi") == 1 and torsions.count("psi") == 1:
        return BackboneTorsionFeaturizer(topology, reference_structure=reference_structure, **options)
    return TorsionTICAFeaturizer(topology, reference_structure=reference_structure, **options)


def fit_tica_plane(inputs: Sequence[np.ndarray], lag: int) -> tuple[Any, int]:
    """deeptime's TICA (two components, kinetic map) fitted on ``inputs`` at ``lag`` frames, or at a
    tenth of the longest trajectory where that is shorter; trajectories no longer than the lag are
    left out of the fit.

    Parameters
    ----------
    inputs : sequence of np.ndarray, each [n_frames_i, k]
    lag : int

    Returns
    -------
    (deeptime.decomposition.CovarianceKoopmanModel, int)
        The fitted model and the lag used.
    """
    from deeptime.decomposition import TICA

    lag = int(max(1, min(lag, max(len(t) for t in inputs) // 10)))
    usable = [t for t in inputs if len(t) > lag]
    if not usable:
        raise InvalidInputError(f"TICA needs trajectories longer than its lag ({lag} frames)")
    return TICA(lagtime=lag, dim=2, scaling="kinetic_map").fit(usable).fetch_model(), lag


#: Lag (frames) of the TICA that :func:`slow_plane` projects on, unless the trajectories are shorter.
SLOW_PLANE_LAG = 10


def slow_plane(coordinates: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The slow coordinates themselves where they are one or two, else their plane of the two slowest
    TICA components (:func:`fit_tica_plane` at :data:`SLOW_PLANE_LAG` frames): where
    :func:`~itomd.data.pairs.balanced_start_weights` histograms a system's
    :meth:`~itomd.representation.Representation.slow_coordinates`.

    Parameters
    ----------
    coordinates : sequence of np.ndarray, each [n_frames_i, k]

    Returns
    -------
    list of np.ndarray, each [n_frames_i, min(k, 2)]
    """
    coordinates = [np.asarray(c, dtype=np.float64) for c in coordinates]
    if coordinates[0].shape[1] <= 2:
        return coordinates
    model, _ = fit_tica_plane(coordinates, SLOW_PLANE_LAG)
    return [np.asarray(model.transform(c), dtype=np.float64) for c in coordinates]
