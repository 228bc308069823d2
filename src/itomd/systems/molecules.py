r"""A user's own molecule: where it comes from and how it is prepared for MD (OpenMM, PDBFixer).

One spec syntax names every input kind (``--system SPEC`` on the command line,
:class:`MoleculeInput` from Python):

``path/to/x.pdb`` (or ``.cif``)
    A structure with a force field by name (``--forcefield amber14-all.xml``, any XML that OpenMM's
    ``ForceField`` finds: its bundled files or a path) and ``--implicit-solvent obc2|gbn2|none``.
``path/to/x.prmtop:path/to/x.inpcrd``
    Amber files, read with OpenMM's ``AmberPrmtopFile``/``AmberInpcrdFile``; the prmtop carries the
    force field, ``--implicit-solvent`` chooses the Generalized Born model.
``path/to/system.xml:path/to/x.pdb``
    An OpenMM ``System`` serialized with ``XmlSerializer`` (complete: its forces are used as they
    are) and a PDB with the topology and positions.
``peptide:SEQUENCE``
    A peptide from one-letter codes, capped with ACE/NME (``--termini capped``, the default) or with
    charged termini (``--termini charged``), built with PDBFixer: the residues' templates are placed
    along an extended chain, missing heavy atoms and hydrogens (pH 7) added.

Preparation (:func:`prepare_molecule`), the same for every kind: optional explicit solvent, energy
minimisation, a short equilibration at the temperature, and the result — the **prepared
structure** — is what every walker starts from. A campaign writes it into its store as
``structure.pdb`` and hands that file to its workers (:attr:`MoleculeInput.structure`), so all
workers simulate the same atoms at the same start whatever machine they run on, and the molecule
is built once.

Implicit solvent. ``obc2`` (the default) is OpenMM's built-in ``GBSAOBCForce`` with mbondi2 radii
and the ACE surface term — the same energies as OpenMM's ``implicit/obc2.xml`` (tested to 10⁻⁶
relative) but as a native force, which OpenMM's Reference platform steps 57× faster than the
``CustomGBForce`` of the XML file (capped alanine: 0.078 against 4.46 s per 1,000 steps). ``gbn2`` uses ``implicit/gbn2.xml`` (a custom force: slower).

Explicit solvent (``--solvent explicit``). Force-field inputs (PDB, peptide) are solvated with
OpenMM's ``Modeller``: a cubic TIP3P box (edge: the solute's extent + :data:`EXPLICIT_PADDING`), Na⁺/Cl⁻ to neutralise,
PME with a 1 nm cutoff, then minimised, :data:`NPT_EQUILIBRATION` ps of NPT (Monte Carlo barostat,
1 bar) and production at constant volume. Amber and XML inputs must arrive solvated (a box and
water in the file): their force field is theirs. Stored frames hold the **solute only**
(everything but water and ions), whole (OpenMM never wraps a molecule's atoms unless asked) and
centred on its centroid, so models learn the solute as ITO and BoPITO did from explicit-solvent MD.
The potential energy of such a system (for energy checks) is the solute's in vacuum with the same
force field; its free-energy surface is the one MD in water samples.

PDBFixer (a pip package, used also by OpenMM's own setup tools) builds and repairs structures; the
conda-only alternatives (tleap from AmberTools, ...) cannot be installed from the package registries
this project is limited to.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

import numpy as np

from itomd.errors import DataFileError, InvalidInputError, UnknownSystemError

if TYPE_CHECKING:  # pragma: no cover
    import openmm
    from openmm import app

#: Prefix of a peptide spec: ``peptide:SEQUENCE``.
PEPTIDE_PREFIX = "peptide:"
#: One-letter amino-acid codes and their residue names.
AMINO_ACIDS: dict[str, str] = {
    "A": "ALA", "R": "ARG", "N": "ASN", "D": "ASP", "C": "CYS", "Q": "GLN", "E": "GLU", "G": "GLY",
    "H": "HIS", "I": "ILE", "L": "LEU", "K": "LYS", "M": "MET", "F": "PHE", "P": "PRO", "S": "SER",
    "T": "THR", "W": "TRP", "Y": "TYR", "V": "VAL",
}
TERMINI = ("capped", "charged")
IMPLICIT_SOLVENTS = ("obc2", "gbn2", "none")
SOLVENTS = ("implicit", "explicit")
DEFAULT_FORCEFIELD = "amber14-all.xml"
#: The water model added with ``--solvent explicit`` (OpenMM's bundled TIP3P for amber14).
WATER_FORCEFIELD = "amber14/tip3p.xml"
#: Padding of the water box (nm): the solute's largest extent plus this is the cube's edge, so the
#: solute is at least this far from its periodic images.
EXPLICIT_PADDING = 1.0
#: Real-space cutoff of PME (nm).
PME_CUTOFF = 1.0
#: Length of the brief equilibration after minimisation (ps): implicit solvent / vacuum.
EQUILIBRATION = 10.0
#: Length of the NPT equilibration in explicit solvent (ps).
NPT_EQUILIBRATION = 20.0
#: Collision rate (1/ps) and step (ps) of the preparation's equilibration.
PREPARATION_FRICTION, PREPARATION_TIMESTEP = 1.0, 0.002
#: Seed of the preparation's equilibration (the prepared structure is reproducible on one platform).
PREPARATION_SEED = 2024
#: File name of the prepared structure in a store.
STRUCTURE_FILE = "structure.pdb"
#: Residue names that are solvent or ions (stripped from stored frames in explicit solvent).
SOLVENT_RESIDUES = frozenset({"HOH", "WAT", "SOL", "TIP3", "T3P", "NA", "CL", "K", "Na+", "Cl-", "K+", "MG", "CA2",
                              "Li+", "Rb+", "Cs+", "F-", "Br-", "I-"})


def molecule_spec_kind(spec: str) -> str | None:
    """What a user's molecule spec names — ``"peptide"``, ``"pdb"``, ``"amber"`` or ``"openmm-xml"`` —
    or None for any other spec (a shipped system, a Python file): the one reader of the spec's form."""
    text = spec.strip()
    if text.lower().startswith(PEPTIDE_PREFIX):
        return "peptide"
    parts = text.split(":")
    suffix = Path(parts[0]).suffix.lower()
    if len(parts) == 1 and suffix in (".pdb", ".cif", ".pdbx"):
        return "pdb"
    if len(parts) == 2 and suffix in (".prmtop", ".parm7", ".top"):
        return "amber"
    if len(parts) == 2 and suffix == ".xml":
        return "openmm-xml"
    return None


def is_molecule_spec(spec: str) -> bool:
    """Whether ``spec`` names a user's molecule (a peptide or molecular input files)."""
    return molecule_spec_kind(spec) is not None


def molecule_input_files(spec: str) -> tuple[str, ...]:
    """The input files a user's molecule spec names, as absolute paths (none for a peptide or another spec)."""
    if molecule_spec_kind(spec) in (None, "peptide"):
        return ()
    return tuple(os.path.abspath(p) for p in spec.strip().split(":"))


@dataclass(frozen=True)
class MoleculeInput:
    """Where a molecule comes from and how it is solvated (picklable; recorded in stores and models).

    Parameters
    ----------
    spec : str
        ``x.pdb``, ``x.prmtop:x.inpcrd``, ``system.xml:x.pdb`` or ``peptide:SEQUENCE``.
    forcefield : tuple of str
        OpenMM force-field XML files (PDB and peptide inputs); default ``("amber14-all.xml",)``.
    implicit_solvent : {"obc2", "gbn2", "none"}
        Generalized Born model (PDB, peptide and Amber inputs; ``none``: vacuum).
    solvent : {"implicit", "explicit"}
        ``explicit``: a TIP3P box (see the module docstring).
    termini : {"capped", "charged"}
        Peptides only.
    structure : str, optional
        Path of an already prepared structure (``structure.pdb`` of a store): used instead of
        building and preparing again.
    """

    spec: str
    forcefield: tuple[str, ...] = (DEFAULT_FORCEFIELD,)
    implicit_solvent: str = "obc2"
    solvent: str = "implicit"
    termini: str = "capped"
    structure: str | None = None

    def __post_init__(self) -> None:
        if self.implicit_solvent not in IMPLICIT_SOLVENTS:
            raise InvalidInputError(f"unknown implicit solvent '{self.implicit_solvent}': choose one of "
                                    f"{', '.join(IMPLICIT_SOLVENTS)}")
        if self.solvent not in SOLVENTS:
            raise InvalidInputError(f"unknown solvent '{self.solvent}': choose one of {', '.join(SOLVENTS)}")
        if self.termini not in TERMINI:
            raise InvalidInputError(f"unknown termini '{self.termini}': choose one of {', '.join(TERMINI)}")
        if not self.forcefield or not all(isinstance(f, str) and f for f in self.forcefield):
            raise InvalidInputError("--forcefield needs at least one force-field XML file name")
        if self.solvent == "explicit" and self.implicit_solvent not in ("none", "obc2"):
            raise InvalidInputError("explicit solvent replaces implicit solvent: drop --implicit-solvent")
        self.kind  # noqa: B018 - validates the spec's form

    @property
    def kind(self) -> str:
        """``"peptide"``, ``"pdb"``, ``"amber"`` or ``"openmm-xml"`` (:func:`molecule_spec_kind`)."""
        kind = molecule_spec_kind(self.spec)
        if kind is None:
            raise UnknownSystemError(f"'{self.spec}' is not a molecule spec: give x.pdb, x.prmtop:x.inpcrd, "
                                     "system.xml:x.pdb or peptide:SEQUENCE")
        return kind

    @property
    def sequence(self) -> str:
        """The one-letter sequence of a peptide spec (upper case)."""
        return self.spec.strip()[len(PEPTIDE_PREFIX):].strip().upper()

    @property
    def files(self) -> tuple[str, ...]:
        """The input files the spec names (absolute paths; none for a peptide)."""
        return molecule_input_files(self.spec)

    @property
    def solvent_label(self) -> str:
        """What the molecule is solvated in: ``explicit``, ``obc2``, ``gbn2`` or ``vacuum``."""
        if self.solvent == "explicit":
            return "explicit"
        return "vacuum" if self.implicit_solvent == "none" else self.implicit_solvent

    def provenance(self) -> dict[str, Any]:
        """What the molecule came from: spec, force field, solvent, termini, and every input file
        with its SHA-256 (recorded in store metadata and model files)."""
        record: dict[str, Any] = {"spec": self.spec, "kind": self.kind, "solvent": self.solvent_label}
        if self.kind in ("pdb", "peptide"):
            record["forcefield"] = list(self.forcefield)
        if self.kind == "peptide":
            record["termini"] = self.termini
            record["sequence"] = self.sequence
        record["files"] = {path: _sha256(path) for path in self.files if os.path.isfile(path)}
        if self.structure is not None and os.path.isfile(self.structure):
            record["structure"] = {"path": os.path.abspath(self.structure), "sha256": _sha256(self.structure)}
        return record


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Environment variable naming where files embedded in model files are restored (default: the user's
#: cache directory, ``$XDG_CACHE_HOME/itomd`` or ``~/.cache/itomd``).
CACHE_ENVIRONMENT = "ITOMD_CACHE"


def embed_files(paths: "Iterable[str]") -> list[dict[str, Any]]:
    """The contents of a molecule's files, to travel inside a model file.

    A model of a user's molecule needs the files it was trained on (the prepared structure, Amber or
    OpenMM XML inputs, force-field files given as paths) wherever it is sampled; :func:`restore_files`
    gives them back where the originals are missing or were changed since.

    Parameters
    ----------
    paths : iterable of str
        Files (paths that are not files are skipped).

    Returns
    -------
    list of dict
        Per file: ``path`` (absolute, as recorded), ``sha256`` and ``content`` (bytes).
    """
    embedded = []
    for path in paths:
        if os.path.isfile(path):
            content = Path(path).read_bytes()
            embedded.append({"path": os.path.abspath(path), "sha256": hashlib.sha256(content).hexdigest(),
                             "content": content})
    return embedded


def restore_files(embedded: "Iterable[Mapping[str, Any]]") -> dict[str, str]:
    """Where each embedded file (:func:`embed_files`) can be read now.

    A file still at its recorded path with the recorded SHA-256 is used there; otherwise its embedded
    content is written (atomically, once) to ``<cache>/molecule-files/<sha256>/<name>`` (see
    :data:`CACHE_ENVIRONMENT`).

    Returns
    -------
    dict
        Recorded path → path to read (only entries that differ).
    """
    from itomd._files import write_bytes_atomically

    moved = {}
    for entry in embedded:
        path, digest = str(entry["path"]), str(entry["sha256"])
        if os.path.isfile(path) and _sha256(path) == digest:
            continue
        content = bytes(entry["content"])
        if hashlib.sha256(content).hexdigest() != digest:
            raise DataFileError(f"the embedded copy of {os.path.basename(path)} is corrupt (SHA-256 mismatch)")
        target = _cache_directory() / "molecule-files" / digest / os.path.basename(path)
        if not (target.is_file() and _sha256(str(target)) == digest):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomically(target, content)
            except OSError as exc:
                raise DataFileError(f"cannot restore {os.path.basename(path)} into {target.parent} "
                                    f"({exc.strerror or exc}): set {CACHE_ENVIRONMENT} to a writable directory") from exc
        moved[path] = str(target)
    return moved


def _cache_directory() -> Path:
    configured = os.environ.get(CACHE_ENVIRONMENT)
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "itomd"


@dataclass(frozen=True)
class PreparedMolecule:
    """A molecule ready for MD: topology, prepared positions and the OpenMM systems.

    Attributes
    ----------
    topology : openmm.app.Topology
        The whole simulated system (with water and ions in explicit solvent).
    positions : np.ndarray, shape [n_total, 3]
        Prepared positions in nm (minimised and equilibrated).
    box_vectors : np.ndarray, shape [3, 3] or None
        Periodic box (nm) in explicit solvent, else None.
    solute : np.ndarray, shape [n_atoms], int
        Indices of the solute's atoms (all atoms without explicit solvent).
    input : MoleculeInput
    """

    topology: "app.Topology"
    positions: np.ndarray
    box_vectors: np.ndarray | None
    solute: np.ndarray
    input: MoleculeInput
    _solute_topology: "app.Topology"
    _system_xml: str
    _solute_system_xml: str | None

    @property
    def n_atoms(self) -> int:
        """Atoms of the solute (what stored frames hold)."""
        return len(self.solute)

    def solute_topology(self) -> "app.Topology":
        """The solute's topology (the whole topology without explicit solvent)."""
        return self._solute_topology

    def solute_positions(self) -> np.ndarray:
        """The solute's prepared positions, centred; shape [3·n_atoms] (nm)."""
        x = self.positions[self.solute]
        return (x - x.mean(axis=0)).reshape(-1)

    def dynamics_system(self) -> "openmm.System":
        """The OpenMM ``System`` MD runs (bonds to hydrogen constrained; water in explicit solvent)."""
        import openmm

        return openmm.XmlSerializer.deserialize(self._system_xml)

    def energy_system(self) -> "openmm.System":
        """An OpenMM ``System`` of the solute alone, for energies (explicit solvent: in vacuum)."""
        import openmm

        if self._solute_system_xml is None:
            raise InvalidInputError(f"energies of the solute of '{self.input.spec}' alone are not available: its "
                                    "force field comes with its solvated input")
        return openmm.XmlSerializer.deserialize(self._solute_system_xml)


# -- reading the inputs ------------------------------------------------------------------------------
def _require_file(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise DataFileError(f"{what} not found: {path}")
    return path


def _forcefield(files: tuple[str, ...]) -> "app.ForceField":
    from openmm import app

    try:
        return app.ForceField(*files)
    except (ValueError, OSError) as exc:
        names = ", ".join(files)
        reason = " ".join(str(exc).split())
        raise InvalidInputError(f"unknown force field {names} ({reason}); OpenMM bundles e.g. amber14-all.xml, "
                                "amber99sbildn.xml, charmm36.xml, or give the path of an XML file") from None
    except Exception as exc:  # a malformed XML file
        raise InvalidInputError(f"cannot read force field {', '.join(files)}: {type(exc).__name__}: "
                                f"{' '.join(str(exc).split())}") from None


def _read_structure(path: str) -> tuple["app.Topology", np.ndarray, np.ndarray | None]:
    """Topology, positions [n, 3] (nm) and box vectors [3, 3] or None of a PDB/PDBx file."""
    from openmm import app

    _require_file(path, "structure file")
    try:
        reader = app.PDBxFile(path) if Path(path).suffix.lower() in (".cif", ".pdbx") else app.PDBFile(path)
    except Exception as exc:
        raise DataFileError(f"cannot read {path} as a structure: {type(exc).__name__}: "
                            f"{' '.join(str(exc).split())}") from None
    if reader.topology.getNumAtoms() == 0:
        raise DataFileError(f"{path} holds no atoms")
    positions = np.asarray(reader.getPositions(asNumpy=True)._value, dtype=np.float64)
    box = reader.topology.getPeriodicBoxVectors()
    box = None if box is None else np.asarray(_vectors_in_nm(box), dtype=np.float64)
    return reader.topology, positions, box


def _vectors_in_nm(box) -> list[list[float]]:
    from openmm import unit

    return [[float(c) for c in vec.value_in_unit(unit.nanometer)] for vec in box]


def _template_failure(exc: Exception, path: str, forcefield: tuple[str, ...],
                      topology: "app.Topology | None" = None) -> InvalidInputError:
    """The one line for a residue the force field has no template for (OpenMM's reason, without its
    links, and what to do). With ``topology``, a residue reported as missing hydrogens that already
    has some is told its names or protonation differ from the force field's, not to add hydrogens."""
    reason = " ".join(str(exc).split())
    reason = reason.split(" For more information")[0].split(" You may be able")[0].rstrip(". ")
    missing_h = "missing" in reason and (" H atom" in reason or "hydrogen" in reason)
    if missing_h and _residue_has_hydrogens(reason, topology):
        hint = ("its hydrogens are there but do not match the force field's template (another force field's "
                "atom names or another protonation state): rename them to this force field's names, give the "
                "force field the file was prepared for (--forcefield), or strip the hydrogens and rebuild them "
                "with PDBFixer")
    elif missing_h:
        hint = ("add its hydrogens (e.g. with PDBFixer or OpenMM's Modeller.addHydrogens), or build a peptide with "
                "peptide:SEQUENCE")
    else:
        hint = "give a force field that has it (--forcefield), or rename it to a standard residue"
    return InvalidInputError(f"{path}: {reason} (force field {', '.join(forcefield)}); {hint}")


def _residue_has_hydrogens(reason: str, topology: "app.Topology | None") -> bool:
    """Whether the residue OpenMM's template error names ("... for residue K (NAME) ...") has hydrogens."""
    import re

    match = re.search(r"residue (\d+) \(", reason)
    if topology is None or match is None:
        return False
    residues = list(topology.residues())
    index = int(match.group(1))
    if index >= len(residues):
        return False
    return any(atom.element is not None and atom.element.symbol == "H" for atom in residues[index].atoms())


def _add_obc2(system: "openmm.System", topology: "app.Topology") -> None:
    """Add OpenMM's native OBC2 force (mbondi2 radii, ACE surface term) to a force-field system."""
    import openmm
    from openmm.app.internal.customgbforces import GBSAOBC2Force

    nonbonded = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)]
    if len(nonbonded) != 1:
        raise InvalidInputError("implicit solvent needs a force field with one NonbondedForce")
    nonbonded[0].setReactionFieldDielectric(1.0)
    force = openmm.GBSAOBCForce()
    force.setSoluteDielectric(1.0)
    force.setSolventDielectric(78.5)
    force.setNonbondedMethod(openmm.GBSAOBCForce.NoCutoff)
    for i, (radius, scale) in enumerate(GBSAOBC2Force.getStandardParameters(topology)):
        charge = nonbonded[0].getParticleParameters(i)[0]
        force.addParticle(charge, float(radius), float(scale))
    system.addForce(force)


def _forcefield_system(topology: "app.Topology", forcefield: tuple[str, ...], implicit_solvent: str, periodic: bool,
                       constraints: bool, label: str) -> "openmm.System":
    """An OpenMM System from force-field XMLs (one-line errors for missing templates)."""
    from openmm import app

    files = forcefield + ((WATER_FORCEFIELD,) if periodic else ()) + (("implicit/gbn2.xml",) if
                                                                      implicit_solvent == "gbn2" and not periodic else ())
    ff = _forcefield(files)
    kwargs = dict(constraints=app.HBonds if constraints else None, rigidWater=True)
    if periodic:
        kwargs.update(nonbondedMethod=app.PME, nonbondedCutoff=PME_CUTOFF)
    else:
        kwargs.update(nonbondedMethod=app.NoCutoff)
    try:
        system = ff.createSystem(topology, **kwargs)
    except ValueError as exc:
        if "template" in str(exc).lower():
            raise _template_failure(exc, label, files, topology) from None
        raise InvalidInputError(f"{label}: {' '.join(str(exc).split())}") from None
    if implicit_solvent == "obc2" and not periodic:
        _add_obc2(system, topology)
    return system


@dataclass
class _Raw:
    """A molecule as read, before preparation."""

    topology: "app.Topology"
    positions: np.ndarray
    box: np.ndarray | None
    system_xml: str  # the dynamics system (constraints on)
    solute_system_xml: str | None
    solute_topology: "app.Topology"  # without water and ions


def _serialize(system: "openmm.System") -> str:
    import openmm

    return openmm.XmlSerializer.serialize(system)


def _solute_indices(topology: "app.Topology") -> np.ndarray:
    return np.asarray([a.index for a in topology.atoms() if a.residue.name not in SOLVENT_RESIDUES], dtype=int)


def _read_input(source: MoleculeInput, structure: tuple | None) -> _Raw:
    """Read (and build) the molecule; ``structure`` (topology, positions, box) replaces its positions."""
    kind = source.kind
    if kind in ("pdb", "peptide"):
        if structure is not None:
            topology, positions, box = structure
        elif kind == "pdb":
            topology, positions, box = _read_structure(source.files[0])
            box = None
        else:
            topology, positions = build_peptide(source.sequence, source.termini)
            box = None
        label = source.files[0] if kind == "pdb" else source.spec
        if source.solvent == "explicit" and structure is None:
            topology, positions, box = _solvate(topology, positions, source.forcefield, label)
        periodic = source.solvent == "explicit"
        system = _forcefield_system(topology, source.forcefield, source.implicit_solvent, periodic, True, label)
        solute_top = _strip_solvent(topology, positions) if periodic else topology
        solute = _forcefield_system(solute_top, source.forcefield, "none" if periodic else source.implicit_solvent,
                                    False, False, label)
        return _Raw(topology, positions, box, _serialize(system), _serialize(solute), solute_top)
    if kind == "amber":
        return _read_amber(source, structure)
    return _read_openmm_xml(source, structure)


def _read_amber(source: MoleculeInput, structure: tuple | None) -> _Raw:
    from openmm import app

    prmtop_path, inpcrd_path = source.files
    _require_file(prmtop_path, "Amber topology (prmtop)")
    _require_file(inpcrd_path, "Amber coordinates (inpcrd)")
    try:
        prmtop = app.AmberPrmtopFile(prmtop_path)
    except Exception as exc:
        raise DataFileError(f"cannot read {prmtop_path} as an Amber prmtop: {' '.join(str(exc).split())}") from None
    try:
        inpcrd = app.AmberInpcrdFile(inpcrd_path)
    except Exception as exc:
        raise DataFileError(f"cannot read {inpcrd_path} as Amber coordinates: {' '.join(str(exc).split())}") from None
    topology = prmtop.topology
    positions = np.asarray(inpcrd.getPositions(asNumpy=True)._value, dtype=np.float64)
    if len(positions) != topology.getNumAtoms():
        raise InvalidInputError(f"{inpcrd_path} has {len(positions)} atoms but {prmtop_path} has "
                                f"{topology.getNumAtoms()}: they do not belong together")
    box = None
    if inpcrd.boxVectors is not None:
        box = np.asarray(_vectors_in_nm(inpcrd.boxVectors))
    if structure is not None:
        positions, box = structure[1], structure[2]
    periodic = box is not None
    if source.solvent == "explicit" and not periodic:
        raise InvalidInputError(f"{prmtop_path} has no periodic box: explicit solvent with Amber inputs needs a "
                                "solvated prmtop/inpcrd pair (or use --implicit-solvent)")
    if periodic and source.solvent != "explicit":
        raise InvalidInputError(f"{prmtop_path}:{inpcrd_path} is a periodic (solvated) system: add --solvent explicit")
    implicit = {"obc2": app.OBC2, "gbn2": app.GBn2, "none": None}[source.implicit_solvent]
    kwargs = (dict(nonbondedMethod=app.PME, nonbondedCutoff=PME_CUTOFF) if periodic else
              dict(nonbondedMethod=app.NoCutoff, implicitSolvent=implicit, implicitSolventKappa=0.0))
    try:
        system = prmtop.createSystem(constraints=app.HBonds, removeCMMotion=True, **kwargs)
        solute = None if periodic else prmtop.createSystem(constraints=None, removeCMMotion=True, **kwargs)
    except Exception as exc:
        raise InvalidInputError(f"{prmtop_path}: {' '.join(str(exc).split())}") from None
    if periodic:
        system.setDefaultPeriodicBoxVectors(*box)
    return _Raw(topology, positions, box, _serialize(system), None if solute is None else _serialize(solute),
                _strip_solvent(topology, positions) if periodic else topology)


def _read_openmm_xml(source: MoleculeInput, structure: tuple | None) -> _Raw:
    import openmm

    xml_path, pdb_path = source.files
    _require_file(xml_path, "OpenMM System XML")
    topology, positions, box = _read_structure(pdb_path)
    try:
        with open(xml_path) as handle:
            system = openmm.XmlSerializer.deserialize(handle.read())
    except Exception as exc:
        raise DataFileError(f"cannot read {xml_path} as a serialized OpenMM System: "
                            f"{' '.join(str(exc).split())}") from None
    if not isinstance(system, openmm.System):
        raise DataFileError(f"{xml_path} holds a serialized {type(system).__name__}, not an OpenMM System")
    if system.getNumParticles() != topology.getNumAtoms():
        raise InvalidInputError(f"{xml_path} has {system.getNumParticles()} particles but {pdb_path} has "
                                f"{topology.getNumAtoms()} atoms: they do not belong together")
    if structure is not None:
        positions, box = structure[1], structure[2]
    periodic = system.usesPeriodicBoundaryConditions()
    if periodic != (source.solvent == "explicit"):
        raise InvalidInputError(f"{xml_path} is {'a periodic' if periodic else 'a non-periodic'} System: "
                                f"{'add' if periodic else 'drop'} --solvent explicit")
    if source.implicit_solvent not in ("obc2", "none") or source.forcefield != (DEFAULT_FORCEFIELD,):
        raise InvalidInputError("an OpenMM System XML carries its own force field and solvent: drop --forcefield "
                                "and --implicit-solvent")
    if periodic:
        if box is None:
            box = np.asarray(_vectors_in_nm(system.getDefaultPeriodicBoxVectors()))
        system.setDefaultPeriodicBoxVectors(*box)
    xml = _serialize(system)
    return _Raw(topology, positions, box, xml, None if periodic else xml,
                _strip_solvent(topology, positions) if periodic else topology)


def _strip_solvent(topology: "app.Topology", positions: np.ndarray) -> "app.Topology":
    from openmm import app

    modeller = app.Modeller(topology, positions)
    modeller.delete([a for a in topology.atoms() if a.residue.name in SOLVENT_RESIDUES])
    return modeller.topology


def _solvate(topology, positions, forcefield: tuple[str, ...], label: str):
    """A cubic TIP3P box with Na⁺/Cl⁻ to neutralise: edge = the solute's largest extent +
    :data:`EXPLICIT_PADDING` (the solute is that far from its periodic images), at least 2.1 × the PME
    cutoff."""
    import openmm
    from openmm import app, unit

    ff = _forcefield(forcefield + (WATER_FORCEFIELD,))
    xyz = np.asarray(positions, dtype=np.float64)
    extent = float(np.max(np.linalg.norm(xyz[:, None] - xyz[None], axis=-1))) if len(xyz) > 1 else 0.0
    edge = max(extent + EXPLICIT_PADDING, 2.1 * PME_CUTOFF)
    modeller = app.Modeller(topology, xyz * unit.nanometer)
    try:
        with _seeded_python_random():  # which waters become ions: Python's random module
            modeller.addSolvent(ff, model="tip3p", boxSize=openmm.Vec3(edge, edge, edge) * unit.nanometer, neutralize=True)
    except ValueError as exc:
        raise _template_failure(exc, label, forcefield, topology) from None
    positions = np.asarray(modeller.getPositions().value_in_unit(unit.nanometer), dtype=np.float64)
    box = np.asarray(_vectors_in_nm(modeller.topology.getPeriodicBoxVectors()))
    return modeller.topology, positions, box


@contextlib.contextmanager
def _seeded_python_random(seed: int = PREPARATION_SEED) -> Iterator[None]:
    """Seed Python's ``random`` (which OpenMM's ``Modeller`` draws from) inside, restore its state after."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


# -- building a peptide --------------------------------------------------------------------------------
def build_peptide(sequence: str, termini: str = "capped") -> tuple["app.Topology", np.ndarray]:
    """A peptide from one-letter codes, built with PDBFixer (heavy atoms and hydrogens at pH 7).

    The residues' templates are placed along an extended chain (one Cα every 0.38 nm) and PDBFixer
    adds the missing atoms (it superposes its templates and relaxes clashes); the result is not yet
    minimised (:func:`prepare_molecule` does that).

    Parameters
    ----------
    sequence : str
        One-letter codes (``"AA"``, ``"GSV"``; case-insensitive).
    termini : {"capped", "charged"}
        ACE/NME caps, or NH₃⁺/COO⁻.

    Returns
    -------
    topology : openmm.app.Topology
    positions : np.ndarray, shape [n_atoms, 3]
        nm.
    """
    import openmm
    from openmm import unit
    from pdbfixer import PDBFixer

    sequence = sequence.strip().upper()
    if not sequence:
        raise InvalidInputError("peptide: needs a sequence of one-letter amino-acid codes, e.g. peptide:AA")
    unknown = sorted({c for c in sequence if c not in AMINO_ACIDS})
    if unknown:
        raise InvalidInputError(f"peptide:{sequence}: {', '.join(repr(c) for c in unknown)} "
                                f"{'is not an amino acid' if len(unknown) == 1 else 'are not amino acids'} "
                                f"(one-letter codes: {''.join(AMINO_ACIDS)})")
    if termini not in TERMINI:
        raise InvalidInputError(f"unknown termini '{termini}': choose one of {', '.join(TERMINI)}")
    residues = [AMINO_ACIDS[c] for c in sequence]
    backbone = [(i + 1, name, atom) for i, name in enumerate(residues) for atom in ("N", "CA", "C")]
    if termini == "capped":
        backbone = ([(1, "ACE", "CH3"), (1, "ACE", "C")] + [(number + 1, name, atom) for number, name, atom in backbone]
                    + [(len(residues) + 2, "NME", "N"), (len(residues) + 2, "NME", "C")])
    xyz = _extended_backbone(len(backbone), start_with_carbonyl=termini == "capped")
    lines = [f"ATOM  {i + 1:5d}  {atom:<3s} {name:>3s} A{number:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00"
             f"          {atom[0]:>2s}" for i, ((number, name, atom), (x, y, z)) in enumerate(zip(backbone, 10 * xyz))]
    lines += ["TER", "END"]
    with _seeded_python_random():  # OpenMM's Modeller places hydrogens with Python's random module
        fixer = PDBFixer(pdbfile=io.StringIO("\n".join(lines) + "\n"),
                         platform=openmm.Platform.getPlatformByName("Reference"))
        fixer.missingResidues = {}
        fixer.findMissingAtoms()
        fixer.addMissingAtoms(seed=PREPARATION_SEED)
        heavy = np.asarray(fixer.positions.value_in_unit(unit.nanometer), dtype=np.float64)
        fixer.positions = unit.Quantity([openmm.Vec3(*p) for p in _mirrored_d_side_chains(fixer.topology, heavy)],
                                        unit.nanometer)
        fixer.addMissingHydrogens(7.0)
    positions = np.asarray(fixer.positions.value_in_unit(unit.nanometer), dtype=np.float64)
    return fixer.topology, positions


#: Backbone atoms of a residue (kept when a side chain is mirrored).
_BACKBONE_NAMES = frozenset({"N", "CA", "C", "O", "OXT", "H", "H1", "H2", "H3", "HA"})


def _mirrored_d_side_chains(topology: "app.Topology", positions: np.ndarray) -> np.ndarray:
    """Positions [n_atoms, 3] with every D-residue's side chain mirrored through its N–Cα–C plane.

    PDBFixer places a residue's missing atoms by overlaying its template on the atoms present. A
    terminal residue of a chain with charged termini has only N, Cα and C there — three points, which
    a mirror image of the template fits as well as the template itself — and came out as a D-amino
    acid (measured: both termini of ``peptide:KDW``). Reflecting the whole side chain (Cβ and beyond)
    through the N–Cα–C plane turns the mirrored template back into the L-residue, its other
    stereocentres (Thr, Ile Cβ) included; hydrogens are added afterwards from the heavy atoms.
    """
    positions = positions.copy()
    for residue, atoms in _d_residues(topology, positions):
        ca = positions[atoms["CA"]]
        n, c = (positions[atoms[name]] - ca for name in ("N", "C"))
        normal = np.cross(n, c)
        normal /= np.linalg.norm(normal)
        side = [index for name, index in atoms.items() if name not in _BACKBONE_NAMES]
        offsets = positions[side] - ca
        positions[side] = ca + offsets - 2.0 * np.outer(offsets @ normal, normal)
    return positions


def _d_residues(topology: "app.Topology", positions: np.ndarray) -> list[tuple["app.Residue", dict[str, int]]]:
    """Every residue whose Cα (with N, C and Cβ) is D, with its atoms by name: (N−Cα)·((C−Cα)×(Cβ−Cα))
    must be positive, the sign ``chemical_validity`` requires of every Cα. Glycine has no Cβ."""
    found = []
    for residue in topology.residues():
        atoms = {atom.name: atom.index for atom in residue.atoms()}
        if not all(name in atoms for name in ("N", "CA", "C", "CB")):
            continue
        ca = positions[atoms["CA"]]
        n, c, cb = (positions[atoms[name]] - ca for name in ("N", "C", "CB"))
        if np.dot(n, np.cross(c, cb)) <= 0:
            found.append((residue, atoms))
    return found


#: Ideal backbone geometry: bond lengths (nm) C–N, N–Cα, Cα–C and angles (degrees) at C, N, Cα.
_BOND = {"C": 0.1329, "N": 0.1458, "CA": 0.1525}
_ANGLE = {"C": 116.2, "N": 121.7, "CA": 111.2}
#: Backbone torsions (degrees) of the built chain: φ, ψ of the polyproline II region, trans ω.
_PHI, _PSI, _OMEGA = -75.0, 145.0, 180.0


def _extended_backbone(n_atoms: int, start_with_carbonyl: bool) -> np.ndarray:
    """Positions [n_atoms, 3] (nm) of a backbone chain N, Cα, C, N, … (or Cα, C, N, … for a capped
    chain, whose ACE methyl and carbonyl play Cα and C) in the PII conformation with trans peptide
    bonds, placed atom by atom from bond lengths, angles and torsions."""
    kinds = ["CA", "C", "N"] if start_with_carbonyl else ["N", "CA", "C"]
    kinds = [kinds[i % 3] for i in range(n_atoms)]
    torsion_before = {"N": _PSI, "CA": _OMEGA, "C": _PHI}  # torsion ending at the atom placed
    xyz = np.zeros((n_atoms, 3))
    if n_atoms > 1:
        xyz[1] = [_BOND[kinds[1]] if kinds[1] != "N" else _BOND["C"], 0.0, 0.0]
    for i in range(2, n_atoms):
        kind = kinds[i]
        length = {"N": _BOND["C"], "CA": _BOND["N"], "C": _BOND["CA"]}[kind]
        angle = np.radians(_ANGLE[kinds[i - 1]])
        if i == 2:
            xyz[2] = xyz[1] + length * np.array([-np.cos(angle), np.sin(angle), 0.0])
            continue
        a, b, c = xyz[i - 3], xyz[i - 2], xyz[i - 1]
        bc = (c - b) / np.linalg.norm(c - b)
        normal = np.cross(b - a, bc)
        normal /= np.linalg.norm(normal)
        torsion = np.radians(torsion_before[kind])
        step = np.array([-length * np.cos(angle), length * np.sin(angle) * np.cos(torsion),
                         length * np.sin(angle) * np.sin(torsion)])
        xyz[i] = c + step[0] * bc + step[1] * np.cross(normal, bc) + step[2] * normal
    return xyz


# -- preparation ---------------------------------------------------------------------------------------
def _relax(raw: _Raw, temperature: float, explicit: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Minimise, then equilibrate briefly (NPT in explicit solvent); returns positions and box.

    Langevin at 1/ps with 2 fs steps (:data:`PREPARATION_FRICTION`, :data:`PREPARATION_TIMESTEP`),
    whatever the production's parameters, so the prepared structure depends on the molecule and
    the temperature only.
    """
    import openmm

    friction, timestep = PREPARATION_FRICTION, PREPARATION_TIMESTEP
    system = openmm.XmlSerializer.deserialize(raw.system_xml)
    if explicit:
        barostat = openmm.MonteCarloBarostat(1.0, temperature, 25)
        barostat.setRandomNumberSeed(PREPARATION_SEED)
        system.addForce(barostat)
    integrator = openmm.LangevinMiddleIntegrator(temperature, friction, timestep)
    integrator.setRandomNumberSeed(PREPARATION_SEED)
    name = preparation_platform(system)
    platform = openmm.Platform.getPlatformByName(name)
    properties = {"Threads": "2"} if name == "CPU" else {}
    context = openmm.Context(system, integrator, platform, properties)
    if raw.box is not None:
        context.setPeriodicBoxVectors(*raw.box)
    context.setPositions(raw.positions)
    context.applyConstraints(1e-5)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 0)
    context.setVelocitiesToTemperature(temperature, PREPARATION_SEED)
    length = NPT_EQUILIBRATION if explicit else EQUILIBRATION
    integrator.step(max(1, int(round(length / timestep))))
    state = context.getState(getPositions=True)
    positions = np.asarray(state.getPositions(asNumpy=True)._value, dtype=np.float64)
    box = np.asarray(_vectors_in_nm(state.getPeriodicBoxVectors())) if raw.box is not None else None
    if not np.all(np.isfinite(positions)):
        raise InvalidInputError("the structure blew up during its equilibration: check it for overlapping atoms")
    return positions, box


def preparation_platform(system: "openmm.System") -> str:
    """The fastest OpenMM platform here for ``system``: ``CPU`` for periodic systems (PME) and custom
    Generalized Born forces (GBn2: compiled on CPU, interpreted on Reference), ``Reference`` for
    small molecules with native forces (least per-step overhead)."""
    import openmm

    custom = any(isinstance(f, openmm.CustomGBForce) for f in system.getForces())
    return "CPU" if system.usesPeriodicBoundaryConditions() or custom else "Reference"


def _check_peptide_geometry(topology: "app.Topology", positions: np.ndarray, label: str) -> None:
    """A freshly built peptide must have L-residues and trans peptide bonds (PDBFixer places templates)."""
    import mdtraj

    d_residues = [f"{residue.name}{residue.index + 1}" for residue, _ in _d_residues(topology, positions)]
    if d_residues:
        raise InvalidInputError(f"{label}: building produced D-residues ({', '.join(d_residues)}); please report this "
                                "sequence")
    traj = mdtraj.Trajectory(positions[None], mdtraj.Topology.from_openmm(topology))
    _, omega = mdtraj.compute_omega(traj)
    if omega.size and np.any(np.abs(omega) < np.pi / 2):
        raise InvalidInputError(f"{label}: building produced a cis peptide bond; please report this sequence")


@functools.lru_cache(maxsize=8)
def _prepared(source: MoleculeInput, temperature: float, file_state: tuple) -> PreparedMolecule:
    structure = _read_structure(source.structure) if source.structure is not None else None
    raw = _read_input(source, structure)
    if structure is None:
        if source.kind == "peptide":
            _check_peptide_geometry(raw.topology, raw.positions, source.spec)
        positions, box = _relax(raw, temperature, source.solvent == "explicit")
    else:
        topology = structure[0]
        if topology.getNumAtoms() != raw.topology.getNumAtoms():
            raise DataFileError(f"{source.structure} has {topology.getNumAtoms()} atoms, not the "
                                f"{raw.topology.getNumAtoms()} of {source.spec}: it is another molecule's structure")
        positions, box = raw.positions, raw.box
    solute = _solute_indices(raw.topology) if source.solvent == "explicit" else np.arange(raw.topology.getNumAtoms())
    if len(solute) == 0:
        raise InvalidInputError(f"{source.spec} holds only water and ions")
    return PreparedMolecule(raw.topology, positions, box, solute, source, raw.solute_topology, raw.system_xml,
                            raw.solute_system_xml)


def prepare_molecule(source: MoleculeInput, temperature: float) -> PreparedMolecule:
    """Read, build and prepare a molecule (minimised, briefly equilibrated); cached per process.

    With ``source.structure`` set, the prepared structure is read from that file instead (what
    campaign workers do: every worker simulates the same atoms).

    Parameters
    ----------
    source : MoleculeInput
    temperature : float
        Kelvin.

    Returns
    -------
    PreparedMolecule
    """
    files = source.files + ((source.structure,) if source.structure else ())
    state = tuple((f, os.path.getmtime(f) if os.path.isfile(f) else None) for f in files)
    return _prepared(source, float(temperature), state)


def write_structure(prepared: PreparedMolecule, path: str | os.PathLike) -> Path:
    """Write the prepared structure (all atoms, box in explicit solvent) as a PDB file, atomically."""
    from openmm import app, unit

    from itomd._files import write_text_atomically

    topology = prepared.topology
    if prepared.box_vectors is not None:
        topology.setPeriodicBoxVectors([list(v) for v in prepared.box_vectors] * unit.nanometer)
    buffer = io.StringIO()
    app.PDBFile.writeFile(topology, prepared.positions * unit.nanometer, buffer, keepIds=True)
    return write_text_atomically(Path(path), buffer.getvalue())


__all__ = ["MoleculeInput", "PreparedMolecule", "prepare_molecule", "build_peptide", "write_structure",
           "is_molecule_spec", "molecule_spec_kind", "molecule_input_files", "AMINO_ACIDS", "TERMINI", "IMPLICIT_SOLVENTS", "SOLVENTS", "DEFAULT_FORCEFIELD",
           "STRUCTURE_FILE"]
