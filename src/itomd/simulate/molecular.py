r"""Molecular dynamics with OpenMM: walkers of a :class:`~itomd.systems.openmm.MolecularSystem`.

:func:`simulate_molecule` is the molecular counterpart of :func:`~itomd.simulate.simulate`: it takes
flattened start positions ``[W, 3·n_atoms]`` in nm and returns frames ``[W, n_frames, 3·n_atoms]``
in nm (float64), one OpenMM ``Context`` per walker, run one after the other.

Dynamics: OpenMM's ``LangevinMiddleIntegrator`` at the system's temperature (kelvin), collision rate
(``friction``, 1/ps) and timestep (ps), bonds to hydrogen constrained, ``frame_interval / timestep``
steps between frames.

Start point and frame 0
-----------------------
Each walker's positions are set to its start point and the constraints applied
(``Context.applyConstraints`` with OpenMM's default relative tolerance 1e-5, the integrator's too)
before anything else; frame 0 is that constrained start. So every stored frame satisfies the
constraints and frame 0 is the state the dynamics really started from. A start point that already
satisfies them (a frame of an earlier trajectory, the shipped structure) comes back unchanged up to
~1e-7 nm; a generated one (e.g. a Boltzmann generator's sample) has its bonds to hydrogen set to
their constrained lengths.

Randomness
----------
OpenMM reads two seeds: the Maxwell–Boltzmann draw of the initial velocities
(``setVelocitiesToTemperature(T, seed)``) and the integrator's noise
(``setRandomNumberSeed``, read once when the ``Context`` is created; 0 would mean "random").
Walker ``w`` of a call with ``seed`` gets both, nonzero and below 2³¹, from
``numpy.random.SeedSequence(seed, spawn_key=(w,))``, so the frames are a function of (system, start
points, seed, platform) and are identical run after run on the same platform and hardware. Other
platforms (and other CPUs or GPUs) follow other floating-point paths: their trajectories are
equally valid but not bit-identical, which is why a campaign records its platform.

Platforms
---------
``"Reference"`` (default) is OpenMM's double-precision single-thread implementation. For a molecule
as small as alanine dipeptide (22 atoms) it is by far the fastest here: measured on the 2-core
development machines, ≈ 15,600 ns/day in vacuum against ≈ 400 ns/day for the ``"CPU"`` platform
(whose per-step overhead dominates for 22 atoms). ``"CPU"`` runs with one thread (campaign workers
are single-threaded); ``"CUDA"`` and ``"OpenCL"`` use mixed precision. Choose by measuring, not by
name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from itomd.errors import InvalidInputError
from itomd.simulate.integrators import SimulationError
from itomd.validation import require_int

if TYPE_CHECKING:  # pragma: no cover
    import openmm

    from itomd.systems.openmm import MolecularSystem

#: Platforms :func:`simulate_molecule` accepts (if the OpenMM installation has them).
PLATFORMS = ("Reference", "CPU", "CUDA", "OpenCL")
#: Default platform (fastest for small molecules on CPUs, see the module docstring).
DEFAULT_PLATFORM = "Reference"
#: The integrator name campaigns record for molecules (``MolecularSystem.integrators``).
MOLECULAR_INTEGRATOR = "langevin-middle"
#: Threads of the CPU platform (campaign workers are single-threaded processes).
CPU_THREADS = 1
#: Relative tolerance of the constraints (start points and integrator; OpenMM's default).
CONSTRAINT_TOLERANCE = 1e-5


def available_platforms() -> list[str]:
    """Names of the OpenMM platforms this installation can use."""
    import openmm

    return [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]


def get_platform(name: str) -> "openmm.Platform":
    """The OpenMM platform ``name``.

    Raises
    ------
    InvalidInputError
        If ``name`` is not a known platform or this installation lacks it (the message lists the
        available ones).
    """
    import openmm

    available = available_platforms()
    if name not in available:
        known = "" if name in PLATFORMS else f"unknown platform '{name}'; "
        raise InvalidInputError(f"{known}OpenMM platform '{name}' is not available here: choose one of "
                                f"{', '.join(available)}")
    return openmm.Platform.getPlatformByName(name)


def walker_seeds(seed: int, n_walkers: int) -> np.ndarray:
    """OpenMM seeds of ``n_walkers`` walkers: nonzero 31-bit integers from ``SeedSequence(seed, spawn_key=(w,))``.

    Returns
    -------
    np.ndarray, shape [n_walkers, 2], int64
        Column 0 seeds the initial velocities, column 1 the integrator's noise; all in [1, 2³¹ − 1].
    """
    require_int("seed", seed, 0)
    out = np.empty((n_walkers, 2), dtype=np.int64)
    for walker in range(n_walkers):
        state = np.random.SeedSequence(int(seed), spawn_key=(walker,)).generate_state(2, dtype=np.uint64)
        out[walker] = 1 + (state % np.uint64(2**31 - 1)).astype(np.int64)
    return out


def make_context(system: "MolecularSystem", positions: np.ndarray, velocity_seed: int, noise_seed: int,
                 platform: str = DEFAULT_PLATFORM, openmm_system: "openmm.System | None" = None,
                 friction: float | None = None) -> "openmm.Context":
    """An OpenMM ``Context`` of one walker, ready to step: constrained start, seeded velocities and noise.

    Parameters
    ----------
    system : MolecularSystem
    positions : np.ndarray, shape [3·n_atoms]
        Start positions in nm.
    velocity_seed, noise_seed : int
        Nonzero seeds (see :func:`walker_seeds`).
    platform : str
    openmm_system : openmm.System, optional
        ``system.openmm_system()``, to share one between walkers.
    friction : float, optional
        Collision rate in 1/ps (default the system's own).

    Returns
    -------
    openmm.Context
        Its integrator is ``context.getIntegrator()``.
    """
    import openmm

    openmm_system = system.openmm_system() if openmm_system is None else openmm_system
    friction = system.friction if friction is None else friction
    integrator = openmm.LangevinMiddleIntegrator(system.temperature, friction, system.timestep)
    integrator.setRandomNumberSeed(int(noise_seed))
    integrator.setConstraintTolerance(CONSTRAINT_TOLERANCE)
    properties = {"Threads": str(CPU_THREADS)} if platform == "CPU" else {"Precision": "mixed"} if platform in ("CUDA", "OpenCL") else {}
    context = openmm.Context(openmm_system, integrator, get_platform(platform), properties)
    place_walker(context, system, positions, velocity_seed)
    return context


def place_walker(context: "openmm.Context", system: "MolecularSystem", positions: np.ndarray,
                 velocity_seed: int) -> None:
    """Put a walker into ``context``: positions [3·n_atoms] (nm; explicit solvent: the solute in its
    water box), constraints applied, velocities drawn at the system's temperature with ``velocity_seed``."""
    positions, box = system.simulation_positions(positions)
    if box is not None:
        context.setPeriodicBoxVectors(*box)
    context.setPositions(positions)
    context.applyConstraints(CONSTRAINT_TOLERANCE)
    context.setVelocitiesToTemperature(system.temperature, int(velocity_seed))


def context_coordinates(context: "openmm.Context", system: "MolecularSystem") -> np.ndarray:
    """What a frame stores of the context's current positions, [3·n_atoms] float64 (nm)."""
    positions = np.asarray(context.getState(getPositions=True).getPositions(asNumpy=True)._value, dtype=np.float64)
    return system.stored_coordinates(positions)


def simulate_molecule(
    system: "MolecularSystem",
    x0: np.ndarray,
    n_frames: int,
    seed: int,
    platform: str = DEFAULT_PLATFORM,
    progress: bool = False,
) -> np.ndarray:
    """Langevin dynamics of ``W`` walkers of a molecule with OpenMM.

    Parameters
    ----------
    system : MolecularSystem
        Temperature (K), collision rate ``friction`` (1/ps), ``timestep`` and ``frame_interval`` (ps).
    x0 : array_like, shape [W, 3·n_atoms] or [3·n_atoms]
        Start positions in nm, flattened atom-major (x₀, y₀, z₀, x₁, …).
    n_frames : int
        Frames per walker including frame 0 (the constrained start point).
    seed : int
        Non-negative; walker ``w`` draws its velocities and noise from
        ``SeedSequence(seed, spawn_key=(w,))``.
    platform : {"Reference", "CPU", "CUDA", "OpenCL"}
        OpenMM platform (see the module docstring for the choice).
    progress : bool
        A progress bar over walkers.

    Returns
    -------
    np.ndarray, shape [W, n_frames, 3·n_atoms], float64
        Positions in nm.

    Raises
    ------
    InvalidInputError
        For a system that is not a molecule, start points of the wrong shape or non-finite, an
        unavailable platform.
    SimulationError
        If OpenMM fails (e.g. NaN coordinates from a start point with overlapping atoms).
    """
    if MOLECULAR_INTEGRATOR not in system.integrators:
        raise InvalidInputError(f"simulate_molecule needs a molecule (MolecularSystem), got {type(system).__name__}; "
                                "use itomd.simulate.simulate for other systems")
    require_int("n_frames", n_frames)
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.ndim == 1:
        x0 = x0[None]
    if x0.ndim != 2 or x0.shape[1] != system.dim:
        raise InvalidInputError(f"start points must have shape [walkers, {system.dim}] (nm) for {system.name}, got {x0.shape}")
    if not np.all(np.isfinite(x0)):
        raise InvalidInputError("start points contain NaN or inf")
    seeds = walker_seeds(seed, len(x0))
    get_platform(platform)  # one-line error before any work
    import openmm

    openmm_system = system.openmm_system()
    steps = system.steps_per_frame
    out = np.empty((len(x0), int(n_frames), system.dim), dtype=np.float64)
    for walker in tqdm(range(len(x0)), disable=not progress, unit="walker", desc=f"simulate {system.name}"):
        try:
            context = make_context(system, x0[walker], *seeds[walker], platform=platform, openmm_system=openmm_system)
            integrator = context.getIntegrator()
            out[walker, 0] = context_coordinates(context, system)
            for frame in range(1, int(n_frames)):
                integrator.step(steps)
                out[walker, frame] = context_coordinates(context, system)
        except openmm.OpenMMException as exc:
            message = " ".join(str(exc).split())
            raise SimulationError(f"OpenMM failed for walker {walker} of {system.name} ({message}); "
                                  "check the start point (overlapping atoms?) or use a smaller timestep") from None
        finally:
            context = integrator = None
        if not np.all(np.isfinite(out[walker])):
            raise SimulationError(f"walker {walker} of {system.name} produced non-finite positions; check the start "
                                  "point (overlapping or scattered atoms?) or use a smaller timestep")
    return out


__all__ = ["simulate_molecule", "make_context", "place_walker", "context_coordinates", "walker_seeds", "available_platforms",
           "get_platform", "PLATFORMS", "DEFAULT_PLATFORM", "MOLECULAR_INTEGRATOR"]
