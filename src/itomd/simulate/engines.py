r"""Engines: one interface over the dynamics itomd can run, chosen by integrator name.

An :class:`Engine` simulates walkers of one system from given start points with one integer seed::

    engine = make_engine(system)                  # the system's default integrator
    frames = engine.run(x0, n_frames, seed)       # x0 [W, dim] -> frames [W, n_frames, dim], float64
    engine.parameters()                           # {"integrator": ..., (OpenMM) "platform": ...}

* :class:`LangevinEngine` — the batched torch integrators of :mod:`itomd.simulate.integrators`
  (``"overdamped"``, ``"baoab"``) for toy systems: all walkers in one batch, one CPU thread, noise
  from a :class:`torch.Generator` seeded with ``seed``.
* :class:`OpenMMEngine` — OpenMM's Langevin integrator (``"langevin-middle"``) for molecules through
  :func:`~itomd.simulate.molecular.simulate_molecule` on a ``platform``; walker ``w`` draws its
  velocities and noise from ``SeedSequence(seed, spawn_key=(w,))``.

Which integrators a system supports is the system's own answer (:attr:`System.integrators
<itomd.systems.system.System.integrators>`); :func:`make_engine` checks the request against it and
says in one line what to choose instead. :meth:`Engine.parameters` is what determines the data
besides the system, the start points and the seed: campaigns record it in their manifest and
metadata, and ``make_engine(system, **engine.parameters())`` rebuilds the same engine (that is how
dask workers get theirs: a task carries the system's spec and these parameters, not the engine).
Engines hold no open resources and pickle with their system.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from itomd.errors import InvalidInputError
from itomd.simulate.integrators import INTEGRATORS, simulate
from itomd.simulate.molecular import DEFAULT_PLATFORM, MOLECULAR_INTEGRATOR, PLATFORMS
from itomd.systems.system import System


class Engine(ABC):
    """Simulates walkers of :attr:`system` with one integrator.

    Attributes
    ----------
    system : System
    integrator : str
        The integrator's name (one of ``system.integrators``).
    batched : bool
        (Class attribute.) Whether one call simulates all walkers as one batch, so that larger chunks
        of walkers cost less per walker.
    """

    batched: ClassVar[bool] = False

    def __init__(self, system: System, integrator: str):
        self.system = system
        self.integrator = integrator

    @abstractmethod
    def run(self, x0: np.ndarray, n_frames: int, seed: int) -> np.ndarray:
        """Simulate one trajectory per start point.

        Parameters
        ----------
        x0 : np.ndarray, shape [W, dim], float64
            Start points; frame 0 of each trajectory.
        n_frames : int
            Frames per trajectory including frame 0, ``system.frame_interval`` apart.
        seed : int
            Non-negative; all randomness of the call derives from it.

        Returns
        -------
        np.ndarray, shape [W, n_frames, dim], float64
        """

    def parameters(self) -> dict[str, Any]:
        """What determines the data besides system, start points and seed (JSON-ready):
        ``{"integrator": name}``, plus ``"platform"`` for OpenMM."""
        return {"integrator": self.integrator}

    def check(self) -> None:
        """Fail with a one-line error, before any work, if this machine cannot run the engine."""

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.parameters().items())
        return f"{type(self).__name__}({self.system.name}, {arguments})"


class LangevinEngine(Engine):
    """The batched torch Langevin integrators (``"overdamped"`` Euler–Maruyama, ``"baoab"``).

    Parameters
    ----------
    system : System
    integrator : {"overdamped", "baoab"}
    """

    batched = True

    def __init__(self, system: System, integrator: str = "overdamped"):
        if integrator not in INTEGRATORS:
            raise InvalidInputError(f"unknown integrator '{integrator}': choose one of {', '.join(INTEGRATORS)}")
        super().__init__(system, integrator)

    def run(self, x0: np.ndarray, n_frames: int, seed: int) -> np.ndarray:
        """All walkers in one batch on one CPU thread; noise from ``torch.Generator().manual_seed(seed)``.

        Returns
        -------
        np.ndarray, shape [W, n_frames, dim], float64
        """
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            generator = torch.Generator().manual_seed(int(seed))
            start = torch.as_tensor(np.asarray(x0), dtype=torch.float64)
            return simulate(self.system, start, n_frames, integrator=self.integrator, generator=generator).numpy()
        finally:
            torch.set_num_threads(threads)


class OpenMMEngine(Engine):
    """OpenMM's ``LangevinMiddleIntegrator`` for a molecule (``"langevin-middle"``).

    Parameters
    ----------
    system : MolecularSystem
    platform : {"Reference", "CPU", "CUDA", "OpenCL"}
        OpenMM platform; part of :meth:`parameters`, since other platforms give other (equally valid)
        trajectories.
    """

    def __init__(self, system: System, platform: str = DEFAULT_PLATFORM):
        if platform not in PLATFORMS:
            raise InvalidInputError(f"unknown OpenMM platform '{platform}': choose one of {', '.join(PLATFORMS)}")
        super().__init__(system, MOLECULAR_INTEGRATOR)
        self.platform = platform

    def run(self, x0: np.ndarray, n_frames: int, seed: int) -> np.ndarray:
        """One OpenMM context per walker, in turn (see :func:`~itomd.simulate.molecular.simulate_molecule`).

        Returns
        -------
        np.ndarray, shape [W, n_frames, 3·n_atoms], float64
            Positions in nm.
        """
        from itomd.simulate.molecular import simulate_molecule

        return simulate_molecule(self.system, x0, n_frames, seed=seed, platform=self.platform)

    def parameters(self) -> dict[str, Any]:
        return {"integrator": self.integrator, "platform": self.platform}

    def check(self) -> None:
        """A platform this OpenMM installation lacks: one line listing the available ones."""
        from itomd.simulate.molecular import get_platform

        get_platform(self.platform)


#: Integrator name -> the engine that runs it.
ENGINES: dict[str, type[Engine]] = {**{name: LangevinEngine for name in INTEGRATORS},
                                    MOLECULAR_INTEGRATOR: OpenMMEngine}


def make_engine(system: System, integrator: str | None = None, platform: str | None = None) -> Engine:
    """The engine that runs ``integrator`` for ``system``.

    Parameters
    ----------
    system : System
    integrator : str, optional
        One of ``system.integrators``; default ``system.default_integrator``.
    platform : str, optional
        OpenMM platform (OpenMM engines only; default ``"Reference"``).

    Returns
    -------
    Engine

    Raises
    ------
    InvalidInputError
        One line each: an unknown integrator, an integrator the system's dynamics does not support
        (a torch integrator for a molecule, OpenMM's for a toy system), a platform for an engine
        without platforms, an unknown platform.
    """
    label = system.spec or system.name
    integrator = system.default_integrator if integrator is None else integrator
    if integrator not in ENGINES:
        raise InvalidInputError(f"unknown integrator '{integrator}': choose one of {', '.join(ENGINES)}")
    engine_class = ENGINES[integrator]
    if integrator not in system.integrators:
        supported = ", ".join(system.integrators)
        if ENGINES[system.default_integrator] is OpenMMEngine:
            raise InvalidInputError(f"'{label}' is a molecule, simulated by OpenMM with integrator '{supported}', "
                                    f"not '{integrator}'")
        if engine_class is OpenMMEngine:
            raise InvalidInputError(f"integrator '{integrator}' (OpenMM) is for molecules; choose one of {supported} "
                                    f"for '{label}'")
        raise InvalidInputError(f"integrator '{integrator}' does not apply to '{label}': choose one of {supported}")
    if engine_class is OpenMMEngine:
        return OpenMMEngine(system, system.default_platform if platform is None else platform)
    if platform is not None:
        raise InvalidInputError(f"an OpenMM platform applies to molecules only, not to '{label}'")
    return engine_class(system, integrator)


__all__ = ["Engine", "LangevinEngine", "OpenMMEngine", "ENGINES", "make_engine"]
