"""``itomd speed``: surrogate and MD rates side by side (issue 12, item 5)."""

from __future__ import annotations

import json

import pytest

from itomd.cli import main
from tests.cli.helpers import assert_one_line_error, assert_one_line_exit, run_cli


@pytest.fixture(scope="module")
def prinz_run(prinz_data, tiny_toml, tmp_path_factory):
    run = tmp_path_factory.mktemp("speed") / "run"
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--config", str(tiny_toml),
                 "--max-steps", "5", "--quiet"]) == 0
    return run


def _speed(capsys, run, *options: str) -> dict:
    capsys.readouterr()
    assert main(["speed", str(run), "--seconds", "0.4", "--processes", "1", "--tolerance", "1000", "--json", *options]) == 0
    return json.loads(capsys.readouterr().out)


def test_speed_reports_both_rates_and_what_they_count(prinz_run, capsys):
    result = _speed(capsys, prinz_run, "--lag", "2", "--n-walkers", "32", "--n-steps", "3")
    surrogate, md = result["surrogate"], result["md"]
    assert result["network_evaluations"] == 5  # stochastic Heun: 2n - 1
    assert result["sampler"] == "heun-churn" and result["lag"] == 2 and result["n_walkers"] == 32
    assert result["precision"] == "float32"
    assert surrogate["jumps"] >= 2 and surrogate["wall_seconds"] >= 0.4
    # simulated time per wall-second, summed over walkers: 32 walkers x jumps x 2 frames x tau
    expected = 32 * surrogate["jumps"] * 2 * result["frame_interval"] / surrogate["wall_seconds"]
    assert result["surrogate_rate"] == pytest.approx(expected, rel=1e-12)
    assert result["ratio"] == pytest.approx(result["surrogate_rate"] / result["md_rate"], rel=1e-12)
    assert md["engine"] == "overdamped" and md["walkers"] == 32 and md["wall_seconds"] >= 0.4
    assert result["md_rate"] > 0
    default = _speed(capsys, prinz_run, "--n-walkers", "8", "--n-steps", "2")
    assert default["lag"] == 10  # the model's largest training lag


def test_surrogate_rate_follows_lag_and_network_evaluations(prinz_run, capsys):
    """Cost per jump is the network evaluations; simulated time per jump is the lag."""
    options = ("--n-walkers", "512", "--seconds", "1")
    cheap = _speed(capsys, prinz_run, "--lag", "4", "--n-steps", "2", *options)   # 3 evaluations per jump
    costly = _speed(capsys, prinz_run, "--lag", "4", "--n-steps", "16", *options)  # 31 evaluations
    short = _speed(capsys, prinz_run, "--lag", "1", "--n-steps", "2", *options)   # same cost, 1/4 of the time
    assert cheap["surrogate_rate"] > 3 * costly["surrogate_rate"]  # ~10x in evaluations
    assert 2 < cheap["surrogate_rate"] / short["surrogate_rate"] < 8  # 4x in lag
    assert 1 / 3 < cheap["md_rate"] / costly["md_rate"] < 3  # MD does not depend on the sampler


def test_speed_of_a_molecule_times_every_openmm_platform(ala2_runs, capsys):
    result = _speed(capsys, ala2_runs["run"], "--lag", "2", "--n-walkers", "4", "--n-steps", "3")
    md = result["md"]
    assert result["time_unit"] == "ps" and md["engine"] == "openmm"
    assert {"Reference", "CPU"} <= set(md["platforms"])
    assert md["platform"] == max(md["platforms"], key=lambda p: md["platforms"][p])  # the fastest counts
    assert result["md_rate"] == md["platforms"][md["platform"]]


def test_relaxation_steps_are_timed_with_the_jumps(ala2_runs, prinz_run, capsys, monkeypatch):
    """``--relax-steps K`` times what ``itomd sample --relax-steps K`` runs: the jumps and K force-field
    steps per walker after each; a toy system has no force field to relax with (one line). The tiny
    model's jumps are replaced by staying put (its 20-step structures would blow OpenMM up), so the
    difference between the two rates is the relaxation's cost alone."""
    from itomd.models import TransitionModel

    monkeypatch.setattr(TransitionModel, "sample", lambda self, x, **kwargs: x.clone())
    options = ("--lag", "2", "--n-walkers", "4", "--n-steps", "2", "--from", str(ala2_runs["data"]))
    plain = _speed(capsys, ala2_runs["run"], *options)
    relaxed = _speed(capsys, ala2_runs["run"], *options, "--relax-steps", "1000", "--precision", "bfloat16",
                     "--compile")
    assert plain["relax_steps"] == 0 and relaxed["relax_steps"] == 1000
    assert plain["precision"] == "float32" and relaxed["precision"] == "bfloat16"
    assert plain["compiled"] is False and relaxed["compiled"] is True
    # 4 walkers x 1000 Reference steps per jump cost far more than 3 evaluations of the tiny network
    assert relaxed["surrogate_rate"] < plain["surrogate_rate"] / 2
    assert_one_line_exit(capsys, main(["speed", str(prinz_run), "--seconds", "0.1", "--relax-steps", "5"]),
                         "is not a molecule")


def test_speed_refuses_an_equilibrium_model_and_a_bad_sampler(bopito_runs, prinz_run, capsys):
    assert_one_line_exit(capsys, main(["speed", str(bopito_runs["eq"]), "--seconds", "0.1"]),
                         "not an equilibrium model")
    assert_one_line_exit(capsys, main(["speed", str(prinz_run), "--sampler", "nope"]), "unknown sampler 'nope'")


def test_speed_of_a_missing_run_is_one_line(tmp_path):
    assert_one_line_error(run_cli("speed", str(tmp_path / "nothing")), "no model file at")


def test_a_platform_that_openmm_lists_but_cannot_run_is_recorded_and_the_others_count(monkeypatch):
    """An OpenMM platform that loads but fails here (an OpenCL library without a device: seen on a GPU
    machine) is a one-line failure in ``platforms``, not a crash of ``itomd speed``."""
    import openmm

    import itomd.simulate.molecular as molecular
    from itomd.speed import time_md
    from itomd.systems import SystemSpec

    real = molecular.make_context

    def make_context(system, *args, platform="Reference", **kwargs):
        if platform == "CPU":
            raise openmm.OpenMMException("No compatible\n device is available")
        return real(system, *args, platform=platform, **kwargs)

    monkeypatch.setattr(molecular, "make_context", make_context)
    spec = SystemSpec("ala2-implicit")
    system = spec.build()
    md = time_md(spec, system, system.default_start()[None], 0.2, 1, 0, platforms=("Reference", "CPU"))
    assert md["platforms"]["CPU"] == "failed: OpenMM's CPU platform failed here (No compatible device is available)"
    assert md["platform"] == "Reference" and md["rate"] == md["platforms"]["Reference"] > 0
