"""``itomd distill``: from a trained run to a few-step model that ``itomd sample`` uses like any other,
kill -9 and exact resume, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from itomd.checkpoint import load_file
from itomd.cli import main
from itomd.data.store import TrajectoryStore
from itomd.models import TransitionModel
from tests.cli.helpers import assert_one_line_error, assert_one_line_exit, kill_9_after_checkpoint, run_cli


@pytest.fixture(scope="module")
def teacher(prinz_data, tiny_toml, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("distill") / "teacher"
    assert main(["train", "--data", str(prinz_data), "--out", str(run), "--config", str(tiny_toml),
                 "--max-steps", "30", "--quiet"]) == 0
    return run


def test_distill_then_sample_with_the_models_own_few_step_sampler(teacher, prinz_data, tmp_path, capsys):
    student = tmp_path / "student"
    assert main(["distill", str(teacher), "--out", str(student), "--steps", "2", "--max-steps", "20", "--quiet",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 20 and summary["sampler"] == "consistency"
    assert summary["network_evaluations_per_jump"] == 2 and summary["data"] == str(prinz_data.resolve())
    model = TransitionModel.load(student)
    assert model.info["distillation"]["teacher"] == str(teacher) and model.default_n_steps == 2
    assert {p.name for p in student.iterdir()} >= {"checkpoint.pt", "model.pt", "config.toml", "metrics.jsonl"}

    rollout = tmp_path / "rollout"
    assert main(["sample", str(student), "--lag", "5", "--n-jumps", "4", "--n-walkers", "6", "--from", str(prinz_data),
                 "--out", str(rollout), "--quiet", "--json"]) == 0
    capsys.readouterr()
    manifest = json.loads((rollout / "manifest.json").read_text())
    assert manifest["rollout"]["sampler"] == "consistency" and manifest["rollout"]["n_steps"] == 2
    frames = TrajectoryStore(rollout).trajectories()
    assert len(frames) == 6 and all(f.shape == (5, 1) for f in frames)
    assert all(float(f[1:].std()) > 0 for f in frames)
    # the teacher's own default stays what it was
    assert main(["sample", str(teacher), "--lag", "5", "--n-jumps", "1", "--n-walkers", "2", "--out",
                 str(tmp_path / "t"), "--quiet"]) == 0
    assert json.loads((tmp_path / "t" / "manifest.json").read_text())["rollout"]["sampler"] == "heun-churn"


def test_kill_9_during_distillation_then_resume_matches_uninterrupted(teacher, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    args = [str(teacher), "--max-steps", "80", "--quiet"]
    assert run_cli("distill", *args, "--out", str(straight)).returncode == 0
    step_at_kill = kill_9_after_checkpoint(["distill", *args, "--out", str(killed)], killed, 20)
    assert 20 <= step_at_kill < 80, "the run finished before it could be killed; make it longer"
    assert run_cli("distill", *args, "--out", str(killed), "--resume").returncode == 0
    for part in ("denoiser", "ema"):
        a, b = load_file(straight / "checkpoint.pt")[part], load_file(killed / "checkpoint.pt")[part]
        a, b = (a["module"], b["module"]) if part == "ema" else (a, b)
        assert all(torch.equal(a[k], b[k]) for k in a), part


def test_distill_errors_are_one_line(teacher, prinz_data, tmp_path, capsys):
    assert_one_line_error(run_cli("distill", str(tmp_path / "nope"), "--out", str(tmp_path / "o")), "nope")
    code = main(["distill", str(teacher), "--out", str(tmp_path / "o"), "--steps", "5"])
    assert_one_line_exit(capsys, code, "1 to 4")
    code = main(["distill", str(teacher), "--out", str(tmp_path / "o"), "--resume"])
    assert_one_line_exit(capsys, code, "nothing to resume")
    # a model that does not record its training store
    bare = TransitionModel.load(teacher)
    bare.info["data"].pop("source")
    bare.save(tmp_path / "bare.pt")
    code = main(["distill", str(tmp_path / "bare.pt"), "--out", str(tmp_path / "o")])
    assert_one_line_exit(capsys, code, "--data")
    # data of another frame interval
    other = tmp_path / "other"
    assert main(["simulate", "--system", "prinz", "--out", str(other), "--n-traj", "2", "--n-frames", "30",
                 "--frame-interval", "0.01", "--workers", "0", "--quiet"]) == 0
    code = main(["distill", str(teacher), "--out", str(tmp_path / "o"), "--data", str(other)])
    assert_one_line_exit(capsys, code, "frame interval")
    # a distilled model is not distilled again, and has no density for Metropolis-Hastings
    student = tmp_path / "student"
    assert main(["distill", str(teacher), "--out", str(student), "--max-steps", "2", "--quiet"]) == 0
    capsys.readouterr()
    code = main(["distill", str(student), "--out", str(tmp_path / "o2")])
    assert_one_line_exit(capsys, code, "itself distilled")
    code = main(["sample", str(student), "--lag", "2", "--n-jumps", "1", "--n-walkers", "2", "--metropolis",
                 "--out", str(tmp_path / "mh")])
    assert_one_line_exit(capsys, code, "distilled")


@pytest.mark.parametrize("kind", ["exact", "learned"])
def test_bopito_models_distil_and_their_students_sample(bopito_runs, kind, tmp_path, capsys):
    """BoPITO teachers (exact and learned prior) distil like ITO ones; the student keeps λ̂ and samples."""
    student = tmp_path / "student"
    assert main(["distill", str(bopito_runs[kind]), "--out", str(student), "--max-steps", "3", "--quiet"]) == 0
    model = TransitionModel.load(student)
    assert model.is_bopito and model.lambda_hat == TransitionModel.load(bopito_runs[kind]).lambda_hat
    assert main(["sample", str(student), "--lag", "3", "--n-jumps", "2", "--n-walkers", "4", "--from",
                 str(bopito_runs["data"]), "--out", str(tmp_path / "rollout"), "--quiet"]) == 0


def test_a_molecular_model_distils_and_samples(ala2_runs, tmp_path, capsys):
    """The equivariant ITO model of alanine dipeptide distils (smoke: a few steps) and its student samples
    whole structures with its few-step sampler."""
    student = tmp_path / "student"
    assert main(["distill", str(ala2_runs["run"]), "--out", str(student), "--max-steps", "2", "--steps", "1",
                 "--quiet"]) == 0
    rollout = tmp_path / "rollout"
    assert main(["sample", str(student), "--lag", "2", "--n-jumps", "2", "--n-walkers", "2", "--from",
                 str(ala2_runs["data"]), "--out", str(rollout), "--quiet"]) == 0
    frames = TrajectoryStore(rollout).trajectories()
    assert frames[0].shape == (3, 66) and json.loads((rollout / "manifest.json").read_text())["rollout"]["n_steps"] == 1
