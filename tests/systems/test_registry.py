"""The registry: resolve_system (shipped systems, molecules, user files, overrides), SystemSpec (the
picklable recipe, its dicts) and SystemSpec.from_store (the one parser from a trajectory store's
metadata to the system it holds)."""

from __future__ import annotations

import json

import pytest
import torch

from itomd.errors import InvalidInputError, UnknownSystemError
from itomd.systems import SystemSpec, resolve_system
from itomd.systems.openmm import MolecularSystem


# -- resolve_system: shipped systems and overrides --------------------------------------------------
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


# -- molecules ------------------------------------------------------------------------------------
def test_registry_returns_molecules_with_overrides():
    for name in ("ala2", "ala2-vacuum", "ala2-implicit", "ALA2"):
        assert isinstance(resolve_system(name), MolecularSystem)
    system = resolve_system("ala2-implicit", friction=0.5, frame_interval=0.1, temperature=350.0)
    assert system.solvent == "obc2" and system.temperature == 350.0 and system.kT == 1.0
    assert system.friction == 0.5 and system.frame_interval == 0.1 and system.steps_per_frame == 50
    assert resolve_system("ala2", frame_interval=0.003).timestep == pytest.approx(0.0015)
    assert resolve_system("ala2", dim=66).dim == 66
    assert resolve_system("ala2").temperature == 300.0 and resolve_system("ala2").spec == "ala2"


def test_spec_carries_temperature_and_reads_old_dicts():
    spec = SystemSpec("ala2", temperature=320.0, frame_interval=0.5)
    assert SystemSpec.from_dict(spec.to_dict()) == spec and spec.build().temperature == 320.0
    assert spec.build().topology() is not None and SystemSpec("prinz").build().topology() is None
    old = {"spec": "prinz", "dim": None, "kT": None, "friction": None, "timestep": None, "frame_interval": None,
           "box": None}
    assert SystemSpec.from_dict(old) == SystemSpec("prinz")
    assert SystemSpec("prinz").to_dict() == old  # toy metadata unchanged by the new field


@pytest.mark.parametrize("kwargs, error, fragment", [
    (dict(kT=2.0), InvalidInputError, "set its temperature in kelvin"),
    (dict(box=((0.0, 1.0),) * 66), InvalidInputError, "has no box"),
    (dict(dim=3), InvalidInputError, "--dim 3 is not possible"),
    (dict(temperature=-5.0), InvalidInputError, "temperature must be a positive number"),
    (dict(timestep=0.002, frame_interval=0.003), InvalidInputError, "integer multiple"),
])
def test_bad_molecule_overrides_are_one_line_errors(kwargs, error, fragment):
    with pytest.raises(error, match=fragment) as info:
        resolve_system("ala2", **kwargs)
    assert "\n" not in str(info.value)


def test_temperature_for_a_toy_system_and_unknown_names_are_one_line_errors():
    with pytest.raises(InvalidInputError, match="applies to molecules"):
        resolve_system("prinz", temperature=300.0)
    with pytest.raises(UnknownSystemError, match="ala2-implicit"):
        resolve_system("ala3")


# -- SystemSpec.from_store ------------------------------------------------------------------------
def test_a_recorded_spec_is_rebuilt_with_its_overrides():
    system = SystemSpec.from_store({"spec": json.dumps(SystemSpec("double-well", dim=2, kT=0.5).to_dict()),
                                    "frame_interval": 0.01})
    assert system.spec == "double-well" and system.dim == 2 and system.kT == 0.5
    assert SystemSpec.from_store({"spec": {"spec": "prinz"}}).box == ((-1.2, 1.2),)  # a dict, not JSON text


def test_nothing_recorded_or_nothing_buildable_gives_none(tmp_path):
    assert SystemSpec.from_store({}) is None
    assert SystemSpec.from_store({"frame_interval": 0.1, "kT": 1.0}) is None
    assert SystemSpec.from_store({"spec": json.dumps({"spec": str(tmp_path / "gone.py:U")})}) is None
    assert SystemSpec.from_store({"spec": "{not json"}) is None
    assert SystemSpec.from_store({"molecule": "ubiquitin", "solvent": "vacuum"}) is None


def test_a_molecule_from_its_recorded_spec_or_its_molecule_and_solvent(tmp_path):
    recorded = SystemSpec.from_store({"spec": json.dumps(SystemSpec("ala2", temperature=350.0).to_dict())})
    assert isinstance(recorded, MolecularSystem) and recorded.temperature == 350.0 and recorded.solvent == "vacuum"

    implicit = SystemSpec.from_store({"molecule": "alanine-dipeptide", "solvent": "obc2", "temperature": 310})
    assert isinstance(implicit, MolecularSystem) and implicit.spec == "ala2-implicit"
    assert implicit.solvent == "obc2" and implicit.temperature == 310.0

    vacuum = SystemSpec.from_store({"molecule": "alanine-dipeptide"})  # solvent defaults to vacuum, 300 K
    assert vacuum.solvent == "vacuum" and vacuum.temperature == 300.0

    # a spec that cannot be rebuilt here falls back to the molecule entries
    moved = SystemSpec.from_store({"spec": json.dumps({"spec": str(tmp_path / "gone.py:U")}),
                                   "molecule": "alanine-dipeptide", "solvent": "obc2"})
    assert isinstance(moved, MolecularSystem) and moved.solvent == "obc2"
