"""SystemSpec.from_store: the one parser from a trajectory store's metadata to the system it holds."""

from __future__ import annotations

import json


from itomd.systems import SystemSpec
from itomd.systems.openmm import MolecularSystem


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
