r"""Thermal relaxation of generated structures: a short, strongly damped Langevin segment of the force field.

A surrogate's frames of a molecule get the slow coordinates (torsions) right long before the stiff
ones: bond lengths and angles a few thousandths of a nm or a few degrees off in every frame pass
every validity threshold but put each frame several kT above MD's energies (BENCHMARKS.md,
"Metropolis–Hastings rollouts and the energy check"). :class:`ThermalRelaxation` follows every
surrogate jump with ``n_steps`` steps of the molecule's own Langevin dynamics (OpenMM's
``LangevinMiddleIntegrator``, the system's temperature, timestep and constraints) at a high
collision rate (:data:`RELAX_FRICTION`, 100/ps) from velocities drawn at the temperature.

Why this is sound: Langevin dynamics at *any* friction leaves the Boltzmann distribution μ
invariant (up to the integrator's discretisation, the same as the MD data's), so the segment is a
μ-preserving Markov kernel composed with the surrogate's jump — it can only bring frames closer to μ.
The high friction damps the stiff modes within a few hundredths of a picosecond (energy decays at
the collision rate: e⁻¹⁰ in 0.1 ps at 100/ps, while a bond vibrates every ~0.01–0.03 ps), while the
soft torsions, diffusing under that friction, move by far less than their basins' widths. At a
collision rate a hundred times the physical one the segment is not a piece of the molecule's
dynamics but a Boltzmann-preserving correction, so rollouts do not count its ``n_steps`` × timestep
as simulated time (their frame interval stays N·τ; the metadata record ``relax_steps``). Its cost is
OpenMM's for ``n_steps`` steps per walker and jump (BENCHMARKS.md, "Thermal relaxation").

Molecules in implicit solvent or vacuum only: in explicit solvent the stored frames are the solute's,
and the water around a new solute structure is not known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from itomd.errors import InvalidInputError
from itomd.simulate.integrators import SimulationError
from itomd.simulate.molecular import (DEFAULT_PLATFORM, MOLECULAR_INTEGRATOR, context_coordinates, get_platform,
                                      make_context, place_walker)
from itomd.validation import require_int

if TYPE_CHECKING:  # pragma: no cover
    from itomd.systems.system import System

#: Collision rate (1/ps) of the relaxation segment: stiff modes damped within ~0.05 ps.
RELAX_FRICTION = 100.0


class ThermalRelaxation:
    """``n_steps`` of strongly damped Langevin dynamics of a molecule after each surrogate jump.

    Parameters
    ----------
    system : System
        A molecule (:class:`~itomd.systems.openmm.MolecularSystem`) in implicit solvent or vacuum.
    n_steps : int
        Integrator steps per relaxation (≥ 1).
    seed : int
        Seeds the integrator's noise and, through NumPy's generator, every relaxation's velocities:
        the same seed and calls give the same frames.
    friction : float
        Collision rate in 1/ps.
    platform : str
        OpenMM platform.
    """

    def __init__(self, system: "System", n_steps: int, seed: int, friction: float = RELAX_FRICTION,
                 platform: str = DEFAULT_PLATFORM):
        if MOLECULAR_INTEGRATOR not in system.integrators:
            raise InvalidInputError(f"relaxation runs a molecule's force field; {system.name} is not a molecule "
                                    "(its surrogate frames need none)")
        if getattr(system, "explicit_solvent", False):
            raise InvalidInputError(f"'{system.name}' is simulated in explicit solvent: its frames hold the solute "
                                    "only, and the water around a generated structure is unknown; relaxation needs "
                                    "implicit solvent or vacuum")
        require_int("relaxation steps", n_steps, 1)
        require_int("seed", seed, 0)
        if not np.isfinite(friction) or friction <= 0:
            raise InvalidInputError(f"the relaxation's friction must be a positive rate (1/ps), got {friction}")
        get_platform(platform)  # one-line error before any work
        self.system = system
        self.n_steps = int(n_steps)
        self.friction = float(friction)
        self.platform = platform
        self._rng = np.random.default_rng(seed)
        self._noise_seed = int(1 + self._rng.integers(2**31 - 2))
        self._context = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Relax each structure.

        Parameters
        ----------
        x : np.ndarray, shape [W, 3·n_atoms]
            Positions in nm.

        Returns
        -------
        np.ndarray, shape [W, 3·n_atoms], float64
            The structures after the segment (constraints applied).
        """
        import openmm

        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.system.dim:
            raise InvalidInputError(f"structures must have shape [W, {self.system.dim}], got {x.shape}")
        seeds = 1 + self._rng.integers(2**31 - 2, size=len(x))
        out = np.empty_like(x)
        for walker, (positions, velocity_seed) in enumerate(zip(x, seeds)):
            if not np.all(np.isfinite(positions)):
                out[walker] = np.nan  # left for the caller's blow-up check
                continue
            try:
                if self._context is None:  # one context for every call, made at the first structure
                    self._context = make_context(self.system, positions, int(velocity_seed), self._noise_seed,
                                                 platform=self.platform, friction=self.friction)
                place_walker(self._context, self.system, positions, int(velocity_seed))
                self._context.getIntegrator().step(self.n_steps)
                out[walker] = context_coordinates(self._context, self.system)
            except openmm.OpenMMException as exc:
                if "nan" in str(exc).lower():  # the segment blew up (a badly strained structure)
                    out[walker] = np.nan  # left for the caller's blow-up check, like a non-finite input
                    continue
                raise SimulationError(f"OpenMM failed relaxing structure {walker} of {self.system.name} "
                                      f"({' '.join(str(exc).split())})") from None
        return out


__all__ = ["ThermalRelaxation", "RELAX_FRICTION"]
