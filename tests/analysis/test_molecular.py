"""Molecular analysis of alanine dipeptide: φ/ψ, chirality, chemical validity, Ramachandran JS, the
analysis on backbone torsions (molecular section, JSON, report) — against real (short) OpenMM MD
(``md_trajectories``: tests/conftest.py; the featurizer: test_features.py; ``itomd analyze`` on a
molecular store: tests/cli/test_analyze.py)."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from itomd.analysis import BackboneTorsionFeaturizer, MolecularSection, analyze, compare
from itomd.analysis import molecular as M
from itomd.analysis.report import write_report
from itomd.errors import InvalidInputError

import mdtraj

FRAME_INTERVAL = 0.1  # ps: the frame interval of md_trajectories (50 steps of 2 fs)


def _mirror(x: np.ndarray) -> np.ndarray:
    return x * np.tile([-1.0, 1.0, 1.0], x.shape[-1] // 3)


def _dihedral(p0, p1, p2, p3) -> float:
    """IUPAC dihedral angle (radians) of four points, by hand."""
    b0, b1, b2 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = np.cross(b0, b1), np.cross(b1, b2)
    return float(np.arctan2(np.dot(np.cross(n1, n2), b1 / np.linalg.norm(b1)), np.dot(n1, n2)))


# -- features -------------------------------------------------------------------------------------
def test_shipped_structure_dihedrals_are_extended_beta(ala2, topology):
    (angles,) = M.backbone_dihedrals([ala2.initial_coordinates()[None]], topology)
    x = ala2.initial_coordinates().reshape(-1, 3)
    phi = _dihedral(x[4], x[6], x[8], x[14])  # C(ACE) N CA C
    psi = _dihedral(x[6], x[8], x[14], x[16])  # N CA C N(NME)
    assert angles.shape == (1, 2)
    assert np.allclose(np.cos(angles[0] - [phi, psi]), 1.0, atol=1e-8)
    # the shipped structure is fully extended: β / C5 corner of the Ramachandran plot (φ, ψ ≈ ±180°)
    assert np.all(np.cos(angles[0]) < -0.99)


def test_dihedrals_reject_wrong_dimension_and_peptides_with_more_dihedrals(topology):
    with pytest.raises(InvalidInputError, match="66 coordinates"):
        M.backbone_dihedrals([np.zeros((3, 60))], topology)
    two = mdtraj.Topology()
    chain = two.add_chain()
    for name in ("ALA", "ALA", "ALA"):
        residue = two.add_residue(name, chain)
        for atom in ("N", "CA", "C"):
            two.add_atom(atom, mdtraj.element.get_by_symbol(atom[0]), residue)
    atoms = list(two.atoms)
    for a, b in zip(atoms[:-1], atoms[1:]):
        two.add_bond(a, b)
    with pytest.raises(InvalidInputError, match="exactly one φ and one ψ"):
        M.backbone_dihedrals([np.random.default_rng(0).normal(size=(2, 27))], two)


def test_shipped_alanine_is_l_and_its_mirror_image_is_d(ala2, topology):
    x = ala2.initial_coordinates()
    assert M.chiral_centres(topology).tolist() == [[8, 6, 14, 10]]  # CA, N, C, CB
    assert M.chirality_signs(x, topology).tolist() == [M.L_CHIRALITY_SIGN]
    assert M.chirality_signs(_mirror(x), topology).tolist() == [-M.L_CHIRALITY_SIGN]
    mirror = M.chemical_validity([_mirror(x)[None]], topology)
    assert mirror.fraction_valid == 0.0 and mirror.fraction_chirality_kept == 0.0
    assert mirror.fraction_bonds_ok == 1.0 and mirror.fraction_no_clash == 1.0  # a mirror keeps all distances
    assert mirror.worst_offenders["chirality"] == {"ALA2-CA": 1}


# -- validity -------------------------------------------------------------------------------------
def test_md_frames_are_valid_and_checks_are_fast(md_trajectories, topology):
    validity = M.chemical_validity(md_trajectories, topology)
    assert validity.n_frames == 2000
    assert validity.fraction_valid >= 0.999
    worst = validity.worst_offenders
    assert worst["bond"]["relative_deviation"] < M.DEFAULT_BOND_TOLERANCE
    assert worst["contact"]["distance_nm"] > M.DEFAULT_CLASH_DISTANCE
    json.dumps(validity.to_dict())
    many = np.concatenate(md_trajectories * 50)  # 10^5 frames
    start = time.perf_counter()
    assert M.chemical_validity([many], topology).fraction_valid >= 0.999
    assert time.perf_counter() - start < 10.0


def test_stretched_bond_and_overlapping_atoms_are_flagged(md_trajectories, topology):
    frames = md_trajectories[0][:10].copy()
    positions = frames.reshape(10, -1, 3)
    ca, cb = 8, 10
    positions[3, cb] = positions[3, ca] + 1.3 * (positions[3, cb] - positions[3, ca])  # CA–CB stretched by 30 %
    positions[7, 21] = positions[7, 0]  # an NME hydrogen on top of an ACE hydrogen (≥ 3 bonds apart)
    validity = M.chemical_validity([positions.reshape(10, -1)], topology)
    assert np.flatnonzero(~validity.bonds_ok).tolist() == [3, 7]  # moving H3 also stretches its own bond
    assert np.flatnonzero(~validity.no_clash).tolist() == [7]
    assert np.flatnonzero(~validity.valid).tolist() == [3, 7]
    assert validity.worst_offenders["contact"]["atoms"] == ["ACE1-H1", "NME3-H3"]
    assert validity.worst_offenders["contact"]["distance_nm"] == pytest.approx(0.0)


def test_validity_rejects_bad_input(md_trajectories, topology):
    with pytest.raises(InvalidInputError, match="bond_tolerance"):
        M.chemical_validity(md_trajectories, topology, bond_tolerance=1.5)
    with pytest.raises(InvalidInputError, match="reference_bond_lengths"):
        M.chemical_validity(md_trajectories, topology, reference_bond_lengths=np.ones(3))
    with pytest.raises(InvalidInputError, match="chirality_reference"):
        M.chemical_validity(md_trajectories, topology, chirality_reference=[1, 1])


# -- Ramachandran ---------------------------------------------------------------------------------
def test_ramachandran_js_is_zero_for_the_same_data_and_large_for_shifted_phi(md_trajectories, topology):
    angles = M.backbone_dihedrals(md_trajectories, topology)
    same = M.ramachandran_js_divergence(angles, angles)
    assert same.value == pytest.approx(0.0, abs=1e-12) and same.bins == [36, 36]
    shifted = [np.stack([np.angle(np.exp(1j * (a[:, 0] + np.pi))), a[:, 1]], axis=1) for a in angles]
    assert M.ramachandran_js_divergence(angles, shifted).value > 0.6  # ln 2 = 0.693 for disjoint histograms
    fes = M.ramachandran_free_energy(angles)
    assert fes.n_outside == 0 and fes.edges[0][0] == pytest.approx(-np.pi) and fes.edges[1][-1] == pytest.approx(np.pi)
    phi, psi = (c[np.unravel_index(np.nanargmin(fes.free_energy), fes.free_energy.shape)[k]] for k, c in
                enumerate(fes.centers))
    assert phi < 0  # the minimum lies in the φ < 0 half (β / C7eq) in vacuum at 300 K


#: Ramachandran JS divergence (nats, 36 × 36 bins) of half of ``md_trajectories`` against all of it, measured
#: for four halves (first, second, middle, every other frame): 0.013–0.022, mean 0.017 ± 0.004. Independent
#: 300 K runs against it: 0.048 and 0.064 (100 ps), 0.058 (50 ps); 600 K MD: 0.10 (100 ps), 0.22 (50 ps).
#: ``itomd analyze --compare`` of the first halves (tests/cli/test_analyze.py) is held to the same bound.
HALF_OF_THE_MD_JS_BOUND = 0.035


def test_ramachandran_js_of_half_the_md_is_small_and_of_hot_md_is_not(md_trajectories, topology):
    from itomd.simulate.molecular import simulate_molecule
    from itomd.systems import resolve_system

    angles = M.backbone_dihedrals(md_trajectories, topology)
    for half in (slice(0, 500), slice(500, 1000)):
        assert M.ramachandran_js_divergence([a[half] for a in angles], angles).value < HALF_OF_THE_MD_JS_BOUND
    # negative control, the wrong temperature: 50 ps at 600 K (after 10 ps from the shipped structure)
    hot = resolve_system("ala2", temperature=600.0, frame_interval=FRAME_INTERVAL)
    frames = simulate_molecule(hot, hot.initial_coordinates(), n_frames=600, seed=5)[0, 100:]
    hot_angles = M.backbone_dihedrals([frames], topology)
    assert M.ramachandran_js_divergence(hot_angles, angles).value > 3 * HALF_OF_THE_MD_JS_BOUND


def test_dihedral_grid_keeps_populated_cells_and_assigns_across_the_periodic_boundary():
    rng = np.random.default_rng(0)
    width = 2 * np.pi / 20
    # two populated cells at opposite edges of the torus, one rare cell (1 frame in 5001)
    a = np.array([-np.pi + 0.5 * width, -np.pi + 0.5 * width])
    b = np.array([np.pi - 0.5 * width, 0.5 * width])
    frames = np.concatenate([a + rng.uniform(-0.4, 0.4, (2500, 2)) * width,
                             b + rng.uniform(-0.4, 0.4, (2500, 2)) * width, [[0.0, -2.0]]])
    grid = M.dihedral_grid([frames], n_cells=20)
    assert grid.n_states == 2 and grid.method == "grid" and grid.dim == 2
    assert np.allclose(grid.centers, [a, b])
    assert set(grid.dtrajs[0][:2500]) == {0} and set(grid.dtrajs[0][2500:5000]) == {1}
    # just across the periodic edge from a (φ near +π, ψ near +π) is still a's state
    assert grid.transform([np.array([[np.pi - 0.01, np.pi - 0.01]])])[0].tolist() == [0]
    assert M.dihedral_grid([frames], n_cells=20, min_population=0).n_states == 3


# -- pipeline and CLI -----------------------------------------------------------------------------
#: Keys of today's (before the sections refactor) JSON of a molecular analysis with a comparison;
#: tests, bench scripts and users read them (the same top level as a toy system's).
from tests.analysis.test_pipeline import COMPARISON_KEYS, TOP_LEVEL_KEYS  # noqa: E402
MOLECULAR_KEYS = {"comparison_free_energy", "comparison_validity", "features", "units", "validity",
                  # added by issue 15 (analysis for any molecule)
                  "msm_space", "torsions", "tica", "pcca_populations"}
VALIDITY_KEYS = {"bond_tolerance", "chirality_reference", "clash_distance_nm", "fraction_bonds_ok",
                 "fraction_chirality_kept", "fraction_no_clash", "fraction_valid", "n_frames", "worst_offenders",
                 # added by issue 15: every stereocentre, no cis/trans flips of peptide bonds
                 "stereocentres", "peptide_bonds", "fraction_peptide_bonds_kept"}
WORST_OFFENDER_KEYS = {"bond", "chirality", "contact", "peptide_bonds"}


@pytest.fixture(scope="module")
def md_vs_md(md_trajectories, topology):
    """The MD analysed on backbone torsions and compared with itself."""
    result = analyze(md_trajectories, FRAME_INTERVAL, 1.0, lags=[1, 2, 5, 10], n_samples=5,
                     featurizer=BackboneTorsionFeaturizer(topology))
    comparison = compare(result, md_trajectories, FRAME_INTERVAL, n_samples=5)
    return result, comparison


def test_analyze_molecule_on_torsions_and_compare_with_md(md_vs_md, md_trajectories, topology):
    result, comparison = md_vs_md
    assert result.features == (0, 1) and result.discretization.method == "grid"
    assert result.autocorrelation.observable == "sin_phi"
    # the free energy is the Ramachandran one: 36 × 36 bins on the torus
    assert result.free_energy.free_energy.shape == (36, 36) and result.free_energy.edges[0][0] == pytest.approx(-np.pi)
    molecular = result.section(MolecularSection)
    assert molecular.validity.fraction_valid >= 0.999 and molecular.validity.n_frames == 2000
    # the same data on the same states: identical timescales, zero JS divergence, the same free energy
    assert comparison.js_divergence.value == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(comparison.slowest_timescale_ratio(), 1.0)
    assert np.array_equal(molecular.comparison_free_energy.free_energy, result.free_energy.free_energy,
                          equal_nan=True)
    assert molecular.comparison_validity.n_frames == 2000
    assert not any(note.startswith("no JS divergence") for note in result.notes)
    assert result.notes[-1].startswith("molecular features: backbone φ/ψ")


def test_compare_featurizes_the_second_set_itself(md_trajectories, topology):
    """The mirror image of the MD: φ, ψ change sign (the Ramachandran histograms hardly overlap) and
    every frame has the wrong chirality — seen only if compare featurises and checks the second set."""
    result = analyze(md_trajectories, FRAME_INTERVAL, 1.0, lags=[1, 2], n_samples=0,
                     featurizer=BackboneTorsionFeaturizer(topology))
    mirrored = [_mirror(t) for t in md_trajectories]
    comparison = compare(result, mirrored, FRAME_INTERVAL, label="mirror", n_samples=0)
    assert comparison.js_divergence.value > 0.4  # ln 2 = 0.693 for disjoint histograms
    molecular = result.section(MolecularSection)
    assert molecular.validity.fraction_chirality_kept == 1.0
    assert molecular.comparison_validity.fraction_chirality_kept == 0.0
    assert molecular.comparison_validity.fraction_bonds_ok == 1.0
    phi_min = [c[np.unravel_index(np.nanargmin(f.free_energy), f.free_energy.shape)[0]] for f, c in
               ((result.free_energy, result.free_energy.centers[0]),
                (molecular.comparison_free_energy, molecular.comparison_free_energy.centers[0]))]
    assert phi_min[0] < 0 < phi_min[1]


def test_molecular_json_keys_are_unchanged(md_vs_md):
    out = json.loads(json.dumps(md_vs_md[0].to_dict(), allow_nan=False))
    assert set(out) == TOP_LEVEL_KEYS
    assert set(out["comparison"]) == COMPARISON_KEYS
    assert set(out["molecular"]) == MOLECULAR_KEYS
    assert set(out["molecular"]["validity"]) == VALIDITY_KEYS == set(out["molecular"]["comparison_validity"])
    assert set(out["molecular"]["validity"]["worst_offenders"]) == WORST_OFFENDER_KEYS
    assert out["molecular"]["features"] == ["phi", "psi"] and out["molecular"]["units"] == "radians"
    assert out["molecular"]["validity"]["fraction_valid"] >= 0.999
    assert out["molecular"]["comparison_free_energy"]["bins"] == [36, 36]
    assert out["comparison"]["js_divergence_details"]["bins"] == [36, 36]
    assert out["comparison"]["slowest_timescale_ratio"] == pytest.approx([1.0] * 4)
    assert out["mfpt"]["basins"] == ["αR", "β/PII", "αL"] and out["mfpt"]["lag"] == 1
    assert out["features"] == [0, 1] and out["dim"] == 2 and out["js_divergence"] is None


def test_molecular_report_shows_validity_table_and_ramachandran_figure(md_vs_md, tmp_path):
    page = write_report(md_vs_md[0], tmp_path / "report.html").read_text()
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", page)
    # the Ramachandran free energy (next to MD's) takes the place of the plain free-energy plot
    assert captions == ["Implied timescales vs lag time (exact: dashed; hollow grey: unresolved)",
                        "Ramachandran free energy in kT (this data vs MD; φ/ψ, 10° bins)",
                        "Torsion distributions, this data (line) vs MD (filled); 36 bins, JS in nats",
                        "Chapman–Kolmogorov test",
                        "Autocorrelation (exact: dashed; MD: squares, same lag times)",
                        "Mean first passage times between basins (bars: intervals)",
                        "Implied timescales: this data vs MD (same states)"]
    assert page.count('<img src="data:image/png;base64,') == 7
    # one histogram panel per torsion (φ, ψ), titled with its JS divergence
    section = md_vs_md[0].section(MolecularSection)
    fig = section.report_figures(md_vs_md[0])[1][1]
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == [f"{t['label']}  (JS {t['js_divergence']:.3f})" for t in section.torsion_comparison]
    assert len(titles) == 2
    headings = re.findall(r"<h2>([^<]*)</h2>", page)
    assert headings == ["Key numbers", "Slowest implied timescale by lag", "Mean first passage times between basins",
                        "Chemical validity", "Torsions vs MD",
                        "Notes", "Plots", "Comparison with MD"]
    validity = page.split("<h2>Chemical validity</h2>")[1].split("</table>")[0]
    assert "<th>check</th><th>this data</th><th>MD</th>" in validity
    assert "<td>valid (all checks)</td><td>100.000%</td><td>100.000%</td>" in validity
    assert "<td>frames</td><td>2000</td><td>2000</td>" in validity
