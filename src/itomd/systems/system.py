"""A :class:`System`: a potential at a temperature with the parameters of its dynamics.

What differs between kinds of systems (toy potentials here, molecules in
:class:`~itomd.systems.openmm.MolecularSystem`) is answered by the system itself, through hooks
that the rest of the library calls instead of testing types: :attr:`System.integrators`,
:attr:`System.default_integrator`, :attr:`System.default_chunk_size`, :attr:`System.time_unit`,
:meth:`System.default_start`, :meth:`System.topology` and :meth:`System.write_store_files`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from itomd.errors import InvalidInputError
from itomd.systems.potential import Potential

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch

Box = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class System:
    r"""A potential with temperature, friction and integration parameters.

    The overdamped (Brownian) dynamics is

    .. math::
        dx = -\frac{\nabla U(x)}{\gamma}\,dt + \sqrt{\frac{2\,kT}{\gamma}}\, dW,

    with diffusion constant :math:`D = kT/\gamma`. The underdamped (Langevin) dynamics uses the
    same friction coefficient: :math:`m\,dv = -\nabla U\,dt - \gamma v\,dt + \sqrt{2\gamma kT}\,dW`,
    so both agree in the high-friction limit.

    Parameters
    ----------
    potential : Potential
        Energy function, in the same energy unit as ``kT``.
    kT : float
        Thermal energy.
    friction : float
        Friction coefficient γ (mass / time).
    timestep : float
        Integration step Δt (time units).
    frame_interval : float
        Physical time τ between stored frames; an integer multiple of ``timestep``.
    mass : float
        Particle mass (underdamped dynamics only).
    box : tuple of (low, high) per dimension, optional
        Region that holds essentially all equilibrium probability; used for exact references,
        histograms and plots.
    name : str
        Name recorded in metadata.
    spec : str
        The specification the system was built from (a shipped name or ``path.py:NAME``), so that
        stored data can rebuild it.

    Attributes
    ----------
    integrators : tuple of str
        (Class attribute.) Names of the integrators its dynamics supports, the default first:
        ``("overdamped", "baoab")``, the batched torch Langevin integrators of
        :mod:`itomd.simulate.integrators`.
    default_chunk_size : int
        (Class attribute.) Walkers a campaign simulates together in one task unless told otherwise.
    time_unit : str
        (Class attribute.) The unit of time in words, for messages.
    """

    integrators: ClassVar[tuple[str, ...]] = ("overdamped", "baoab")
    default_chunk_size: ClassVar[int] = 64
    time_unit: ClassVar[str] = "time units"

    potential: Potential
    kT: float
    friction: float = 1.0
    timestep: float = 1e-3
    frame_interval: float = 1e-2
    mass: float = 1.0
    box: Box | None = None
    name: str = ""
    spec: str = ""

    def __post_init__(self) -> None:
        for attr in ("kT", "friction", "timestep", "frame_interval", "mass"):
            value = getattr(self, attr)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InvalidInputError(f"{attr} must be a positive number, got {value!r}")
        ratio = self.frame_interval / self.timestep
        if not math.isfinite(ratio) or abs(ratio - round(ratio)) > 1e-6 * max(1.0, ratio) or round(ratio) < 1:
            raise InvalidInputError(
                f"frame interval {self.frame_interval:g} must be a positive integer multiple of the "
                f"timestep {self.timestep:g}"
            )
        if self.box is not None:
            box = tuple((float(lo), float(hi)) for lo, hi in self.box)
            if len(box) != self.potential.dim:
                raise InvalidInputError(
                    f"box has {len(box)} ranges but the system is {self.potential.dim}-dimensional"
                )
            if any(not hi > lo for lo, hi in box):
                raise InvalidInputError(f"box ranges must satisfy low < high, got {box}")
            object.__setattr__(self, "box", box)
        if not self.name:
            object.__setattr__(self, "name", self.potential.name)

    @property
    def dim(self) -> int:
        """Number of coordinates."""
        return self.potential.dim

    @property
    def diffusion(self) -> float:
        """Diffusion constant D = kT / γ."""
        return self.kT / self.friction

    @property
    def steps_per_frame(self) -> int:
        """Integration steps between stored frames."""
        return int(round(self.frame_interval / self.timestep))

    @property
    def default_integrator(self) -> str:
        """The integrator used unless one is asked for (the first of :attr:`integrators`)."""
        return self.integrators[0]

    def default_start(self) -> "np.ndarray | None":
        """The start point of every trajectory unless one is given; ``None``: samples of the equilibrium
        density (toy systems).

        Returns
        -------
        np.ndarray, shape [dim], float64, or None
        """
        return None

    def topology(self) -> Any:
        """The atoms and bonds (an mdtraj ``Topology``) of a molecule; ``None`` for systems without atoms."""
        return None

    def write_store_files(self, directory: str | os.PathLike, frame: "np.ndarray | None" = None) -> list[Path]:
        """Write the files a trajectory store of this system needs besides its trajectories.

        Toy systems need none; a molecule writes ``topology.pdb``. Everything that writes a store
        (campaigns, rollouts, exports) calls this.

        Parameters
        ----------
        directory : path
            The store directory (created if needed).
        frame : array_like, shape [dim], optional
            A frame the files may show (a molecule's ``topology.pdb`` holds one model; default: the
            shipped structure).

        Returns
        -------
        list of Path
            The files written (empty for toy systems).
        """
        return []

    def analysis_energies(self, frames: "np.ndarray") -> "np.ndarray | None":
        """Potential energies (kT) of frames as analyses compare them between data sets, or None where
        the system has no such check (toy systems: their stationary density is compared exactly).

        Parameters
        ----------
        frames : np.ndarray, shape [n, dim]

        Returns
        -------
        np.ndarray, shape [n], float64, or None
        """
        return None

    def equilibrium_score(self, x: "torch.Tensor") -> "torch.Tensor":
        """The score of the Boltzmann density, s₀(x) = ∇ ln μ(x) = −∇U(x)/kT (BoPITO's force-field prior).

        The potential's force over kT: differentiable in ``x`` when ``x`` requires gradients (see
        :mod:`itomd.systems.potential`), so likelihoods through the probability-flow ODE see its Jacobian.

        Parameters
        ----------
        x : torch.Tensor, shape [B, dim]

        Returns
        -------
        torch.Tensor, shape [B, dim], dtype of x
        """
        return self.potential.force(x) / self.kT

    def metadata(self) -> dict:
        """JSON-serialisable description of the system, stored with trajectories."""
        return {
            "system": self.name,
            "spec": self.spec or self.name,
            "dim": self.dim,
            "kT": self.kT,
            "friction": self.friction,
            "mass": self.mass,
            "timestep": self.timestep,
            "frame_interval": self.frame_interval,
            "box": [list(b) for b in self.box] if self.box else None,
        }
