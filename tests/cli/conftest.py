"""Stores and training runs that several command modules use, made once per test session through the
command line itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from itomd.cli import main
from tests.cli.helpers import TINY

#: A tiny training config (TOML) for alanine dipeptide.
ALA2_TINY = ("max_lag = 4\nhidden = 8\nn_blocks = 1\nn_frequencies = 4\nbatch_size = 16\nwarmup_steps = 2\n"
             "checkpoint_every = 10\nlog_every = 10\ndevice = \"cpu\"\n")


@pytest.fixture(scope="session")
def prinz_store(tmp_path_factory) -> Path:
    """8 Prinz trajectories of 400 frames (``itomd simulate``, seed 3)."""
    out = tmp_path_factory.mktemp("cli") / "prinz"
    assert main(["simulate", "--system", "prinz", "--out", str(out), "--n-traj", "8", "--n-frames", "400",
                 "--seed", "3", "--workers", "0", "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def prinz_data(tmp_path_factory) -> Path:
    """16 Prinz trajectories of 200 frames (seed 5): training data."""
    out = tmp_path_factory.mktemp("train") / "prinz"
    assert main(["simulate", "--system", "prinz", "--out", str(out), "--n-traj", "16", "--n-frames", "200",
                 "--seed", "5", "--workers", "0", "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_toml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="session")
def bopito_runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny Prinz runs: an equilibrium model, BoPITO with the exact prior and with the learned one."""
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


@pytest.fixture(scope="session")
def ala2_runs(tmp_path_factory) -> dict[str, Path]:
    """Two short alanine dipeptide trajectories and a tiny equivariant ITO model trained on them."""
    root = tmp_path_factory.mktemp("ala2")
    config = root / "tiny.toml"
    config.write_text(ALA2_TINY)
    data = root / "md"
    assert main(["simulate", "--system", "ala2", "--out", str(data), "--n-traj", "2", "--n-frames", "40",
                 "--seed", "1", "--workers", "0", "--quiet"]) == 0
    run = root / "ito"
    assert main(["train", "--data", str(data), "--out", str(run), "--config", str(config), "--max-steps", "20",
                 "--quiet"]) == 0
    return {"data": data, "run": run, "config": config, "root": root}
