"""A user's molecule: PDB, Amber, OpenMM XML and peptide inputs, their preparation and the errors (issue 15)."""

from __future__ import annotations

import dataclasses

import mdtraj
import numpy as np
import openmm
import pytest
from openmm import app, unit

import itomd.systems.molecules as molecules
from itomd.errors import DataFileError, InvalidInputError, ItomdError
from itomd.systems import SystemSpec
from itomd.systems.molecules import MoleculeInput, build_peptide, prepare_molecule
from itomd.systems.openmm import _openmmtools_data, molecular_system

AMBER_DIR = ("alanine-dipeptide-gbsa",)


def _energy(system: openmm.System, positions: np.ndarray) -> float:
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions.reshape(-1, 3))
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def _signed_volume(xyz: np.ndarray, topology: mdtraj.Topology, residue_index: int) -> float:
    names = {a.name: a.index for a in topology.residue(residue_index).atoms}
    ca, n, c, cb = (xyz[names[k]] for k in ("CA", "N", "C", "CB"))
    return float(np.dot(n - ca, np.cross(c - ca, cb - ca)))


@pytest.fixture(scope="module")
def capped_as():
    return prepare_molecule(MoleculeInput("peptide:AS"), 300.0)


def test_a_capped_peptide_is_built_whole_with_l_residues_and_trans_peptide_bonds(capped_as):
    topology = mdtraj.Topology.from_openmm(capped_as.topology)
    assert [r.name for r in topology.residues] == ["ACE", "ALA", "SER", "NME"]
    assert topology.n_atoms == 6 + 10 + 11 + 6  # every hydrogen added (pH 7)
    assert sum(1 for a in topology.atoms if a.element.symbol == "H") == 3 + 5 + 5 + 4
    # every peptide bond trans, including the caps' (ω through CH3 of ACE and C of NME)
    omega = [("CH3", 0, "C", 0, "N", 1, "CA", 1), ("CA", 1, "C", 1, "N", 2, "CA", 2),
             ("CA", 2, "C", 2, "N", 3, "C", 3)]
    index = {(a.residue.index, a.name): a.index for a in topology.atoms}
    quartets = np.array([[index[(r, n)] for n, r in zip(q[::2], q[1::2])] for q in omega])
    angles = mdtraj.compute_dihedrals(mdtraj.Trajectory(capped_as.positions[None], topology), quartets)[0]
    assert np.all(np.abs(angles) > np.radians(150)), np.degrees(angles)
    # L residues: the signed volume has the sign of the shipped (L-)alanine dipeptide's Cα
    ala2 = molecular_system("ala2")
    reference = np.sign(_signed_volume(ala2.initial_coordinates().reshape(-1, 3), ala2.topology(), 1))
    for residue in (1, 2):
        assert np.sign(_signed_volume(capped_as.positions, topology, residue)) == reference
    mirrored = capped_as.positions * np.array([1.0, 1.0, -1.0])  # negative control: the D-peptide
    assert np.sign(_signed_volume(mirrored, topology, 1)) == -reference


def test_charged_termini_end_in_ammonium_and_carboxylate():
    topology, positions = build_peptide("gs", termini="charged")
    np.testing.assert_array_equal(build_peptide("GS", termini="charged")[1], positions)  # reproducible build
    names = [(a.residue.name, a.name) for a in topology.atoms()]
    nitrogen = next(a for a in topology.atoms() if a.residue.name == "GLY" and a.name == "N")
    bonded = [b if a is nitrogen else a for a, b in topology.bonds() if nitrogen in (a, b)]
    assert sum(1 for a in bonded if a.element.symbol == "H") == 3 and ("SER", "OXT") in names
    assert not any(r in ("ACE", "NME") for r, _ in names)
    system = MoleculeInput("peptide:GS", termini="charged", implicit_solvent="none")
    energy_system = prepare_molecule(system, 300.0).energy_system()  # kept: its forces live inside it
    nonbonded = next(f for f in energy_system.getForces() if isinstance(f, openmm.NonbondedForce))
    charge = sum(nonbonded.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
                 for i in range(nonbonded.getNumParticles()))
    assert abs(charge) < 1e-6  # zwitterion: +1 and −1


def _centre_signs(topology: app.Topology, positions: np.ndarray) -> list[float]:
    from itomd.analysis.molecular import stereocentres

    rows, _ = stereocentres(mdtraj.Topology.from_openmm(topology))
    a, b, c = (positions[rows[:, k]] - positions[rows[:, 0]] for k in (1, 2, 3))
    return list(np.sign(np.einsum("ij,ij->i", a, np.cross(b, c))))


def test_charged_termini_keep_every_stereocentre_of_the_capped_build():
    """PDBFixer overlays a terminal residue's template on three atoms, where its mirror image fits as
    well: both termini of KDW (and Thr/Ile's second centre) came out D before they were mirrored back."""
    for sequence in ("KDW", "TI"):
        charged, capped = build_peptide(sequence, termini="charged"), build_peptide(sequence, termini="capped")
        signs = _centre_signs(*charged)
        assert signs == _centre_signs(*capped) and len(signs) == {"KDW": 3, "TI": 4}[sequence]
        assert all(sign > 0 for sign in signs[::{"KDW": 1, "TI": 2}[sequence]])  # every Cα is L
    topology, positions = build_peptide("KDW", termini="charged")
    with pytest.raises(InvalidInputError, match="D-residues"):  # the build's own check sees a D-peptide
        molecules._check_peptide_geometry(topology, positions * np.array([1.0, 1.0, -1.0]), "peptide:KDW")


def test_native_obc2_has_the_energies_of_openmm_obc2_xml(capped_as):
    """OBC2 is OpenMM's native GBSAOBCForce (fast): the energies of implicit/obc2.xml, at the prepared
    structure and a distorted one; GBn2 (negative control) differs."""
    ff = app.ForceField("amber14-all.xml", "implicit/obc2.xml")
    custom = ff.createSystem(capped_as.topology, nonbondedMethod=app.NoCutoff, constraints=None)
    native = capped_as.energy_system()
    assert not any(isinstance(f, openmm.CustomGBForce) for f in native.getForces())
    distorted = capped_as.positions + np.random.default_rng(0).normal(0.0, 0.005, capped_as.positions.shape)
    for x in (capped_as.positions, distorted):
        assert _energy(native, x) == pytest.approx(_energy(custom, x), rel=1e-5, abs=1e-3)
    gbn2 = app.ForceField("amber14-all.xml", "implicit/gbn2.xml").createSystem(capped_as.topology,
                                                                               nonbondedMethod=app.NoCutoff)
    assert abs(_energy(gbn2, capped_as.positions) - _energy(native, capped_as.positions)) > 1.0


def test_amber_files_give_the_shipped_molecules_energies():
    prmtop = _openmmtools_data(*AMBER_DIR, "alanine-dipeptide.prmtop")
    crd = _openmmtools_data(*AMBER_DIR, "alanine-dipeptide.crd")
    for solvent, shipped in (("obc2", "ala2-implicit"), ("none", "ala2")):
        user = SystemSpec(f"{prmtop}:{crd}", implicit_solvent=solvent).build()
        reference = molecular_system(shipped)
        x = np.stack([reference.initial_coordinates(), user.default_start()])
        np.testing.assert_allclose(user.potential.energy(x).numpy(), reference.potential.energy(x).numpy(),
                                   rtol=1e-9, atol=1e-9)
    assert user.metadata()["inputs"]["files"][str(prmtop)]  # SHA-256 of every input file is recorded
    assert user.default_start().shape == (66,) and user.topology().n_atoms == 22


def test_an_openmm_system_xml_with_a_pdb(tmp_path):
    ala2 = molecular_system("ala2")
    (tmp_path / "system.xml").write_text(openmm.XmlSerializer.serialize(ala2.openmm_system()))
    ala2.write_topology(tmp_path)
    user = SystemSpec(f"{tmp_path / 'system.xml'}:{tmp_path / 'topology.pdb'}").build()
    x = ala2.initial_coordinates()[None]
    np.testing.assert_allclose(user.potential.energy(x).numpy(), ala2.potential.energy(x).numpy(), rtol=1e-9)
    assert user.metadata()["solvent"] == "vacuum" or user.metadata()["solvent"] == "obc2"


def test_a_pdb_with_a_force_field_by_name(tmp_path, capped_as):
    molecules.write_structure(capped_as, tmp_path / "as.pdb")
    user = SystemSpec(str(tmp_path / "as.pdb"), forcefield=("amber14-all.xml",)).build()
    x = capped_as.positions.reshape(1, -1)
    kT = 300.0 * 0.00831446261815324
    assert float(user.potential.energy(x)[0]) * kT == pytest.approx(_energy(capped_as.energy_system(), x), abs=1e-4)


def test_the_prepared_structure_is_reused_not_rebuilt(tmp_path, monkeypatch):
    """A store's structure.pdb is what workers and later commands simulate: no second build."""
    system = SystemSpec("peptide:AS").build()
    system.write_store_files(tmp_path)
    assert (tmp_path / "structure.pdb").is_file() and (tmp_path / "topology.pdb").is_file()

    def no_build(*args, **kwargs):
        raise AssertionError("built again")

    monkeypatch.setattr(molecules, "build_peptide", no_build)
    monkeypatch.setattr(molecules, "_relax", no_build)
    again = SystemSpec("peptide:AS").with_structure(tmp_path).build()
    np.testing.assert_allclose(again.default_start(), system.default_start(), atol=2e-4)  # PDB: 10⁻⁴ nm
    spec = SystemSpec.from_dict(SystemSpec("peptide:AS", termini="capped").with_structure(tmp_path).to_dict())
    assert spec.structure == str(tmp_path / "structure.pdb") and spec.termini == "capped"
    assert "forcefield" not in SystemSpec("ala2").to_dict()  # stored metadata of shipped systems unchanged


@pytest.mark.slow
def test_explicit_solvent_prepares_a_neutral_water_box_and_stores_the_solute(monkeypatch):
    """A short explicit-solvent run (small box, short NPT): solute-only frames, whole and centred."""
    from itomd.simulate.molecular import simulate_molecule

    monkeypatch.setattr(molecules, "NPT_EQUILIBRATION", 0.1)
    monkeypatch.setattr(molecules, "EXPLICIT_PADDING", 0.8)
    monkeypatch.setattr(molecules, "PME_CUTOFF", 0.8)
    system = SystemSpec("peptide:A", solvent="explicit").build()
    prepared = system.prepared()
    residues = {r.name for r in prepared.topology.residues()}
    assert "HOH" in residues and prepared.n_atoms == 22 and system.dim == 66
    assert prepared.box_vectors is not None and system.default_platform == "CPU"
    frames = simulate_molecule(system, system.default_start(), n_frames=3, seed=1, platform="CPU")[0]
    np.testing.assert_allclose(frames.reshape(3, 22, 3).mean(axis=1), 0.0, atol=1e-9)  # centred
    bonds = np.array([[a.index, b.index] for a, b in system.topology().bonds])
    xyz = frames.reshape(3, 22, 3)
    lengths = np.linalg.norm(xyz[:, bonds[:, 0]] - xyz[:, bonds[:, 1]], axis=-1)
    assert lengths.max() < 0.2  # whole: no bond split across the periodic box


@pytest.mark.parametrize("options, fragment", [
    ({"spec": "peptide:AXB"}, "'B', 'X' are not amino acids"),
    ({"spec": "peptide:"}, "needs a sequence"),
    ({"spec": "missing.pdb"}, "structure file not found: "),
    ({"spec": "peptide:AA", "forcefield": ("nope.xml",)}, "unknown force field nope.xml"),
    ({"spec": "peptide:AA", "implicit_solvent": "obc9"}, "unknown implicit solvent 'obc9'"),
    ({"spec": "prinz", "forcefield": ("amber14-all.xml",)}, "--forcefield apply to molecules"),
    ({"spec": "peptide:AA", "kT": 2.0}, "set its temperature in kelvin"),
])
def test_bad_molecule_inputs_are_one_line_errors(options, fragment):
    with pytest.raises(ItomdError) as info:
        SystemSpec(**options).build()
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_a_pdb_without_hydrogens_names_the_residue_and_the_fix(tmp_path, capped_as):
    topology = mdtraj.Topology.from_openmm(capped_as.topology)
    heavy = mdtraj.Trajectory(capped_as.positions[None], topology).atom_slice(
        [a.index for a in topology.atoms if a.element.symbol != "H"])
    heavy.save_pdb(str(tmp_path / "heavy.pdb"))
    with pytest.raises(InvalidInputError, match=r"heavy\.pdb: No template found for residue 0 \(ACE\).*missing 3 H atoms.*add its hydrogens"):
        SystemSpec(str(tmp_path / "heavy.pdb")).build()


def test_a_residue_with_some_hydrogens_is_not_told_to_add_them(tmp_path, capped_as):
    # one of the cap's methyl hydrogens removed (another protonation, a partly protonated file): OpenMM
    # reports a hydrogen missing, but the residue has hydrogens, so the advice is about matching the template
    molecules.write_structure(capped_as, tmp_path / "as.pdb")
    lines = [line for line in (tmp_path / "as.pdb").read_text().splitlines()
             if not (line[17:20] == "ACE" and line[12:16].strip() == "H1")]
    (tmp_path / "partial.pdb").write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInputError) as info:
        SystemSpec(str(tmp_path / "partial.pdb")).build()
    message = str(info.value)
    assert "residue 0 (ACE)" in message and "missing 1 H atom" in message
    assert "hydrogens are there but do not match" in message and "add its hydrogens" not in message
    assert "\n" not in message


def test_a_residue_the_force_field_lacks_is_named(tmp_path, capped_as):
    molecules.write_structure(capped_as, tmp_path / "as.pdb")
    lines = (tmp_path / "as.pdb").read_text().replace(" NME ", " LIG ").splitlines()
    h1 = next(i for i, line in enumerate(lines) if line[12:16].strip() == "H1" and line[17:20] == "LIG")
    lines[h1] = lines[h1][:12] + " CL " + lines[h1][16:76] + "CL"  # a chlorinated cap: no template has it
    (tmp_path / "lig.pdb").write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInputError, match=r"lig\.pdb: No template found for residue 3 \(LIG\).*give a force "
                                                r"field that has it \(--forcefield\)"):
        SystemSpec(str(tmp_path / "lig.pdb")).build()


def test_mismatched_amber_files_are_refused(tmp_path):
    prmtop = _openmmtools_data(*AMBER_DIR, "alanine-dipeptide.prmtop")
    lines = _openmmtools_data(*AMBER_DIR, "alanine-dipeptide.crd").read_text().splitlines()
    # the same coordinates with one atom fewer (21): another molecule's file
    (tmp_path / "short.crd").write_text("\n".join([lines[0], "    21"] + lines[2:-1]) + "\n")
    with pytest.raises((InvalidInputError, DataFileError), match="do not belong together|cannot read"):
        SystemSpec(f"{prmtop}:{tmp_path / 'short.crd'}").build()
    with pytest.raises(InvalidInputError, match="no periodic box: explicit solvent with Amber inputs"):
        SystemSpec(f"{prmtop}:{_openmmtools_data(*AMBER_DIR, 'alanine-dipeptide.crd')}", solvent="explicit").build()


def test_molecule_inputs_are_picklable_and_recorded():
    source = MoleculeInput("peptide:ga", termini="charged")
    import pickle

    assert pickle.loads(pickle.dumps(source)) == source
    record = source.provenance()
    assert record["sequence"] == "GA" and record["termini"] == "charged" and record["forcefield"] == ["amber14-all.xml"]
    with pytest.raises(InvalidInputError, match="unknown termini"):
        dataclasses.replace(source, termini="open")


def test_embedded_files_are_restored_only_where_missing_or_changed(tmp_path, monkeypatch):
    """What a model file carries of a user's molecule (embed_files/restore_files)."""
    from itomd.errors import DataFileError
    from itomd.systems.molecules import embed_files, restore_files

    monkeypatch.setenv("ITOMD_CACHE", str(tmp_path / "cache"))
    original = tmp_path / "x.pdb"
    original.write_text("ATOM original\n")
    embedded = embed_files([str(original), str(tmp_path / "absent.xml")])
    assert [e["path"] for e in embedded] == [str(original)]  # non-files are skipped
    assert restore_files(embedded) == {}  # unchanged: read where it is
    original.write_text("ATOM edited after training\n")
    moved = restore_files(embedded)
    assert open(moved[str(original)]).read() == "ATOM original\n"  # the trained-on copy, not the edit
    original.unlink()
    assert restore_files(embedded) == moved  # missing: the same cached copy
    corrupt = [{**embedded[0], "content": b"tampered"}]
    with pytest.raises(DataFileError, match="corrupt"):
        restore_files(corrupt)
