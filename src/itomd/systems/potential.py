"""Potential energy functions on batched coordinates.

Conventions
-----------
Coordinates ``x`` have shape ``[*batch, dim]`` (batch dimensions first, one event dimension of
size :attr:`Potential.dim`). Energies have shape ``[*batch]`` and are in the system's energy unit
(the same unit as ``kT``). Forces are ``-∇U`` with the shape of ``x``.

The public methods :meth:`Potential.energy` and :meth:`Potential.force` validate their input and
call the private hooks :meth:`Potential._energy` and :meth:`Potential._force`. Subclasses implement
``_energy``; ``_force`` defaults to automatic differentiation and may be overridden with an
analytic expression. Either way a force of coordinates that require gradients is itself
differentiable (the autograd default keeps its graph then), so that the score −∇U/kT has a Jacobian.
"""

from __future__ import annotations

from typing import Callable

import torch

from itomd.errors import InvalidInputError

EnergyFunction = Callable[[torch.Tensor], torch.Tensor]


class Potential:
    """A potential energy U(x) on :math:`\\mathbb{R}^{\\mathrm{dim}}`.

    Parameters
    ----------
    dim : int
        Number of coordinates (the event dimension).
    """

    #: Short human-readable name, used in metadata and plots.
    name: str = "potential"

    def __init__(self, dim: int):
        if int(dim) != dim or dim < 1:
            raise InvalidInputError(f"potential dimension must be a positive integer, got {dim!r}")
        self.dim = int(dim)

    # -- public API ---------------------------------------------------------------------------
    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Potential energy.

        Parameters
        ----------
        x : torch.Tensor, shape [*batch, dim]

        Returns
        -------
        torch.Tensor, shape [*batch]
        """
        x = self._validate(x)
        u = self._energy(x)
        if u.shape != x.shape[:-1]:
            raise InvalidInputError(
                f"{self.name}: energy must have shape {tuple(x.shape[:-1])}, got {tuple(u.shape)}"
            )
        return u

    def force(self, x: torch.Tensor) -> torch.Tensor:
        """Force :math:`-\\nabla U(x)`.

        Parameters
        ----------
        x : torch.Tensor, shape [*batch, dim]

        Returns
        -------
        torch.Tensor, shape [*batch, dim]
        """
        return self._force(self._validate(x))

    # -- hooks ----------------------------------------------------------------------------------
    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _force(self, x: torch.Tensor) -> torch.Tensor:
        keep_graph = x.requires_grad and torch.is_grad_enabled()  # the force's own derivatives wanted
        with torch.enable_grad():
            xg = x if keep_graph else x.detach().requires_grad_(True)
            u = self._energy(xg)
            (grad,) = torch.autograd.grad(u.sum(), xg, create_graph=keep_graph)
        return -grad

    # -- helpers --------------------------------------------------------------------------------
    def _validate(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x, dtype=torch.get_default_dtype())
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise InvalidInputError(
                f"{self.name} is {self.dim}-dimensional but coordinates have shape {tuple(x.shape)} "
                f"(expected [..., {self.dim}])"
            )
        return x

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"


class CallablePotential(Potential):
    """A potential defined by a plain Python function on torch tensors.

    Parameters
    ----------
    function : callable
        ``function(x) -> U`` with ``x`` of shape ``[*batch, dim]`` and ``U`` of shape ``[*batch]``.
        Must be written with torch operations so that forces follow by autograd.
    dim : int
        Number of coordinates.
    name : str, optional
        Name used in metadata; defaults to the function's ``__name__``.

    Examples
    --------
    >>> import torch
    >>> tilted = CallablePotential(lambda x: (x[..., 0] ** 2 - 1) ** 2 + 0.2 * x[..., 0], dim=1)
    >>> tilted.energy(torch.zeros(3, 1)).shape
    torch.Size([3])
    """

    def __init__(self, function: EnergyFunction, dim: int, name: str | None = None):
        super().__init__(dim)
        if not callable(function):
            raise InvalidInputError(f"energy function must be callable, got {type(function).__name__}")
        self.function = function
        self.name = name or getattr(function, "__name__", "user-potential")

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        u = self.function(x)
        if not isinstance(u, torch.Tensor):
            raise InvalidInputError(f"{self.name}: energy function must return a torch.Tensor")
        if u.shape == x.shape[:-1] + (1,):
            u = u.squeeze(-1)
        return u

    def __repr__(self) -> str:
        return f"CallablePotential({self.name}, dim={self.dim})"
