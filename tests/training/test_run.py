"""A training run directory: checkpoint round trip, resume refused for another configuration or other data,
the metrics log after a resume or a crash."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from itomd.data.pairs import PairSampler, UniformLag
from itomd.errors import DataFileError, InvalidInputError
from itomd.models import DenoiserSpec, TransitionModel
from itomd.representation import CoordinateRepresentation
from itomd.training import ITOEstimator, RunDirectory, TrainingConfig
from itomd.training.loop import BatchSource, Distributed, TrainingState, cpu_state, train_step
from itomd.training.run import MetricsLog


def test_resume_refuses_changed_configuration_and_data(tmp_path, ou_data, tiny_config):
    ITOEstimator(tiny_config()).fit(ou_data, 0.1, run_dir=tmp_path / "r", progress=False)
    with pytest.raises(InvalidInputError, match="different configuration"):
        ITOEstimator(tiny_config(hidden=16)).fit(ou_data, 0.1, run_dir=tmp_path / "r", resume=True, progress=False)
    with pytest.raises(InvalidInputError, match="different data"):
        ITOEstimator(tiny_config()).fit(ou_data[:10], 0.1, run_dir=tmp_path / "r", resume=True, progress=False)
    with pytest.raises(InvalidInputError, match="already holds a training run"):
        ITOEstimator(tiny_config()).fit(ou_data, 0.1, run_dir=tmp_path / "r", progress=False)
    (tmp_path / "r" / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(DataFileError, match="is not an itomd (checkpoint|model) or is truncated"):
        ITOEstimator(tiny_config()).fit(ou_data, 0.1, run_dir=tmp_path / "r", resume=True, progress=False)


# -- the run directory on its own -------------------------------------------------------------------
def _trained_state(ou_data, config):
    """A 1-D ITO denoiser after three optimiser steps on OU pairs, with the pieces a run directory saves."""
    lags = np.arange(1, config.max_lag + 1)
    spec = DenoiserSpec(dim=1, conditional=True, network=config.network, sigma_data=1.0, shift=(0.0,),
                        condition_shift=(0.0,), condition_scale=(1.0,), max_log_lag=math.log(config.max_lag),
                        p_mean=-1.2 + math.log(2.0), p_std=1.2, representation=CoordinateRepresentation(1),
                        lag_coefficients=tuple((0.9 ** int(n),) for n in lags),
                        lag_scales=tuple(float(s) for s in np.sqrt(1 - 0.81**lags)))
    state = TrainingState.fresh(spec.build(), config, torch.device("cpu"))
    pairs = PairSampler(ou_data, UniformLag(config.max_lag))
    batches = BatchSource(pairs.frames.to(torch.float32), pairs, spec.representation)
    for _ in range(3):
        train_step(state, batches, config, torch.device("cpu"), Distributed())
    model = TransitionModel(spec, cpu_state(state.ema.module.state_dict()), frame_interval=0.1,
                            max_lag=config.max_lag, data_low=[-4.0], data_high=[4.0], info={"steps": state.step})
    summary = {"n_trajectories": len(ou_data), "n_frames": sum(map(len, ou_data)), "mean": [0.0125]}
    return spec, state, model, summary


def test_checkpoint_round_trip_restores_the_training_state_exactly(tmp_path, ou_data, tiny_config):
    config = tiny_config()
    spec, state, model, summary = _trained_state(ou_data, config)
    run = RunDirectory(tmp_path / "run")
    assert not run.has_checkpoint()
    run.start(config, step=0)
    run.save(config, spec, summary, state, model)
    assert run.has_checkpoint() and TrainingConfig.from_toml(run.path / "config.toml") == config
    assert sorted(p.name for p in run.path.iterdir()) == ["checkpoint.pt", "config.toml", "metrics.jsonl", "model.pt"]

    checkpoint = run.load_checkpoint(tiny_config(max_steps=99, log_every=5), summary)  # budgets may change
    restored = TrainingState.fresh(spec.build(), config, torch.device("cpu"))
    restored.load_state_dict(checkpoint)
    assert restored.step == 3 and restored.ema.updates == 3
    assert torch.equal(restored.generator.get_state(), state.generator.get_state())
    for mine, theirs in ((restored.denoiser, state.denoiser), (restored.ema.module, state.ema.module)):
        assert all(torch.equal(a, b) for a, b in zip(mine.state_dict().values(), theirs.state_dict().values()))
    assert restored.optimizer.state_dict()["state"][0]["step"] == 3
    for a, b in zip(restored.optimizer.state_dict()["state"].values(), state.optimizer.state_dict()["state"].values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    loaded = TransitionModel.load(run.path)
    assert all(torch.equal(v, model.denoiser.state_dict()[k]) for k, v in loaded.denoiser.state_dict().items())

    with pytest.raises(InvalidInputError, match="different configuration: hidden 32 → 16"):
        run.load_checkpoint(tiny_config(hidden=16), summary)
    with pytest.raises(InvalidInputError, match="different data"):
        run.load_checkpoint(config, {**summary, "mean": [0.0126]})

    # a checkpoint written before a configuration key existed resumes (its model description keeps the old
    # behaviour); the keys it has are still compared
    written = torch.load(run.checkpoint_path, weights_only=False)
    del written["config"]["dynamic_part"]
    torch.save(written, run.checkpoint_path)
    assert run.load_checkpoint(config, summary)["step"] == 3
    with pytest.raises(InvalidInputError, match="different configuration: hidden 32 → 16"):
        run.load_checkpoint(tiny_config(hidden=16), summary)


def test_a_model_file_or_an_incomplete_checkpoint_is_not_resumed(tmp_path, ou_data, tiny_config):
    config = tiny_config()
    spec, state, model, summary = _trained_state(ou_data, config)
    run = RunDirectory(tmp_path)
    model.save(run.checkpoint_path)
    with pytest.raises(DataFileError, match="not an itomd training checkpoint"):
        run.load_checkpoint(config, summary)
    torch.save({"format": "itomd-checkpoint", "format_version": 1, "config": config.to_dict(), "step": 3},
               run.checkpoint_path)
    with pytest.raises(DataFileError, match="lacks data, denoiser, ema, generator, optimizer, spec"):
        run.load_checkpoint(config, summary)
    torch.save({"format": "itomd-checkpoint", "format_version": 2}, run.checkpoint_path)
    with pytest.raises(DataFileError, match="format version 2"):
        run.load_checkpoint(config, summary)


# -- metrics ----------------------------------------------------------------------------------------
def test_metrics_log_drops_rows_after_the_resumed_step_and_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10, "loss": 1.0}\n{"step": 20, "loss": 0.9}\n[1, 2]\n{"loss": 0.5}\n'
                    '{"step": 30, "loss": 0.8}\n{"step": 40, "lo')
    log = MetricsLog(path, keep_through_step=20)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [10, 20]
    log.append({"step": 30, "loss": 0.7})
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [{"step": 10, "loss": 1.0}, {"step": 20, "loss": 0.9}, {"step": 30, "loss": 0.7}]
    MetricsLog(path, keep_through_step=0)
    assert path.read_text() == ""
    MetricsLog(tmp_path / "new.jsonl", keep_through_step=0)
    assert (tmp_path / "new.jsonl").read_text() == "" and sorted(p.name for p in tmp_path.iterdir()) == [
        "metrics.jsonl", "new.jsonl"]
