"""Every command on a user's molecule, and bad molecular inputs as one-line errors from the command line (issue 15)."""

from __future__ import annotations

import json

import mdtraj
import numpy as np
import pytest

from itomd.cli import main
from itomd.data.store import TrajectoryStore
from itomd.models import TransitionModel
from itomd.systems.openmm import _openmmtools_data
from tests.cli.conftest import ALA2_TINY
from tests.cli.helpers import assert_one_line_error, assert_one_line_exit, run_cli


def test_a_peptide_from_its_sequence_through_every_command(tmp_path, capsys, monkeypatch):
    """peptide:AS (capped Ala-Ser, 33 atoms, two φ/ψ pairs): simulate → train → sample → analyze → export."""
    config = tmp_path / "tiny.toml"
    config.write_text(ALA2_TINY)
    md, run, rollout, exported = (tmp_path / name for name in ("md", "run", "rollout", "exported"))
    assert main(["simulate", "--system", "peptide:AS", "--out", str(md), "--n-traj", "2", "--n-frames", "40",
                 "--seed", "1", "--workers", "0", "--quiet"]) == 0
    store = TrajectoryStore(md)
    assert store.read(0).shape == (40, 99) and (md / "structure.pdb").is_file()
    inputs = store.metadata["inputs"]
    assert inputs["sequence"] == "AS" and inputs["termini"] == "capped" and inputs["forcefield"] == ["amber14-all.xml"]
    assert main(["train", "--data", str(md), "--out", str(run), "--config", str(config), "--max-steps", "10",
                 "--quiet"]) == 0
    model = TransitionModel.load(run)
    assert model.system.spec == "peptide:AS" and model.system.structure == str(md / "structure.pdb")
    assert model.info["data"]["inputs"]["structure"]["sha256"]  # traced back to the prepared structure
    assert main(["sample", str(run), "--lag", "2", "--n-jumps", "4", "--n-walkers", "2", "--out", str(rollout),
                 "--from", str(md), "--n-steps", "3", "--tolerance", "100", "--quiet"]) == 0
    assert TrajectoryStore(rollout).read(0).shape == (5, 99) and (rollout / "topology.pdb").is_file()
    capsys.readouterr()
    assert main(["analyze", str(md), "--compare", str(md), "--json", "--lags", "1,2"]) == 0
    result = json.loads(capsys.readouterr().out)
    torsions = result["molecular"]["torsions"]
    assert torsions["labels"] == ["φ ALA2", "ψ ALA2", "φ SER3", "ψ SER3", "χ₁ SER3"]
    assert all(t["js_divergence"] == 0.0 for t in torsions["per_torsion"])  # MD against itself
    assert result["molecular"]["validity"]["fraction_valid"] == 1.0  # MD frames are valid
    assert main(["export", str(md), "--format", "dcd", "--out", str(exported)]) == 0
    frames = mdtraj.load(str(exported / "traj_000000.dcd"), top=str(exported / "topology.pdb"))
    np.testing.assert_allclose(frames.xyz.reshape(40, -1), store.read(0), atol=1e-3)  # DCD: float32 Å

    # The model travels without its data: the prepared structure inside the model file is restored
    # into the cache, and the moved store finds its own structure.pdb again.
    monkeypatch.setenv("ITOMD_CACHE", str(tmp_path / "cache"))
    moved = tmp_path / "md-moved"
    md.rename(moved)
    model = TransitionModel.load(run)
    assert model.system.structure.startswith(str(tmp_path / "cache"))
    assert (moved / "structure.pdb").read_bytes() == open(model.system.structure, "rb").read()
    assert main(["sample", str(run), "--lag", "2", "--n-jumps", "4", "--n-walkers", "2", "--out",
                 str(tmp_path / "rollout2"), "--from", str(moved), "--n-steps", "3", "--tolerance", "100",
                 "--quiet"]) == 0
    np.testing.assert_array_equal(TrajectoryStore(tmp_path / "rollout2").read(0), TrajectoryStore(rollout).read(0))
    assert main(["analyze", str(moved), "--json", "--lags", "1,2"]) == 0


def test_a_sequence_letter_that_is_no_amino_acid_is_one_line_from_the_command_line(tmp_path):
    proc = run_cli("simulate", "--system", "peptide:AZ", "--out", str(tmp_path / "out"), "--n-traj", "1",
                   "--n-frames", "2")
    assert_one_line_error(proc, "'Z' is not an amino acid")


@pytest.mark.parametrize("arguments, fragment", [
    (["--system", "no/such/file.pdb"], "structure file not found: "),
    (["--system", "peptide:AA", "--forcefield", "nope.xml"], "unknown force field nope.xml"),
    (["--system", "prinz", "--termini", "charged"], "--termini apply to molecules"),
])
def test_bad_molecular_inputs_are_one_line(tmp_path, capsys, arguments, fragment):
    code = main(["simulate", *arguments, "--out", str(tmp_path / "out"), "--n-traj", "1", "--n-frames", "2"])
    assert_one_line_exit(capsys, code, fragment)


def test_mismatched_amber_files_are_one_line_from_the_command_line(tmp_path):
    prmtop = _openmmtools_data("alanine-dipeptide-gbsa", "alanine-dipeptide.prmtop")
    lines = _openmmtools_data("alanine-dipeptide-gbsa", "alanine-dipeptide.crd").read_text().splitlines()
    (tmp_path / "other.crd").write_text("\n".join([lines[0], "    21"] + lines[2:-1]) + "\n")
    proc = run_cli("simulate", "--system", f"{prmtop}:{tmp_path / 'other.crd'}", "--out", str(tmp_path / "out"),
                   "--n-traj", "1", "--n-frames", "2")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_a_rigid_ligand_from_amber_files_through_every_command(tmp_path, capsys):
    """p-xylene (openmmtools' T4 lysozyme ligand, no torsions at all): simulate → train → sample →
    analyze (a TICA plane of atom-pair distances) → check → report, as a user with a ligand runs them."""
    spec = (f"{_openmmtools_data('T4-lysozyme-L99A-implicit', 'ligand.prmtop')}:"
            f"{_openmmtools_data('T4-lysozyme-L99A-implicit', 'ligand.crd')}")
    config = tmp_path / "tiny.toml"
    config.write_text(ALA2_TINY)
    md, md2, run, rollout = (tmp_path / name for name in ("md", "md2", "run", "rollout"))
    for out, seed in ((md, "1"), (md2, "2")):
        assert main(["simulate", "--system", spec, "--out", str(out), "--n-traj", "2", "--n-frames", "40",
                     "--seed", seed, "--workers", "0", "--quiet"]) == 0
    assert main(["train", "--data", str(md), "--out", str(run), "--config", str(config), "--max-steps", "5",
                 "--quiet"]) == 0
    assert main(["sample", str(run), "--lag", "2", "--n-jumps", "4", "--n-walkers", "2", "--out", str(rollout),
                 "--from", str(md), "--n-steps", "3", "--tolerance", "100", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["analyze", str(md), "--compare", str(md2), "--json", "--lags", "1,2"]) == 0
    molecular = json.loads(capsys.readouterr().out)["molecular"]
    assert molecular["msm_space"] == "TICA plane" and molecular["torsions"]["labels"] == []
    assert "atom-pair distances" in molecular["tica"]["inputs"] and molecular["tica"]["input_features"][0].startswith("d ")
    assert molecular["validity"]["fraction_valid"] == 1.0 and molecular["tica"]["js_divergence"] is not None
    assert main(["check", str(run), "--lags", "2", "--splits", "2", "--from", str(md), "--n-starts", "1",
                 "--n-samples", "8", "--n-steps", "3", "--tolerance", "100", "--json"]) == 0
    assert "atom-pair distances" in json.loads(capsys.readouterr().out)["features"]
    assert main(["report", str(rollout), "--compare", str(md), "--lags", "1,2", "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "The TICA plane vs" in page and "chirality kept (no stereocentres)" in page and "atom-pair distances" in page
