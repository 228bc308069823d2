r"""Molecular analysis — the one home for molecular features: backbone dihedrals, chirality, chemical
validity, the Ramachandran free energy and JS divergence, the φ/ψ grid states, and the molecular
section of an analysis (:class:`MolecularSection`). The analysis of a molecule is the one pipeline
(:func:`~itomd.analysis.pipeline.analyze`) run with
:class:`~itomd.analysis.features.BackboneTorsionFeaturizer`, which uses these pieces.

Trajectories of molecules are flattened Cartesian coordinates ``[n_frames, 3·n_atoms]`` in nm
(atom-major, as :mod:`itomd.systems.openmm` stores them); a topology (``mdtraj.Topology``) names the
atoms and bonds.

Choices (measured on 20 ns of alanine-dipeptide MD in vacuum at 300 K, AMBER ff96, 1 ps frames;
see ``docs/architecture.md``):

* Features: φ, ψ in radians on (−π, π] from mdtraj.
* Ramachandran free energy and JS divergence: 36 × 36 bins (10°) on the full torus (−π, π]², so
  the histogram needs no periodic treatment and no frame falls outside.
* MSM states: the cells of a regular 20 × 20 grid on the torus (18°; :func:`dihedral_grid`) that
  hold at least :data:`MIN_STATE_POPULATION` of the frames the states are fitted on; a frame is
  assigned to the nearest such cell centre on the torus (through the embedding
  (cos φ, sin φ, cos ψ, sin ψ)), so rarely visited regions join their populated neighbours instead
  of making near-empty states whose few counts fake slow processes.
* Chemical validity: every bond within :data:`DEFAULT_BOND_TOLERANCE` (relative) of its reference
  length, no pair of atoms ≥ 3 bonds apart closer than :data:`DEFAULT_CLASH_DISTANCE`, every chiral
  Cα with the sign of :data:`L_CHIRALITY_SIGN`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
from deeptime.clustering import ClusterModel

from itomd.analysis._html import html_table
from itomd.validation import check_trajectories
from itomd.analysis.discretize import Discretization
from itomd.analysis.divergence import JSDivergence, js_divergence
from itomd.analysis.fes import FreeEnergySurface, free_energy_surface
from itomd.analysis.sections import FREE_ENERGY_FIGURE, AnalysisView, Section
from itomd.errors import InvalidInputError

if TYPE_CHECKING:
    import matplotlib.axes
    import mdtraj
    from matplotlib.figure import Figure

#: The periodic box of (φ, ψ) in radians.
TORUS: tuple[tuple[float, float], tuple[float, float]] = ((-np.pi, np.pi), (-np.pi, np.pi))
#: Bins per dihedral of the Ramachandran free energy and the φ/ψ JS divergence (10°).
RAMACHANDRAN_BINS = 36
#: Cells per dihedral of the regular MSM grid (18°).
MSM_GRID = 20
#: Smallest fraction of the fitted frames a grid cell needs to be an MSM state. Alanine dipeptide
#: (OBC2, 300 K): with every visited cell a state, two independent 40 ns MD sets gave slowest
#: implied timescales of 9.6 and 29.7 ps at lag 10 ps — the slower one an artefact of cells at
#: φ > 0 with a handful of frames each (stationary weight ≈ 0).
MIN_STATE_POPULATION = 1e-3
#: Sign of the signed volume (N − Cα)·((C − Cα) × (Cβ − Cα)) of an L-amino acid (S configuration for
#: alanine: N → C → Cβ counter-clockwise seen with Hα pointing away). The shipped alanine dipeptide
#: has it (tested).
L_CHIRALITY_SIGN = 1
#: Largest relative deviation of a bond length from its reference. 300 K MD (20,000 frames): heavy-atom
#: bonds fluctuate by 1.8–2.1 % RMS, the largest deviation was 10.3 %; bonds to H are constrained.
DEFAULT_BOND_TOLERANCE = 0.15
#: Smallest distance (nm) between atoms ≥ 3 bonds apart. 300 K MD (20,000 frames): closest 0.170 nm
#: (the C7 hydrogen bond O(Ace)…H(Nme)); 1–4 pairs ≥ 0.196 nm.
DEFAULT_CLASH_DISTANCE = 0.14
#: Frames per block in the vectorised validity checks (bounds memory at ~50 MB).
_BLOCK = 10_000


# -- features -------------------------------------------------------------------------------------
def atom_count(topology: "mdtraj.Topology") -> int:
    """Atoms of an mdtraj ``Topology``; a one-line :class:`InvalidInputError` for anything else."""
    try:
        return int(topology.n_atoms)
    except AttributeError:
        raise InvalidInputError(f"expected an mdtraj Topology, got {type(topology).__name__}") from None


def _positions(trajectories: Sequence[np.ndarray], topology: "mdtraj.Topology") -> list[np.ndarray]:
    """Trajectories [T, 3n] as positions [T, n, 3], with a one-line error for a wrong dimension."""
    n_atoms = atom_count(topology)
    trajectories = check_trajectories(trajectories)
    dim = trajectories[0].shape[1]
    if dim != 3 * n_atoms:
        raise InvalidInputError(f"trajectories are {dim}-dimensional but the topology has {n_atoms} atoms "
                                f"({3 * n_atoms} coordinates)")
    return [t.reshape(len(t), n_atoms, 3) for t in trajectories]


def backbone_dihedrals(trajectories: Sequence[np.ndarray], topology: "mdtraj.Topology") -> list[np.ndarray]:
    """Backbone dihedrals φ and ψ of a molecule with one of each (alanine dipeptide), via mdtraj.

    Parameters
    ----------
    trajectories : list of np.ndarray, each [n_frames_i, 3·n_atoms]
        Flattened positions in nm (a single 2-D array is one trajectory).
    topology : mdtraj.Topology

    Returns
    -------
    list of np.ndarray, each [n_frames_i, 2]
        (φ, ψ) in radians on (−π, π].
    """
    import mdtraj

    positions = _positions(trajectories, topology)
    phi_atoms, _ = mdtraj.compute_phi(mdtraj.Trajectory(positions[0][:1], topology))
    psi_atoms, _ = mdtraj.compute_psi(mdtraj.Trajectory(positions[0][:1], topology))
    if len(phi_atoms) != 1 or len(psi_atoms) != 1:
        raise InvalidInputError(f"φ/ψ features need exactly one φ and one ψ dihedral; the topology has "
                                f"{len(phi_atoms)} and {len(psi_atoms)}")
    quartets = np.concatenate([phi_atoms, psi_atoms])
    return [mdtraj.compute_dihedrals(mdtraj.Trajectory(p, topology), quartets).astype(np.float64)
            for p in positions]


def chiral_centres(topology: "mdtraj.Topology") -> np.ndarray:
    """The chiral Cα atoms (Cα of residues with a Cβ) and their neighbours N, C, Cβ.

    Parameters
    ----------
    topology : mdtraj.Topology

    Returns
    -------
    np.ndarray, shape [n_centres, 4], int
        Atom indices (Cα, N, C, Cβ) per centre, in residue order.
    """
    atom_count(topology)
    rows = []
    for residue in topology.residues:
        names = {atom.name: atom.index for atom in residue.atoms}
        if all(name in names for name in ("CA", "N", "C", "CB")):
            rows.append([names["CA"], names["N"], names["C"], names["CB"]])
    return np.asarray(rows, dtype=int).reshape(-1, 4)


def chirality_signs(coordinates: np.ndarray, topology: "mdtraj.Topology") -> np.ndarray:
    """Sign of the signed volume (N − Cα)·((C − Cα) × (Cβ − Cα)) at each chiral Cα.

    L-amino acids have :data:`L_CHIRALITY_SIGN`; a mirror image flips every sign.

    Parameters
    ----------
    coordinates : np.ndarray, shape [n_frames, 3·n_atoms] (or [3·n_atoms] for one frame)
    topology : mdtraj.Topology

    Returns
    -------
    np.ndarray, shape [n_frames, n_centres] (or [n_centres]), int8 in {−1, 0, 1}
    """
    single = np.ndim(coordinates) == 1
    (positions,) = _positions([np.atleast_2d(coordinates)], topology)
    signs = _signed_volumes(positions, chiral_centres(topology))
    signs = np.sign(signs).astype(np.int8)
    return signs[0] if single else signs


def _signed_volumes(positions: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """[T, n, 3] positions → [T, n_centres] signed volumes (nm³)."""
    ca, n, c, cb = (positions[:, centres[:, k]] for k in range(4))
    return np.einsum("tij,tij->ti", n - ca, np.cross(c - ca, cb - ca))


# -- chemical validity ----------------------------------------------------------------------------
@dataclass
class ValidityResult:
    """Per-frame chemical validity of molecular configurations.

    Attributes
    ----------
    valid : np.ndarray, shape [n_frames], bool
        Frames passing every check (all trajectories concatenated).
    bonds_ok, no_clash, chirality_kept : np.ndarray, shape [n_frames], bool
        The three checks separately.
    n_frames : int
    bond_tolerance : float
        Allowed relative deviation of a bond length.
    clash_distance : float
        Smallest allowed distance (nm) between atoms ≥ 3 bonds apart.
    chirality_reference : np.ndarray or None, shape [n_centres]
        Required sign per chiral centre (None: not checked).
    reference_bond_lengths : np.ndarray, shape [n_bonds]
        Reference length (nm) per bond of :func:`bond_pairs`.
    worst_offenders : dict
        ``bond``: the largest relative bond deviation (atoms, value, frame); ``contact``: the
        closest non-bonded contact (atoms, distance in nm, frame); ``chirality``: frames with each
        centre's sign flipped.
    """

    valid: np.ndarray
    bonds_ok: np.ndarray
    no_clash: np.ndarray
    chirality_kept: np.ndarray
    n_frames: int
    bond_tolerance: float
    clash_distance: float
    chirality_reference: np.ndarray | None
    reference_bond_lengths: np.ndarray
    worst_offenders: dict = field(default_factory=dict)

    @property
    def fraction_valid(self) -> float:
        return float(self.valid.mean())

    @property
    def fraction_bonds_ok(self) -> float:
        return float(self.bonds_ok.mean())

    @property
    def fraction_no_clash(self) -> float:
        return float(self.no_clash.mean())

    @property
    def fraction_chirality_kept(self) -> float:
        return float(self.chirality_kept.mean())

    def to_dict(self) -> dict:
        """JSON-serialisable summary (fractions of frames, thresholds, worst offenders)."""
        return {"fraction_valid": self.fraction_valid, "fraction_bonds_ok": self.fraction_bonds_ok,
                "fraction_no_clash": self.fraction_no_clash, "fraction_chirality_kept": self.fraction_chirality_kept,
                "n_frames": self.n_frames, "bond_tolerance": self.bond_tolerance,
                "clash_distance_nm": self.clash_distance,
                "chirality_reference": None if self.chirality_reference is None
                else [int(s) for s in self.chirality_reference],
                "worst_offenders": self.worst_offenders}


def bond_pairs(topology: "mdtraj.Topology") -> np.ndarray:
    """Bonded atom pairs of the topology, shape [n_bonds, 2], int."""
    atom_count(topology)
    return np.asarray([[a.index, b.index] for a, b in topology.bonds], dtype=int).reshape(-1, 2)


def nonbonded_pairs(topology: "mdtraj.Topology", min_separation: int = 3) -> np.ndarray:
    """Atom pairs separated by at least ``min_separation`` bonds (or unconnected), shape [n_pairs, 2]."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import shortest_path

    n = atom_count(topology)
    bonds = bond_pairs(topology)
    graph = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n, n))
    hops = shortest_path(graph, directed=False, unweighted=True)
    i, j = np.triu_indices(n, k=1)
    keep = hops[i, j] >= min_separation
    return np.stack([i[keep], j[keep]], axis=1)


def bond_lengths(topology: "mdtraj.Topology", coordinates: np.ndarray) -> np.ndarray:
    """Bond lengths (nm) of one structure [3·n_atoms], in the order of :func:`bond_pairs`; shape [n_bonds]."""
    (positions,) = _positions([np.atleast_2d(coordinates)], topology)
    bonds = bond_pairs(topology)
    return np.linalg.norm(positions[0, bonds[:, 0]] - positions[0, bonds[:, 1]], axis=-1)


def _shipped_structure(topology: "mdtraj.Topology") -> np.ndarray | None:
    """The shipped alanine dipeptide's coordinates if ``topology`` is that molecule, else None."""
    from itomd.systems.openmm import molecular_system

    system = molecular_system("ala2")
    shipped = system.topology()
    same = (topology.n_atoms == shipped.n_atoms
            and [a.name for a in topology.atoms] == [a.name for a in shipped.atoms]
            and bond_pairs(topology).tolist() == bond_pairs(shipped).tolist())
    return system.initial_coordinates() if same else None


def chemical_validity(
    trajectories: Sequence[np.ndarray],
    topology: "mdtraj.Topology",
    reference_bond_lengths: np.ndarray | None = None,
    bond_tolerance: float = DEFAULT_BOND_TOLERANCE,
    clash_distance: float = DEFAULT_CLASH_DISTANCE,
    chirality_reference: int | np.ndarray | None = L_CHIRALITY_SIGN,
) -> ValidityResult:
    """Which frames are chemically valid: bonds intact, no clashes, chirality kept.

    A frame is valid if every bond of the topology is within ``bond_tolerance`` (relative) of its
    reference length, no two atoms ≥ 3 bonds apart are closer than ``clash_distance``, and every
    chiral Cα (see :func:`chiral_centres`) has the reference sign. Vectorised in blocks of frames.

    Parameters
    ----------
    trajectories : list of np.ndarray, each [n_frames_i, 3·n_atoms]
        Flattened positions in nm.
    topology : mdtraj.Topology
    reference_bond_lengths : np.ndarray, shape [n_bonds], optional
        Reference length (nm) per bond of :func:`bond_pairs`; default the shipped structure's
        (for alanine dipeptide; other molecules must pass them).
    bond_tolerance : float
        Allowed relative deviation, in (0, 1).
    clash_distance : float
        Smallest allowed distance (nm) between atoms ≥ 3 bonds apart (≥ 0).
    chirality_reference : int, np.ndarray of shape [n_centres], or None
        Required sign(s) of :func:`chirality_signs`; default L; None skips the check.

    Returns
    -------
    ValidityResult
    """
    positions = _positions(trajectories, topology)
    if not 0 < bond_tolerance < 1:
        raise InvalidInputError(f"bond_tolerance must lie in (0, 1), got {bond_tolerance!r}")
    if not clash_distance >= 0:
        raise InvalidInputError(f"clash_distance must be ≥ 0 nm, got {clash_distance!r}")
    bonds = bond_pairs(topology)
    if reference_bond_lengths is None:
        shipped = _shipped_structure(topology)
        if shipped is None:
            raise InvalidInputError("reference_bond_lengths are needed for molecules other than the shipped ala2")
        reference = bond_lengths(topology, shipped)
    else:
        reference = np.asarray(reference_bond_lengths, dtype=float).reshape(-1)
        if reference.shape != (len(bonds),) or not np.all(reference > 0):
            raise InvalidInputError(f"reference_bond_lengths must be {len(bonds)} positive lengths (nm), "
                                    f"got shape {np.shape(reference_bond_lengths)}")
    centres = chiral_centres(topology)
    if chirality_reference is not None:
        signs = np.broadcast_to(np.asarray(chirality_reference), (len(centres),)) if np.ndim(chirality_reference) == 0 \
            else np.asarray(chirality_reference)
        if signs.shape != (len(centres),) or not np.all(np.isin(signs, (-1, 1))):
            raise InvalidInputError(f"chirality_reference must be ±1 or one ±1 per chiral centre ({len(centres)})")
        chirality_reference = signs.astype(np.int8)
    pairs = nonbonded_pairs(topology)

    frames = np.concatenate(positions)
    n_frames = len(frames)
    bonds_ok = np.empty(n_frames, bool)
    no_clash = np.empty(n_frames, bool)
    kept = np.ones(n_frames, bool)
    flips = np.zeros(len(centres), dtype=np.int64)
    worst_bond = (-1.0, 0, 0)  # (relative deviation, bond, frame)
    closest = (np.inf, 0, 0)  # (distance, pair, frame)
    for start in range(0, n_frames, _BLOCK):
        block = frames[start:start + _BLOCK]
        if len(bonds):
            deviation = np.abs(np.linalg.norm(block[:, bonds[:, 0]] - block[:, bonds[:, 1]], axis=-1) / reference - 1)
            bonds_ok[start:start + len(block)] = deviation.max(axis=1) <= bond_tolerance
            t, b = np.unravel_index(np.argmax(deviation), deviation.shape)
            if deviation[t, b] > worst_bond[0]:
                worst_bond = (float(deviation[t, b]), int(b), start + int(t))
        else:
            bonds_ok[start:start + len(block)] = True
        if len(pairs):
            distance = np.linalg.norm(block[:, pairs[:, 0]] - block[:, pairs[:, 1]], axis=-1)
            no_clash[start:start + len(block)] = distance.min(axis=1) >= clash_distance
            t, p = np.unravel_index(np.argmin(distance), distance.shape)
            if distance[t, p] < closest[0]:
                closest = (float(distance[t, p]), int(p), start + int(t))
        else:
            no_clash[start:start + len(block)] = True
        if chirality_reference is not None and len(centres):
            wrong = np.sign(_signed_volumes(block, centres)) != chirality_reference
            kept[start:start + len(block)] = ~wrong.any(axis=1)
            flips += wrong.sum(axis=0)

    atoms = list(topology.atoms)

    def name(i: int) -> str:
        return f"{atoms[i].residue.name}{atoms[i].residue.resSeq}-{atoms[i].name}"

    offenders: dict[str, Any] = {}
    if len(bonds):
        offenders["bond"] = {"atoms": [name(i) for i in bonds[worst_bond[1]]],
                             "relative_deviation": worst_bond[0], "frame": worst_bond[2]}
    if len(pairs):
        offenders["contact"] = {"atoms": [name(i) for i in pairs[closest[1]]], "distance_nm": closest[0],
                                "frame": closest[2]}
    if chirality_reference is not None:
        offenders["chirality"] = {name(int(c)): int(f) for c, f in zip(centres[:, 0], flips)}
    return ValidityResult(valid=bonds_ok & no_clash & kept, bonds_ok=bonds_ok, no_clash=no_clash, chirality_kept=kept,
                          n_frames=n_frames, bond_tolerance=float(bond_tolerance), clash_distance=float(clash_distance),
                          chirality_reference=chirality_reference, reference_bond_lengths=reference,
                          worst_offenders=offenders)


# -- Ramachandran free energy, JS divergence, states ----------------------------------------------
def ramachandran_free_energy(dihedrals: Sequence[np.ndarray], kT: float = 1.0,
                             bins: int = RAMACHANDRAN_BINS) -> FreeEnergySurface:
    """Free energy in (φ, ψ) on ``bins`` × ``bins`` cells of the torus (−π, π]².

    Parameters
    ----------
    dihedrals : list of np.ndarray, each [n_frames_i, 2]
        (φ, ψ) in radians, e.g. from :func:`backbone_dihedrals`.
    kT : float
        Thermal energy (recorded; the free energy is in units of kT).
    bins : int

    Returns
    -------
    FreeEnergySurface
        Features (0, 1) = (φ, ψ).
    """
    return free_energy_surface(np.concatenate(check_trajectories(dihedrals)), kT, bins=bins, range=TORUS)


def ramachandran_js_divergence(p_dihedrals: Sequence[np.ndarray], q_dihedrals: Sequence[np.ndarray],
                               bins: int = RAMACHANDRAN_BINS) -> JSDivergence:
    """JS divergence (nats) between two sets of (φ, ψ), on ``bins`` × ``bins`` cells of the torus.

    Parameters
    ----------
    p_dihedrals, q_dihedrals : list of np.ndarray, each [n_frames_i, 2]
        (φ, ψ) in radians.
    bins : int

    Returns
    -------
    JSDivergence
    """
    return js_divergence(np.concatenate(check_trajectories(p_dihedrals)),
                         np.concatenate(check_trajectories(q_dihedrals)), bins=bins, range=TORUS)


def _torus_embedding(dihedrals: np.ndarray) -> np.ndarray:
    """(φ, ψ) [n, 2] → (cos φ, sin φ, cos ψ, sin ψ) [n, 4]: Euclidean nearest = nearest on the torus."""
    return np.ascontiguousarray(np.concatenate([np.cos(dihedrals), np.sin(dihedrals)], axis=1)[:, [0, 2, 1, 3]])


@dataclass
class TorusDiscretization(Discretization):
    """States on the (φ, ψ) torus: centres given as angles, frames assigned to the nearest centre on
    the torus (deeptime's Euclidean assignment in the embedding (cos φ, sin φ, cos ψ, sin ψ))."""

    angles: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    @property
    def centers(self) -> np.ndarray:
        """State centres (φ, ψ) in radians, shape [n_states, 2]."""
        return self.angles

    @property
    def dim(self) -> int:
        return 2

    def _assign(self, trajectories: list[np.ndarray]) -> list[np.ndarray]:
        return [self.model.transform(_torus_embedding(t)).astype(np.int32) for t in trajectories]


def dihedral_grid(dihedrals: Sequence[np.ndarray], n_cells: int = MSM_GRID,
                  min_population: float = MIN_STATE_POPULATION) -> Discretization:
    """MSM states on the (φ, ψ) torus: the populated cells of a regular ``n_cells`` × ``n_cells`` grid.

    Cells holding at least ``min_population`` of the frames become states; every frame (also of
    other data assigned later) goes to the nearest state centre on the torus.

    Parameters
    ----------
    dihedrals : list of np.ndarray, each [n_frames_i, 2]
        (φ, ψ) in radians; their discrete trajectories are stored in the result.
    n_cells : int
        Cells per dihedral (≥ 2).
    min_population : float
        Smallest fraction of the frames in a cell that makes it a state (0: every visited cell).

    Returns
    -------
    Discretization
        ``method="grid"``; ``centers`` are (φ, ψ) of the states.
    """
    dihedrals = check_trajectories(dihedrals)
    if dihedrals[0].shape[1] != 2:
        raise InvalidInputError(f"the dihedral grid needs (φ, ψ) [n_frames, 2], got {dihedrals[0].shape[1]} columns")
    if int(n_cells) != n_cells or n_cells < 2:
        raise InvalidInputError(f"need an integer number of grid cells ≥ 2, got {n_cells!r}")
    if not 0.0 <= min_population < 1.0:
        raise InvalidInputError(f"min_population must be in [0, 1), got {min_population!r}")
    n_cells = int(n_cells)
    width = 2 * np.pi / n_cells
    frames = np.concatenate(dihedrals)
    cell = np.clip(np.floor((frames + np.pi) / width).astype(int), 0, n_cells - 1)
    counts = np.bincount(cell[:, 0] * n_cells + cell[:, 1], minlength=n_cells**2)
    keep = np.flatnonzero(counts >= max(min_population * len(frames), 1))
    axis = -np.pi + (np.arange(n_cells) + 0.5) * width
    angles = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)[keep]
    model = ClusterModel(cluster_centers=_torus_embedding(angles), metric="euclidean")
    discretization = TorusDiscretization(method="grid", model=model, dtrajs=[], angles=angles)
    discretization.dtrajs = discretization._assign(dihedrals)
    return discretization


def sin_phi(dihedrals: np.ndarray) -> np.ndarray:
    """sin φ of (φ, ψ) frames [n, 2] → [n]: +1-ish in C7ax/αL (φ > 0), −1-ish in C7eq/β (φ < 0),
    so its autocorrelation follows the slow φ transition."""
    return np.sin(dihedrals[:, 0])


# -- the molecular section of an analysis --------------------------------------------------------
@dataclass
class MolecularSection(Section):
    """What an analysis of a molecule adds (JSON key ``"molecular"``): chemical validity, and after
    :func:`~itomd.analysis.pipeline.compare` the comparison data's validity and Ramachandran free energy.

    Added by :class:`~itomd.analysis.features.BackboneTorsionFeaturizer`. In the report it shows the
    chemical-validity table and the Ramachandran free energy (next to the comparison's) in place of
    the plain free-energy plot.

    Attributes
    ----------
    topology : mdtraj.Topology
    validity : ValidityResult
        Of the analysed frames.
    comparison_free_energy : FreeEnergySurface or None
        The comparison data's Ramachandran free energy on the same bins.
    comparison_validity : ValidityResult or None
        The comparison data's validity (MD: the baseline the thresholds were set on), with the same
        thresholds and reference bond lengths.
    """

    key: ClassVar[str] = "molecular"
    replaces_figures: ClassVar[tuple[str, ...]] = (FREE_ENERGY_FIGURE,)

    topology: Any
    validity: ValidityResult
    comparison_free_energy: FreeEnergySurface | None = None
    comparison_validity: ValidityResult | None = None

    def to_dict(self) -> dict:
        return {"features": ["phi", "psi"], "units": "radians", "validity": self.validity.to_dict(),
                "comparison_validity": None if self.comparison_validity is None else self.comparison_validity.to_dict(),
                "comparison_free_energy": None if self.comparison_free_energy is None
                else self.comparison_free_energy.to_dict()}

    def add_comparison(self, trajectories: Sequence[np.ndarray], features: Sequence[np.ndarray], kT: float) -> None:
        """The comparison's Ramachandran free energy (``features`` are its (φ, ψ)) and chemical validity."""
        self.comparison_free_energy = ramachandran_free_energy(features, kT)
        v = self.validity
        self.comparison_validity = chemical_validity(
            trajectories, self.topology, bond_tolerance=v.bond_tolerance, clash_distance=v.clash_distance,
            chirality_reference=v.chirality_reference, reference_bond_lengths=v.reference_bond_lengths)

    def summary(self) -> str:
        v = self.validity
        return (f"φ/ψ features; chemically valid frames {v.fraction_valid:.2%} (bonds {v.fraction_bonds_ok:.2%}, "
                f"no clash {v.fraction_no_clash:.2%}, chirality {v.fraction_chirality_kept:.2%})")

    def report_html(self, result: AnalysisView) -> str:
        """Fractions of chemically valid frames (and the comparison's, e.g. MD, as the baseline)."""
        columns = [("this data", self.validity)]
        if self.comparison_validity is not None:
            columns.append((result.comparison.label, self.comparison_validity))
        v = self.validity
        rows = [(name, *(f"{getattr(c, attribute):.3%}" for _, c in columns)) for name, attribute in (
            ("valid (all checks)", "fraction_valid"),
            (f"bonds within {v.bond_tolerance:.0%} of reference", "fraction_bonds_ok"),
            (f"no atoms ≥ 3 bonds apart closer than {v.clash_distance:g} nm", "fraction_no_clash"),
            ("chirality kept (L)", "fraction_chirality_kept"))]
        rows.append(("frames", *(f"{c.n_frames}" for _, c in columns)))
        worst = v.worst_offenders
        if "bond" in worst:
            rows.append(("worst bond (this data)", f"{'–'.join(worst['bond']['atoms'])}: "
                         f"{worst['bond']['relative_deviation']:.1%}", *([""] * (len(columns) - 1))))
        if "contact" in worst:
            rows.append(("closest contact (this data)", f"{'–'.join(worst['contact']['atoms'])}: "
                         f"{worst['contact']['distance_nm']:.3f} nm", *([""] * (len(columns) - 1))))
        return "<h2>Chemical validity</h2>" + html_table(["check", *(name for name, _ in columns)], rows) + "\n"

    def report_figures(self, result: AnalysisView) -> list[tuple[str, "Figure"]]:
        """The Ramachandran free energy of the analysed data, next to the comparison's when there is one."""
        from matplotlib.figure import Figure

        other = self.comparison_free_energy
        label = "this data" if other is None else f"this data vs {result.comparison.label}"
        fig = Figure(figsize=(5.0 if other is None else 10.0, 4.2))
        axes = fig.subplots(1, 1 if other is None else 2, squeeze=False)[0]
        plot_ramachandran(result.free_energy, ax=axes[0], title=f"this data ({result.free_energy.n_samples} frames)")
        if other is not None:
            plot_ramachandran(other, ax=axes[1], title=f"{result.comparison.label} ({other.n_samples} frames)")
        return [(f"Ramachandran free energy in kT ({label}; φ/ψ, 10° bins)", fig)]


def plot_ramachandran(fes: FreeEnergySurface, ax: "matplotlib.axes.Axes | None" = None, title: str = "",
                      max_free_energy: float = 10.0) -> "matplotlib.axes.Axes":
    """Filled contours of a Ramachandran free energy (φ, ψ in degrees, F in kT up to ``max_free_energy``).

    Parameters
    ----------
    fes : FreeEnergySurface
        From :func:`ramachandran_free_energy`.
    ax : matplotlib.axes.Axes, optional
    title : str
    max_free_energy : float
        Top of the colour scale (in units of kT).

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    if ax is None:
        ax = plt.subplots(figsize=(5.0, 4.2))[1]
    phi, psi = (np.degrees(c) for c in fes.centers)
    top = max_free_energy
    shown = np.where(np.isfinite(fes.free_energy), np.minimum(fes.free_energy, top), np.nan)
    filled = ax.contourf(phi, psi, shown.T, levels=np.linspace(0.0, top, 11), cmap="viridis")
    ax.figure.colorbar(filled, ax=ax, label="free energy (kT)")
    ax.set_xlim(-180, 180)
    ax.set_ylim(-180, 180)
    ax.set_xticks(range(-180, 181, 90))
    ax.set_yticks(range(-180, 181, 90))
    ax.set_xlabel("φ (degrees)")
    ax.set_ylabel("ψ (degrees)")
    ax.set_title(title or f"Ramachandran free energy ({fes.n_samples} frames)", fontsize=10)
    return ax
