"""``itomd fit-interpolation``: λ_int of a BoPITO model fitted to a correlation file, written into a tuned
model (its one-line errors: test_cli.py)."""

from __future__ import annotations

import json

import pytest

from itomd.cli import main
from itomd.models import TransitionModel


def test_fit_interpolation_writes_a_tuned_model(bopito_runs, tmp_path, capsys):
    observable = tmp_path / "c.txt"
    observable.write_text("# lag C\n5 0.9\n40 0.5\n80 0.3\n")
    out = tmp_path / "tuned.pt"
    assert main(["fit-interpolation", str(bopito_runs["exact"]), "--observable", str(observable), "--n-walkers", "64",
                 "--out", str(out), "--quiet", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert fit["lags"] == [40, 80] and fit["ignored_lags"] == [5] and 0 < fit["lambda_interpolation"] <= 1
    assert TransitionModel.load(out).lambda_interpolation == pytest.approx(fit["lambda_interpolation"])
