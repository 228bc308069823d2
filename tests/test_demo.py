"""The demo pipeline's own decisions, with every stage replaced by a recording stand-in (the real pipeline
end to end, minutes: tests/cli/test_demo.py, ``make test-slow``): the quick sizes, training resumed from a
checkpoint or skipped once finished, the rollout from exact equilibrium samples, the JSON results and the
report's MD section."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

import itomd.analysis
import itomd.analysis.report
import itomd.demo
import itomd.models
import itomd.rollout
import itomd.simulate.campaign
import itomd.training
from itomd.demo import run_demo
from itomd.systems import SystemSpec


class _Store:
    def __init__(self, n: int, n_frames: int):
        self._trajectories = [np.zeros((n_frames, 2)) for _ in range(n)]

    def trajectories(self):
        return self._trajectories


class _Result:
    def __init__(self, trajectories, lag_time: float):
        self.n_trajectories, self.n_frames = len(trajectories), sum(len(t) for t in trajectories)
        self.implied_timescales = SimpleNamespace(lag_times=np.array([lag_time, 2 * lag_time]),
                                                  timescales=np.array([[4.81234, 0.1], [4.9, 0.1]]),
                                                  resolved=np.array([[True, False], [False, False]]),
                                                  lower=np.array([[4.5, 0.09], [np.nan, 0.09]]),
                                                  upper=np.array([[5.25, 0.11], [np.nan, 0.11]]))
        self.js_divergence = SimpleNamespace(value=0.0123456)

    def to_dict(self):
        return {"implied_timescales": {"timescales": self.implied_timescales.timescales.tolist(),
                                       "lag_times": self.implied_timescales.lag_times.tolist(),
                                       "resolved": self.implied_timescales.resolved.tolist(),
                                       "lower": [[4.5, 0.09], [None, 0.09]], "upper": [[5.25, 0.11], [None, 0.11]],
                                       "confidence": 0.95},
                "js_divergence": self.js_divergence.value}


@pytest.fixture
def stages(monkeypatch):
    """Every stage of the demo replaced; returns the record of the calls."""
    calls = {"fit": [], "load": [], "rollout": [], "analyze": [], "compare": [], "report": []}

    def run_campaign(spec, path, **kwargs):
        calls["campaign"] = (spec, path, kwargs)
        return _Store(kwargs["n_trajectories"], kwargs["n_frames"])

    reference = SimpleNamespace(to_dict=lambda: {"implied_timescales": [5.0]}, implied_timescales=lambda n: [5.0],
                                sample=lambda n, rng: rng.normal(size=(n, 2)))

    class Estimator:
        def __init__(self, config):
            self.config = config

        def fit(self, trajectories, tau, **kwargs):
            calls["fit"].append((self.config, len(trajectories), tau, kwargs))
            return self

        def fetch_model(self):
            return SimpleNamespace(info={"steps": self.config.max_steps})

    def load(path):
        calls["load"].append(path)
        return SimpleNamespace(info={"steps": "loaded"})

    def run_rollout(model, path, **kwargs):
        calls["rollout"].append((model, path, kwargs))
        return _Store(len(kwargs["x0"]), kwargs["n_jumps"] + 1)

    def analyze(trajectories, tau, kT, **kwargs):
        calls["analyze"].append((len(trajectories), tau, kT, kwargs))
        return _Result(trajectories, tau)

    def write_report(result, path, title, extra_sections):
        calls["report"].append((path, title, extra_sections))
        path.write_text("report")
        return path

    monkeypatch.setattr(itomd.simulate.campaign, "run_campaign", run_campaign)
    monkeypatch.setattr(itomd.demo, "exact_reference", lambda system: reference)
    monkeypatch.setattr(itomd.training, "ITOEstimator", Estimator)
    monkeypatch.setattr(itomd.models.TransitionModel, "load", staticmethod(load))
    monkeypatch.setattr(itomd.rollout, "run_rollout", run_rollout)
    monkeypatch.setattr(itomd.analysis, "analyze", analyze)
    monkeypatch.setattr(itomd.analysis, "compare", lambda result, md, tau, **kw: calls["compare"].append((tau, kw)))
    monkeypatch.setattr(itomd.analysis.report, "write_report", write_report)
    return calls


def test_the_quick_demo_runs_every_stage_once_and_records_the_results(stages, tmp_path, capsys):
    out = tmp_path / "demo"
    assert run_demo(out, quick=True, n_workers=0) == out / "report.html"
    spec, path, campaign = stages["campaign"]
    assert spec == SystemSpec("muller-brown") and path == out / "trajectories"
    assert [campaign[k] for k in ("n_trajectories", "n_frames", "seed", "n_workers")] == [200, 101, 2026, 0]
    ((config, n_md, tau, fit),) = stages["fit"]
    assert (config.max_lag, config.max_steps, config.seed, config.minutes) == (20, 150, 2026, None)
    assert config.lag_distribution == "uniform"  # the rollout jumps half the largest lag (demo.py)
    assert n_md == 200 and fit == {"run_dir": out / "run", "resume": False, "system": spec} and stages["load"] == []
    ((model, path, rollout),) = stages["rollout"]
    assert path == out / "rollout" and model.info == {"steps": 150} and rollout["model_source"] == str(out / "run")
    assert (rollout["lag"], rollout["n_jumps"], rollout["seed"], rollout["x0"].shape) == (10, 20, 2026, (200, 2))
    md, rollouts = stages["analyze"]
    assert md[:2] == (200, tau) and rollouts[:2] == (200, 10 * tau) and rollouts[3]["lags"] == [1, 2]
    assert stages["compare"] == [(tau, {"label": "MD", "seed": 2026})]

    assert json.loads((out / "run" / "finished").read_text()) == 150
    assert json.loads((out / "reference.json").read_text())["implied_timescales"] == [5.0]
    summary = json.loads((out / "analysis.json").read_text())
    assert set(summary["timings_seconds"]) == {"simulate", "train", "rollout", "analyze"}
    assert summary["model"] == {"steps": 150} and summary["js_divergence"] == pytest.approx(0.0123456)
    assert "timings_seconds" not in json.loads((out / "analysis_md.json").read_text())
    ((_, title, extra),) = stages["report"]
    ((heading, section),) = extra
    assert "Müller–Brown" in title and heading == "MD data (the training set) analysed alone"
    assert "<p>200 MD trajectories, 20200 frames; stationary JS divergence vs exact 0.01235 nats.</p>" in section
    assert section.count("<tr><td>") == 2 and f"<td>{tau:.4g}</td><td>4.812</td><td>yes</td>" in section
    assert f"<td>{2 * tau:.4g}</td><td>4.9</td><td>no</td>" in section  # unresolved estimates are marked
    printed = capsys.readouterr().out
    assert "slowest implied timescale: exact 5.000" in printed
    assert f"4.812 (lag {10 * tau:g})" not in printed  # the interval comes with the estimate
    assert f"4.812 [4.50, 5.25] (lag {10 * tau:g})" in printed and f"(4.900) (lag {20 * tau:g})" in printed  # at 10 τ
    assert "brackets: 95% Bayesian interval" in printed


def test_a_finished_run_is_reused_and_an_unfinished_one_resumed(stages, tmp_path):
    out = tmp_path / "demo"
    run_demo(out, quick=True, n_workers=0)
    run_demo(out, quick=True, n_workers=0)  # training had finished: the model is loaded, not trained again
    assert len(stages["fit"]) == 1 and stages["load"] == [out / "run"]
    assert json.loads((out / "analysis.json").read_text())["model"] == {"steps": "loaded"}
    (out / "run" / "finished").unlink()
    (out / "run" / "checkpoint.pt").write_bytes(b"a checkpoint")  # killed during training
    run_demo(out, quick=True, n_workers=0)
    assert len(stages["fit"]) == 2 and stages["fit"][1][3]["resume"] is True and len(stages["load"]) == 1
    assert (out / "run" / "finished").exists()
