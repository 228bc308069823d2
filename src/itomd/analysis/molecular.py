r"""Molecular analysis — the one home for molecular features of any molecule: torsions (every φ, ψ,
χ₁, and ω of the peptide bonds), stereocentres, chemical validity, the Ramachandran free energy and JS
divergence, per-torsion divergences, PCCA+ populations, the φ/ψ grid states, and the molecular
section of an analysis (:class:`MolecularSection`). The analysis of a molecule is the one pipeline
(:func:`~itomd.analysis.pipeline.analyze`) run with a torsion featurizer
(:func:`~itomd.analysis.features.torsion_featurizer`): the φ/ψ grid of
:class:`~itomd.analysis.features.BackboneTorsionFeaturizer` for a molecule with exactly one φ and
one ψ (alanine dipeptide, numbers unchanged), the TICA plane of
:class:`~itomd.analysis.features.TorsionTICAFeaturizer` for any other.

Trajectories of molecules are flattened Cartesian coordinates ``[n_frames, 3·n_atoms]`` in nm
(atom-major, as :mod:`itomd.systems.openmm` stores them); a topology (``mdtraj.Topology``) names the
atoms and bonds.

Choices (measured on 20 ns of alanine-dipeptide MD in vacuum at 300 K, AMBER ff96, 1 ps frames;
see ``docs/architecture.md``):

* Features: φ, ψ (and χ₁) in radians on (−π, π] from mdtraj (:func:`torsion_set`, labels such as
  "φ ALA2", "χ₁ SER3").
* Ramachandran free energy and JS divergence: 36 × 36 bins (10°) on the full torus (−π, π]², so
  the histogram needs no periodic treatment and no frame falls outside. Per torsion: 36 bins (10°)
  on (−π, π], as the JS divergence in nats and — labelled as the convention of the MDGen/Timewarp
  papers — scipy's JS *distance* (its square root).
* MSM states: the cells of a regular 20 × 20 grid on the torus (18°; :func:`dihedral_grid`) that
  hold at least :data:`MIN_STATE_POPULATION` of the frames the states are fitted on; a frame is
  assigned to the nearest such cell centre on the torus (through the embedding
  (cos φ, sin φ, cos ψ, sin ψ)), so rarely visited regions join their populated neighbours instead
  of making near-empty states whose few counts fake slow processes.
* Chemical validity: every bond within :data:`DEFAULT_BOND_TOLERANCE` (relative) of its reference
  length, no pair of atoms ≥ 3 bonds apart closer than :data:`DEFAULT_CLASH_DISTANCE`, every
  stereocentre (:func:`stereocentres`: every Cα with a Cβ, L by :data:`L_CHIRALITY_SIGN`; every other
  heavy atom with four neighbours of which at most one is H, as in the reference structure) with
  its reference handedness, every peptide bond (:func:`peptide_bonds`) cis or trans as in the
  reference structure.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
from deeptime.clustering import ClusterModel

from itomd.analysis._html import html_table
from itomd.validation import check_trajectories
from itomd.analysis.discretize import Discretization
from itomd.analysis.divergence import JSDivergence, js_divergence, js_divergence_of_distributions
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
    torsions = torsion_set(topology, ("phi", "psi"))  # for one residue: (φ, ψ)
    if torsions.count("phi") != 1 or torsions.count("psi") != 1:
        raise InvalidInputError(f"φ/ψ features need exactly one φ and one ψ dihedral; the topology has "
                                f"{torsions.count('phi')} and {torsions.count('psi')}")
    return torsions.compute(trajectories, topology)


#: Torsions of the analysis of any molecule, in their order within a residue: the backbone and
#: side-chain torsions of amino acids (mdtraj's definitions) and, in every other residue (a ligand, a
#: host and its guest), one torsion per rotatable bond (:func:`rotatable_torsions`).
TORSION_KINDS: tuple[str, ...] = ("phi", "psi", "chi1", "rotatable")
#: Greek names of the torsions in labels ("φ ALA2", "χ₁ SER3", "ω ALA2–NME3", "τ LIG1 C4–C7").
TORSION_SYMBOLS: dict[str, str] = {"phi": "φ", "psi": "ψ", "chi1": "χ₁", "omega": "ω", "rotatable": "τ"}
#: At most this many atom-pair distances are the TICA inputs of a molecule with fewer than two torsions.
MAX_TICA_DISTANCES = 1000


@dataclass(frozen=True)
class TorsionSet:
    """Named torsions of a topology: which four atoms, what kind, a readable label.

    Attributes
    ----------
    atoms : np.ndarray, shape [n_torsions, 4], int
        Atom indices of each torsion (IUPAC order, as mdtraj defines φ, ψ, χ₁).
    kinds : tuple of str
        ``"phi"``, ``"psi"`` or ``"chi1"`` (or ``"omega"``) per torsion.
    labels : tuple of str
        E.g. ``"φ ALA2"``, ``"ψ ALA2"``, ``"χ₁ SER3"`` (residue name and number of the torsion's Cα).
    """

    atoms: np.ndarray
    kinds: tuple[str, ...]
    labels: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.kinds)

    def count(self, kind: str) -> int:
        """How many torsions of ``kind`` the set has."""
        return self.kinds.count(kind)

    def compute(self, trajectories: Sequence[np.ndarray], topology: "mdtraj.Topology") -> list[np.ndarray]:
        """The torsion angles of every frame (mdtraj).

        Parameters
        ----------
        trajectories : list of np.ndarray, each [n_frames_i, 3·n_atoms]
            Flattened positions in nm.
        topology : mdtraj.Topology
            The topology the set was made from.

        Returns
        -------
        list of np.ndarray, each [n_frames_i, n_torsions], float64
            Radians on (−π, π], columns in the order of :attr:`labels`.
        """
        import mdtraj

        positions = _positions(trajectories, topology)
        if not len(self):
            raise InvalidInputError("the molecule has no torsions of the kinds asked for")
        return [mdtraj.compute_dihedrals(mdtraj.Trajectory(p, topology), self.atoms).astype(np.float64)
                for p in positions]


def torsion_set(topology: "mdtraj.Topology", kinds: Sequence[str] = TORSION_KINDS) -> TorsionSet:
    """Every φ, ψ and χ₁ torsion the topology has (mdtraj's definitions) and the torsions of the
    rotatable bonds of its other residues, residue by residue.

    Within a residue the order is that of ``kinds``; a residue without a torsion (the caps, a
    terminal residue's missing φ or ψ, a residue without a γ atom for χ₁, a rigid ligand) just has
    none. For alanine dipeptide the set is (φ ALA2, ψ ALA2), the columns of :func:`backbone_dihedrals`;
    for a peptide it is its φ, ψ and χ₁ (amino acids and their caps have no "rotatable" torsions).

    Parameters
    ----------
    topology : mdtraj.Topology
    kinds : sequence of {"phi", "psi", "chi1", "rotatable"}

    Returns
    -------
    TorsionSet
    """
    from mdtraj.geometry import dihedral

    atom_count(topology)
    finders = {"phi": (dihedral.indices_phi, 2), "psi": (dihedral.indices_psi, 1), "chi1": (dihedral.indices_chi1, 1),
               "rotatable": (_rotatable_quartets, 1)}
    unknown = [k for k in kinds if k not in finders]
    if unknown:
        raise InvalidInputError(f"unknown torsion kind(s) {unknown}: choose from {', '.join(finders)}")
    atoms = list(topology.atoms)
    rows = []  # (residue index, kind order, quartet, kind, label)
    for order, kind in enumerate(kinds):
        find, ca = finders[kind]
        for quartet in np.asarray(find(topology), dtype=int).reshape(-1, 4):
            residue = atoms[quartet[ca]].residue
            label = f"{TORSION_SYMBOLS[kind]} {residue.name}{residue.resSeq}"
            if kind == "rotatable":
                label += f" {atoms[quartet[1]].name}–{atoms[quartet[2]].name}"
            rows.append((residue.index, order, quartet, kind, label))
    rows.sort(key=lambda row: (row[0], row[1]))
    return TorsionSet(atoms=np.asarray([r[2] for r in rows], dtype=int).reshape(-1, 4),
                      kinds=tuple(r[3] for r in rows), labels=tuple(r[4] for r in rows))


def _heavy_atoms(topology: "mdtraj.Topology") -> np.ndarray:
    """[n_atoms] bool: atoms with an element other than hydrogen (virtual sites, element None, are not)."""
    return np.array([a.element is not None and a.element.symbol != "H" for a in topology.atoms])


def rotatable_torsions(topology: "mdtraj.Topology") -> TorsionSet:
    """One torsion per rotatable bond of the residues that are not amino acids (ligands, hosts, guests).

    A bond is rotatable when it joins two heavy atoms that each have another heavy neighbour and it
    lies in no ring (removing it disconnects its atoms); its torsion runs through the lowest-indexed
    heavy neighbour on each side. Methyl groups and other ends with only hydrogens beyond them have
    no torsion (their rotation changes nothing heavy), nor have the bonds of an sp carbon (two
    neighbours: an alkyne or nitrile, linear, where a torsion is undefined). Bond orders are not known,
    so an amide or a C=C bond counts as rotatable. Amino acids are left to φ, ψ and χ₁.

    Parameters
    ----------
    topology : mdtraj.Topology

    Returns
    -------
    TorsionSet
        Kind ``"rotatable"``, labels such as ``"τ VIO1 C4–C7"`` (residue, the bond's two atoms).
    """
    return torsion_set(topology, ("rotatable",))


def _rotatable_quartets(topology: "mdtraj.Topology") -> np.ndarray:
    """[n, 4] atom indices of :func:`rotatable_torsions` (the finder :func:`torsion_set` uses)."""
    atoms = list(topology.atoms)
    heavy = _heavy_atoms(topology)
    neighbours: list[set[int]] = [set() for _ in atoms]
    for i, j in bond_pairs(topology):
        neighbours[i].add(int(j))
        neighbours[j].add(int(i))

    def connected_without(b: int, c: int) -> bool:  # is c reachable from b without the bond b–c (a ring)?
        seen, frontier = {b}, [b]
        while frontier:
            node = frontier.pop()
            for other in neighbours[node]:
                if (node, other) in ((b, c), (c, b)) or other in seen:
                    continue
                if other == c:
                    return True
                seen.add(other)
                frontier.append(other)
        return False

    # a carbon with two neighbours is sp (alkyne, nitrile, allene): linear, so no torsion turns about its bonds
    linear = [a.element is not None and a.element.symbol == "C" and len(neighbours[a.index]) == 2 for a in atoms]
    quartets = []
    for b, c in bond_pairs(topology):
        b, c = int(b), int(c)
        if not (heavy[b] and heavy[c]) or atoms[b].residue.is_protein or atoms[c].residue.is_protein \
                or linear[b] or linear[c]:
            continue
        left = sorted(n for n in neighbours[b] if n != c and heavy[n])
        right = sorted(n for n in neighbours[c] if n != b and heavy[n])
        if left and right and not connected_without(b, c):
            quartets.append((left[0], b, c, right[0]))
    return np.asarray(quartets, dtype=int).reshape(-1, 4)


def distance_pairs(topology: "mdtraj.Topology", max_pairs: int = MAX_TICA_DISTANCES) -> np.ndarray:
    """Atom pairs whose distances describe a molecule without torsions (a rigid ligand, a host with its
    guest): heavy atoms three or more bonds apart or in different molecules (all atoms if fewer than
    two heavy ones), at most ``max_pairs`` of them, evenly spread over the list.

    Returns
    -------
    np.ndarray, shape [n_pairs, 2], int
    """
    pairs = nonbonded_pairs(topology, min_separation=3)
    heavy = _heavy_atoms(topology)
    if heavy.sum() >= 2:
        pairs = pairs[heavy[pairs[:, 0]] & heavy[pairs[:, 1]]]
    if len(pairs) > max_pairs:
        pairs = pairs[np.linspace(0, len(pairs) - 1, max_pairs).round().astype(int)]
    return pairs


def slow_inputs(topology: "mdtraj.Topology") -> tuple[TorsionSet | None, np.ndarray | None]:
    """What the slow processes of a molecule are looked for in: its torsions (:func:`torsion_set`)
    when it has at least two, else atom-pair distances (:func:`distance_pairs`).

    Returns
    -------
    (TorsionSet, None) or (None, np.ndarray [n_pairs, 2])
    """
    torsions = torsion_set(topology)
    if len(torsions) >= 2:
        return torsions, None
    pairs = distance_pairs(topology)
    if len(pairs) < 2:
        raise InvalidInputError(f"the molecule has {len(torsions)} torsion(s) and {len(pairs)} distance(s) between "
                                "atoms three bonds apart: nothing to find slow processes in")
    return None, pairs


def slow_input_features(trajectories: Sequence[np.ndarray], topology: "mdtraj.Topology") -> list[np.ndarray]:
    """The features of :func:`slow_inputs` per frame: (cos, sin) of every torsion (all cosines, then all
    sines), or the atom-pair distances in nm.

    Parameters
    ----------
    trajectories : list of np.ndarray, each [n_frames_i, 3·n_atoms]
    topology : mdtraj.Topology

    Returns
    -------
    list of np.ndarray, each [n_frames_i, 2·n_torsions] or [n_frames_i, n_pairs], float64
    """
    import mdtraj

    torsions, pairs = slow_inputs(topology)
    if torsions is not None:
        return [np.concatenate([np.cos(a), np.sin(a)], axis=1) for a in torsions.compute(trajectories, topology)]
    return [mdtraj.compute_distances(mdtraj.Trajectory(p, topology), pairs).astype(np.float64)
            for p in _positions(trajectories, topology)]


def slow_input_labels(topology: "mdtraj.Topology") -> list[str]:
    """Names of the columns of :func:`slow_input_features` ("cos φ ALA2", ..., or "d C1–C7 (TMP1)")."""
    torsions, pairs = slow_inputs(topology)
    if torsions is not None:
        return [f"cos {label}" for label in torsions.labels] + [f"sin {label}" for label in torsions.labels]
    atoms = list(topology.atoms)
    return [f"d {atoms[i].residue.name}{atoms[i].residue.resSeq}:{atoms[i].name}–"
            f"{atoms[j].residue.name}{atoms[j].residue.resSeq}:{atoms[j].name}" for i, j in pairs]


def backbone_torsions(trajectories: Sequence[np.ndarray], topology: "mdtraj.Topology") -> list[np.ndarray]:
    """φ and ψ of every residue that has them (any peptide), residue by residue (φ before ψ).

    For alanine dipeptide these are exactly the columns (φ, ψ) of :func:`backbone_dihedrals`.

    Parameters
    ----------
    trajectories : list of np.ndarray, each [n_frames_i, 3·n_atoms]
    topology : mdtraj.Topology

    Returns
    -------
    list of np.ndarray, each [n_frames_i, n_phi + n_psi]
        Radians on (−π, π], in the order of ``torsion_set(topology, ("phi", "psi")).labels``.
    """
    torsions = torsion_set(topology, ("phi", "psi"))
    if not len(torsions):
        raise InvalidInputError("the molecule has no backbone φ/ψ torsions (is it a peptide with ≥ 2 residues?)")
    return torsions.compute(trajectories, topology)


def peptide_bonds(topology: "mdtraj.Topology") -> TorsionSet:
    """ω of every peptide bond: C(i)–N(j) bonds between residues, from the bond graph.

    The quartet is (X, C, N, Y) with X the carbon bonded to C (Cα, or the methyl of an ACE cap) and
    Y the Cα bonded to N (or its other carbon: the methyl of an NME cap). mdtraj's ``compute_omega``
    needs a Cα on both sides, so it misses the bonds to the caps; this rule finds them.

    Returns
    -------
    TorsionSet
        Kinds ``"omega"``, labels like ``"ω ALA2–NME3"``.
    """
    atom_count(topology)
    neighbours: dict[int, list] = {atom.index: [] for atom in topology.atoms}
    for a, b in topology.bonds:
        neighbours[a.index].append(b)
        neighbours[b.index].append(a)

    def carbon(atom, exclude, prefer: str | None = None):
        carbons = [n for n in neighbours[atom.index] if n.index != exclude.index
                   and n.element is not None and n.element.symbol == "C"]
        preferred = [n for n in carbons if n.name == prefer]
        return (preferred or carbons or [None])[0]

    rows = []
    for a, b in topology.bonds:
        for c, n in ((a, b), (b, a)):
            if c.name == "C" and n.name == "N" and c.residue.index != n.residue.index:
                x, y = carbon(c, n, "CA"), carbon(n, c, "CA")
                if x is not None and y is not None:
                    rows.append((c.index, [x.index, c.index, n.index, y.index],
                                 f"ω {c.residue.name}{c.residue.resSeq}–{n.residue.name}{n.residue.resSeq}"))
    rows.sort(key=lambda row: row[0])
    return TorsionSet(atoms=np.asarray([r[1] for r in rows], dtype=int).reshape(-1, 4),
                      kinds=("omega",) * len(rows), labels=tuple(r[2] for r in rows))


def cis_peptide_bonds(omega: np.ndarray) -> np.ndarray:
    """Which ω are cis: |ω| < 90° (trans is ω ≈ 180°); same shape as ``omega``, bool."""
    return np.abs(np.asarray(omega)) < np.pi / 2


def stereocentres(topology: "mdtraj.Topology") -> tuple[np.ndarray, np.ndarray]:
    """Every stereocentre the topology has, and which of them are Cα.

    The rule (from the bond graph alone): every Cα with a Cβ (and N, C) — its row is (Cα, N, C, Cβ)
    as in :func:`chiral_centres` of alanine — plus every other heavy atom with four bonded
    neighbours of which at most one is a hydrogen (an sp3 centre with three heavy substituents:
    Thr Cβ, Ile Cβ, ...), whose row is (centre, its first three heavy neighbours by index). The rule
    also takes prochiral centres whose two substituents differ only by name (Val Cβ, Leu Cγ): MD
    never swaps the named atoms either, so their handedness is kept like a true stereocentre's.
    Glycine Cα, CH₂/CH₃ groups and NH₃⁺ (two or more hydrogens) are not centres.

    Parameters
    ----------
    topology : mdtraj.Topology

    Returns
    -------
    rows : np.ndarray, shape [n_centres, 4], int
        (centre, a, b, c): the sign of (a − centre)·((b − centre) × (c − centre)) is its handedness.
    is_alpha : np.ndarray, shape [n_centres], bool
        Whether the centre is a Cα (required to be L by default).
    """
    atom_count(topology)
    rows, alpha = [], []
    alpha_atoms = set()
    for residue in topology.residues:
        names = {atom.name: atom.index for atom in residue.atoms}
        if all(name in names for name in ("CA", "N", "C", "CB")):
            rows.append([names["CA"], names["N"], names["C"], names["CB"]])
            alpha.append(True)
            alpha_atoms.add(names["CA"])
    neighbours: dict[int, list] = {atom.index: [] for atom in topology.atoms}
    for a, b in topology.bonds:
        neighbours[a.index].append(b)
        neighbours[b.index].append(a)
    for atom in topology.atoms:
        if atom.index in alpha_atoms or atom.element is None or atom.element.symbol == "H":
            continue
        bonded = neighbours[atom.index]
        heavy = sorted(n.index for n in bonded if n.element is None or n.element.symbol != "H")
        if len(bonded) == 4 and len(heavy) >= 3:
            rows.append([atom.index, *heavy[:3]])
            alpha.append(False)
    order = np.argsort([r[0] for r in rows], kind="stable")
    return (np.asarray(rows, dtype=int).reshape(-1, 4)[order], np.asarray(alpha, dtype=bool)[order])


def chiral_centres(topology: "mdtraj.Topology") -> np.ndarray:
    """The stereocentres of :func:`stereocentres`: every Cα with a Cβ as (Cα, N, C, Cβ), and other
    sp3 heavy atoms with at most one hydrogen as (centre, three heavy neighbours).

    Parameters
    ----------
    topology : mdtraj.Topology

    Returns
    -------
    np.ndarray, shape [n_centres, 4], int
        Atom indices per centre, ordered by the centre's index (for alanine dipeptide the Cα only).
    """
    return stereocentres(topology)[0]


def chirality_signs(coordinates: np.ndarray, topology: "mdtraj.Topology") -> np.ndarray:
    """Sign of the signed volume (a − X)·((b − X) × (c − X)) at each stereocentre X of :func:`chiral_centres`.

    At a Cα, (a, b, c) = (N, C, Cβ): L-amino acids have :data:`L_CHIRALITY_SIGN`; a mirror image
    flips every sign.

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
    """[T, n, 3] positions, [n_centres, 4] rows (centre, a, b, c) → [T, n_centres] signed volumes (nm³)."""
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
        The bond, clash and chirality checks separately.
    n_frames : int
    bond_tolerance : float
        Allowed relative deviation of a bond length.
    clash_distance : float
        Smallest allowed distance (nm) between atoms ≥ 3 bonds apart.
    chirality_reference : np.ndarray or None, shape [n_centres]
        Required sign per stereocentre of :func:`chiral_centres` (None: not checked).
    reference_bond_lengths : np.ndarray, shape [n_bonds]
        Reference length (nm) per bond of :func:`bond_pairs`.
    worst_offenders : dict
        ``bond``: the largest relative bond deviation (atoms, value, frame); ``contact``: the
        closest non-bonded contact (atoms, distance in nm, frame); ``chirality``: frames with each
        centre's sign flipped; ``peptide_bonds``: frames with each peptide bond flipped cis/trans.
    peptide_bonds_kept : np.ndarray, shape [n_frames], bool
        No peptide bond ω flipped between cis and trans relative to :attr:`cis_reference`.
    cis_reference : np.ndarray or None, shape [n_peptide_bonds], bool
        Whether each peptide bond of :func:`peptide_bonds` is cis in the reference (None: not checked).
    stereocentres : list of str
        Names of the stereocentres, in the order of :attr:`chirality_reference`.
    peptide_bond_labels : list of str
        Names of the peptide bonds (``"ω ALA2–NME3"``), in the order of :attr:`cis_reference`.
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
    peptide_bonds_kept: np.ndarray | None = None
    cis_reference: np.ndarray | None = None
    stereocentres: list[str] = field(default_factory=list)
    peptide_bond_labels: list[str] = field(default_factory=list)

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

    @property
    def fraction_peptide_bonds_kept(self) -> float:
        return 1.0 if self.peptide_bonds_kept is None else float(self.peptide_bonds_kept.mean())

    def to_dict(self) -> dict:
        """JSON-serialisable summary (fractions of frames, thresholds, references, worst offenders)."""
        return {"fraction_valid": self.fraction_valid, "fraction_bonds_ok": self.fraction_bonds_ok,
                "fraction_no_clash": self.fraction_no_clash, "fraction_chirality_kept": self.fraction_chirality_kept,
                "fraction_peptide_bonds_kept": self.fraction_peptide_bonds_kept,
                "n_frames": self.n_frames, "bond_tolerance": self.bond_tolerance,
                "clash_distance_nm": self.clash_distance,
                "chirality_reference": None if self.chirality_reference is None
                else [int(s) for s in self.chirality_reference],
                "stereocentres": list(self.stereocentres),
                "peptide_bonds": None if self.cis_reference is None
                else {label: "cis" if cis else "trans" for label, cis in zip(self.peptide_bond_labels, self.cis_reference)},
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
    reference_structure: np.ndarray | None = None,
    cis_reference: np.ndarray | None = None,
) -> ValidityResult:
    """Which frames are chemically valid: bonds intact, no clashes, chirality kept, no cis/trans flips.

    A frame is valid if every bond of the topology is within ``bond_tolerance`` (relative) of its
    reference length, no two atoms ≥ 3 bonds apart are closer than ``clash_distance``, every
    stereocentre (:func:`stereocentres`: every non-glycine Cα and other sp3 centres) has its
    reference sign, and every peptide bond ω (:func:`peptide_bonds`) is cis or trans as in the
    reference (MD does not isomerise peptide bonds at these timescales). Vectorised in blocks of frames.

    The reference structure (``reference_structure``; for the shipped alanine dipeptide its shipped
    structure) gives the reference bond lengths, the signs of the stereocentres other than Cα and
    the cis/trans state of each peptide bond; Cα must be L (``chirality_reference``).

    Parameters
    ----------
    trajectories : list of np.ndarray, each [n_frames_i, 3·n_atoms]
        Flattened positions in nm.
    topology : mdtraj.Topology
    reference_bond_lengths : np.ndarray, shape [n_bonds], optional
        Reference length (nm) per bond of :func:`bond_pairs`; default the reference structure's.
    bond_tolerance : float
        Allowed relative deviation, in (0, 1).
    clash_distance : float
        Smallest allowed distance (nm) between atoms ≥ 3 bonds apart (≥ 0).
    chirality_reference : int, np.ndarray of shape [n_centres], or None
        An int: the required sign of every Cα (default L), the other centres as in the reference
        structure; an array: the required sign of every centre of :func:`chiral_centres`; None
        skips the check.
    reference_structure : np.ndarray, shape [3·n_atoms], optional
        A valid structure of the molecule (e.g. the system's start structure); needed for molecules
        other than the shipped alanine dipeptide unless ``reference_bond_lengths`` is given (then
        stereocentres other than Cα cannot be checked and every peptide bond must be trans).
    cis_reference : np.ndarray of shape [n_peptide_bonds], bool, optional
        Which peptide bonds are cis; default those of the reference structure (all trans without one).

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
    if reference_structure is None:
        reference_structure = _shipped_structure(topology)
    else:
        (structure,) = _positions([np.atleast_2d(np.asarray(reference_structure, dtype=float))], topology)
        if len(structure) != 1 or not np.all(np.isfinite(structure)):
            raise InvalidInputError("reference_structure must be one finite structure [3·n_atoms] (nm)")
        reference_structure = structure.reshape(-1)
    if reference_bond_lengths is None:
        if reference_structure is None:
            raise InvalidInputError("reference_bond_lengths or a reference_structure are needed for molecules "
                                    "other than the shipped ala2")
        reference = bond_lengths(topology, reference_structure)
    else:
        reference = np.asarray(reference_bond_lengths, dtype=float).reshape(-1)
        if reference.shape != (len(bonds),) or not np.all(reference > 0):
            raise InvalidInputError(f"reference_bond_lengths must be {len(bonds)} positive lengths (nm), "
                                    f"got shape {np.shape(reference_bond_lengths)}")
    centres, is_alpha = stereocentres(topology)
    if chirality_reference is not None:
        if np.ndim(chirality_reference) == 0:
            if chirality_reference not in (-1, 1):
                raise InvalidInputError(f"chirality_reference must be ±1 or one ±1 per chiral centre ({len(centres)})")
            signs = np.full(len(centres), int(chirality_reference))
            if not is_alpha.all():
                if reference_structure is None:
                    raise InvalidInputError("the stereocentres other than Cα need a reference_structure for their "
                                            "reference handedness")
                signs[~is_alpha] = chirality_signs(reference_structure, topology)[~is_alpha]
        else:
            signs = np.asarray(chirality_reference)
        if signs.shape != (len(centres),) or not np.all(np.isin(signs, (-1, 1))):
            raise InvalidInputError(f"chirality_reference must be ±1 or one ±1 per chiral centre ({len(centres)})")
        chirality_reference = signs.astype(np.int8)
    omegas = peptide_bonds(topology)
    if cis_reference is None:
        cis_reference = (np.zeros(len(omegas), bool) if reference_structure is None
                         else cis_peptide_bonds(omegas.compute([reference_structure[None]], topology)[0][0])
                         if len(omegas) else np.zeros(0, bool))
    else:
        cis_reference = np.asarray(cis_reference)
        if cis_reference.shape != (len(omegas),) or cis_reference.dtype != bool:
            raise InvalidInputError(f"cis_reference must be one bool per peptide bond ({len(omegas)})")
    pairs = nonbonded_pairs(topology)

    frames = np.concatenate(positions)
    n_frames = len(frames)
    bonds_ok = np.empty(n_frames, bool)
    no_clash = np.empty(n_frames, bool)
    kept = np.ones(n_frames, bool)
    peptide_kept = np.ones(n_frames, bool)
    flips = np.zeros(len(centres), dtype=np.int64)
    isomerised = np.zeros(len(omegas), dtype=np.int64)
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
        if len(omegas):
            flipped = cis_peptide_bonds(_dihedrals(block, omegas.atoms)) != cis_reference
            peptide_kept[start:start + len(block)] = ~flipped.any(axis=1)
            isomerised += flipped.sum(axis=0)

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
    offenders["peptide_bonds"] = {label: int(f) for label, f in zip(omegas.labels, isomerised)}
    return ValidityResult(valid=bonds_ok & no_clash & kept & peptide_kept, bonds_ok=bonds_ok, no_clash=no_clash,
                          chirality_kept=kept, n_frames=n_frames, bond_tolerance=float(bond_tolerance),
                          clash_distance=float(clash_distance), chirality_reference=chirality_reference,
                          reference_bond_lengths=reference, worst_offenders=offenders,
                          peptide_bonds_kept=peptide_kept, cis_reference=cis_reference,
                          stereocentres=[name(int(c)) for c in centres[:, 0]],
                          peptide_bond_labels=list(omegas.labels))


def _dihedrals(positions: np.ndarray, quartets: np.ndarray) -> np.ndarray:
    """[T, n, 3] positions, [k, 4] atom quartets → [T, k] dihedral angles (radians, mdtraj's convention)."""
    import mdtraj

    return mdtraj.compute_dihedrals(mdtraj.Trajectory(positions, None), quartets)


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


# -- divergences per torsion, PCCA+ populations ---------------------------------------------------
#: Bins per torsion of the 1-D JS divergences on (−π, π] (10°, as the Ramachandran bins).
TORSION_BINS = 36
#: At most this many torsion histograms in a report (those with the largest JS divergence).
MAX_TORSION_PANELS = 16
#: Metastable sets of the PCCA+ populations (the convention of the MDGen and Timewarp papers).
PCCA_SETS = 10
#: Lag (frames) of the MSM under the PCCA+ populations and default TICA lag: 1 ps at alanine
#: dipeptide's 0.1 ps frames, beyond the fast bond and angle vibrations (≤ 0.1 ps), below the
#: slowest torsional processes of small peptides (tens of ps and more); capped at a tenth of the
#: longest trajectory.
DEFAULT_TORSION_LAG = 10
#: Quantity labels in JSON and the report: what convention each number follows.
JS_DISTANCE_CONVENTION = ("convention of MDGen/Timewarp papers: scipy.spatial.distance.jensenshannon (natural "
                          "logarithm, base e) of the two 1-D histograms — the JS *distance*, the square root "
                          "of the JS divergence in nats; not comparable with a divergence")
PCCA_CONVENTION = ("convention of MDGen/Timewarp papers: populations of a {n}-set PCCA+ decomposition of an MSM "
                   "built on the reference (each frame in the set of its microstate's largest membership), "
                   "the other data's frames assigned to the same states; memberships {how}")
#: Whether the PCCA+ populations run deeptime's full ``pcca`` (the inner-simplex memberships refined
#: by its soft-membership optimisation, as PyEMMA/deeptime users of the papers did) or stop at the
#: inner-simplex memberships. The optimisation is a Nelder–Mead search over 81 parameters for 10 sets
#: that took 11–14 s per call here whatever the number of microstates (20–100), more than the rest of
#: an analysis. The crisp sets (largest membership) of the two agreed for 79 of 86 microstates of a
#: capped dipeptide's MSM. Default: the papers' procedure (True); the test suite sets it False for
#: speed (tests/conftest.py), and so may anyone who analyses many molecules.
PCCA_OPTIMISE = True


def torsion_divergences(p_angles: Sequence[np.ndarray], q_angles: Sequence[np.ndarray], labels: Sequence[str],
                        kinds: Sequence[str] | None = None, bins: int = TORSION_BINS) -> list[dict[str, Any]]:
    """JS divergence (nats) and scipy's JS distance of each torsion's 1-D histogram on (−π, π].

    Parameters
    ----------
    p_angles, q_angles : list of np.ndarray, each [n_frames_i, n_torsions]
        Torsion angles in radians (e.g. of :meth:`TorsionSet.compute`): the data and the reference.
    labels : sequence of str, length n_torsions
    kinds : sequence of str, optional
        Torsion kinds (``"phi"``, ...), recorded per entry.
    bins : int
        Bins on (−π, π].

    Returns
    -------
    list of dict, one per torsion
        ``label``, ``kind``, ``js_divergence`` (nats, :func:`~itomd.analysis.divergence.js_divergence`)
        and ``js_distance_scipy`` (``scipy.spatial.distance.jensenshannon``, base e: the square
        root of the divergence, the convention of the MDGen/Timewarp papers).
    """
    from scipy.spatial.distance import jensenshannon

    p = np.concatenate(check_trajectories(p_angles))
    q = np.concatenate(check_trajectories(q_angles))
    if p.shape[1] != len(labels) or q.shape[1] != len(labels):
        raise InvalidInputError(f"need {len(labels)} torsions per frame, got {p.shape[1]} and {q.shape[1]}")
    out = []
    for k, label in enumerate(labels):
        js = js_divergence(p[:, [k]], q[:, [k]], bins=bins, range=(TORUS[0],))
        p_hist = np.histogram(p[:, k], bins=js.edges[0])[0]
        q_hist = np.histogram(q[:, k], bins=js.edges[0])[0]
        out.append({"label": label, "kind": None if kinds is None else kinds[k], "js_divergence": js.value,
                    "js_distance_scipy": float(jensenshannon(p_hist, q_hist))})
    return out


def _pcca_memberships(msm: Any, n_sets: int, optimise: bool) -> np.ndarray:
    """PCCA+ memberships [n_states, n_sets] of a reversible deeptime MSM: deeptime's ``pcca`` (optimised),
    or deeptime's inner-simplex memberships (the same algorithm without the final optimisation)."""
    from deeptime.markov import pcca

    if optimise:
        return pcca(msm.transition_matrix, n_sets, msm.stationary_distribution).memberships
    from deeptime.markov.tools.analysis import eigenvectors
    from deeptime.markov.tools.analysis.dense._pcca import _pcca_connected_isa

    pi = msm.stationary_distribution
    vectors = np.real(eigenvectors(msm.transition_matrix, n_sets))
    vectors /= np.sqrt(np.einsum("ik,i,ik->k", vectors, pi, vectors))
    vectors[:, 0] = np.abs(vectors[:, 0])
    return _pcca_connected_isa(vectors, n_sets)[0]


def pcca_populations(reference_dtrajs: Sequence[np.ndarray], dtrajs: Sequence[np.ndarray], lag: int,
                     n_sets: int = PCCA_SETS, optimise: bool | None = None) -> dict[str, Any]:
    """Populations of the PCCA+ sets of an MSM on the reference, for the reference and other data.

    The MSM (deeptime, reversible maximum likelihood, largest connected set) is estimated on the
    reference's microstate trajectories; PCCA+ (deeptime ``pcca``) splits it into ``n_sets`` sets; each
    microstate belongs to the set of its largest membership. Each data set's population of a set is
    the fraction of its frames in that set's microstates (frames in microstates outside the
    connected set are counted apart, as ``fraction_unassigned``).

    Parameters
    ----------
    reference_dtrajs, dtrajs : list of np.ndarray, each [n_frames_i], int
        Microstates of the reference (e.g. MD) and of the data, on the same microstates.
    lag : int
        MSM lag in frames (capped at a tenth of the longest reference trajectory).
    n_sets : int
    optimise : bool, optional
        Run deeptime's full ``pcca`` (with its soft-membership optimisation); default :data:`PCCA_OPTIMISE`.

    Returns
    -------
    dict
        ``n_sets``, ``lag_frames``, ``reference_populations``, ``populations`` (lists of ``n_sets``
        fractions), ``reference_fraction_unassigned``, ``fraction_unassigned`` and ``js_divergence``
        (nats) between the two population vectors; or ``{"n_sets": n_sets, "skipped": reason}``.
    """
    from itomd.analysis.msm import _estimate_msm

    optimise = PCCA_OPTIMISE if optimise is None else bool(optimise)
    lag = int(max(1, min(lag, max(len(d) for d in reference_dtrajs) // 10)))
    msm = _estimate_msm([np.asarray(d) for d in reference_dtrajs], lag, 0, 0)
    if msm is None or msm.n_states <= n_sets:
        return {"n_sets": n_sets, "lag_frames": lag,
                "skipped": f"the reference MSM has {0 if msm is None else msm.n_states} connected states, "
                           f"need more than {n_sets}"}
    try:
        memberships = _pcca_memberships(msm, n_sets, optimise)
    # deeptime raises AssertionError where an MSM's leading eigenvectors are degenerate (short, poorly mixed data)
    except (ValueError, np.linalg.LinAlgError, RuntimeError, AssertionError) as error:
        return {"n_sets": n_sets, "lag_frames": lag, "skipped": f"PCCA+ failed: {str(error).splitlines()[0]}"}
    symbols = msm.count_model.state_symbols
    n_micro = max(int(max(d.max() for d in reference_dtrajs)), int(max(d.max() for d in dtrajs)), int(symbols.max())) + 1
    set_of = np.full(n_micro, -1)
    set_of[symbols] = np.argmax(memberships, axis=1)

    def populations(trajectories: Sequence[np.ndarray]) -> tuple[list[float], float]:
        sets = set_of[np.concatenate(trajectories)]
        counts = np.bincount(sets[sets >= 0], minlength=n_sets)
        return (counts / len(sets)).tolist(), float(np.mean(sets < 0))

    reference_populations, reference_unassigned = populations(reference_dtrajs)
    data_populations, unassigned = populations(dtrajs)
    js = js_divergence_of_distributions(np.append(data_populations, unassigned),
                                        np.append(reference_populations, reference_unassigned))
    return {"n_sets": n_sets, "lag_frames": lag, "optimised": optimise, "reference_populations": reference_populations,
            "populations": data_populations, "reference_fraction_unassigned": reference_unassigned,
            "fraction_unassigned": unassigned, "js_divergence": js}


# -- the molecular section of an analysis --------------------------------------------------------
@dataclass
class MolecularSection(Section):
    """What an analysis of a molecule adds (JSON key ``"molecular"``): chemical validity and the
    torsions, and after :func:`~itomd.analysis.pipeline.compare` the comparison data's validity and
    free energy, the JS divergence of every torsion and on the TICA plane, and the numbers in the
    convention of the MDGen/Timewarp papers (scipy's JS distance per torsion, PCCA+ populations).

    Added by the torsion featurizers (:mod:`itomd.analysis.features`). In the report it shows the
    chemical-validity table, the per-torsion table and, in place of the plain free-energy plot, the free
    energy on the MSM plane (Ramachandran or TICA, next to the comparison's) and every torsion's
    histogram against the comparison's.

    Attributes
    ----------
    topology : mdtraj.Topology
    validity : ValidityResult
        Of the analysed frames.
    comparison_free_energy : FreeEnergySurface or None
        The comparison data's free energy on the same plane and bins.
    comparison_validity : ValidityResult or None
        The comparison data's validity (MD: the baseline the thresholds were set on), with the same
        thresholds and references.
    plane : {"ramachandran", "tica"}
        The MSM space: the (φ, ψ) torus or the TICA plane of all torsions.
    torsions : TorsionSet or None
        Every φ, ψ, χ₁ of the molecule.
    torsion_angles : list of np.ndarray, each [n_frames_i, n_torsions]
        The analysed data's torsions (for the per-torsion divergences); not in :meth:`to_dict`.
    features : list of np.ndarray, each [n_frames_i, 2]
        The analysed data on the MSM plane (for the PCCA+ populations); not in :meth:`to_dict`.
    discretize : callable or None
        Microstates on the plane (the featurizer's ``discretize``), fitted on the reference for PCCA+.
    lag : int
        MSM lag (frames) of the PCCA+ populations.
    histogram_bins, histogram_range :
        Of the free energies on the plane.
    tica : dict or None
        The TICA model (lag, input features, what it was fitted on, timescales); None on the φ/ψ grid.
    torsion_comparison : list of dict or None
        Per torsion against the comparison data (:func:`torsion_divergences`).
    comparison_torsion_angles : list of np.ndarray, each [n_frames_i, n_torsions]
        The comparison data's torsions (for the histograms of the report); not in :meth:`to_dict`.
    tica_js_divergence : JSDivergence or None
        Against the comparison data on the TICA plane (nats).
    pcca : dict or None
        :func:`pcca_populations` with the comparison data as the reference.
    """

    key: ClassVar[str] = "molecular"
    replaces_figures: ClassVar[tuple[str, ...]] = (FREE_ENERGY_FIGURE,)

    topology: Any
    validity: ValidityResult
    comparison_free_energy: FreeEnergySurface | None = None
    comparison_validity: ValidityResult | None = None
    plane: str = "ramachandran"
    torsions: TorsionSet | None = None
    torsion_angles: list[np.ndarray] = field(default_factory=list, repr=False)
    features: list[np.ndarray] = field(default_factory=list, repr=False)
    discretize: Any = field(default=None, repr=False)
    lag: int = DEFAULT_TORSION_LAG
    histogram_bins: Any = RAMACHANDRAN_BINS
    histogram_range: Any = TORUS
    tica: dict | None = None
    torsion_comparison: list[dict] | None = None
    comparison_torsion_angles: list[np.ndarray] = field(default_factory=list, repr=False)
    tica_js_divergence: JSDivergence | None = None
    pcca: dict | None = None

    def to_dict(self) -> dict:
        torsions = None
        if self.torsions is not None:
            torsions = {"labels": list(self.torsions.labels), "kinds": list(self.torsions.kinds),
                        "bins": TORSION_BINS, "range": list(TORUS[0]), "units": "radians",
                        "js_divergence_unit": "nats",
                        "js_distance_scipy_convention": JS_DISTANCE_CONVENTION,
                        "per_torsion": self.torsion_comparison}
        tica = None
        if self.tica is not None:
            js = self.tica_js_divergence
            tica = {**self.tica, "js_divergence": None if js is None else js.value,
                    "js_divergence_details": None if js is None else js.to_dict()}
        pcca = None if self.pcca is None else {**self.pcca, "convention": PCCA_CONVENTION.format(
            n=self.pcca["n_sets"], how="of deeptime's pcca (optimised)" if self.pcca.get("optimised")
            else "of deeptime's PCCA+ inner-simplex algorithm (without pcca()'s soft optimisation)")}
        return {"features": ["phi", "psi"] if self.plane == "ramachandran" else ["tic1", "tic2"],
                "units": "radians" if self.plane == "ramachandran" else "TICA components (kinetic map)",
                "msm_space": "phi/psi grid" if self.plane == "ramachandran" else "TICA plane",
                "validity": self.validity.to_dict(),
                "comparison_validity": None if self.comparison_validity is None else self.comparison_validity.to_dict(),
                "comparison_free_energy": None if self.comparison_free_energy is None
                else self.comparison_free_energy.to_dict(),
                "torsions": torsions, "tica": tica, "pcca_populations": pcca}

    def add_comparison(self, trajectories: Sequence[np.ndarray], features: Sequence[np.ndarray], kT: float) -> None:
        """The comparison's free energy on the plane (``features``), its chemical validity, the
        divergences of every torsion and on the TICA plane, and PCCA+ populations with it as the reference."""
        if self.plane == "ramachandran":
            self.comparison_free_energy = ramachandran_free_energy(features, kT)
        else:
            self.comparison_free_energy = free_energy_surface(np.concatenate(features), kT, bins=self.histogram_bins,
                                                              range=self.histogram_range)
            self.tica_js_divergence = js_divergence(np.concatenate(self.features), np.concatenate(features),
                                                    bins=self.histogram_bins, range=self.histogram_range)
        v = self.validity
        self.comparison_validity = chemical_validity(
            trajectories, self.topology, bond_tolerance=v.bond_tolerance, clash_distance=v.clash_distance,
            chirality_reference=v.chirality_reference, reference_bond_lengths=v.reference_bond_lengths,
            cis_reference=v.cis_reference)
        if self.torsions is not None and len(self.torsions) and self.torsion_angles:
            self.comparison_torsion_angles = self.torsions.compute(trajectories, self.topology)
            self.torsion_comparison = torsion_divergences(self.torsion_angles, self.comparison_torsion_angles,
                                                          self.torsions.labels, self.torsions.kinds)
        if self.discretize is not None and self.features:
            states = self.discretize(features)
            self.pcca = pcca_populations(states.dtrajs, states.transform(self.features), self.lag)

    def summary(self) -> str:
        v = self.validity
        space = "φ/ψ features" if self.plane == "ramachandran" else \
            f"TICA plane of {(self.tica or {}).get('inputs', 'the torsions')}"
        line = (f"{space}; chemically valid frames {v.fraction_valid:.2%} (bonds {v.fraction_bonds_ok:.2%}, "
                f"no clash {v.fraction_no_clash:.2%}, chirality {v.fraction_chirality_kept:.2%}, "
                f"peptide bonds {v.fraction_peptide_bonds_kept:.2%})")
        if self.torsion_comparison:
            worst = max(self.torsion_comparison, key=lambda t: t["js_divergence"])
            line += (f"; largest per-torsion JS divergence {worst['js_divergence']:.3g} nats ({worst['label']})")
        if self.tica_js_divergence is not None:
            line += f"; JS divergence on the TICA plane {self.tica_js_divergence.value:.3g} nats"
        return line

    def report_html(self, result: AnalysisView) -> str:
        """Fractions of chemically valid frames (and the comparison's, e.g. MD, as the baseline), and
        the per-torsion divergences against the comparison."""
        columns = [("this data", self.validity)]
        if self.comparison_validity is not None:
            columns.append((result.comparison.label, self.comparison_validity))
        v = self.validity
        n_alpha = sum(name.endswith("-CA") for name in v.stereocentres)
        peptide = ", ".join(f"{label} {'cis' if cis else 'trans'}"
                            for label, cis in zip(v.peptide_bond_labels, [] if v.cis_reference is None else v.cis_reference))
        rows = [(name, *(f"{getattr(c, attribute):.3%}" for _, c in columns)) for name, attribute in (
            ("valid (all checks)", "fraction_valid"),
            (f"bonds within {v.bond_tolerance:.0%} of reference", "fraction_bonds_ok"),
            (f"no atoms ≥ 3 bonds apart closer than {v.clash_distance:g} nm", "fraction_no_clash"),
            (f"chirality kept ({n_alpha} Cα L, {len(v.stereocentres) - n_alpha} other stereocentres as in the "
             "reference)" if len(v.stereocentres) != n_alpha else "chirality kept (L)" if n_alpha
             else "chirality kept (no stereocentres)", "fraction_chirality_kept"),
            (f"no cis/trans flip of {len(v.peptide_bond_labels)} peptide bonds ({peptide or 'none'})",
             "fraction_peptide_bonds_kept"))]
        rows.append(("frames", *(f"{c.n_frames}" for _, c in columns)))
        worst = v.worst_offenders
        if "bond" in worst:
            rows.append(("worst bond (this data)", f"{'–'.join(worst['bond']['atoms'])}: "
                         f"{worst['bond']['relative_deviation']:.1%}", *([""] * (len(columns) - 1))))
        if "contact" in worst:
            rows.append(("closest contact (this data)", f"{'–'.join(worst['contact']['atoms'])}: "
                         f"{worst['contact']['distance_nm']:.3f} nm", *([""] * (len(columns) - 1))))
        out = "<h2>Chemical validity</h2>" + html_table(["check", *(name for name, _ in columns)], rows) + "\n"
        label = html.escape(result.comparison.label) if result.comparison is not None else ""
        rows = [(t["label"], f"{t['js_divergence']:.4f}", f"{t['js_distance_scipy']:.4f}")
                for t in self.torsion_comparison or []]
        if self.tica_js_divergence is not None:
            rows.append((f"TICA plane ({'×'.join(map(str, self.tica_js_divergence.bins))} bins)",
                         f"{self.tica_js_divergence.value:.4f}", "–"))
        if rows:
            out += (f"<h2>{'Torsions' if self.torsion_comparison else 'The TICA plane'} vs {label}</h2>"
                    + html_table(["torsion" if self.torsion_comparison else "plane", "JS divergence (nats)",
                                  "JS distance, scipy (convention of MDGen/Timewarp papers)"], rows))
            if self.torsion_comparison:
                out += (f"<p class='note'>1-D histograms of {TORSION_BINS} bins on (−π, π]. The JS distance is "
                        "scipy.spatial.distance.jensenshannon (base e), the square root of the divergence — "
                        "reported only to compare with papers that use it.</p>")
        if self.pcca is not None and "populations" in self.pcca:
            pc = self.pcca
            rows = [(f"set {k + 1}", f"{a:.3f}", f"{b:.3f}")
                    for k, (a, b) in enumerate(zip(pc["populations"], pc["reference_populations"]))]
            rows.append(("outside the connected states", f"{pc['fraction_unassigned']:.3f}",
                         f"{pc['reference_fraction_unassigned']:.3f}"))
            how = "deeptime pcca(), optimised" if pc.get("optimised") else \
                "inner-simplex memberships, without pcca()'s soft optimisation"
            out += (f"<p>{pc['n_sets']}-state PCCA+ populations (convention of MDGen/Timewarp papers; MSM on "
                    f"{label} at lag {pc['lag_frames']} frames, {how}; JS divergence of the populations "
                    f"{pc['js_divergence']:.4f} nats)</p>"
                    + html_table(["PCCA+ set", "this data", result.comparison.label], rows))
        elif self.pcca is not None:
            out += f"<p class='note'>PCCA+ populations skipped: {html.escape(self.pcca['skipped'])}</p>"
        return out

    def report_figures(self, result: AnalysisView) -> list[tuple[str, "Figure"]]:
        """The free energy on the MSM plane of the analysed data, next to the comparison's when there is
        one, and then every torsion's histogram against the comparison's."""
        figures = [self._free_energy_figure(result)]
        if self.torsion_comparison and self.comparison_torsion_angles:
            figures.append(self._torsion_figure(result.comparison.label))
        return figures

    def _torsion_figure(self, label: str) -> tuple[str, "Figure"]:
        """1-D histograms of the torsions, this data against the comparison (the :data:`MAX_TORSION_PANELS`
        largest JS divergences when there are more)."""
        from matplotlib.figure import Figure

        order = np.argsort([-t["js_divergence"] for t in self.torsion_comparison], kind="stable")
        shown = sorted(order[:MAX_TORSION_PANELS].tolist())
        mine = np.degrees(np.concatenate(self.torsion_angles))
        theirs = np.degrees(np.concatenate(self.comparison_torsion_angles))
        columns = min(4, len(shown))
        rows = -(-len(shown) // columns)
        fig = Figure(figsize=(2.7 * columns + 0.4, 2.2 * rows + 0.5))
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        edges = np.linspace(-180.0, 180.0, TORSION_BINS + 1)
        for ax, k in zip(axes, shown):
            entry = self.torsion_comparison[k]
            ax.hist(theirs[:, k], bins=edges, density=True, histtype="stepfilled", color="C2", alpha=0.35, label=label)
            ax.hist(mine[:, k], bins=edges, density=True, histtype="step", color="C0", lw=1.4, label="this data")
            ax.set_title(f"{entry['label']}  (JS {entry['js_divergence']:.3f})", fontsize=8)
            ax.set_xlim(-180, 180)
            ax.set_xticks([-180, -90, 0, 90, 180])
            ax.tick_params(labelsize=7)
            ax.set_yticks([])
        for ax in axes[len(shown):]:
            ax.set_visible(False)
        axes[0].legend(fontsize=7, loc="upper left")
        fig.supxlabel("torsion (degrees)", fontsize=8)
        fig.tight_layout()
        more = "" if len(shown) == len(self.torsion_comparison) else \
            f"; the {len(shown)} of {len(self.torsion_comparison)} with the largest JS divergence"
        return (f"Torsion distributions, this data (line) vs {label} (filled); {TORSION_BINS} bins, JS in nats{more}",
                fig)

    def _free_energy_figure(self, result: AnalysisView) -> tuple[str, "Figure"]:
        from matplotlib.figure import Figure

        other = self.comparison_free_energy
        label = "this data" if other is None else f"this data vs {result.comparison.label}"
        fig = Figure(figsize=(5.0 if other is None else 10.0, 4.2))
        axes = fig.subplots(1, 1 if other is None else 2, squeeze=False)[0]
        plot = plot_ramachandran if self.plane == "ramachandran" else plot_tica_free_energy
        plot(result.free_energy, ax=axes[0], title=f"this data ({result.free_energy.n_samples} frames)")
        if other is not None:
            plot(other, ax=axes[1], title=f"{result.comparison.label} ({other.n_samples} frames)")
        if self.plane == "ramachandran":
            return f"Ramachandran free energy in kT ({label}; φ/ψ, 10° bins)", fig
        fitted = "" if self.tica is None else f"; TICA fitted on {self.tica['fitted_on']}, lag {self.tica['lag_frames']} frames"
        return f"Free energy on the TICA plane in kT ({label}{fitted})", fig


def _contour_free_energy(fes: FreeEnergySurface, x: np.ndarray, y: np.ndarray, ax: "matplotlib.axes.Axes | None",
                         max_free_energy: float) -> "matplotlib.axes.Axes":
    """Filled contours of a 2-D free energy at bin centres ``x``, ``y`` (F in kT, capped at
    ``max_free_energy``, 10 levels) with its colour bar; a new figure when ``ax`` is None."""
    import matplotlib.pyplot as plt

    if ax is None:
        ax = plt.subplots(figsize=(5.0, 4.2))[1]
    shown = np.where(np.isfinite(fes.free_energy), np.minimum(fes.free_energy, max_free_energy), np.nan)
    filled = ax.contourf(x, y, shown.T, levels=np.linspace(0.0, max_free_energy, 11), cmap="viridis")
    ax.figure.colorbar(filled, ax=ax, label="free energy (kT)")
    return ax


def plot_tica_free_energy(fes: FreeEnergySurface, ax: "matplotlib.axes.Axes | None" = None, title: str = "",
                          max_free_energy: float = 10.0) -> "matplotlib.axes.Axes":
    """Filled contours of a free energy on the TICA plane (F in kT up to ``max_free_energy``).

    Parameters
    ----------
    fes : FreeEnergySurface
        Two features: the leading TICA components.
    ax : matplotlib.axes.Axes, optional
    title : str
    max_free_energy : float

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _contour_free_energy(fes, *fes.centers, ax, max_free_energy)
    ax.set_xlabel("TIC 1")
    ax.set_ylabel("TIC 2")
    ax.set_title(title or f"Free energy on the TICA plane ({fes.n_samples} frames)", fontsize=10)
    return ax


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
    ax = _contour_free_energy(fes, *(np.degrees(c) for c in fes.centers), ax, max_free_energy)
    ax.set_xlim(-180, 180)
    ax.set_ylim(-180, 180)
    ax.set_xticks(range(-180, 181, 90))
    ax.set_yticks(range(-180, 181, 90))
    ax.set_xlabel("φ (degrees)")
    ax.set_ylabel("ψ (degrees)")
    ax.set_title(title or f"Ramachandran free energy ({fes.n_samples} frames)", fontsize=10)
    return ax
