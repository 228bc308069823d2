"""Analysis of any molecule (issue 15): every φ/ψ/χ₁, every stereocentre, peptide-bond cis/trans, per-torsion
JS divergences and the TICA plane as MSM space — on a capped dipeptide ACE-ALA-THR-NME built with
PDBFixer (``itomd.systems.molecules.build_peptide``, stored as ace_ala_thr_nme.pdb) and a short vacuum
OpenMM run, next to alanine dipeptide
(``md_trajectories``, ``topology``: tests/conftest.py), whose φ/ψ grid analysis is unchanged."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from itomd.analysis import BackboneTorsionFeaturizer, MolecularSection, analyze, compare
from itomd.analysis import molecular as M
from itomd.analysis.features import TorsionTICAFeaturizer, torsion_featurizer
from itomd.analysis.report import write_report
from itomd.errors import InvalidInputError

PEPTIDE_FRAME_INTERVAL = 0.04  # ps: 20 steps of 2 fs


#: ACE-ALA-THR-NME as built by ``itomd.systems.molecules.build_peptide("AT")`` (PDBFixer) and minimised,
#: stored because PDBFixer's hydrogens differ from call to call (and the MD with them).
PEPTIDE_PDB = Path(__file__).with_name("ace_ala_thr_nme.pdb")


@pytest.fixture(scope="module")
def peptide():
    """ACE-ALA-THR-NME (amber14, vacuum, 300 K, H bonds constrained, Reference platform): the mdtraj topology,
    the minimised structure [3n] and two 32 ps runs of 800 frames (after 1 ps), flattened, nm."""
    import mdtraj
    import openmm
    from openmm import app, unit

    pdb = app.PDBFile(str(PEPTIDE_PDB))
    system = app.ForceField("amber14-all.xml").createSystem(pdb.topology, nonbondedMethod=app.NoCutoff,
                                                            constraints=app.HBonds)
    runs, structure = [], None
    for seed in (1, 2):
        integrator = openmm.LangevinMiddleIntegrator(300.0, 5.0, 0.002)
        integrator.setRandomNumberSeed(seed)
        context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(pdb.positions)
        openmm.LocalEnergyMinimizer.minimize(context, 10.0, 200)
        if structure is None:
            structure = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        context.setVelocitiesToTemperature(300.0, seed)
        integrator.step(500)
        frames = np.empty((800, 3 * pdb.topology.getNumAtoms()))
        for i in range(len(frames)):
            integrator.step(20)
            frames[i] = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer).ravel()
        runs.append(frames)
    return mdtraj.Topology.from_openmm(pdb.topology), np.asarray(structure, dtype=float).ravel(), runs


def _atom(topology, residue: int, name: str) -> int:
    return next(a.index for a in topology.atoms if a.residue.index == residue and a.name == name)


def _dihedral(x, i, j, k, l) -> float:
    """IUPAC dihedral (radians) of atoms i-j-k-l, by hand."""
    b0, b1, b2 = x[j] - x[i], x[k] - x[j], x[l] - x[k]
    n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
    return float(np.arctan2(np.dot(np.cross(n1, n2), b1 / np.linalg.norm(b1)), np.dot(n1, n2)))


def _rotate_about_bond(topology, frame: np.ndarray, j: int, k: int, angle: float) -> np.ndarray:
    """Rotate everything bonded beyond atom k (away from j) by ``angle`` about the j→k bond: this changes
    every torsion about that bond by ``angle`` and keeps all bond lengths."""
    neighbours = {a.index: set() for a in topology.atoms}
    for a, b in topology.bonds:
        neighbours[a.index].add(b.index)
        neighbours[b.index].add(a.index)
    side, todo = {k}, [k]
    while todo:
        for n in neighbours[todo.pop()] - side - {j}:
            side.add(n)
            todo.append(n)
    x = frame.reshape(-1, 3).copy()
    axis = (x[k] - x[j]) / np.linalg.norm(x[k] - x[j])
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    moved = sorted(side)
    x[moved] = (x[moved] - x[k]) @ rotation.T + x[k]
    return x.ravel()


# -- torsions -------------------------------------------------------------------------------------
def test_torsions_of_a_capped_dipeptide_are_every_phi_psi_chi1_with_their_values(peptide):
    topology, structure, _ = peptide
    torsions = M.torsion_set(topology)
    assert torsions.labels == ("φ ALA2", "ψ ALA2", "φ THR3", "ψ THR3", "χ₁ THR3")
    assert torsions.kinds == ("phi", "psi", "phi", "psi", "chi1")
    x = structure.reshape(-1, 3)
    a = {name: _atom(topology, 1, name) for name in ("N", "CA", "C")}
    t = {name: _atom(topology, 2, name) for name in ("N", "CA", "C", "CB", "OG1")}
    ace_c, nme_n = _atom(topology, 0, "C"), _atom(topology, 3, "N")
    by_hand = [_dihedral(x, ace_c, a["N"], a["CA"], a["C"]), _dihedral(x, a["N"], a["CA"], a["C"], t["N"]),
               _dihedral(x, a["C"], t["N"], t["CA"], t["C"]), _dihedral(x, t["N"], t["CA"], t["C"], nme_n),
               _dihedral(x, t["N"], t["CA"], t["CB"], t["OG1"])]
    (angles,) = torsions.compute([structure[None]], topology)
    assert np.allclose(np.cos(angles[0] - by_hand), 1.0, atol=1e-6)
    # rotating about ALA2's Cα–C bond by 70° changes ψ ALA2 by 70° and no other torsion
    rotated = _rotate_about_bond(topology, structure, a["CA"], a["C"], np.radians(70.0))
    (after,) = torsions.compute([rotated[None]], topology)
    change = np.degrees(np.angle(np.exp(1j * (after[0] - angles[0]))))
    assert change == pytest.approx([0.0, 70.0, 0.0, 0.0, 0.0], abs=1e-3)
    # λ̂'s slow coordinates: (cos, sin) of the four backbone torsions; the χ₁ is not among them
    from itomd.representation import MolecularRepresentation
    from itomd.nn.equivariant import MoleculeGraph

    slow = MolecularRepresentation(MoleculeGraph.from_topology(topology), topology=topology).slow_coordinates(
        [structure[None]])[0]
    assert np.allclose(slow[0], np.concatenate([np.cos(angles[0, :4]), np.sin(angles[0, :4])]), atol=1e-6)


def test_alanine_dipeptide_keeps_its_phi_psi_features_and_grid_bit_for_bit(md_trajectories, topology):
    from itomd.representation import representation_for
    from itomd.systems import SystemSpec

    old = M.backbone_dihedrals(md_trajectories[:1], topology)[0]
    assert np.array_equal(M.backbone_torsions(md_trajectories[:1], topology)[0], old)
    assert np.array_equal(M.torsion_set(topology).compute(md_trajectories[:1], topology)[0], old)
    slow = representation_for(SystemSpec("ala2").build()).slow_coordinates(md_trajectories[:1])[0]
    assert np.array_equal(slow, np.concatenate([np.cos(old), np.sin(old)], axis=1))
    assert isinstance(torsion_featurizer(topology), BackboneTorsionFeaturizer)
    # alanine dipeptide's one stereocentre is its Cα, its two peptide bonds are trans in MD
    assert M.stereocentres(topology)[0].tolist() == [[8, 6, 14, 10]]
    assert M.peptide_bonds(topology).labels == ("ω ACE1–ALA2", "ω ALA2–NME3")
    assert M.chemical_validity(md_trajectories, topology).fraction_peptide_bonds_kept == 1.0


# -- validity -------------------------------------------------------------------------------------
def test_every_stereocentre_is_checked_and_a_d_residue_or_mirror_image_is_flagged(peptide):
    topology, structure, runs = peptide
    centres, is_alpha = M.stereocentres(topology)
    names = [f"{a.residue.name}{a.residue.resSeq}-{a.name}" for a in topology.atoms]
    assert [names[c] for c in centres[:, 0]] == ["ALA2-CA", "THR3-CA", "THR3-CB"]  # not Gly-like CH2/CH3 groups
    assert is_alpha.tolist() == [True, True, False]
    md = M.chemical_validity(runs, topology, reference_structure=structure)
    assert md.fraction_valid == 1.0 and md.fraction_chirality_kept == 1.0  # negative control: MD keeps them all
    frame = runs[0][0]
    x = frame.reshape(-1, 3)
    # D-alanine: HA and the side chain of ALA2 reflected through its N–Cα–C plane (all bond lengths kept)
    n, ca, c = (x[_atom(topology, 1, name)] for name in ("N", "CA", "C"))
    normal = np.cross(n - ca, c - ca)
    normal /= np.linalg.norm(normal)
    d_ala = x.copy()
    for name in ("HA", "CB", "HB1", "HB2", "HB3"):
        i = _atom(topology, 1, name)
        d_ala[i] -= 2 * np.dot(d_ala[i] - ca, normal) * normal
    # Thr Cβ inverted: OG1 (with HG1) and CG2 (with its H) swap places
    swapped = x.copy()
    og1, hg1, cg2 = (_atom(topology, 2, name) for name in ("OG1", "HG1", "CG2"))
    methyl = [cg2] + [_atom(topology, 2, f"HG2{k}") for k in (1, 2, 3)]
    shift = x[cg2] - x[og1]
    swapped[[og1, hg1]] = x[[og1, hg1]] + shift
    swapped[methyl] = x[methyl] - shift
    frames = np.stack([frame, d_ala.ravel(), swapped.ravel(), -frame])  # -frame: the mirror image
    validity = M.chemical_validity([frames], topology, reference_structure=structure)
    assert validity.chirality_kept.tolist() == [True, False, False, False]
    assert validity.bonds_ok[:2].all()  # the D-residue is flagged by its chirality alone
    assert validity.worst_offenders["chirality"] == {"ALA2-CA": 2, "THR3-CA": 1, "THR3-CB": 2}
    assert M.chirality_signs(d_ala.ravel(), topology).tolist() == [-1, 1, -1]
    assert validity.to_dict()["stereocentres"] == ["ALA2-CA", "THR3-CA", "THR3-CB"]


def test_a_cis_peptide_bond_made_by_rotating_omega_is_flagged(peptide):
    topology, structure, runs = peptide
    bonds = M.peptide_bonds(topology)
    assert bonds.labels == ("ω ACE1–ALA2", "ω ALA2–THR3", "ω THR3–NME4")
    c, n = _atom(topology, 1, "C"), _atom(topology, 2, "N")
    frame = runs[0][0]
    cis = _rotate_about_bond(topology, frame, c, n, np.pi)
    wobble = _rotate_about_bond(topology, frame, c, n, np.radians(25.0))  # still trans
    (omega,) = bonds.compute([np.stack([frame, cis, wobble])], topology)
    assert np.abs(omega[:, 1]).tolist() == pytest.approx([abs(omega[0, 1]), np.pi - abs(omega[0, 1]),
                                                          abs(omega[2, 1])], abs=1e-4)
    validity = M.chemical_validity([np.stack([frame, cis, wobble])], topology, reference_structure=structure)
    assert validity.peptide_bonds_kept.tolist() == [True, False, True]
    assert not validity.valid[1]
    assert validity.worst_offenders["peptide_bonds"] == {"ω ACE1–ALA2": 0, "ω ALA2–THR3": 1, "ω THR3–NME4": 0}
    assert validity.to_dict()["peptide_bonds"] == {label: "trans" for label in bonds.labels}
    # "as in the reference": with the cis structure as reference, the cis frame is kept and the trans ones flagged
    as_cis = M.chemical_validity([np.stack([frame, cis])], topology, reference_structure=cis,
                                 reference_bond_lengths=M.bond_lengths(topology, structure))
    assert as_cis.peptide_bonds_kept.tolist() == [False, True]
    with pytest.raises(InvalidInputError, match="cis_reference"):
        M.chemical_validity([frame[None]], topology, reference_structure=structure, cis_reference=np.zeros(2, bool))
    with pytest.raises(InvalidInputError, match="reference_structure"):
        M.chemical_validity([frame[None]], topology)


# -- divergences ----------------------------------------------------------------------------------
def test_js_per_torsion_is_small_for_two_halves_and_large_for_a_shifted_torsion(md_trajectories, topology):
    angles = M.torsion_set(topology).compute(md_trajectories, topology)
    first, second = [a[:500] for a in angles], [a[500:] for a in angles]
    halves = M.torsion_divergences(first, second, ["φ", "ψ"], ["phi", "psi"])
    # measured: 0.007 (φ) and 0.011 (ψ) nats for these halves (1000 frames each, 36 bins); a quarter of the
    # data against all of it: 0.003–0.009
    assert all(t["js_divergence"] < 0.03 for t in halves)
    shifted = [np.stack([np.angle(np.exp(1j * (a[:, 0] + np.pi))), a[:, 1]], axis=1) for a in second]
    moved = M.torsion_divergences(first, shifted, ["φ", "ψ"])
    assert moved[0]["js_divergence"] > 0.5 and moved[1]["js_divergence"] == halves[1]["js_divergence"]
    # scipy's JS distance (base e) is the square root of the divergence in nats, not the divergence
    for t in halves + moved:
        assert t["js_distance_scipy"] == pytest.approx(np.sqrt(t["js_divergence"]), rel=1e-9)
    assert M.torsion_divergences(angles, angles, ["φ", "ψ"])[0]["js_divergence"] == pytest.approx(0.0, abs=1e-12)


# -- the TICA plane -------------------------------------------------------------------------------
def test_multi_residue_molecules_are_analysed_on_the_tica_plane_fitted_on_md(peptide, tmp_path):
    topology, structure, runs = peptide
    featurizer = torsion_featurizer(topology, reference_structure=structure)
    assert isinstance(featurizer, TorsionTICAFeaturizer) and featurizer.needs_fit
    # a "surrogate" whose ψ ALA2 is off by 120° in every frame (bond lengths kept)
    ca, c = _atom(topology, 1, "CA"), _atom(topology, 1, "C")
    wrong = [np.stack([_rotate_about_bond(topology, f, ca, c, np.radians(120.0)) for f in runs[0][::2]])]
    result = analyze(wrong, 2 * PEPTIDE_FRAME_INTERVAL, 1.0, lags=[1, 5], n_states=20, n_samples=0,
                     featurizer=featurizer)
    assert result.featurizer.fitted_on == "the analysed data"
    comparison = compare(result, runs, PEPTIDE_FRAME_INTERVAL, n_samples=0)
    # compare refitted TICA on MD and redid the analysis: both projected by MD's model onto one plane
    assert result.featurizer.fitted_on == "MD" and not result.featurizer.refit_on_comparison
    md_plane = result.featurizer.transform(runs)
    assert np.array_equal(result.feature_trajectories[0], result.featurizer.transform(wrong)[0])
    assert result.discretization.method == "kmeans" and result.discretization.dim == 2
    assert result.autocorrelation.observable == "tic1"
    section = result.section(MolecularSection)
    assert section.plane == "tica" and section.tica["fitted_on"] == "MD"
    js = {t["label"]: t["js_divergence"] for t in section.torsion_comparison}
    assert max(js, key=js.get) == "ψ ALA2" and js["ψ ALA2"] > 0.3  # the per-torsion JS points at the wrong torsion
    assert js["φ THR3"] < 0.1
    assert section.tica_js_divergence.value == pytest.approx(comparison.js_divergence.value)
    # negative control: MD against MD on the same plane
    same = analyze(runs, PEPTIDE_FRAME_INTERVAL, 1.0, lags=[1, 5], n_states=20, n_samples=0,
                   featurizer=featurizer.fit(runs, label="MD"))
    compare(same, runs, PEPTIDE_FRAME_INTERVAL, n_samples=0)
    same_section = same.section(MolecularSection)
    assert np.array_equal(np.concatenate(same.featurizer.transform(runs)), np.concatenate(md_plane))
    assert same_section.tica_js_divergence.value == pytest.approx(0.0, abs=1e-12)
    assert section.tica_js_divergence.value > 0.2
    assert same_section.pcca["js_divergence"] == pytest.approx(0.0, abs=1e-12)
    assert section.pcca["js_divergence"] > 10 * max(same_section.pcca["js_divergence"], 1e-3)
    out = json.loads(json.dumps(result.to_dict(), allow_nan=False))["molecular"]
    assert out["msm_space"] == "TICA plane" and out["features"] == ["tic1", "tic2"]
    assert out["tica"]["lag_frames"] == 10 and out["tica"]["js_divergence"] > 0.2
    assert "MDGen/Timewarp" in out["torsions"]["js_distance_scipy_convention"]
    assert "MDGen/Timewarp" in out["pcca_populations"]["convention"]
    assert len(out["pcca_populations"]["populations"]) == 10
    assert sum(out["pcca_populations"]["reference_populations"]) + \
        out["pcca_populations"]["reference_fraction_unassigned"] == pytest.approx(1.0)
    # the report: TICA free energies side by side, the per-torsion table, the validity table's new checks
    page = write_report(result, tmp_path / "report.html").read_text()
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", page)
    assert "Free energy on the TICA plane in kT (this data vs MD; TICA fitted on MD, lag 10 frames)" in captions
    assert not any("Ramachandran" in c for c in captions)
    torsions = page.split("<h2>Torsions vs MD</h2>")[1].split("</table>")[0]
    assert f"<td>ψ ALA2</td><td>{js['ψ ALA2']:.4f}</td>" in torsions and "MDGen/Timewarp" in torsions
    assert "PCCA+" in page and "no cis/trans flip of 3 peptide bonds" in page
    assert "chirality kept (2 Cα L, 1 other stereocentres as in the reference)" in page



def test_charged_termini_have_no_caps_no_missing_torsions_and_no_nh3_stereocentre():
    """NH₃⁺/COO⁻ termini: the first residue has no φ, the last no ψ, the NH₃⁺ nitrogen (three H) is not a
    stereocentre, only the one inter-residue C–N bond is a peptide bond; a lone residue has no φ/ψ at all
    (its analysis projects atom-pair distances instead)."""
    import mdtraj

    from itomd.systems.molecules import build_peptide

    topology = mdtraj.Topology.from_openmm(build_peptide("AT", "charged")[0])
    torsions = M.torsion_set(topology)
    assert torsions.labels == ("ψ ALA1", "φ THR2", "χ₁ THR2")
    names = [f"{a.residue.name}{a.residue.resSeq}-{a.name}" for a in topology.atoms]
    assert [names[c] for c in M.chiral_centres(topology)[:, 0]] == ["ALA1-CA", "THR2-CA", "THR2-CB"]
    assert M.peptide_bonds(topology).labels == ("ω ALA1–THR2",)
    assert isinstance(torsion_featurizer(topology), BackboneTorsionFeaturizer)  # one φ and one ψ: the grid
    lone = mdtraj.Topology.from_openmm(build_peptide("A", "charged")[0])
    lone_featurizer = torsion_featurizer(lone)  # no φ/ψ, one χ₁ (none for Ala): atom-pair distances on a TICA plane
    assert isinstance(lone_featurizer, TorsionTICAFeaturizer) and "atom-pair distances" in lone_featurizer.inputs_described()
    with pytest.raises(InvalidInputError, match="no backbone φ/ψ"):
        M.backbone_torsions([np.zeros((1, 3 * lone.n_atoms))], lone)


def test_capped_glycine_has_phi_psi_only_and_no_stereocentre_to_check():
    """ACE-GLY-NME (a benchmark molecule): φ/ψ and no χ₁, no stereocentre (no Cβ), two peptide bonds; analysed
    on the φ/ψ grid like alanine dipeptide, and its validity reports no chirality checks rather than failing."""
    import mdtraj

    from itomd.systems.molecules import build_peptide

    openmm_topology, positions = build_peptide("G")
    topology = mdtraj.Topology.from_openmm(openmm_topology)
    assert topology.n_atoms == 19
    assert M.torsion_set(topology).labels == ("φ GLY2", "ψ GLY2")
    assert len(M.chiral_centres(topology)) == 0
    assert M.peptide_bonds(topology).labels == ("ω ACE1–GLY2", "ω GLY2–NME3")
    assert isinstance(torsion_featurizer(topology), BackboneTorsionFeaturizer)
    structure = np.asarray(positions, dtype=float).ravel()
    validity = M.chemical_validity([structure[None]], topology, reference_structure=structure)
    assert validity.fraction_valid == 1.0 and validity.fraction_chirality_kept == 1.0


@pytest.mark.slow
def test_full_pcca_agrees_with_inner_simplex_populations_on_md():
    """deeptime's full pcca (the papers' procedure, the default outside the suite) and the inner-simplex
    memberships give populations that sum to one and agree for MD against itself."""
    from itomd.analysis.molecular import pcca_populations

    rng = np.random.default_rng(3)
    states = [np.repeat(rng.integers(0, 30, 400), 5) for _ in range(2)]  # slow hops between 30 microstates
    full = pcca_populations(states, states, lag=5, optimise=True)
    fast = pcca_populations(states, states, lag=5, optimise=False)
    for result in (full, fast):
        total = sum(result["reference_populations"]) + result["reference_fraction_unassigned"]
        assert total == pytest.approx(1.0) and result["js_divergence"] == pytest.approx(0.0, abs=1e-12)
    assert full["optimised"] is True and fast["optimised"] is False


def test_pcca_of_a_degenerate_msm_is_skipped_with_its_reason_not_a_crash():
    """A hub state between eleven equivalent leaves (0, k, 0, k', ...): at lag 1 the MSM's leading
    eigenvalues are degenerate and deeptime's PCCA+ stops on an assertion; the populations are skipped
    with the reason (found on a user's 3-residue peptide with little MD). At lag 2 the same data works."""
    from itomd.analysis.molecular import pcca_populations

    hub = [np.array([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0, 9, 0, 10, 0, 11] * 30)]
    skipped = pcca_populations(hub, hub, lag=1, optimise=False)
    assert skipped["skipped"].startswith("PCCA+ failed: An eigenvector after the first one is constant")
    assert "populations" in pcca_populations(hub, hub, lag=2, optimise=False)


def _propylbenzene_next_to_alanine():
    """An mdtraj topology: ALA (an amino acid, left to φ/ψ/χ₁) bonded to a ligand LIG, propylbenzene
    (ring C1–C6, chain C1–C7–C8–C9 with C9 a methyl), with its hydrogens."""
    import mdtraj

    top = mdtraj.Topology()
    chain = top.add_chain()
    ala = top.add_residue("ALA", chain)
    n, ca, cb, c = (top.add_atom(name, mdtraj.element.get_by_symbol(name[0]), ala) for name in ("N", "CA", "CB", "C"))
    for a, b in ((n, ca), (ca, cb), (ca, c)):
        top.add_bond(a, b)
    lig = top.add_residue("LIG", chain)
    carbon = {k: top.add_atom(f"C{k}", mdtraj.element.carbon, lig) for k in range(1, 10)}
    for k in range(1, 7):
        top.add_bond(carbon[k], carbon[k % 6 + 1])  # the ring
    for a, b in ((1, 7), (7, 8), (8, 9)):
        top.add_bond(carbon[a], carbon[b])
    for k, n in ((7, 2), (8, 2), (9, 3), *((k, 1) for k in (2, 3, 5, 6))):  # all-atom, as MD topologies are
        for h in range(n):
            top.add_bond(carbon[k], top.add_atom(f"H{k}{h}", mdtraj.element.hydrogen, lig))
    top.add_bond(c, carbon[4])  # a ligand attached to a protein residue: that bond belongs to neither side's torsions
    return top


def test_a_ligand_gets_one_torsion_per_rotatable_bond_and_no_ring_or_methyl_torsions():
    top = _propylbenzene_next_to_alanine()
    torsions = M.rotatable_torsions(top)
    assert torsions.labels == ("τ LIG1 C1–C7", "τ LIG1 C7–C8")  # C8–C9 turns a methyl; ring bonds do not turn
    names = [a.name for a in top.atoms]
    assert [[names[i] for i in q] for q in torsions.atoms] == [["C2", "C1", "C7", "C8"], ["C1", "C7", "C8", "C9"]]
    assert M.torsion_set(top).kinds == ("rotatable", "rotatable")  # the lone ALA has no φ/ψ/χ₁ with these atoms
    assert isinstance(torsion_featurizer(top), TorsionTICAFeaturizer)
    assert torsion_featurizer(top).inputs_described() == "(cos, sin) of 2 torsions (τ)"


def test_no_torsion_about_the_linear_bonds_of_an_alkyne():
    """Pent-2-yne, C1–C2≡C3–C4–C5: its sp carbons C2 and C3 (two neighbours each) are linear, so no torsion
    turns about C2–C3 or C3–C4 and it has none; pentane, the same chain saturated with hydrogens, has two
    (C2–C3, C3–C4; the end bonds turn methyls)."""
    import mdtraj

    def chain(hydrogens: dict[int, int]):
        top = mdtraj.Topology()
        residue = top.add_residue("LIG", top.add_chain())
        carbon = [top.add_atom(f"C{k}", mdtraj.element.carbon, residue) for k in range(1, 6)]
        for a, b in zip(carbon, carbon[1:]):
            top.add_bond(a, b)
        for k, n in hydrogens.items():
            for h in range(n):
                top.add_bond(carbon[k - 1], top.add_atom(f"H{k}{h}", mdtraj.element.hydrogen, residue))
        return top

    assert M.rotatable_torsions(chain({1: 3, 2: 0, 3: 0, 4: 2, 5: 3})).labels == ()
    assert M.rotatable_torsions(chain({1: 3, 2: 2, 3: 2, 4: 2, 5: 3})).labels == ("τ LIG0 C2–C3", "τ LIG0 C3–C4")


def test_a_shipped_ligand_with_chains_and_rings_and_a_rigid_one():
    """Viologen (openmmtools' cb7-viologen guest: two pyridinium rings, two alkyl chains) has torsions
    about its inter-ring bond and along its chains, none inside a ring; p-xylene (T4 lysozyme's ligand)
    has none: its analysis projects atom-pair distances."""
    from itomd.systems import SystemSpec
    from itomd.systems.openmm import _openmmtools_data

    viologen = SystemSpec(f"{_openmmtools_data('cb7-viologen', 'leap', 'ligand.prmtop')}:"
                          f"{_openmmtools_data('cb7-viologen', 'leap', 'ligand.inpcrd')}").build().topology()
    torsions = M.torsion_set(viologen)
    assert len(torsions) >= 3 and set(torsions.kinds) == {"rotatable"}
    rings = _ring_bonds(viologen)
    assert not any(frozenset(q[1:3]) in rings for q in torsions.atoms.tolist())
    assert any(frozenset(q[0:2]) in rings and frozenset(q[2:4]) in rings for q in torsions.atoms.tolist())  # ring–ring
    xylene = SystemSpec(f"{_openmmtools_data('T4-lysozyme-L99A-implicit', 'ligand.prmtop')}:"
                        f"{_openmmtools_data('T4-lysozyme-L99A-implicit', 'ligand.crd')}").build().topology()
    assert not len(M.torsion_set(xylene))
    pairs = M.distance_pairs(xylene)
    heavy = {a.index for a in xylene.atoms if a.element.symbol != "H"}
    assert len(pairs) >= 2 and all(i in heavy and j in heavy for i, j in pairs)
    assert "atom-pair distances" in torsion_featurizer(xylene).inputs_described()


def _ring_bonds(topology) -> set[frozenset[int]]:
    """Bonds whose removal leaves their atoms connected (brute force, for the test)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    bonds = M.bond_pairs(topology)
    n = topology.n_atoms
    rings = set()
    for k, (i, j) in enumerate(bonds):
        rest = np.delete(bonds, k, axis=0)
        graph = coo_matrix((np.ones(len(rest)), (rest[:, 0], rest[:, 1])), shape=(n, n))
        labels = connected_components(graph, directed=False)[1]
        if labels[i] == labels[j]:
            rings.add(frozenset((int(i), int(j))))
    return rings
