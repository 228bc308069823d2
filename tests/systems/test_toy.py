"""The shipped toy potentials: analytic forces equal autograd's, Prinz is deeptime's, Müller–Brown has its
known minima."""

import numpy as np
import pytest
import torch

from itomd.systems import DoubleWellPotential, HarmonicPotential, MullerBrownPotential, PrinzPotential
from itomd.systems.potential import Potential

POTENTIALS = [PrinzPotential(), MullerBrownPotential(), DoubleWellPotential(dim=1), DoubleWellPotential(dim=3),
              HarmonicPotential(dim=2, stiffness=3.0)]


@pytest.mark.parametrize("potential", POTENTIALS, ids=lambda p: repr(p))
@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_energy_shape_and_analytic_force_matches_autograd(potential, batch):
    x = 0.6 * torch.randn(*batch, potential.dim, dtype=torch.float64)
    u = potential.energy(x)
    assert u.shape == batch
    analytic = potential.force(x)
    autograd = Potential._force(potential, x)
    assert analytic.shape == x.shape
    torch.testing.assert_close(analytic, autograd, rtol=1e-9, atol=1e-9)


def test_prinz_matches_deeptime_definition():
    import deeptime.data as deeptime_data
    model = deeptime_data.prinz_potential()
    xs = np.linspace(-1.0, 1.0, 41)
    ours = PrinzPotential().energy(torch.as_tensor(xs[:, None])).numpy()
    theirs = np.array([model.potential(np.array([[x]])) for x in xs]).ravel()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_muller_brown_known_minima():
    # Müller & Brown (1979): minima at about (-0.558, 1.442) -146.7, (0.623, 0.028) -108.2, (-0.050, 0.467) -80.8
    mb = MullerBrownPotential()
    pts = torch.tensor([[-0.558, 1.442], [0.623, 0.028], [-0.050, 0.467]], dtype=torch.float64)
    np.testing.assert_allclose(mb.energy(pts).numpy(), [-146.70, -108.17, -80.77], atol=0.05)
    assert torch.linalg.norm(mb.force(pts), dim=-1).max() < 1.0
