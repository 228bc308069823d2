"""``itomd train``: kill -9 and exact resume, a time budget, DDP with gloo, BoPITO priors, equivariant models
of molecules and their one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from itomd.checkpoint import load_file
from itomd.cli import main
from itomd.data.store import TrajectoryStore
from itomd.models import ExactPrior, ForceFieldPrior, LearnedPrior, TransitionModel
from tests.cli.helpers import assert_one_line_exit, kill_9_after_checkpoint, run_cli


def _weights(run: Path, part: str = "denoiser") -> dict[str, torch.Tensor]:
    checkpoint = load_file(run / "checkpoint.pt")
    return checkpoint[part] if part != "ema" else checkpoint["ema"]["module"]


def test_kill_9_during_training_then_resume_matches_uninterrupted(prinz_data, tiny_toml, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    args = ["--data", str(prinz_data), "--config", str(tiny_toml), "--max-steps", "400", "--quiet"]
    assert run_cli("train", "--out", str(straight), *args).returncode == 0
    step_at_kill = kill_9_after_checkpoint(["train", "--out", str(killed), *args], killed, 50)
    assert 50 <= step_at_kill < 400, "the run finished before it could be killed; make it longer"
    assert run_cli("train", "--out", str(killed), *args, "--resume").returncode == 0
    for part in ("denoiser", "ema"):
        a, b = _weights(straight, part), _weights(killed, part)
        assert all(torch.equal(a[k], b[k]) for k in a), part
    rows = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert rows == list(range(10, 401, 10))


def test_minutes_budget_then_resume(prinz_data, tiny_toml, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--config", str(tiny_toml),
                 "--max-steps", "100000", "--minutes", "0.05", "--quiet", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["stopped_by_budget"] and 0 < first["steps"] < 100000
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--max-steps", "100000",
                 "--minutes", "0.02", "--resume", "--quiet", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["steps"] > first["steps"]


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_ddp_two_gloo_processes_match_one_process(prinz_data, tiny_toml, tmp_path):
    """Data-parallel training on 2 CPU processes follows the 1-process run with the same global batch."""
    args = ["--data", str(prinz_data), "--config", str(tiny_toml), "--max-steps", "25", "--quiet"]
    single, double = tmp_path / "single", tmp_path / "double"
    assert run_cli("train", "--out", str(single), *args).returncode == 0
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "itomd", "train",
                           "--out", str(double), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = _weights(single), _weights(double)
    for k in a:
        assert torch.allclose(a[k], b[k], atol=2e-5, rtol=1e-4), (k, (a[k] - b[k]).abs().max())
    assert any(not torch.equal(a[k], _weights(single, "ema")[k]) for k in a)


def test_train_with_exact_and_learned_priors(bopito_runs):
    exact = TransitionModel.load(bopito_runs["exact"])
    learned = TransitionModel.load(bopito_runs["learned"])
    assert exact.is_bopito and isinstance(exact.spec.prior, ExactPrior)
    assert 0.98 < exact.lambda_hat < 1.0  # Prinz: exact λ₂ = 0.9940 per frame; 16 short trajectories here
    assert isinstance(learned.spec.prior, LearnedPrior) and learned.lambda_hat == 0.99
    assert exact.spec.dynamic_part == learned.spec.dynamic_part == "residual"  # a toy system's default


def test_train_with_the_forcefield_prior_then_sample_and_metropolis(bopito_runs, tmp_path, capsys):
    run = tmp_path / "ff"
    assert main(["train", "--data", str(bopito_runs["data"]), "--out", str(run), "--config",
                 str(bopito_runs["config"]), "--prior", "forcefield", "--max-steps", "20", "--quiet"]) == 0
    model = TransitionModel.load(run)
    assert model.is_bopito and isinstance(model.spec.prior, ForceFieldPrior) and model.spec.prior.base is None
    weights = model.denoiser.equilibrium.weights
    assert weights[0] == 1.0 and weights[-1] == 0.0  # the calibrated blend travels in the model file
    x0 = torch.tensor([[0.2], [-0.4]])
    a = model.sample(x0, lag=5, n_steps=4, generator=torch.Generator().manual_seed(0))
    b = TransitionModel.load(run).sample(x0, lag=5, n_steps=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.isfinite(a).all()
    # the toy potential's forces are differentiable: Metropolis-Hastings gets the model's transition density
    capsys.readouterr()
    assert main(["sample", str(run), "--n-walkers", "20", "--n-jumps", "2", "--lag", "5", "--out",
                 str(tmp_path / "mh"), "--metropolis", "--json", "--quiet"]) == 0
    assert 0.0 < json.loads(capsys.readouterr().out)["acceptance_rate"] <= 1.0
    code = main(["train", "--data", str(bopito_runs["data"]), "--out", str(tmp_path / "bad"), "--prior",
                 "forcefield:" + str(tmp_path / "missing"), "--max-steps", "2", "--quiet"])
    assert_one_line_exit(capsys, code, "missing")


def test_trained_model_is_molecular_and_round_trips(ala2_runs, tmp_path):
    model = TransitionModel.load(ala2_runs["run"])
    assert model.spec.representation.n_atoms == 22 and model.spec.representation.superpose_targets
    assert np.allclose(model.spec.shift, 0.0)
    model.save(tmp_path / "copy.pt")
    again = TransitionModel.load(tmp_path / "copy.pt")
    x0 = torch.as_tensor(TrajectoryStore(ala2_runs["data"]).read(0)[:3], dtype=torch.float32)
    a = model.sample(x0, lag=2, n_steps=3, generator=torch.Generator().manual_seed(0))
    b = again.sample(x0, lag=2, n_steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_molecular_training_errors_are_one_line(ala2_runs, tmp_path, capsys):
    assert main(["train", "--data", str(ala2_runs["data"]), "--out", str(tmp_path / "x"), "--config",
                 str(ala2_runs["config"]),
                 "--prior", "exact", "--max-steps", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "error:" in err and "\n" not in err and "--equilibrium" in err


def test_bopito_for_a_molecule_with_a_learned_equilibrium_prior(ala2_runs, tmp_path):
    eq, bopito = tmp_path / "eq", tmp_path / "bopito"
    assert main(["train", "--data", str(ala2_runs["data"]), "--out", str(eq), "--config", str(ala2_runs["config"]),
                 "--equilibrium", "--max-steps", "10", "--quiet"]) == 0
    prior = TransitionModel.load(eq)
    assert prior.spec.representation.n_atoms == 22 and not prior.conditional
    draws = prior.sample(None, n_samples=4, n_steps=3, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (4, 66) and draws.reshape(4, 22, 3).mean(1).abs().max() < 1e-5
    assert main(["train", "--data", str(ala2_runs["data"]), "--out", str(bopito), "--config", str(ala2_runs["config"]),
                 "--prior", str(eq), "--lambda-hat", "0.95", "--dynamic-part", "residual", "--max-steps", "10",
                 "--quiet"]) == 0
    model = TransitionModel.load(bopito)
    # the residual form learns the orientation-marginal density with lab-frame targets (the isotropic
    # prior would never match superposed ones): x_t enters superposed on the noisy state
    representation = model.spec.representation
    assert model.spec.dynamic_part == "residual"
    assert model.is_bopito and representation.n_atoms == 22 and not representation.superpose_targets
    assert representation.orientation_marginal and model.denoiser.superpose_condition
    assert model.lambda_hat == 0.95
    x0 = torch.as_tensor(TrajectoryStore(ala2_runs["data"]).read(1)[:2], dtype=torch.float32)
    far = model.sample(x0, lag=10_000, n_steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(far).all() and far.shape == (2, 66)
    # its own training frames (uncentred in the store) are inside the range it was trained on, in any
    # orientation; structures blown up to twice their size are not
    frames = TrajectoryStore(ala2_runs["data"]).read(0)
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    turned = (frames.reshape(len(frames), 22, 3) @ rotation.T).reshape(frames.shape)
    assert model.untrained_starts(frames) == 0 and model.untrained_starts(turned + 5.0) == 0
    assert model.untrained_starts(2.0 * frames) == len(frames)
    # the transition form (a molecule's default) learns superposed targets, as ITO does, and takes x_t as
    # given; rotating x_t and the noisy state together rotates the denoised structure (equivariance)
    transition = tmp_path / "bopito_transition"
    assert main(["train", "--data", str(ala2_runs["data"]), "--out", str(transition), "--config",
                 str(ala2_runs["config"]), "--prior", str(eq), "--lambda-hat", "0.95", "--max-steps", "10",
                 "--quiet"]) == 0
    model = TransitionModel.load(transition)
    representation = model.spec.representation
    assert model.spec.dynamic_part == "transition" and model.denoiser.dynamic_part == "transition"
    assert representation.superpose_targets and not representation.orientation_marginal
    assert not model.denoiser.superpose_condition
    q = torch.as_tensor(rotation, dtype=torch.float32)
    x_t = torch.as_tensor(frames[:3], dtype=torch.float32)
    x_t = (x_t.reshape(3, 22, 3) - x_t.reshape(3, 22, 3).mean(1, keepdim=True)).reshape(3, 66)
    x = x_t + 0.05 * torch.randn(3, 66, generator=torch.Generator().manual_seed(1))
    x = (x.reshape(3, 22, 3) - x.reshape(3, 22, 3).mean(1, keepdim=True)).reshape(3, 66)
    turn = lambda y: (y.reshape(-1, 22, 3) @ q.T).reshape(-1, 66)  # noqa: E731
    sigma, lags = torch.full((3,), 0.1), torch.full((3,), 5.0)
    with torch.no_grad():
        plain = model.denoiser(x, sigma, cond=x_t, lag=lags)
        turned_out = model.denoiser(turn(x), sigma, cond=turn(x_t), lag=lags)
    assert torch.allclose(turned_out, turn(plain), atol=1e-4)
    # beyond the training lags a sample's orientation drifts with the prior: x_t enters superposed on the
    # noisy state there, so x_t's own orientation no longer matters (within them it does: the targets'
    # frame is x_t's)
    far, large = torch.full((3,), 6.0), torch.full((3,), 1.0)  # N_max = 4 here: weight 0.95^6 = 0.74
    with torch.no_grad():
        assert torch.allclose(model.denoiser(x, large, cond=turn(x_t), lag=far),
                              model.denoiser(x, large, cond=x_t, lag=far), atol=1e-4)
        first = torch.ones(3)  # within the training lags
        assert not torch.allclose(model.denoiser(x, large, cond=turn(x_t), lag=first),
                                  model.denoiser(x, large, cond=x_t, lag=first), atol=1e-3)
    far_jumps = model.sample(x_t, lag=10_000, n_steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(far_jumps).all()


def test_forcefield_prior_for_a_molecule_needs_a_learned_base(ala2_runs, tmp_path, capsys):
    data, config = str(ala2_runs["data"]), str(ala2_runs["config"])
    code = main(["train", "--data", data, "--out", str(tmp_path / "x"), "--config", config, "--prior", "forcefield",
                 "--max-steps", "2", "--quiet"])
    assert_one_line_exit(capsys, code, "--prior forcefield:RUN")
    eq, ff = tmp_path / "eq", tmp_path / "ff"
    assert main(["train", "--data", data, "--out", str(eq), "--config", config, "--equilibrium", "--max-steps", "4",
                 "--quiet"]) == 0
    assert main(["train", "--data", data, "--out", str(ff), "--config", config, "--prior", f"forcefield:{eq}",
                 "--lambda-hat", "0.95", "--max-steps", "4", "--quiet"]) == 0
    model = TransitionModel.load(ff)
    prior = model.spec.prior
    assert isinstance(prior, ForceFieldPrior) and isinstance(prior.base, LearnedPrior) and prior.n_atoms == 22
    assert model.denoiser.equilibrium.weights[0] == 1.0
    x0 = torch.as_tensor(TrajectoryStore(ala2_runs["data"]).read(1)[:2], dtype=torch.float32)
    jump = model.sample(x0, lag=2, n_steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(jump).all() and jump.shape == (2, 66)
    # OpenMM's forces, differentiated along vectors by central differences: Metropolis-Hastings works
    capsys.readouterr()
    assert main(["sample", str(ff), "--n-walkers", "2", "--n-jumps", "1", "--lag", "2", "--out", str(tmp_path / "mh"),
                 "--from", data, "--metropolis", "--n-steps", "3", "--json", "--quiet"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["acceptance_rate"] <= 1.0


def test_config_names_a_shipped_recipe(prinz_data, tmp_path, capsys):
    """``--config ala2-ito`` reads the packaged recipe (command-line options override it); an unknown
    name is one line listing the recipes."""
    run = tmp_path / "recipe"
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--config", "ala2-ito", "--max-lag", "5",
                 "--max-steps", "2", "--device", "cpu", "--quiet"]) == 0
    recorded = (run / "config.toml").read_text()
    for line in ("hidden = 32", "batch_size = 64", "log_every = 100", "max_lag = 5", "max_steps = 2"):
        assert line in recorded.splitlines(), recorded
    capsys.readouterr()
    code = main(["train", "--data", str(prinz_data), "--out", str(tmp_path / "x"), "--config", "ala2-itto"])
    assert_one_line_exit(capsys, code, "unknown recipe 'ala2-itto': choose one of ala2-ito")
    assert not (tmp_path / "x").exists()


def test_without_a_config_the_system_sizes_the_run(ala2_runs, prinz_data, tmp_path):
    """No ``--config``: a molecule gets the equivariant network's 32 channels and a batch scaled to its
    atoms (64 at 22 atoms), points the 128-unit MLP on 512 pairs; recorded in config.toml and the model;
    ``--batch-size`` still wins, and resuming keeps the recorded sizes."""
    molecule, points = tmp_path / "molecule", tmp_path / "points"
    assert main(["train", "--data", str(ala2_runs["data"]), "--out", str(molecule), "--max-lag", "4",
                 "--max-steps", "1", "--quiet"]) == 0
    assert {"batch_size = 64", "hidden = 32"} <= set((molecule / "config.toml").read_text().splitlines())
    model = TransitionModel.load(molecule)
    assert (model.info["config"]["batch_size"], model.spec.network.hidden) == (64, 32)
    assert main(["train", "--data", str(ala2_runs["data"]), "--out", str(molecule), "--max-steps", "2",
                 "--resume", "--quiet"]) == 0
    assert TransitionModel.load(molecule).info["steps"] == 2
    assert main(["train", "--data", str(prinz_data), "--out", str(points), "--max-lag", "4", "--max-steps", "1",
                 "--batch-size", "100", "--quiet"]) == 0
    assert {"batch_size = 100", "hidden = 128"} <= set((points / "config.toml").read_text().splitlines())


def test_start_balance_is_the_systems_default_and_a_flag(ala2_runs, prinz_data, tmp_path):
    """Points draw balanced starts by default (start_balance = 1 recorded), molecules uniform ones; a
    molecule with ``--start-balance 1`` balances on its φ/ψ plane (cos/sin of the torsions, projected by
    TICA) and records how many frames the weights effectively keep (a value outside [0, 1]: tests/cli/test_cli.py)."""
    points, molecule = tmp_path / "points", tmp_path / "molecule"
    assert main(["train", "--data", str(prinz_data), "--out", str(points), "--max-lag", "4", "--max-steps", "1",
                 "--quiet"]) == 0
    assert "start_balance = 1.0" in (points / "config.toml").read_text().splitlines()
    assert 0 < TransitionModel.load(points).info["data"]["start_weights_effective_fraction"] < 1
    assert main(["train", "--data", str(ala2_runs["data"]), "--out", str(tmp_path / "uniform"), "--max-lag", "4",
                 "--max-steps", "1", "--quiet"]) == 0
    assert "start_balance = 0.0" in (tmp_path / "uniform" / "config.toml").read_text().splitlines()
    assert "start_weights_effective_fraction" not in TransitionModel.load(tmp_path / "uniform").info["data"]
    assert main(["train", "--data", str(ala2_runs["data"]), "--out", str(molecule), "--max-lag", "4",
                 "--max-steps", "2", "--start-balance", "1", "--quiet"]) == 0
    model = TransitionModel.load(molecule)
    assert model.info["config"]["start_balance"] == 1.0
    assert 0 < model.info["data"]["start_weights_effective_fraction"] < 1


def test_lag_distribution_flag_reaches_the_run(prinz_data, tmp_path):
    """``--lag-distribution uniform`` is recorded in the run's config (and resumed from it); without the
    flag the run keeps log-uniform lags (an unknown name: tests/cli/test_cli.py)."""
    for flag, expected in ((["--lag-distribution", "uniform"], "uniform"), ([], "log-uniform")):
        out = tmp_path / expected
        assert main(["train", "--data", str(prinz_data), "--out", str(out), "--max-lag", "8", "--max-steps", "1",
                     *flag, "--quiet"]) == 0
        assert f'lag_distribution = "{expected}"' in (out / "config.toml").read_text().splitlines()
        assert TransitionModel.load(out).info["config"]["lag_distribution"] == expected


def test_compiled_training_follows_the_eager_run_and_is_refused_for_toy_models(ala2_runs, prinz_data, tiny_toml,
                                                                               tmp_path, capsys):
    """``--compile`` trains the molecule's network through torch.compile: the same function, so the
    20-step run's losses and its model's jumps follow the eager run's to float32 rounding through the
    optimiser (measured: losses within 1e-6 relative); the run's config records it; a toy model's
    network is not compiled: one line, exit 2."""
    out = tmp_path / "compiled"
    assert main(["train", "--data", str(ala2_runs["data"]), "--out", str(out), "--config", str(ala2_runs["config"]),
                 "--max-steps", "20", "--compile", "--quiet"]) == 0
    assert "compile = true" in (out / "config.toml").read_text()
    losses = [[json.loads(row)["loss"] for row in (run / "metrics.jsonl").read_text().splitlines()]
              for run in (ala2_runs["run"], out)]
    assert np.allclose(losses[1], losses[0], rtol=1e-4, atol=0), losses
    x0 = torch.as_tensor(TrajectoryStore(ala2_runs["data"]).read(0)[:3], dtype=torch.float32)
    jumps = [TransitionModel.load(run).sample(x0, lag=2, n_steps=3, generator=torch.Generator().manual_seed(0))
             for run in (ala2_runs["run"], out)]
    assert float((jumps[1] - jumps[0]).abs().max()) < 1e-3
    capsys.readouterr()
    code = main(["train", "--data", str(prinz_data), "--out", str(tmp_path / "toy"), "--config", str(tiny_toml),
                 "--max-steps", "2", "--compile", "--quiet"])
    assert_one_line_exit(capsys, code, "applies to molecular models")
