"""Toy potentials with exact references: Prinz (1D), Müller–Brown (2D), double well, harmonic.

All forces are analytic (they are checked against autograd in the tests); energies are in the
system's energy unit.
"""

from __future__ import annotations

import torch

from itomd.systems.potential import Potential


class PrinzPotential(Potential):
    r"""The one-dimensional four-well potential of Prinz et al. (2011), as in deeptime's
    ``prinz_potential``:

    .. math::
        U(x) = 4\left(x^8 + 0.8 e^{-80 x^2} + 0.2 e^{-80 (x-0.5)^2} + 0.5 e^{-40 (x+0.5)^2}\right)

    At kT = 1 and friction 1 the slowest implied timescale is 0.834 time units.
    """

    name = "prinz"

    def __init__(self) -> None:
        super().__init__(dim=1)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        x = x[..., 0]
        return 4.0 * (
            x**8
            + 0.8 * torch.exp(-80.0 * x**2)
            + 0.2 * torch.exp(-80.0 * (x - 0.5) ** 2)
            + 0.5 * torch.exp(-40.0 * (x + 0.5) ** 2)
        )

    def _force(self, x: torch.Tensor) -> torch.Tensor:
        y = x[..., 0]
        dudx = 4.0 * (
            8.0 * y**7
            - 128.0 * y * torch.exp(-80.0 * y**2)
            - 32.0 * (y - 0.5) * torch.exp(-80.0 * (y - 0.5) ** 2)
            - 40.0 * (y + 0.5) * torch.exp(-40.0 * (y + 0.5) ** 2)
        )
        return -dudx.unsqueeze(-1)


class MullerBrownPotential(Potential):
    r"""The Müller–Brown potential (Müller & Brown, 1979) with its standard parameters,

    .. math::
        U(x, y) = s \sum_{k=1}^{4} A_k \exp\left(a_k (x - x_k)^2 + b_k (x - x_k)(y - y_k)
                  + c_k (y - y_k)^2\right)

    with A = (−200, −100, −170, 15), a = (−1, −1, −6.5, 0.7), b = (0, 0, 11, 0.6),
    c = (−10, −10, −6.5, 0.7), x_k = (1, 0, −0.5, −1), y_k = (0, 0.5, 1.5, 1) and energy scale
    ``s`` (1 by default). The minima lie at about −146.7, −108.2 and −80.8 energy units; the
    shipped system uses kT = 10 (barriers of roughly 10 kT), where the slowest implied timescale at
    friction 1 is 5.00 time units.
    """

    name = "muller-brown"
    A = (-200.0, -100.0, -170.0, 15.0)
    a = (-1.0, -1.0, -6.5, 0.7)
    b = (0.0, 0.0, 11.0, 0.6)
    c = (-10.0, -10.0, -6.5, 0.7)
    x0 = (1.0, 0.0, -0.5, -1.0)
    y0 = (0.0, 0.5, 1.5, 1.0)

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__(dim=2)
        self.scale = float(scale)

    def _parameters(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        key = (x.dtype, x.device)
        cache = self.__dict__.setdefault("_parameter_cache", {})
        if key not in cache:
            cache[key] = {k: torch.tensor(getattr(self, k), dtype=x.dtype, device=x.device)
                          for k in ("A", "a", "b", "c", "x0", "y0")}
        return cache[key]

    def _terms(self, x: torch.Tensor):
        p = self._parameters(x)
        dx = x[..., 0:1] - p["x0"]
        dy = x[..., 1:2] - p["y0"]
        e = p["A"] * torch.exp(p["a"] * dx**2 + p["b"] * dx * dy + p["c"] * dy**2)
        return p, dx, dy, e

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        _, _, _, e = self._terms(x)
        return self.scale * e.sum(-1)

    def _force(self, x: torch.Tensor) -> torch.Tensor:
        p, dx, dy, e = self._terms(x)
        gx = (e * (2 * p["a"] * dx + p["b"] * dy)).sum(-1)
        gy = (e * (p["b"] * dx + 2 * p["c"] * dy)).sum(-1)
        return -self.scale * torch.stack([gx, gy], dim=-1)

    def __repr__(self) -> str:
        return f"MullerBrownPotential(scale={self.scale})"


class DoubleWellPotential(Potential):
    r"""A symmetric double well along the first coordinate, harmonic in the others:

    .. math::
        U(x) = h\,(x_1^2 - 1)^2 + \tfrac{k}{2} \sum_{i \geq 2} x_i^2

    Parameters
    ----------
    dim : int
        1 or more coordinates.
    barrier : float
        Barrier height h (energy units) between the wells at x₁ = ±1.
    stiffness : float
        Spring constant k of the orthogonal coordinates.
    """

    name = "double-well"

    def __init__(self, dim: int = 1, barrier: float = 3.0, stiffness: float = 4.0) -> None:
        super().__init__(dim)
        self.barrier = float(barrier)
        self.stiffness = float(stiffness)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        u = self.barrier * (x[..., 0] ** 2 - 1.0) ** 2
        if self.dim > 1:
            u = u + 0.5 * self.stiffness * (x[..., 1:] ** 2).sum(-1)
        return u

    def _force(self, x: torch.Tensor) -> torch.Tensor:
        f = -self.stiffness * x.clone()
        f[..., 0] = -4.0 * self.barrier * x[..., 0] * (x[..., 0] ** 2 - 1.0)
        return f

    def __repr__(self) -> str:
        return f"DoubleWellPotential(dim={self.dim}, barrier={self.barrier}, stiffness={self.stiffness})"


class HarmonicPotential(Potential):
    r"""An isotropic harmonic well :math:`U(x) = \tfrac{k}{2}\lvert x \rvert^2`.

    Exact equilibrium values at temperature kT: :math:`\langle U\rangle = d\,kT/2` and
    :math:`\mathrm{Var}(U) = d\,(kT)^2/2`; the overdamped dynamics is an Ornstein–Uhlenbeck
    process with relaxation rate k/γ.
    """

    name = "harmonic"

    def __init__(self, dim: int = 1, stiffness: float = 1.0) -> None:
        super().__init__(dim)
        self.stiffness = float(stiffness)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.stiffness * (x**2).sum(-1)

    def _force(self, x: torch.Tensor) -> torch.Tensor:
        return -self.stiffness * x

    def __repr__(self) -> str:
        return f"HarmonicPotential(dim={self.dim}, stiffness={self.stiffness})"
