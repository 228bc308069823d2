"""``itomd sample``: rollouts into a store end to end, reproducible and resumable, blow-ups reported instead
of written, BoPITO's λ_int and untrained start states, molecules."""

from __future__ import annotations

import json

import numpy as np
import pytest

from itomd.cli import main
from itomd.data.store import TrajectoryStore
from tests.cli.helpers import assert_one_line_error, assert_one_line_exit, run_cli


def test_train_sample_analyze_end_to_end(prinz_data, tiny_toml, tmp_path, capsys):
    run, out = tmp_path / "run", tmp_path / "rollout"
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--config", str(tiny_toml),
                 "--max-steps", "30", "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 30 and not summary["stopped_by_budget"]
    assert main(["sample", str(run), "--lag", "5", "--n-jumps", "12", "--n-walkers", "6", "--out", str(out),
                 "--from", str(prinz_data), "--n-steps", "4", "--tolerance", "100", "--quiet", "--json"]) == 0
    sampled = json.loads(capsys.readouterr().out)
    assert sampled["frame_interval"] == pytest.approx(5 * 5e-3)
    store = TrajectoryStore(out)
    assert len(store) == 6 and all(t.shape == (13, 1) for t in store.trajectories())
    assert store.metadata["frame_interval"] == pytest.approx(0.025)
    assert main(["analyze", str(out), "--reference", "--lags", "1,2", "--json", "--quiet"]) == 0
    analysis = json.loads(capsys.readouterr().out)
    assert analysis["implied_timescales"]["lag_times"] == pytest.approx([0.025, 0.05])
    assert analysis["js_divergence"] is not None


def test_sample_is_reproducible_and_resumes(prinz_data, tiny_toml, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--config", str(tiny_toml),
                 "--max-steps", "20", "--quiet"]) == 0
    common = ["--lag", "3", "--n-jumps", "5", "--n-walkers", "10", "--chunk-size", "4", "--n-steps", "4",
              "--tolerance", "100", "--seed", "7", "--quiet"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["sample", str(run), "--out", str(a), *common]) == 0
    assert main(["sample", str(run), "--out", str(b), *common]) == 0
    first = TrajectoryStore(a).trajectories()
    assert all(np.array_equal(x, y) for x, y in zip(first, TrajectoryStore(b).trajectories()))
    # lose the middle chunk (walkers 4..7) and resume
    for index in (4, 6):
        TrajectoryStore(a).file_path(index).unlink()
    assert main(["sample", str(run), "--out", str(a), *common]) == 0
    assert all(np.array_equal(x, y) for x, y in zip(first, TrajectoryStore(a).trajectories()))
    assert_one_line_error(run_cli("sample", str(run), "--out", str(a), *common[:-3], "--seed", "8"),
                          "different parameters")


def test_sample_reports_blow_up_instead_of_writing_garbage(prinz_data, tiny_toml, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--config", str(tiny_toml),
                 "--max-steps", "10", "--quiet"]) == 0
    # an untrained model with a tiny tolerance leaves the data range at once
    proc = run_cli("sample", str(run), "--lag", "10", "--n-jumps", "5", "--n-walkers", "8", "--out",
                   str(tmp_path / "o"), "--tolerance", "1e-9", "--n-steps", "2", "--quiet")
    assert_one_line_error(proc, "blew up at jump 1")
    assert len(TrajectoryStore(tmp_path / "o").indices) == 0


def test_redraws_finish_a_rollout_that_would_blow_up_and_say_how_often(prinz_data, tiny_toml, tmp_path, capsys):
    """The barely trained model of the test above, with a tolerance of ~0: without redraws it stops;
    with ``--redraws 20`` it finishes, and ``sample --json``, the text line and ``analyze --json`` give
    the fraction of jumps drawn again. A rollout without the option reports none."""
    run = tmp_path / "run"
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--config", str(tiny_toml),
                 "--max-steps", "10", "--quiet"]) == 0
    capsys.readouterr()
    common = ["--lag", "10", "--n-jumps", "5", "--n-walkers", "8", "--tolerance", "1e-9", "--n-steps", "2",
              "--quiet"]
    assert_one_line_error(run_cli("sample", str(run), "--out", str(tmp_path / "a"), *common), "--redraws")
    out = tmp_path / "b"
    assert main(["sample", str(run), "--out", str(out), *common, "--redraws", "20", "--json"]) == 0
    sampled = json.loads(capsys.readouterr().out)
    assert sampled["max_redraws"] == 20 and 0.0 < sampled["redrawn_fraction"] <= 1.0
    assert len(TrajectoryStore(out)) == 8
    assert main(["analyze", str(out), "--lags", "1", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["redrawn_fraction"] == pytest.approx(sampled["redrawn_fraction"])
    assert main(["analyze", str(out), "--lags", "1", "--quiet"]) == 0
    assert "of jumps were drawn again after a blow-up" in capsys.readouterr().out
    assert main(["report", str(out), "--lags", "1", "--out", str(tmp_path / "r.html"), "--quiet"]) == 0
    capsys.readouterr()
    assert f"{sampled['redrawn_fraction']:.3%} of its jumps were drawn again" in (tmp_path / "r.html").read_text()
    assert main(["analyze", str(prinz_data), "--lags", "1", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["redrawn_fraction"] is None


def test_sample_with_lambda_int_records_it(bopito_runs, tmp_path, capsys):
    out = tmp_path / "rollout"
    assert main(["sample", str(bopito_runs["exact"]), "--lag", "20", "--n-jumps", "3", "--n-walkers", "5", "--out",
                 str(out),
                 "--n-steps", "4", "--lambda-int", "0.9", "--tolerance", "100", "--quiet", "--json"]) == 0
    assert "λ_int = 0.9" in capsys.readouterr().err
    store = TrajectoryStore(out)
    assert store.metadata["model_kind"] == "bopito" and store.metadata["lambda_interpolation"] == 0.9
    assert len(store) == 5


def test_sample_notes_start_states_outside_the_training_data(bopito_runs, tmp_path, capsys):
    """Inside the prior's box (Prinz: ±1.2) but beyond every training frame: BoPITO's dynamic part
    was never trained there, and the user is told."""
    x0 = tmp_path / "x0.txt"
    x0.write_text("-1.19\n")
    assert main(["sample", str(bopito_runs["exact"]), "--lag", "2", "--n-jumps", "1", "--n-walkers", "3", "--out",
                 str(tmp_path / "r"), "--x0", str(x0), "--n-steps", "4", "--tolerance", "100", "--quiet"]) == 0
    assert "3 of 3 start states lie outside the training data's range" in capsys.readouterr().err


# -- molecules -----------------------------------------------------------------------------------
def test_sample_and_analyze_compare_for_a_molecule(ala2_runs, tmp_path, capsys):
    out = tmp_path / "rollout"
    assert main(["sample", str(ala2_runs["run"]), "--lag", "2", "--n-jumps", "6", "--n-walkers", "3", "--out", str(out),
                 "--from", str(ala2_runs["data"]), "--n-steps", "3", "--tolerance", "100", "--quiet"]) == 0
    store = TrajectoryStore(out)
    assert len(store) == 3 and store.read(0).shape == (7, 66)
    assert (out / "topology.pdb").is_file()  # exportable like MD
    capsys.readouterr()
    assert main(["analyze", str(out), "--compare", str(ala2_runs["data"]), "--json", "--lags", "1,2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "validity" in result["molecular"] and result["comparison"]["js_divergence"] is not None
    energy = result["energy"]  # issue 14, item 3: force-field energies of both data sets, after constraints
    assert energy["unit"] == "kT" and energy["n_frames"] == 21 and energy["comparison"]["n_frames"] == 80
    assert energy["mean_difference"] is not None and energy["wasserstein"] >= abs(energy["mean_difference"]) - 1e-9


def test_relaxed_rollout_of_a_molecule_records_the_relaxation(ala2_runs, tmp_path, capsys):
    """``itomd sample --relax-steps K``: K steps of damped Langevin dynamics after every jump (what they
    do to energies: tests/simulate/test_relax.py); the metadata and summary record them, the frame
    interval stays N·τ (a Boltzmann-preserving correction, not simulated time), and the frames differ
    from the same rollout without them."""
    common = ["sample", str(ala2_runs["run"]), "--lag", "2", "--n-jumps", "1", "--n-walkers", "4", "--from",
              str(ala2_runs["data"]), "--n-steps", "3", "--tolerance", "1e6", "--quiet", "--json"]
    relaxed, plain = tmp_path / "relaxed", tmp_path / "plain"
    assert main(common + ["--out", str(relaxed), "--relax-steps", "5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    store = TrajectoryStore(relaxed)
    interval = store.metadata["frame_interval"]
    assert summary["relax_steps"] == 5 and store.metadata["relax_steps"] == 5
    assert interval == 2.0 and summary["frame_interval"] == interval
    assert summary["simulated_time"] == pytest.approx(4 * 1 * interval)
    assert main(common + ["--out", str(plain)]) == 0
    capsys.readouterr()
    a, b = np.stack(store.trajectories()), np.stack(TrajectoryStore(plain).trajectories())
    assert np.array_equal(a[:, 0], b[:, 0]) and np.isfinite(a).all() and not np.allclose(a[:, 1], b[:, 1])


def test_relaxation_refusals_are_one_line_errors(bopito_runs, ala2_runs, tmp_path, capsys):
    base = ["--lag", "2", "--n-jumps", "1", "--n-walkers", "2", "--relax-steps", "5", "--quiet"]
    assert_one_line_exit(capsys, main(["sample", str(bopito_runs["exact"]), "--out", str(tmp_path / "x"), *base]),
                         "not a molecule")
    assert_one_line_exit(capsys, main(["sample", str(ala2_runs["run"]), "--out", str(tmp_path / "y"), "--from",
                                       str(ala2_runs["data"]), "--metropolis", *base]), "Metropolis")


def test_metropolis_rollouts_record_their_acceptance_and_are_reported(bopito_runs, tmp_path, capsys):
    """``itomd sample --metropolis`` (issue 14, item 2): a BoPITO Prinz model; the acceptance rate in the
    sample summary, every trajectory's metadata, ``analyze --json`` and the report; a resumed run agrees."""
    out = tmp_path / "mh"
    common = ["sample", str(bopito_runs["exact"]), "--lag", "2", "--n-jumps", "6", "--n-walkers", "8",
              "--from", str(bopito_runs["data"]), "--n-steps", "6", "--chunk-size", "4", "--metropolis",
              "--out", str(out), "--quiet"]
    assert main(common + ["--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    rate = summary["acceptance_rate"]
    assert 0.0 <= rate <= 1.0
    store = TrajectoryStore(out)
    frames = np.stack(store.trajectories())
    moved = np.any(frames[:, 1:] != frames[:, :-1], axis=-1).mean()  # a rejected jump repeats its frame
    assert moved == pytest.approx(rate)
    assert all(store.read_metadata(i)["metropolis"] for i in store.indices)
    assert main(["analyze", str(out), "--lags", "1", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["acceptance_rate"] == pytest.approx(rate)
    report = tmp_path / "mh.html"
    assert main(["report", str(out), "--lags", "1", "--out", str(report), "--quiet"]) == 0
    assert "Metropolis" in report.read_text() and f"{rate:.3f}" in report.read_text()
    store.file_path(store.indices[-1]).unlink()  # a crash lost the last chunk's file: the resumed run redoes it
    assert main(common) == 0
    capsys.readouterr()
    assert np.array_equal(np.stack(TrajectoryStore(out).trajectories()), frames)
    assert main(["analyze", str(bopito_runs["data"]), "--lags", "1", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["acceptance_rate"] is None  # not a Metropolis rollout


def test_metropolis_on_a_molecule_uses_the_force_field_energy(ala2_runs, tmp_path, capsys):
    """An ITO model of alanine dipeptide (superposed targets, Hutchinson divergence, OpenMM energies)."""
    out = tmp_path / "mh"
    assert main(["sample", str(ala2_runs["run"]), "--lag", "1", "--n-jumps", "2", "--n-walkers", "2", "--from",
                 str(ala2_runs["data"]), "--n-steps", "3", "--probes", "2", "--metropolis", "--tolerance", "100",
                 "--out", str(out), "--quiet", "--json"]) == 0
    rate = json.loads(capsys.readouterr().out)["acceptance_rate"]
    assert 0.0 <= rate <= 1.0
    assert TrajectoryStore(out).metadata["metropolis_probes"] == 2
    from itomd.metropolis import MetropolisHastings
    from itomd.models import TransitionModel

    assert MetropolisHastings.for_model(TransitionModel.load(ala2_runs["run"])).n_probes == 4  # recorded as used


def test_metropolis_refusals_are_one_line_errors(bopito_runs, tmp_path, capsys):
    base = ["sample", str(bopito_runs["exact"]), "--lag", "2", "--n-jumps", "2", "--n-walkers", "2", "--out",
            str(tmp_path / "x"), "--quiet"]
    assert_one_line_exit(capsys, main(base + ["--metropolis", "--sampler", "heun"]), "probability-flow sampler")
    assert_one_line_exit(capsys, main(base + ["--probes", "3"]), "--probes is an option of --metropolis")
    assert_one_line_exit(capsys, main(base + ["--metropolis", "--n-steps", "1"]), "at least 2 noise levels")
    assert_one_line_exit(capsys, main(["sample", str(bopito_runs["eq"]), "--lag", "2", "--n-jumps", "2",
                                       "--n-walkers", "2", "--out", str(tmp_path / "y"), "--metropolis", "--quiet"]),
                         "equilibrium model")


@pytest.mark.parametrize("device, fragment", [("meta", "not supported"), ("tpu", "unknown device"),
                                              ("cuda:7", "cuda")])
def test_sample_refuses_devices_it_cannot_run_on(bopito_runs, tmp_path, capsys, device, fragment):
    """``--device`` (sample, speed, check): auto, cpu or cuda[:k]; anything else, or CUDA on a machine
    without it, is one line (CUDA machines: the test asks for a GPU index that is not there)."""
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a GPU 7")
    code = main(["sample", str(bopito_runs["exact"]), "--lag", "2", "--n-jumps", "1", "--n-walkers", "2",
                 "--device", device, "--out", str(tmp_path / "o")])
    assert_one_line_exit(capsys, code, fragment)
    assert main(["sample", str(bopito_runs["exact"]), "--lag", "2", "--n-jumps", "1", "--n-walkers", "2",
                 "--device", "cpu", "--out", str(tmp_path / "cpu"), "--quiet"]) == 0


def test_bfloat16_precision_is_recorded_for_molecules_and_refused_for_toy_models(bopito_runs, ala2_runs, tmp_path,
                                                                                   capsys):
    """``--precision bfloat16`` (the molecular network's pair tensors; accuracy: tests/nn/test_equivariant.py)
    is recorded in the rollout's metadata; a toy model's network has no pair tensors: one line, exit 2."""
    out = tmp_path / "bf16"
    assert main(["sample", str(ala2_runs["run"]), "--lag", "2", "--n-jumps", "1", "--n-walkers", "2", "--from",
                 str(ala2_runs["data"]), "--n-steps", "3", "--tolerance", "1e6", "--precision", "bfloat16",
                 "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert TrajectoryStore(out).metadata["precision"] == "bfloat16"
    assert_one_line_exit(capsys, main(["sample", str(bopito_runs["exact"]), "--lag", "2", "--n-jumps", "1",
                                       "--n-walkers", "2", "--precision", "bfloat16", "--out", str(tmp_path / "toy"),
                                       "--quiet"]), "applies to molecular models")


def test_compile_is_recorded_for_molecules_and_refused_for_toy_models(bopito_runs, ala2_runs, tmp_path, capsys):
    """``--compile`` (the molecular network through torch.compile; same outputs: tests/nn/test_equivariant.py)
    is recorded in the rollout's metadata; a toy model's network is not compiled: one line, exit 2."""
    out = tmp_path / "compiled"
    assert main(["sample", str(ala2_runs["run"]), "--lag", "2", "--n-jumps", "1", "--n-walkers", "2", "--from",
                 str(ala2_runs["data"]), "--n-steps", "3", "--tolerance", "1e6", "--compile",
                 "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert TrajectoryStore(out).metadata["compiled"] is True
    assert_one_line_exit(capsys, main(["sample", str(bopito_runs["exact"]), "--lag", "2", "--n-jumps", "1",
                                       "--n-walkers", "2", "--compile", "--out", str(tmp_path / "toy"),
                                       "--quiet"]), "applies to molecular models")
