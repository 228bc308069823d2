"""Alanine dipeptide through the CLI: simulate → train (equivariant ITO) → sample → analyze --compare,
the model file round trip, and one-line errors for molecules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch


from itomd.cli import main  # noqa: E402
from itomd.data.store import TrajectoryStore  # noqa: E402
from itomd.models import TransitionModel  # noqa: E402

TINY = ("max_lag = 4\nhidden = 8\nn_blocks = 1\nn_frequencies = 4\nbatch_size = 16\nwarmup_steps = 2\n"
        "checkpoint_every = 10\nlog_every = 10\ndevice = \"cpu\"\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ala2")
    config = root / "tiny.toml"
    config.write_text(TINY)
    data = root / "md"
    assert main(["simulate", "--system", "ala2", "--out", str(data), "--n-traj", "2", "--n-frames", "40",
                 "--seed", "1", "--workers", "0", "--quiet"]) == 0
    run = root / "ito"
    assert main(["train", "--data", str(data), "--out", str(run), "--config", str(config), "--max-steps", "20",
                 "--quiet"]) == 0
    return {"data": data, "run": run, "config": config, "root": root}


def test_trained_model_is_molecular_and_round_trips(runs, tmp_path):
    model = TransitionModel.load(runs["run"])
    assert model.spec.representation.n_atoms == 22 and model.spec.representation.superpose_targets
    assert np.allclose(model.spec.shift, 0.0)
    model.save(tmp_path / "copy.pt")
    again = TransitionModel.load(tmp_path / "copy.pt")
    x0 = torch.as_tensor(TrajectoryStore(runs["data"]).read(0)[:3], dtype=torch.float32)
    a = model.sample(x0, lag=2, n_steps=3, generator=torch.Generator().manual_seed(0))
    b = again.sample(x0, lag=2, n_steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


def test_sample_and_analyze_compare_for_a_molecule(runs, tmp_path, capsys):
    out = tmp_path / "rollout"
    assert main(["sample", str(runs["run"]), "--lag", "2", "--n-jumps", "6", "--n-walkers", "3", "--out", str(out),
                 "--from", str(runs["data"]), "--n-steps", "3", "--tolerance", "100", "--quiet"]) == 0
    store = TrajectoryStore(out)
    assert len(store) == 3 and store.read(0).shape == (7, 66)
    assert (out / "topology.pdb").is_file()  # exportable like MD
    capsys.readouterr()
    assert main(["analyze", str(out), "--compare", str(runs["data"]), "--json", "--lags", "1,2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "validity" in result["molecular"] and result["comparison"]["js_divergence"] is not None


def test_molecular_training_errors_are_one_line(runs, tmp_path, capsys):
    assert main(["train", "--data", str(runs["data"]), "--out", str(tmp_path / "x"), "--config", str(runs["config"]),
                 "--prior", "exact", "--max-steps", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "error:" in err and "\n" not in err and "--equilibrium" in err


def test_bopito_for_a_molecule_with_a_learned_equilibrium_prior(runs, tmp_path):
    eq, bopito = tmp_path / "eq", tmp_path / "bopito"
    assert main(["train", "--data", str(runs["data"]), "--out", str(eq), "--config", str(runs["config"]),
                 "--equilibrium", "--max-steps", "10", "--quiet"]) == 0
    prior = TransitionModel.load(eq)
    assert prior.spec.representation.n_atoms == 22 and not prior.conditional
    draws = prior.sample(None, n_samples=4, n_steps=3, generator=torch.Generator().manual_seed(0))
    assert draws.shape == (4, 66) and draws.reshape(4, 22, 3).mean(1).abs().max() < 1e-5
    assert main(["train", "--data", str(runs["data"]), "--out", str(bopito), "--config", str(runs["config"]),
                 "--prior", str(eq), "--lambda-hat", "0.95", "--max-steps", "10", "--quiet"]) == 0
    model = TransitionModel.load(bopito)
    # lab-frame targets (the isotropic prior would never match superposed ones)
    assert model.is_bopito and model.spec.representation.n_atoms == 22 and not model.spec.representation.superpose_targets
    assert model.lambda_hat == 0.95
    x0 = torch.as_tensor(TrajectoryStore(runs["data"]).read(1)[:2], dtype=torch.float32)
    far = model.sample(x0, lag=10_000, n_steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(far).all() and far.shape == (2, 66)
