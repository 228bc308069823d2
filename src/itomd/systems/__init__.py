"""Systems: potentials, temperatures, dynamics parameters, and exact references."""

from itomd.systems.openmm import MolecularSystem, molecular_system
from itomd.systems.potential import CallablePotential, Potential
from itomd.systems.registry import SHIPPED_SYSTEMS, SystemSpec, resolve_system
from itomd.systems.system import System
from itomd.systems.toy import DoubleWellPotential, HarmonicPotential, MullerBrownPotential, PrinzPotential

__all__ = [
    "Potential", "CallablePotential", "System", "SystemSpec", "resolve_system", "SHIPPED_SYSTEMS",
    "PrinzPotential", "MullerBrownPotential", "DoubleWellPotential", "HarmonicPotential",
    "MolecularSystem", "molecular_system",
]
