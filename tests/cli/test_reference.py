"""``itomd reference``: the exact reference's JSON (its one-line errors: test_cli.py)."""

import json

import pytest

from itomd.cli import main


def test_reference_json_contract(capsys):
    assert main(["reference", "--system", "muller-brown", "--grid", "120", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["implied_timescales"][0] == pytest.approx(5.0, rel=0.02)
    assert out["implied_timescales"] == sorted(out["implied_timescales"], reverse=True)
    assert set(out["stationary"]) >= {"mean", "std", "mode"}
