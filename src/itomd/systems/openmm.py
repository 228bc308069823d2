r"""Molecules through OpenMM: the one place OpenMM's units meet the library's.

Library tensors hold positions in **nm**, flattened per frame to ``[*batch, 3·n_atoms]`` (atom-major:
x₀, y₀, z₀, x₁, …), energies in **kT** and times in **ps**. OpenMM ``Quantity`` objects never leave
this module (bgflow's ``OpenMMBridge`` pattern).

Shipped molecules
-----------------
``ala2`` (alias ``ala2-vacuum``)
    Alanine dipeptide (Ace-Ala-Nme, 22 atoms), AMBER ff96, in vacuum. The structure and force field
    are the files openmmtools ships (``openmmtools/data/alanine-dipeptide-gbsa``); they are read
    with OpenMM's own Amber parser, so openmmtools' Python code is not imported.
``ala2-implicit``
    The same molecule in OBC2 implicit solvent through OpenMM's built-in ``GBSAOBCForce``
    (≈ 50× faster here than openmmtools' OBC1 ``CustomGBForce``).

Dynamics: Langevin (OpenMM's ``LangevinMiddleIntegrator``), 2 fs steps, bonds to hydrogen
constrained, 300 K, collision rate 1/ps; frames every 1 ps unless overridden.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from itomd._files import write_text_atomically
from itomd.errors import DataFileError, InvalidInputError
from itomd.systems.potential import Potential
from itomd.systems.system import System

if TYPE_CHECKING:  # pragma: no cover
    import mdtraj
    import openmm

#: Boltzmann constant × Avogadro in kJ/(mol K) (CODATA 2018, OpenMM's value).
MOLAR_GAS_CONSTANT = 0.00831446261815324
#: Shipped molecules: name -> (molecule, solvent).
MOLECULES: dict[str, tuple[str, str]] = {
    "ala2": ("alanine-dipeptide", "vacuum"),
    "ala2-vacuum": ("alanine-dipeptide", "vacuum"),
    "ala2-implicit": ("alanine-dipeptide", "obc2"),
}
SOLVENTS = ("vacuum", "obc2")
DEFAULT_TEMPERATURE = 300.0  # K
DEFAULT_COLLISION_RATE = 1.0  # 1/ps
DEFAULT_TIMESTEP = 0.002  # ps
DEFAULT_FRAME_INTERVAL = 1.0  # ps
#: File name of the topology written next to a molecule's trajectories in a store.
TOPOLOGY_FILE = "topology.pdb"


def kT_in_kj_per_mol(temperature: float) -> float:
    """Thermal energy k_B·T in kJ/mol at ``temperature`` kelvin."""
    return MOLAR_GAS_CONSTANT * float(temperature)


def _openmmtools_data(*parts: str) -> Path:
    """Path of a data file shipped with openmmtools (found without importing the package)."""
    spec = importlib.util.find_spec("openmmtools")
    if spec is None or not spec.submodule_search_locations:
        raise DataFileError("openmmtools is not installed; it ships the alanine dipeptide files "
                            "(pip install openmmtools)")
    path = Path(list(spec.submodule_search_locations)[0], "data", *parts)
    if not path.is_file():
        raise DataFileError(f"the openmmtools installation lacks {path}")
    return path


@functools.lru_cache(maxsize=4)
def _amber_files(molecule: str):
    if molecule != "alanine-dipeptide":
        raise InvalidInputError(f"unknown molecule '{molecule}'")
    from openmm import app

    prmtop = app.AmberPrmtopFile(str(_openmmtools_data("alanine-dipeptide-gbsa", "alanine-dipeptide.prmtop")))
    inpcrd = app.AmberInpcrdFile(str(_openmmtools_data("alanine-dipeptide-gbsa", "alanine-dipeptide.crd")))
    return prmtop, inpcrd


class OpenMMPotential(Potential):
    """The potential energy of a molecule, in kT, on flattened positions in nm.

    Evaluated by an OpenMM ``Reference`` context (double precision, one per process, created on
    first use and not pickled). Forces are OpenMM's analytic forces.

    Parameters
    ----------
    molecule : str
    solvent : {"vacuum", "obc2"}
    temperature : float
        Kelvin; sets kT, the energy unit.
    """

    def __init__(self, molecule: str = "alanine-dipeptide", solvent: str = "vacuum",
                 temperature: float = DEFAULT_TEMPERATURE):
        self.molecule = molecule
        self.solvent = solvent
        self.temperature = float(temperature)
        prmtop, _ = _amber_files(molecule)
        super().__init__(3 * prmtop.topology.getNumAtoms())
        self.name = f"{molecule} ({solvent})"
        self._context = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_context"] = None
        return state

    def _context_for_evaluation(self):
        if self._context is None:
            import openmm

            system = build_openmm_system(self.molecule, self.solvent, constraints=False)
            integrator = openmm.VerletIntegrator(0.001)
            self._context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
        return self._context

    def _evaluate(self, x: torch.Tensor, forces: bool) -> torch.Tensor:
        kT = kT_in_kj_per_mol(self.temperature)
        flat = x.detach().reshape(-1, self.dim).to(torch.float64).cpu().numpy()
        context = self._context_for_evaluation()
        out = np.empty((len(flat), self.dim) if forces else (len(flat),))
        for i, positions in enumerate(flat):
            context.setPositions(positions.reshape(-1, 3))
            state = context.getState(getEnergy=not forces, getForces=forces)
            if forces:
                out[i] = np.asarray(state.getForces(asNumpy=True)._value).reshape(-1) / kT
            else:
                out[i] = state.getPotentialEnergy()._value / kT
        return torch.as_tensor(out, dtype=x.dtype).reshape(x.shape if forces else x.shape[:-1])

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return self._evaluate(x, forces=False)

    def _force(self, x: torch.Tensor) -> torch.Tensor:
        return self._evaluate(x, forces=True)


def build_openmm_system(molecule: str, solvent: str, constraints: bool = True) -> "openmm.System":
    """OpenMM ``System`` of a shipped molecule (no cutoff; bonds to H constrained if asked).

    ``solvent="obc2"`` adds OpenMM's built-in ``GBSAOBCForce`` (OBC2, no salt) with the radii and
    screening factors of the prmtop file.
    """
    from openmm import app

    if solvent not in SOLVENTS:
        raise InvalidInputError(f"unknown solvent '{solvent}': choose one of {', '.join(SOLVENTS)}")
    prmtop, _ = _amber_files(molecule)
    return prmtop.createSystem(nonbondedMethod=app.NoCutoff, constraints=app.HBonds if constraints else None,
                               implicitSolvent=app.OBC2 if solvent == "obc2" else None,
                               implicitSolventKappa=0.0, removeCMMotion=True)


@dataclass(frozen=True)
class MolecularSystem(System):
    r"""A molecule simulated by OpenMM: a :class:`System` in nm, ps and kT.

    ``kT`` is 1 (energies are in units of k_B·T at ``temperature``), ``friction`` is the Langevin
    collision rate in 1/ps, ``timestep`` and ``frame_interval`` are in ps. Coordinates are flattened
    positions ``[*batch, 3·n_atoms]`` in nm. ``mass`` and ``box`` are not parameters of a molecule
    (OpenMM has the masses, see :meth:`masses`; molecules have no box): they keep the values 1 and
    ``None`` that the stored metadata has always recorded, and cannot be set.

    Its dynamics is OpenMM's Langevin integrator (:attr:`integrators` ``("langevin-middle",)``),
    campaigns start from the shipped structure (:meth:`default_start`) in chunks of
    :attr:`default_chunk_size` ``= 4`` walkers (one OpenMM context per walker), and a store of its
    trajectories holds ``topology.pdb`` (:meth:`write_store_files`).

    Parameters
    ----------
    molecule : str
        ``"alanine-dipeptide"``.
    solvent : {"vacuum", "obc2"}
    temperature : float
        Kelvin.
    """

    integrators: ClassVar[tuple[str, ...]] = ("langevin-middle",)
    default_chunk_size: ClassVar[int] = 4
    time_unit: ClassVar[str] = "ps"

    mass: float = field(default=1.0, init=False)
    box: None = field(default=None, init=False)
    molecule: str = "alanine-dipeptide"
    solvent: str = "vacuum"
    temperature: float = DEFAULT_TEMPERATURE

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.solvent not in SOLVENTS:
            raise InvalidInputError(f"unknown solvent '{self.solvent}': choose one of {', '.join(SOLVENTS)}")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise InvalidInputError(f"temperature must be a positive number of kelvin, got {self.temperature!r}")

    @property
    def n_atoms(self) -> int:
        return self.dim // 3

    def topology(self) -> "mdtraj.Topology":
        """The molecule's topology (atoms, residues, bonds) as an mdtraj ``Topology``."""
        import mdtraj

        return mdtraj.Topology.from_openmm(_amber_files(self.molecule)[0].topology)

    def openmm_topology(self) -> "openmm.app.Topology":
        return _amber_files(self.molecule)[0].topology

    def openmm_system(self) -> "openmm.System":
        """The OpenMM ``System`` the dynamics runs (bonds to hydrogen constrained)."""
        return build_openmm_system(self.molecule, self.solvent, constraints=True)

    def initial_coordinates(self) -> np.ndarray:
        """The shipped structure, flattened, in nm; shape [3·n_atoms], float64."""
        positions = _amber_files(self.molecule)[1].getPositions(asNumpy=True)
        return np.asarray(positions._value, dtype=np.float64).reshape(-1)

    def default_start(self) -> np.ndarray:
        """The shipped structure (:meth:`initial_coordinates`): where campaigns start unless told otherwise."""
        return self.initial_coordinates()

    def write_store_files(self, directory: str | os.PathLike, frame: np.ndarray | None = None) -> list[Path]:
        """Write ``topology.pdb`` into a store directory (see :meth:`write_topology`); returns ``[its path]``."""
        return [self.write_topology(directory, frame)]

    def write_topology(self, directory: str | os.PathLike, coordinates: np.ndarray | None = None) -> Path:
        """Write the molecule's topology as ``topology.pdb`` into ``directory`` (atomically).

        Parameters
        ----------
        directory : path
            Created if needed.
        coordinates : array_like, shape [3·n_atoms], optional
            Positions in nm for the PDB's one model (default: the shipped structure).

        Returns
        -------
        Path
            The file written.
        """
        from openmm import app, unit

        positions = self.initial_coordinates() if coordinates is None else np.asarray(coordinates, dtype=np.float64)
        if positions.shape != (self.dim,):
            raise InvalidInputError(f"topology coordinates must have shape [{self.dim}], got {positions.shape}")
        buffer = io.StringIO()
        app.PDBFile.writeFile(self.openmm_topology(), positions.reshape(-1, 3) * unit.nanometer, buffer, keepIds=True)
        return write_text_atomically(Path(directory) / TOPOLOGY_FILE, buffer.getvalue())

    def masses(self) -> np.ndarray:
        """Atomic masses in dalton; shape [n_atoms]."""
        system = self.openmm_system()
        return np.array([system.getParticleMass(i)._value for i in range(system.getNumParticles())])

    def metadata(self) -> dict:
        return {**super().metadata(), "molecule": self.molecule, "solvent": self.solvent,
                "temperature": self.temperature, "n_atoms": self.n_atoms, "units": "nm, ps, kT"}


def molecular_system(name: str, temperature: float | None = None) -> MolecularSystem:
    """The shipped molecule ``name`` (see :data:`MOLECULES`) as a :class:`MolecularSystem`."""
    if name not in MOLECULES:
        raise InvalidInputError(f"unknown molecule '{name}': choose one of {', '.join(MOLECULES)}")
    molecule, solvent = MOLECULES[name]
    temperature = DEFAULT_TEMPERATURE if temperature is None else float(temperature)
    potential = OpenMMPotential(molecule, solvent, temperature)
    return MolecularSystem(potential, kT=1.0, friction=DEFAULT_COLLISION_RATE, timestep=DEFAULT_TIMESTEP,
                           frame_interval=DEFAULT_FRAME_INTERVAL, name=f"{name}", spec=name,
                           molecule=molecule, solvent=solvent, temperature=temperature)


__all__ = ["MolecularSystem", "OpenMMPotential", "molecular_system", "build_openmm_system",
           "kT_in_kj_per_mol", "MOLECULES", "TOPOLOGY_FILE"]
