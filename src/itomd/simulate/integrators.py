r"""Batched Langevin integrators for :class:`~itomd.systems.System` potentials (torch, many walkers).

* :class:`OverdampedLangevin` — Euler–Maruyama for Brownian dynamics,
  :math:`x_{n+1} = x_n + \frac{\Delta t}{\gamma} F(x_n) + \sqrt{2 kT \Delta t/\gamma}\,\xi_n`.
* :class:`BAOABLangevin` — the BAOAB splitting of underdamped Langevin dynamics (Leimkuhler &
  Matthews 2013), exact in the OU ("O") part, with friction rate γ/m.

Both draw noise from an explicit, seeded :class:`torch.Generator`, so a trajectory is a function of
(system, start, seed) only. :func:`simulate` records frames every ``system.steps_per_frame`` steps.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from itomd.errors import InvalidInputError, ItomdError
from itomd.systems.system import System


class SimulationError(ItomdError):
    """Integration produced non-finite coordinates (usually: timestep too large)."""


class OverdampedLangevin:
    """Euler–Maruyama integrator of overdamped Langevin dynamics.

    Parameters
    ----------
    system : System
        Supplies the force, kT, friction γ and timestep Δt.
    """

    name = "overdamped-euler-maruyama"

    def __init__(self, system: System):
        self.system = system
        self.drift = system.timestep / system.friction
        self.noise = math.sqrt(2.0 * system.kT * system.timestep / system.friction)

    def init_state(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """State tuple from positions ``x`` of shape [W, dim]."""
        return (x,)

    def step(self, state: tuple[torch.Tensor, ...], generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        """Advance all walkers by one timestep. ``state[0]`` has shape [W, dim]."""
        (x,) = state
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return (x + self.drift * self.system.potential._force(x) + self.noise * xi,)


class BAOABLangevin:
    """BAOAB integrator of underdamped Langevin dynamics (positions and velocities).

    Parameters
    ----------
    system : System
        Supplies the force, kT, friction γ, mass m and timestep Δt. The velocity OU step uses the
        rate γ/m, so that the configurational dynamics tends to the overdamped one for γ/m ≫ 1.
    """

    name = "underdamped-baoab"

    def __init__(self, system: System):
        self.system = system
        h = system.timestep
        self.h = h
        self.inv_mass = 1.0 / system.mass
        self.c1 = math.exp(-system.friction / system.mass * h)
        self.c2 = math.sqrt((1.0 - self.c1**2) * system.kT / system.mass)

    def init_state(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """Positions [W, dim] plus Maxwell–Boltzmann velocities; the force is cached in the state."""
        v = math.sqrt(self.system.kT / self.system.mass) * torch.randn(
            x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return (x, v, self.system.potential._force(x))

    def step(self, state: tuple[torch.Tensor, ...], generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        x, v, f = state
        h = self.h
        v = v + 0.5 * h * self.inv_mass * f                       # B
        x = x + 0.5 * h * v                                       # A
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        v = self.c1 * v + self.c2 * xi                            # O
        x = x + 0.5 * h * v                                       # A
        f = self.system.potential._force(x)
        v = v + 0.5 * h * self.inv_mass * f                       # B
        return (x, v, f)


INTEGRATORS = {"overdamped": OverdampedLangevin, "baoab": BAOABLangevin}


def make_integrator(name: str, system: System):
    """Integrator by name: ``overdamped`` (Euler–Maruyama) or ``baoab`` (underdamped)."""
    try:
        return INTEGRATORS[name](system)
    except KeyError:
        raise InvalidInputError(f"unknown integrator '{name}': choose one of {', '.join(INTEGRATORS)}") from None


def simulate(
    system: System,
    x0: torch.Tensor,
    n_frames: int,
    integrator: str = "overdamped",
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Simulate many walkers at once and record frames every ``system.frame_interval``.

    Parameters
    ----------
    system : System
    x0 : torch.Tensor, shape [W, dim]
        Start positions; recorded as frame 0. Its dtype (float64 recommended) is used throughout.
    n_frames : int
        Number of frames to return, including the start.
    integrator : {"overdamped", "baoab"}
    generator : torch.Generator, optional
        Source of all noise (a fresh unseeded one if omitted).
    progress : bool
        Show a progress bar over frames.

    Returns
    -------
    torch.Tensor, shape [W, n_frames, dim]

    Raises
    ------
    SimulationError
        If coordinates become non-finite.
    """
    x0 = torch.as_tensor(x0)
    if not torch.is_floating_point(x0):
        x0 = x0.to(torch.float64)
    if x0.ndim != 2 or x0.shape[-1] != system.dim:
        raise InvalidInputError(
            f"start positions must have shape [walkers, {system.dim}] for {system.name}, got {tuple(x0.shape)}")
    if not torch.all(torch.isfinite(x0)):
        raise InvalidInputError("start positions contain NaN or inf")
    if int(n_frames) != n_frames or n_frames < 1:
        raise InvalidInputError(f"number of frames must be a positive integer, got {n_frames!r}")
    stepper = make_integrator(integrator, system)
    out = torch.empty((x0.shape[0], int(n_frames), system.dim), dtype=x0.dtype)
    out[:, 0] = x0
    with torch.no_grad():
        state = stepper.init_state(x0.clone(), generator)
        for frame in tqdm(range(1, int(n_frames)), disable=not progress, desc=f"simulate {system.name}",
                          unit="frame", leave=False):
            for _ in range(system.steps_per_frame):
                state = stepper.step(state, generator)
            x = state[0]
            if not torch.all(torch.isfinite(x)):
                raise SimulationError(
                    f"{system.name}: coordinates became non-finite at frame {frame}; reduce the timestep "
                    f"(now {system.timestep:g})")
            out[:, frame] = x
    return out
