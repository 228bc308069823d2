"""``itomd simulate``: resuming keeps the data, start points from an equilibrium model, one-line errors for
molecules."""

from __future__ import annotations

import numpy as np
import pytest

from itomd.cli import main
from itomd.data.store import TrajectoryStore
from tests.cli.helpers import assert_one_line_exit


def test_simulate_twice_resumes_and_keeps_data(prinz_store, capsys):
    from itomd.data.store import TrajectoryStore

    before = TrajectoryStore(prinz_store).trajectories()
    assert main(["simulate", "--system", "prinz", "--out", str(prinz_store), "--n-traj", "8", "--n-frames", "400",
                 "--seed", "3", "--workers", "0", "--quiet"]) == 0
    after = TrajectoryStore(prinz_store).trajectories()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_simulate_from_equilibrium_model_is_deterministic_and_resumes(bopito_runs, tmp_path, capsys):
    out = tmp_path / "seeded"
    args = ["simulate", "--system", "prinz", "--out", str(out), "--n-traj", "12", "--n-frames", "20",
            "--from-equilibrium-model", str(bopito_runs["eq"]), "--seed", "3", "--workers", "0", "--quiet"]
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


@pytest.mark.parametrize("argv, fragment", [
    (["--system", "ala2", "--integrator", "overdamped"], "not 'overdamped'"),
    (["--system", "ala2", "--kT", "2"], "set its temperature in kelvin"),
    (["--system", "ala2", "--dim", "2"], "--dim 2 is not possible"),
    (["--system", "ala2", "--x0", "0.1,0.2"], "--x0 needs 66 numbers"),
    (["--system", "prinz", "--platform", "Reference"], "applies to molecules only"),
    (["--system", "prinz", "--temperature", "300"], "applies to molecules"),
])
def test_cli_simulate_errors_are_one_line(tmp_path, capsys, argv, fragment):
    code = main(["simulate", *argv, "--out", str(tmp_path / "o"), "--n-traj", "2", "--n-frames", "2", "--workers", "0",
                 "--quiet"])
    assert_one_line_exit(capsys, code, fragment)
