"""Rollouts: chained jumps of a model whose denoiser is exact for OU data reproduce the OU process jump by
jump; blow-ups stop a rollout with a one-line error; run_rollout is deterministic and resumes
bit-identically; bad arguments are one-line errors."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from itomd.data.store import TrajectoryStore
from itomd.errors import InvalidInputError
from itomd.models import DenoiserSpec, TransitionModel
from itomd.representation import CoordinateRepresentation, NetworkSize
from itomd.rollout import RolloutBlowUpError, rollout, run_rollout

DECAY = 0.9  # E[x_{t+N} | x_t] = DECAY^N x_t, Var = 1 − DECAY^{2N}: unit-variance OU (AR(1)) per frame
MAX_LAG = 10


def exact_ou_model(decay: float = DECAY, data_range: tuple[float, float] = (-4.0, 4.0)) -> TransitionModel:
    """A transition model whose inner network outputs zero: its denoiser is then the exact posterior mean of
    N(decay^N x_t, 1 − decay^{2N}) — the OU transition density when ``decay`` is the data's."""
    lags = np.arange(1, MAX_LAG + 1)
    spec = DenoiserSpec(dim=1, conditional=True, network=NetworkSize(8, 1, 2), sigma_data=1.0, shift=(0.0,),
                        condition_shift=(0.0,), condition_scale=(1.0,), max_log_lag=math.log(MAX_LAG),
                        p_mean=-1.2 + math.log(2.0), p_std=1.2, representation=CoordinateRepresentation(1),
                        lag_coefficients=tuple((decay ** int(n),) for n in lags),
                        lag_scales=tuple(math.sqrt(1 - decay ** (2 * int(n))) for n in lags))
    denoiser = spec.build()
    with torch.no_grad():
        for parameter in denoiser.parameters():
            parameter.zero_()
    return TransitionModel(spec, denoiser.state_dict(), frame_interval=0.1, max_lag=MAX_LAG, data_low=[data_range[0]],
                           data_high=[data_range[1]], info={"steps": 0})


@pytest.fixture(scope="module")
def model() -> TransitionModel:
    return exact_ou_model()


def _jump_moments(model, x0: float, lag: int, n_jumps: int, seed: int = 0, n_walkers: int = 4000):
    frames = rollout(model, np.full((n_walkers, 1), x0), lag=lag, n_jumps=n_jumps,
                     generator=torch.Generator().manual_seed(seed))[:, :, 0]
    return frames.mean(0), frames.std(0)


def test_an_exact_denoiser_rolls_out_the_ou_process_jump_by_jump(model):
    """From x_0 = 1.5, after k jumps of lag N: mean 1.5 a^{Nk}, sd sqrt(1 − a^{2Nk}). 4000 walkers: the
    mean's standard error is ≤ 0.016 (measured deviations ≤ 0.026 over three seeds; tolerance 0.05); the
    sd's ≈ 1.1 %, on top of the default stochastic Heun sampler's own +2–3 % (one jump, 20 000 samples:
    +2.3 %; measured here +2.8…4.0 %; tolerance 7 %). A rollout that did not chain its jumps, or used
    another lag, would miss some of these means by more than 0.2."""
    for lag, n_jumps in ((1, 4), (5, 3)):
        mean, std = _jump_moments(model, 1.5, lag, n_jumps)
        k = np.arange(n_jumps + 1)
        np.testing.assert_allclose(mean, 1.5 * DECAY ** (lag * k), atol=0.05)
        assert std[0] == 0.0
        np.testing.assert_allclose(std[1:], np.sqrt(1 - DECAY ** (2 * lag * k[1:])), rtol=0.07)


def test_the_tolerances_tell_a_wrong_decay_apart(model):
    """Negative control: the model of a process with a = 0.85 instead of 0.9 fails the same checks (its
    means are off by 0.20, its spreads by ≥ 10 %)."""
    mean, std = _jump_moments(exact_ou_model(0.85), 1.5, 1, 4)
    k = np.arange(5)
    assert np.abs(mean - 1.5 * DECAY**k).max() > 0.1
    assert np.abs(std[1:] / np.sqrt(1 - DECAY ** (2 * k[1:])) - 1).max() > 0.1


def test_rollout_shapes_and_blow_up_detection(model):
    frames = rollout(model, np.zeros((5, 1)), lag=2, n_jumps=4, generator=torch.Generator().manual_seed(0),
                     n_steps=4, tolerance=100.0)
    assert frames.shape == (5, 5, 1) and np.all(frames[:, 0] == 0)


    broken = TransitionModel.from_payload(model.to_payload())
    broken.sample = lambda x, **kw: torch.full_like(torch.as_tensor(x, dtype=torch.float32), float("nan"))
    with pytest.raises(RolloutBlowUpError, match="blew up at jump 1: 3 of 3"):
        rollout(broken, np.zeros((3, 1)), lag=1, n_jumps=2)
    with pytest.raises(InvalidInputError, match="n_jumps"):
        rollout(model, np.zeros((3, 1)), lag=1, n_jumps=0)


def test_walkers_far_outside_the_training_range_are_a_blow_up_unless_the_tolerance_allows_them(model):
    """Range [−4, 4], tolerance 0.5: jumps may land in [−8, 8]. From 100 a lag-1 jump lands near 90."""
    starts = np.array([[0.0], [100.0], [0.5]])
    with pytest.raises(RolloutBlowUpError, match=r"blew up at jump 1: 1 of 3 walkers") as error:
        rollout(model, starts, lag=1, n_jumps=3, generator=torch.Generator().manual_seed(0))
    assert "\n" not in str(error.value)
    # negative control: a huge tolerance lets the walker relax from 100 like the OU process
    frames = rollout(model, starts, lag=1, n_jumps=3, tolerance=1000.0, generator=torch.Generator().manual_seed(0))
    assert np.all(np.isfinite(frames)) and np.abs(frames[1, :, 0] - 100.0 * DECAY ** np.arange(4)).max() < 2.0


def test_redraws_repeat_only_the_blown_up_jumps_and_stop_when_every_draw_fails(model):
    """A model whose walker 1 blows up at its first draw of every jump: with redraws the rollout
    finishes, that walker redrawn once per jump and the others never; without, it stops at jump 1;
    a model that always blows up still stops, after K + 1 draws."""
    flaky = TransitionModel.from_payload(model.to_payload())
    draws = []

    def sample(x, **kw):
        out = model.sample(x, **kw)
        draws.append(len(x))
        if len(x) == 3:  # the batch's own draw (a redraw has only the blown-up rows)
            out[1] = float("nan")
        return out

    flaky.sample = sample
    frames, redrawn = rollout(flaky, np.zeros((3, 1)), lag=1, n_jumps=4, max_redraws=2, return_redraws=True,
                              generator=torch.Generator().manual_seed(0))
    assert np.all(np.isfinite(frames)) and list(redrawn) == [0, 4, 0] and draws == [3, 1] * 4
    with pytest.raises(RolloutBlowUpError, match=r"blew up at jump 1: 1 of 3 walkers .*--redraws"):
        rollout(flaky, np.zeros((3, 1)), lag=1, n_jumps=4)
    broken = TransitionModel.from_payload(model.to_payload())
    broken.sample = lambda x, **kw: torch.full_like(torch.as_tensor(x, dtype=torch.float32), float("nan"))
    with pytest.raises(RolloutBlowUpError, match=r"3 of 3 walkers .*\(each drawn 4 times\)"):
        rollout(broken, np.zeros((3, 1)), lag=1, n_jumps=2, max_redraws=3)
    with pytest.raises(InvalidInputError, match="max_redraws"):
        rollout(model, np.zeros((3, 1)), lag=1, n_jumps=2, max_redraws=-1)


def test_redrawn_jumps_sample_the_transition_density_conditioned_on_the_range():
    """OU jump of lag 10 from 0 (N(0, 1 − 0.9²⁰), sd 0.937) with a training range [−0.5, 0.5] and
    tolerance 0: a draw lands in range with p = 0.405, so the frames must follow the normal truncated
    to [−0.5, 0.5] (sd 0.2832; untruncated 0.937), and a fraction 1 − p = 0.595 of the jumps is redrawn
    (the default sampler's sd, 2–4 % wide (see above), makes it 0.597–0.603). 4,000 walkers: standard
    errors 0.003 on the sd, 0.008 on the fraction (measured over four seeds: sd 0.2831–0.2870)."""
    narrow = exact_ou_model(data_range=(-0.5, 0.5))
    frames, redrawn = rollout(narrow, np.zeros((4000, 1)), lag=10, n_jumps=1, tolerance=0.0, max_redraws=60,
                              return_redraws=True, generator=torch.Generator().manual_seed(3))
    jumped = frames[:, 1, 0]
    sd = math.sqrt(1 - DECAY**20)
    p_in = math.erf(0.5 / (sd * math.sqrt(2)))
    density_at_edge = math.exp(-0.5 * (0.5 / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
    truncated_sd = sd * math.sqrt(1 - 2 * 0.5 * density_at_edge / p_in)
    assert np.abs(jumped).max() <= 0.5 and abs(jumped.mean()) < 0.015
    assert jumped.std() == pytest.approx(truncated_sd, abs=0.006)
    assert redrawn.mean() == pytest.approx(1 - p_in, abs=0.03)


def _store(path):
    return [t.copy() for t in TrajectoryStore(path).trajectories()]


def test_run_rollout_is_deterministic_and_resumes_bit_identically(model, tmp_path):
    x0 = np.linspace(-2.0, 2.0, 10)[:, None]
    args = dict(lag=3, n_jumps=4, x0=x0, seed=7, chunk_size=4, n_steps=6, progress=False)
    first = run_rollout(model, tmp_path / "a", **args)
    assert len(first) == 10 and first.metadata["frame_interval"] == pytest.approx(0.3)
    a = _store(tmp_path / "a")
    assert all(t.shape == (5, 1) for t in a) and np.array_equal(np.array([t[0] for t in a]), x0.astype(np.float32))
    assert all(np.array_equal(x, y) for x, y in zip(a, _store(run_rollout(model, tmp_path / "b", **args).path)))
    other = _store(run_rollout(model, tmp_path / "c", **{**args, "seed": 8}).path)
    assert not any(np.array_equal(x[1:], y[1:]) for x, y in zip(a, other))  # another seed, other jumps

    store = TrajectoryStore(tmp_path / "a")
    kept = {i: os.stat(store.file_path(i)).st_mtime_ns for i in (0, 1, 2, 3, 8, 9)}
    store.file_path(5).unlink()  # walkers 4..7 are one chunk: it is recomputed alone
    run_rollout(model, tmp_path / "a", **args)
    assert all(np.array_equal(x, y) for x, y in zip(a, _store(tmp_path / "a")))
    assert {i: os.stat(store.file_path(i)).st_mtime_ns for i in kept} == kept
    with pytest.raises(InvalidInputError, match="different parameters"):
        run_rollout(model, tmp_path / "a", **{**args, "n_jumps": 5})


@pytest.mark.parametrize("changes, fragment", [
    (dict(lag=0), "lag must be a positive integer, got 0"), (dict(lag=2.5), "lag must be a positive integer"),
    (dict(n_jumps=0), "n_jumps must be a positive integer"), (dict(n_jumps=True), "n_jumps must be a positive"),
    (dict(chunk_size=0), "chunk_size must be a positive integer"), (dict(x0=np.zeros((3, 2))), r"shape \[W, 1\]"),
])
def test_bad_arguments_are_one_line_errors(model, tmp_path, changes, fragment):
    args = {**dict(lag=1, n_jumps=2, x0=np.zeros((3, 1)), chunk_size=2, progress=False), **changes}
    with pytest.raises(InvalidInputError, match=fragment) as error:
        run_rollout(model, tmp_path / "r", **args)
    assert "\n" not in str(error.value)
    if "chunk_size" not in changes:
        with pytest.raises(InvalidInputError, match=fragment):
            rollout(model, args["x0"], lag=args["lag"], n_jumps=args["n_jumps"])


def test_rollouts_need_a_transition_model(model):
    payload = model.to_payload()
    spec = DenoiserSpec.from_dict(payload["spec"])
    equilibrium = DenoiserSpec(**{**spec.__dict__, "conditional": False, "lag_coefficients": None, "lag_scales": None})
    eq_model = TransitionModel(equilibrium, equilibrium.build().state_dict(), 0.1, MAX_LAG, [-4.0], [4.0])
    with pytest.raises(InvalidInputError, match="need a transition \\(conditional\\) model"):
        rollout(eq_model, np.zeros((2, 1)), lag=1, n_jumps=1)
    with pytest.raises(InvalidInputError, match="NaN or inf"):
        rollout(model, np.array([[np.nan]]), lag=1, n_jumps=1)
