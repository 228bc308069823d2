"""Potential: energies and forces validate their input in one line; CallablePotential wraps a user
function and takes its force by autograd."""

import pytest
import torch

from itomd.errors import InvalidInputError
from itomd.systems import CallablePotential, MullerBrownPotential


def test_wrong_dimension_is_one_clear_error():
    with pytest.raises(InvalidInputError, match="2-dimensional"):
        MullerBrownPotential().energy(torch.zeros(4, 3))


def test_callable_potential_and_bad_return():
    p = CallablePotential(lambda x: (x**2).sum(-1), dim=3, name="bowl")
    assert p.energy(torch.ones(2, 3)).tolist() == [3.0, 3.0]
    torch.testing.assert_close(p.force(torch.ones(1, 3)), -2 * torch.ones(1, 3))
    with pytest.raises(InvalidInputError):
        CallablePotential(lambda x: x, dim=2).energy(torch.ones(4, 2))


def test_a_subclass_that_only_defines_its_energy_gets_the_force_by_autograd():
    from itomd.systems.potential import Potential

    class Tilted(Potential):
        name = "tilted"

        def _energy(self, x):
            return (x**2).sum(-1) + x[..., 0]

    potential = Tilted(2)
    force = potential.force(torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(force, torch.tensor([[-3.0, -4.0]]))  # −∇(x² + y² + x)
    assert not force.requires_grad
    # of coordinates that require gradients, the autograd force keeps its graph: its Jacobian is −∇∇U = −2I
    x = torch.tensor([[1.0, 2.0]], requires_grad=True)
    (hessian_row,) = torch.autograd.grad(potential.force(x)[0, 0], x)
    torch.testing.assert_close(hessian_row, torch.tensor([[-2.0, 0.0]]))
    assert potential.force(torch.zeros(2, 3, 2)).shape == (2, 3, 2) and potential.energy([[0.5, 0.0]]).shape == (1,)
    with pytest.raises(InvalidInputError, match=r"expected \[\.\.\., 2\]"):
        potential.force(torch.tensor(1.0))
    for dim in (0, 1.5):
        with pytest.raises(InvalidInputError, match="positive integer"):
            Tilted(dim)
