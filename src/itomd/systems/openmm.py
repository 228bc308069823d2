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
from itomd.geometry import superpose
from itomd.errors import DataFileError, InvalidInputError
from itomd.systems.molecules import STRUCTURE_FILE, MoleculeInput, PreparedMolecule, prepare_molecule
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
                 temperature: float = DEFAULT_TEMPERATURE, source: "MoleculeInput | None" = None):
        self.molecule = molecule
        self.solvent = solvent
        self.temperature = float(temperature)
        self.source = source
        if source is None:
            n_atoms = _amber_files(molecule)[0].topology.getNumAtoms()
        else:
            n_atoms = prepare_molecule(source, self.temperature).n_atoms
        super().__init__(3 * n_atoms)
        self.name = f"{molecule} ({solvent})"
        self._context = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_context"] = None
        return state

    def _context_for_evaluation(self):
        if self._context is None:
            import openmm

            if getattr(self, "source", None) is None:  # model files of earlier versions pickled no source
                system = build_openmm_system(self.molecule, self.solvent, constraints=False)
            else:
                system = prepare_molecule(self.source, self.temperature).energy_system()
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
    positions ``[*batch, 3·n_atoms]`` in nm of the solute (water and ions of explicit solvent are
    simulated but never stored). ``mass`` and ``box`` are not parameters of a molecule (OpenMM has
    the masses, see :meth:`masses`; a solute has no box): they keep the values 1 and ``None`` that
    the stored metadata has always recorded, and cannot be set.

    Its dynamics is OpenMM's Langevin integrator (:attr:`integrators` ``("langevin-middle",)``),
    campaigns start from the prepared structure (:meth:`default_start`) in chunks of
    :attr:`default_chunk_size` ``= 4`` walkers (one OpenMM context per walker), and a store of its
    trajectories holds ``topology.pdb`` and, for a user's molecule, ``structure.pdb`` (the prepared
    structure, see :mod:`itomd.systems.molecules`; :meth:`write_store_files`).

    Parameters
    ----------
    molecule : str
        ``"alanine-dipeptide"`` for the shipped molecule; a user's molecule's spec otherwise.
    solvent : {"vacuum", "obc2", "gbn2", "explicit"}
    temperature : float
        Kelvin.
    source : MoleculeInput, optional
        Where a user's molecule comes from (None: the shipped alanine dipeptide).
    """

    integrators: ClassVar[tuple[str, ...]] = ("langevin-middle",)
    default_chunk_size: ClassVar[int] = 4
    time_unit: ClassVar[str] = "ps"

    mass: float = field(default=1.0, init=False)
    box: None = field(default=None, init=False)
    molecule: str = "alanine-dipeptide"
    solvent: str = "vacuum"
    temperature: float = DEFAULT_TEMPERATURE
    source: MoleculeInput | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.source is None and self.solvent not in SOLVENTS:
            raise InvalidInputError(f"unknown solvent '{self.solvent}': choose one of {', '.join(SOLVENTS)}")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise InvalidInputError(f"temperature must be a positive number of kelvin, got {self.temperature!r}")

    @property
    def n_atoms(self) -> int:
        return self.dim // 3

    def prepared(self) -> PreparedMolecule:
        """The prepared user's molecule (built, minimised and equilibrated once per process)."""
        if self.source is None:
            raise InvalidInputError("the shipped alanine dipeptide has no prepared structure")
        return prepare_molecule(self.source, self.temperature)

    @property
    def explicit_solvent(self) -> bool:
        """Whether MD runs in a water box (stored frames: the solute only)."""
        return self.source is not None and self.source.solvent == "explicit"

    @property
    def default_platform(self) -> str:
        """OpenMM platform campaigns use unless told: ``CPU`` in explicit solvent (PME on thousands of
        atoms) and with GBn2 (a custom force), ``Reference`` otherwise (fastest for small molecules,
        see :mod:`itomd.simulate.molecular`)."""
        if self.source is None:
            return "Reference"
        from itomd.systems.molecules import preparation_platform

        return preparation_platform(self.openmm_system())

    def topology(self) -> "mdtraj.Topology":
        """The molecule's topology (atoms, residues, bonds; the solute) as an mdtraj ``Topology``."""
        import mdtraj

        return mdtraj.Topology.from_openmm(self.openmm_topology())

    def openmm_topology(self) -> "openmm.app.Topology":
        """The solute's OpenMM topology."""
        if self.source is None:
            return _amber_files(self.molecule)[0].topology
        return self.prepared().solute_topology()

    def openmm_system(self) -> "openmm.System":
        """The OpenMM ``System`` the dynamics runs (bonds to hydrogen constrained; with its water box
        in explicit solvent)."""
        if self.source is None:
            return build_openmm_system(self.molecule, self.solvent, constraints=True)
        return self.prepared().dynamics_system()

    def initial_coordinates(self) -> np.ndarray:
        """The shipped or prepared structure of the solute, flattened, in nm; shape [3·n_atoms], float64
        (centred in explicit solvent, as stored frames are)."""
        if self.source is None:
            positions = _amber_files(self.molecule)[1].getPositions(asNumpy=True)
            return np.asarray(positions._value, dtype=np.float64).reshape(-1)
        prepared = self.prepared()
        if self.explicit_solvent:
            return prepared.solute_positions()
        return prepared.positions.reshape(-1).copy()

    def default_start(self) -> np.ndarray:
        """The shipped or prepared structure (:meth:`initial_coordinates`): where campaigns start unless told otherwise."""
        return self.initial_coordinates()

    def write_store_files(self, directory: str | os.PathLike, frame: np.ndarray | None = None) -> list[Path]:
        """Write ``topology.pdb`` (and, for a user's molecule, the prepared ``structure.pdb``) into a
        store directory; returns their paths."""
        written = [self.write_topology(directory, frame)]
        if self.source is not None:
            from itomd.systems.molecules import write_structure

            written.append(write_structure(self.prepared(), Path(directory) / STRUCTURE_FILE))
        return written

    def write_topology(self, directory: str | os.PathLike, coordinates: np.ndarray | None = None) -> Path:
        """Write the molecule's topology as ``topology.pdb`` into ``directory`` (atomically).

        Parameters
        ----------
        directory : path
            Created if needed.
        coordinates : array_like, shape [3·n_atoms], optional
            Positions in nm for the PDB's one model (default: the shipped or prepared structure).

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

    def simulation_positions(self, coordinates: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Positions of every simulated atom for a solute state, and the periodic box.

        Without explicit solvent: the coordinates themselves ``[n_atoms, 3]`` and no box. In explicit
        solvent the state ``[3·n_atoms]`` is superposed on the prepared structure's solute and put
        into its equilibrated water box; unless it is that solute already (RMSD < 0.01 nm), the water
        is relaxed around it (energy minimisation with the solute held by stiff harmonic restraints).

        Returns
        -------
        positions : np.ndarray, shape [n_simulated_atoms, 3]
            nm.
        box : np.ndarray, shape [3, 3] or None
        """
        x = np.asarray(coordinates, dtype=np.float64).reshape(-1, 3)
        if not self.explicit_solvent:
            return x, None
        prepared = self.prepared()
        reference = prepared.positions[prepared.solute]
        centre = reference.mean(axis=0)
        placed = superpose(torch.as_tensor(x.reshape(1, -1)), torch.as_tensor(reference.reshape(1, -1)),
                           len(x)).numpy().reshape(-1, 3) + centre
        positions = prepared.positions.copy()
        positions[prepared.solute] = placed
        if np.sqrt(np.mean(np.sum((placed - reference) ** 2, axis=1))) > 0.01:
            positions = _relax_solvent(prepared, positions)
        return positions, prepared.box_vectors

    def stored_coordinates(self, positions: np.ndarray) -> np.ndarray:
        """What a frame stores of the simulated positions ``[n_simulated_atoms, 3]``: all of them
        flattened, or in explicit solvent the solute's, centred; shape [3·n_atoms]."""
        if not self.explicit_solvent:
            return positions.reshape(-1)
        solute = positions[self.prepared().solute]
        return (solute - solute.mean(axis=0)).reshape(-1)

    def analysis_energies(self, frames: np.ndarray) -> np.ndarray:
        """Potential energies (kT) of stored frames after the dynamics' constraints: each frame's bonds
        to hydrogen are set to their constrained lengths (OpenMM ``applyConstraints``, tolerance 1e-5)
        and its energy is evaluated with the force field MD runs (explicit solvent: the solute in
        vacuum), by a double-precision Reference context. MD frames and surrogate frames go through the
        same steps, so their energy distributions compare like with like.

        Parameters
        ----------
        frames : np.ndarray, shape [n, 3·n_atoms]
            Positions in nm (centred or not).

        Returns
        -------
        np.ndarray, shape [n], float64
        """
        import openmm

        frames = np.asarray(frames, dtype=np.float64).reshape(len(frames), -1, 3)
        system = self.prepared().energy_system() if self.explicit_solvent else self.openmm_system()
        context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
        kT = kT_in_kj_per_mol(self.temperature)
        out = np.empty(len(frames))
        for i, positions in enumerate(frames):
            if not np.all(np.isfinite(positions)):
                out[i] = np.nan
                continue
            context.setPositions(positions)
            if system.getNumConstraints():
                context.applyConstraints(1e-5)
            out[i] = context.getState(getEnergy=True).getPotentialEnergy()._value / kT
        return out

    def equilibrium_score(self, x: torch.Tensor) -> torch.Tensor:
        """s₀(x) = F(x)/kT from OpenMM's forces (the force field MD runs, without its constraints;
        double precision, one structure at a time), shape of ``x`` [B, 3·n_atoms].

        OpenMM gives forces, not their derivatives: where ``x`` requires gradients (likelihoods through
        the probability-flow ODE), the vector-Jacobian product is the Hessian-vector product of ln μ
        (the Jacobian of a gradient is symmetric) by central differences of the forces along the
        vector, a step of :data:`HESSIAN_STEP_NM` on the largest coordinate (two force evaluations per
        structure; relative error ~10⁻⁸ in double precision). In explicit solvent the stored
        coordinates' density is a potential of mean force that no force field gives: refused.
        """
        if self.explicit_solvent:
            raise InvalidInputError(f"'{self.molecule}' is simulated in explicit solvent: the density of its stored "
                                    "(solute) coordinates is a potential of mean force that no force field gives; "
                                    "use a learned prior (itomd train --equilibrium, then --prior RUN)")
        score = (lambda y: self.potential.force(y) / self.kT)  # noqa: E731 - float64 [B, dim] → [B, dim]
        if x.requires_grad and torch.is_grad_enabled():
            return _ScoreWithHessian.apply(x, score)
        return score(x.detach()).to(x.dtype)

    def masses(self) -> np.ndarray:
        """Atomic masses of the solute in dalton; shape [n_atoms]."""
        system = self.openmm_system()
        indices = self.prepared().solute if self.source is not None else range(system.getNumParticles())
        return np.array([system.getParticleMass(int(i))._value for i in indices])

    def metadata(self) -> dict:
        record = {**super().metadata(), "molecule": self.molecule, "solvent": self.solvent,
                  "temperature": self.temperature, "n_atoms": self.n_atoms, "units": "nm, ps, kT"}
        if self.source is not None:
            record["inputs"] = self.source.provenance()
        return record


#: Central-difference step (nm, on the largest coordinate of the direction) of a molecule's score's
#: Hessian-vector products (:meth:`MolecularSystem.equilibrium_score`).
HESSIAN_STEP_NM = 1e-5


class _ScoreWithHessian(torch.autograd.Function):
    """s(x) with a vector-Jacobian product by central differences of s along the vector (s = ∇ln μ:
    its Jacobian, the Hessian of ln μ, is symmetric, so the product from the left is the one from the right)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, score) -> torch.Tensor:
        ctx.score = score
        ctx.save_for_backward(x)
        return score(x.detach()).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        x64, v = x.detach().to(torch.float64), grad.detach().to(torch.float64)
        scale = v.abs().amax(dim=-1, keepdim=True)
        step = HESSIAN_STEP_NM / scale.clamp(min=1e-300)
        both = ctx.score(torch.cat([x64 + step * v, x64 - step * v]))
        plus, minus = both[: len(x64)], both[len(x64):]
        product = torch.where(scale > 0, (plus - minus) / (2 * step), torch.zeros_like(plus))
        return product.to(x.dtype), None


#: Force constant (kJ/mol/nm²) holding the solute while the water relaxes around a new start point.
SOLUTE_RESTRAINT = 5e4


def _relax_solvent(prepared: PreparedMolecule, positions: np.ndarray) -> np.ndarray:
    """Minimise the water around a solute held in place by harmonic restraints; returns positions."""
    import openmm

    system = prepared.dynamics_system()
    restraint = openmm.CustomExternalForce("0.5*k*periodicdistance(x, y, z, x0, y0, z0)^2")
    restraint.addGlobalParameter("k", SOLUTE_RESTRAINT)
    for name in ("x0", "y0", "z0"):
        restraint.addPerParticleParameter(name)
    for i in prepared.solute:
        restraint.addParticle(int(i), [float(c) for c in positions[i]])
    system.addForce(restraint)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"),
                             {"Threads": "1"})
    context.setPeriodicBoxVectors(*prepared.box_vectors)
    context.setPositions(positions)
    openmm.LocalEnergyMinimizer.minimize(context, 10.0, 0)
    return np.asarray(context.getState(getPositions=True).getPositions(asNumpy=True)._value, dtype=np.float64)


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


def user_molecular_system(source: MoleculeInput, temperature: float | None = None,
                          friction: float | None = None, timestep: float | None = None) -> MolecularSystem:
    """A user's molecule (PDB, Amber, OpenMM XML or a peptide sequence) as a :class:`MolecularSystem`.

    Builds and prepares it once per process (:func:`~itomd.systems.molecules.prepare_molecule`); the
    dynamics defaults are those of the shipped molecule (300 K, 1/ps, 2 fs, frames every ps).
    """
    temperature = DEFAULT_TEMPERATURE if temperature is None else float(temperature)
    friction = DEFAULT_COLLISION_RATE if friction is None else float(friction)
    timestep = DEFAULT_TIMESTEP if timestep is None else float(timestep)
    potential = OpenMMPotential(source.spec, source.solvent_label, temperature, source=source)
    return MolecularSystem(potential, kT=1.0, friction=friction, timestep=timestep,
                           frame_interval=DEFAULT_FRAME_INTERVAL, name=source.spec, spec=source.spec,
                           molecule=source.spec, solvent=source.solvent_label, temperature=temperature,
                           source=source)


__all__ = ["MolecularSystem", "OpenMMPotential", "molecular_system", "user_molecular_system", "build_openmm_system",
           "kT_in_kj_per_mol", "MOLECULES", "TOPOLOGY_FILE"]
