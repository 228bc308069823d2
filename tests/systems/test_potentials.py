import numpy as np
import pytest
import torch

from itomd.errors import InvalidInputError, UnknownSystemError
from itomd.systems import (CallablePotential, DoubleWellPotential, HarmonicPotential, MullerBrownPotential,
                           PrinzPotential, resolve_system)
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


def test_wrong_dimension_is_one_clear_error():
    with pytest.raises(InvalidInputError, match="2-dimensional"):
        MullerBrownPotential().energy(torch.zeros(4, 3))


def test_callable_potential_and_bad_return():
    p = CallablePotential(lambda x: (x**2).sum(-1), dim=3, name="bowl")
    assert p.energy(torch.ones(2, 3)).tolist() == [3.0, 3.0]
    torch.testing.assert_close(p.force(torch.ones(1, 3)), -2 * torch.ones(1, 3))
    with pytest.raises(InvalidInputError):
        CallablePotential(lambda x: x, dim=2).energy(torch.ones(4, 2))


def test_resolve_shipped_and_unknown():
    assert resolve_system("prinz").dim == 1
    assert resolve_system("double-well", dim=2).dim == 2
    assert resolve_system("Muller-Brown").kT == 10.0
    with pytest.raises(UnknownSystemError, match="unknown system 'nope'"):
        resolve_system("nope")
    with pytest.raises(InvalidInputError, match="2-dimensional"):
        resolve_system("muller-brown", dim=3)
    with pytest.raises(InvalidInputError, match="positive"):
        resolve_system("prinz", kT=-1.0)


def test_frame_interval_override_adjusts_timestep():
    s = resolve_system("prinz", frame_interval=0.01)
    assert s.frame_interval == 0.01 and s.steps_per_frame == 100
    s = resolve_system("prinz", frame_interval=0.00015)
    assert abs(s.steps_per_frame * s.timestep - 0.00015) < 1e-15


USER_FILE = '''
import torch
from itomd.systems import Potential, System

def tilted(x):
    return (x[..., 0] ** 2 - 1) ** 2 + 0.3 * x[..., 0]

def ring(x):
    r = torch.sqrt((x ** 2).sum(-1))
    return 5.0 * (r - 1.0) ** 2
ring.dim = 2
ring.box = ((-2.0, 2.0), (-2.0, 2.0))

class Quartic(Potential):
    name = "quartic"
    def __init__(self, dim=1):
        super().__init__(dim)
    def _energy(self, x):
        return (x ** 4).sum(-1)

MY_SYSTEM = System(Quartic(2), kT=0.5, timestep=1e-3, frame_interval=1e-2, box=((-2, 2), (-2, 2)))
not_callable = 3

def saddle(x):
    return x[..., 0] ** 2 - x[..., 1] ** 2
'''


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_potentials.py"
    path.write_text(USER_FILE)
    return path


def test_user_defined_systems(user_file):
    s = resolve_system(f"{user_file}:tilted", dim=1, kT=0.5)
    assert s.dim == 1 and s.kT == 0.5 and s.name == "tilted"
    assert s.potential.force(torch.zeros(1, 1)).item() == pytest.approx(-0.3)
    ring = resolve_system(f"{user_file}:ring")
    assert ring.dim == 2 and ring.box == ((-2.0, 2.0), (-2.0, 2.0))
    q = resolve_system(f"{user_file}:Quartic", dim=3)
    assert q.dim == 3
    mine = resolve_system(f"{user_file}:MY_SYSTEM")
    assert mine.kT == 0.5 and mine.dim == 2


def test_user_defined_errors(user_file, tmp_path):
    with pytest.raises(InvalidInputError, match="--dim"):
        resolve_system(f"{user_file}:tilted")
    with pytest.raises(UnknownSystemError, match="no object named 'missing'"):
        resolve_system(f"{user_file}:missing")
    with pytest.raises(UnknownSystemError, match="not found"):
        resolve_system(f"{tmp_path}/absent.py:f")
    with pytest.raises(UnknownSystemError, match="neither"):
        resolve_system(f"{user_file}:not_callable")
    with pytest.raises(InvalidInputError, match="is the dimension right"):
        resolve_system(f"{user_file}:saddle", dim=1)
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(UnknownSystemError, match="boom"):
        resolve_system(f"{broken}:f")
