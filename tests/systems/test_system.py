"""System hooks: what differs between toy systems and molecules is answered by the system itself."""

import dataclasses

import numpy as np
import pytest

from itomd.errors import InvalidInputError
from itomd.systems import System, SystemSpec, resolve_system


def test_toy_system_hooks(tmp_path):
    system = resolve_system("muller-brown")
    assert system.integrators == ("overdamped", "baoab") and system.default_integrator == "overdamped"
    assert system.default_chunk_size == 64 and system.time_unit == "time units"
    assert system.default_start() is None and system.topology() is None
    assert system.write_store_files(tmp_path / "store") == [] and not (tmp_path / "store").exists()
    assert {"mass", "box"} <= set(system.metadata())


def test_hooks_are_class_level_and_not_dataclass_fields():
    assert {f.name for f in dataclasses.fields(System)} == {
        "potential", "kT", "friction", "timestep", "frame_interval", "mass", "box", "name", "spec"}
    system = dataclasses.replace(resolve_system("prinz"), kT=2.0)
    assert system.integrators == System.integrators


def test_a_subclass_overrides_the_hooks():
    class Stiff(System):
        integrators = ("baoab",)
        default_chunk_size = 3

        def default_start(self):
            return np.full(self.dim, 0.5)

    system = Stiff(resolve_system("harmonic").potential, kT=1.0)
    assert system.default_integrator == "baoab" and system.default_chunk_size == 3
    assert np.array_equal(system.default_start(), [0.5])


# -- molecules ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ala2():
    return resolve_system("ala2")


def test_molecule_hooks(ala2):
    assert ala2.integrators == ("langevin-middle",) and ala2.default_integrator == "langevin-middle"
    assert ala2.default_chunk_size == 4 and ala2.time_unit == "ps"
    assert np.array_equal(ala2.default_start(), ala2.initial_coordinates()) and ala2.default_start().shape == (66,)
    topology = ala2.topology()
    assert topology.n_atoms == 22 and topology.n_bonds == 21


def test_molecule_store_files_are_its_topology(ala2, tmp_path):
    import mdtraj

    written = ala2.write_store_files(tmp_path / "store")
    assert written == [tmp_path / "store" / "topology.pdb"] and not list((tmp_path / "store").glob("*.tmp-*"))
    pdb = mdtraj.load(str(written[0]))
    assert pdb.topology.n_bonds == 21
    np.testing.assert_allclose(pdb.xyz.reshape(-1), ala2.initial_coordinates(), atol=1e-4)  # PDB: 10⁻⁴ nm
    frame = ala2.initial_coordinates() + 0.01
    ala2.write_store_files(tmp_path / "store", frame=frame)
    np.testing.assert_allclose(mdtraj.load(str(written[0])).xyz.reshape(-1), frame, atol=1e-4)
    with pytest.raises(InvalidInputError, match=r"topology coordinates must have shape \[66\]"):
        ala2.write_store_files(tmp_path / "store", frame=np.zeros(3))


def test_molecules_take_no_mass_or_box_but_record_the_old_values(ala2):
    from itomd.systems.openmm import MolecularSystem

    assert ala2.mass == 1.0 and ala2.box is None
    assert ala2.metadata()["mass"] == 1.0 and ala2.metadata()["box"] is None
    with pytest.raises(TypeError):
        MolecularSystem(ala2.potential, kT=1.0, mass=2.0)
    with pytest.raises(ValueError):
        dataclasses.replace(ala2, box=((0.0, 1.0),) * 66)
    assert dataclasses.replace(ala2, frame_interval=0.1).frame_interval == 0.1
    assert SystemSpec("ala2", frame_interval=0.1).build().mass == 1.0
