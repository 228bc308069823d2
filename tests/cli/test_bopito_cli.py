"""``itomd train --prior``, ``sample --lambda-int``, ``simulate --from-equilibrium-model``,
``fit-interpolation``: end to end on tiny Prinz data, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from itomd.cli import main
from itomd.data.store import TrajectoryStore
from itomd.models import ExactPrior, LearnedPrior, TransitionModel

TINY = ("max_lag = 10\nhidden = 32\nn_blocks = 1\nn_frequencies = 4\nbatch_size = 64\nwarmup_steps = 5\n"
        "checkpoint_every = 10\nlog_every = 10\ndevice = \"cpu\"\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bopito")
    config = root / "tiny.toml"
    config.write_text(TINY)
    data = root / "prinz"
    assert main(["simulate", "--system", "prinz", "--out", str(data), "--n-traj", "16", "--n-frames", "100",
                 "--seed", "5", "--workers", "0", "--quiet"]) == 0
    paths = {"data": data, "config": config, "eq": root / "eq", "exact": root / "exact", "learned": root / "learned"}
    assert main(["train", "--data", str(data), "--out", str(paths["eq"]), "--config", str(config), "--equilibrium",
                 "--max-steps", "30", "--quiet"]) == 0
    assert main(["train", "--data", str(data), "--out", str(paths["exact"]), "--config", str(config),
                 "--prior", "exact", "--max-steps", "30", "--quiet"]) == 0
    assert main(["train", "--data", str(data), "--out", str(paths["learned"]), "--config", str(config),
                 "--prior", str(paths["eq"]), "--lambda-hat", "0.99", "--max-steps", "20", "--quiet"]) == 0
    return paths


def test_train_with_exact_and_learned_priors(runs):
    exact = TransitionModel.load(runs["exact"])
    learned = TransitionModel.load(runs["learned"])
    assert exact.is_bopito and isinstance(exact.spec.prior, ExactPrior)
    assert 0.98 < exact.lambda_hat < 1.0  # Prinz: exact λ₂ = 0.9940 per frame; 16 short trajectories here
    assert isinstance(learned.spec.prior, LearnedPrior) and learned.lambda_hat == 0.99


def test_sample_with_lambda_int_records_it(runs, tmp_path, capsys):
    out = tmp_path / "rollout"
    assert main(["sample", str(runs["exact"]), "--lag", "20", "--n-jumps", "3", "--n-walkers", "5", "--out", str(out),
                 "--n-steps", "4", "--lambda-int", "0.9", "--tolerance", "100", "--quiet", "--json"]) == 0
    assert "λ_int = 0.9" in capsys.readouterr().err
    store = TrajectoryStore(out)
    assert store.metadata["model_kind"] == "bopito" and store.metadata["lambda_interpolation"] == 0.9
    assert len(store) == 5


def test_simulate_from_equilibrium_model_is_deterministic_and_resumes(runs, tmp_path, capsys):
    out = tmp_path / "seeded"
    args = ["simulate", "--system", "prinz", "--out", str(out), "--n-traj", "12", "--n-frames", "20",
            "--from-equilibrium-model", str(runs["eq"]), "--seed", "3", "--workers", "0", "--quiet"]
    assert main(args) == 0
    first = TrajectoryStore(out).trajectories()
    starts = np.array([t[0] for t in first])
    assert len(np.unique(starts)) == 12  # every trajectory has its own start
    (out / "traj_000004.h5").unlink()  # a lost file is recomputed from the cached start points
    assert main(args) == 0
    again = TrajectoryStore(out).trajectories()
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    # the same command elsewhere draws the same start points
    assert main([*args[:4], str(tmp_path / "other"), *args[5:]]) == 0
    assert np.array_equal(np.array([t[0] for t in TrajectoryStore(tmp_path / "other").trajectories()]), starts)


def test_fit_interpolation_writes_a_tuned_model(runs, tmp_path, capsys):
    observable = tmp_path / "c.txt"
    observable.write_text("# lag C\n5 0.9\n40 0.5\n80 0.3\n")
    out = tmp_path / "tuned.pt"
    assert main(["fit-interpolation", str(runs["exact"]), "--observable", str(observable), "--n-walkers", "64",
                 "--out", str(out), "--quiet", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["lags"] == [40, 80] and fit["ignored_lags"] == [5] and 0 < fit["lambda_interpolation"] <= 1
    assert TransitionModel.load(out).lambda_interpolation == pytest.approx(fit["lambda_interpolation"])


def _error(capsys, argv: list[str], fragment: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err


def test_bopito_errors_are_one_line(runs, tmp_path, capsys):
    observable = tmp_path / "c.txt"
    observable.write_text("5 0.9\n")
    _error(capsys, ["fit-interpolation", str(runs["exact"]), "--observable", str(observable)], "no lag beyond")
    _error(capsys, ["fit-interpolation", str(runs["eq"]), "--observable", str(observable)], "not a BoPITO model")
    _error(capsys, ["fit-interpolation", str(runs["exact"]), "--observable", str(tmp_path / "none.txt")],
           "no correlation file")
    _error(capsys, ["sample", str(runs["exact"]), "--lag", "2", "--n-jumps", "1", "--n-walkers", "2", "--out",
                    str(tmp_path / "r"), "--lambda-int", "2"], "lambda_int must be in (0, 1]")
    _error(capsys, ["train", "--data", str(runs["data"]), "--out", str(tmp_path / "t"), "--config", str(runs["config"]),
                    "--lambda-hat", "0.9"], "needs a prior")
    _error(capsys, ["train", "--data", str(runs["data"]), "--out", str(tmp_path / "t2"), "--config",
                    str(runs["config"]), "--prior", str(tmp_path / "missing")], "missing")
    _error(capsys, ["simulate", "--system", "muller-brown", "--out", str(tmp_path / "s"), "--n-traj", "2",
                    "--n-frames", "3", "--from-equilibrium-model", str(runs["eq"]), "--workers", "0"],
           "1-dimensional states but the system is 2-dimensional")


def test_sample_notes_start_states_outside_the_training_data(runs, tmp_path, capsys):
    """Inside the prior's box (Prinz: ±1.2) but beyond every training frame: BoPITO's dynamic part
    was never trained there, and the user is told."""
    x0 = tmp_path / "x0.txt"
    x0.write_text("-1.19\n")
    assert main(["sample", str(runs["exact"]), "--lag", "2", "--n-jumps", "1", "--n-walkers", "3", "--out",
                 str(tmp_path / "r"), "--x0", str(x0), "--n-steps", "4", "--tolerance", "100", "--quiet"]) == 0
    assert "3 of 3 start states lie outside the training data's range" in capsys.readouterr().err
