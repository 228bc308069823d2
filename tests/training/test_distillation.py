"""Consistency distillation (itomd.training.distillation): the few-step student learns known transition
densities (exact OU at two lags, the bimodal two-state flips), is deterministic, resumes exactly, and
refuses what it cannot distil."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from itomd.diffusion.schedules import consistency_sigmas, karras_sigmas
from itomd.errors import InvalidInputError
from itomd.models import TransitionModel
from itomd.training import ITOEstimator
from itomd.training.distillation import ConsistencyDistiller, distillation_config, model_digest


def _exact_ou_teacher(ou_trajectories, tiny_config) -> tuple[TransitionModel, list[np.ndarray]]:
    """A teacher whose denoiser is the exact OU posterior mean: the fitted linear preconditioning with the
    network's output zeroed (tests/training/test_estimator.py shows it is exact for OU data)."""
    data = ou_trajectories(200, 300, seed=1)
    config = tiny_config(hidden=64, n_blocks=2, n_frequencies=8, batch_size=256, max_steps=1, warmup_steps=1,
                         learning_rate=3e-3, ema_decay=0.99)
    teacher = ITOEstimator(config).fit(data, frame_interval=0.1, progress=False).fetch_model()
    torch.nn.init.zeros_(teacher.denoiser.inner.output.weight)
    torch.nn.init.zeros_(teacher.denoiser.inner.output.bias)
    return teacher, data


def _ou_errors(model: TransitionModel, ou_decay: float, n_steps: int, sd_tolerance: float = 0.10) -> list[tuple]:
    """(lag, start, what) where ``n_steps``-evaluation samples miss the exact OU transition: mean a^N x_t
    within 0.12, sd √(1 − a^{2N}) within ``sd_tolerance`` (4000 samples; noise 0.016 and 1.1 %; a wrong
    lag is off by ≥ 0.36 in the mean at x_t = ±1.5)."""
    errors, generator = [], torch.Generator().manual_seed(0)
    for lag in (1, 10):
        for x_t in (-1.5, 0.0, 1.5):
            x = model.sample(torch.full((4000, 1), x_t), lag=lag, n_steps=n_steps, generator=generator).numpy()[:, 0]
            mean, sd = ou_decay**lag * x_t, np.sqrt(1 - ou_decay ** (2 * lag))
            if abs(x.mean() - mean) > 0.12:
                errors.append((lag, x_t, "mean", x.mean(), mean))
            if abs(x.std() / sd - 1) > sd_tolerance:
                errors.append((lag, x_t, "sd", x.std(), sd))
    return errors


def test_the_distilled_student_samples_exact_ou_transitions_in_one_and_two_evaluations(ou_trajectories, tiny_config,
                                                                                       ou_decay):
    """The consistency function of a Gaussian transition, f(x; σ) = c + σ_d (x − c)/√(σ² + σ_d²), differs
    from the teacher's denoiser (c_skip = σ_d²/(σ² + σ_d²)): the student has to learn it. Measured after
    600 steps (three seeds): worst sd error 3.3 % with two evaluations and 6.2 % with one, worst mean
    error 0.076 (two evaluations) and 0.050 (one). Negative control: the undistilled teacher under the
    same one-step sampler returns its posterior mean at σ_max, a point (sd far below the exact one in
    every case)."""
    teacher, data = _exact_ou_teacher(ou_trajectories, tiny_config)
    config = distillation_config(teacher, max_steps=600, seed=3)
    student = ConsistencyDistiller(config, sampling_steps=1).distill(teacher, data, progress=False).fetch_model()
    assert student.default_sampler == "consistency" and student.default_n_steps == 1 and student.is_distilled
    assert _ou_errors(student, ou_decay, 2) == []
    assert _ou_errors(student, ou_decay, 1, sd_tolerance=0.12) == []
    undistilled = copy.deepcopy(teacher)
    undistilled.info.update(sampling={"sampler": "consistency", "n_steps": 1}, distillation={})  # let it through
    errors = _ou_errors(undistilled, ou_decay, 1)
    assert {(lag, x_t) for lag, x_t, what, *_ in errors if what == "sd"} == {(l, x) for l in (1, 10)
                                                                            for x in (-1.5, 0.0, 1.5)}


def test_distillation_is_deterministic_and_resumes_bit_for_bit(tmp_path, ou_trajectories, tiny_config):
    teacher, data = _exact_ou_teacher(ou_trajectories, tiny_config)
    config = distillation_config(teacher, max_steps=30, seed=5)
    config.checkpoint_every, config.log_every = 10, 10
    whole = ConsistencyDistiller(config).distill(teacher, data, run_dir=tmp_path / "a", progress=False).fetch_model()
    again = ConsistencyDistiller(config).distill(teacher, data, progress=False).fetch_model()
    for name, value in whole.denoiser.state_dict().items():
        assert torch.equal(value, again.denoiser.state_dict()[name]), name

    stopped = ConsistencyDistiller(config)
    calls = iter(range(1000))
    stopped.distill(teacher, data, run_dir=tmp_path / "b", progress=False, stop=lambda: next(calls) >= 17)
    assert stopped.stopped_by_request and stopped.step == 17
    resumed = ConsistencyDistiller(config).distill(teacher, data, run_dir=tmp_path / "b", resume=True,
                                                   progress=False).fetch_model()
    for name, value in whole.denoiser.state_dict().items():
        assert torch.equal(value, resumed.denoiser.state_dict()[name]), name
    loaded = TransitionModel.load(tmp_path / "b")
    assert loaded.default_sampler == "consistency" and loaded.info["distillation"]["teacher_sha256"] == \
        model_digest(teacher)
    x = loaded.sample(np.zeros((5, 1)), lag=3, generator=torch.Generator().manual_seed(1))
    y = loaded.sample(np.zeros((5, 1)), lag=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(x, y) and x.std() > 0  # seeded, and a sampler of a distribution (not a point)

    other = copy.deepcopy(teacher)
    torch.nn.init.ones_(other.denoiser.inner.output.bias)
    with pytest.raises(InvalidInputError, match="distils another teacher"):
        ConsistencyDistiller(config).distill(other, data, run_dir=tmp_path / "b", resume=True, progress=False)
    with pytest.raises(InvalidInputError, match="already holds a run"):
        ConsistencyDistiller(config).distill(teacher, data, run_dir=tmp_path / "b", progress=False)


def test_distillation_refuses_what_it_cannot_distil(ou_trajectories, ou_data, tiny_config):
    teacher, data = _exact_ou_teacher(ou_trajectories, tiny_config)
    config = distillation_config(teacher, max_steps=5)
    student = ConsistencyDistiller(config).distill(teacher, data, progress=False).fetch_model()
    with pytest.raises(InvalidInputError, match="itself distilled"):
        ConsistencyDistiller(config).distill(student, data, progress=False)
    equilibrium = ITOEstimator(tiny_config(equilibrium=True, max_steps=2)).fit(ou_data, 0.1, progress=False)
    with pytest.raises(InvalidInputError, match="equilibrium model"):
        ConsistencyDistiller(config).distill(equilibrium.fetch_model(), data, progress=False)
    with pytest.raises(InvalidInputError, match="1 to 4"):
        ConsistencyDistiller(config, sampling_steps=5)
    with pytest.raises(InvalidInputError, match="coordinates|dimension|shape"):
        ConsistencyDistiller(config).distill(teacher, [np.zeros((50, 2))], progress=False)
    with pytest.raises(InvalidInputError, match="distil"):
        ConsistencyDistiller(config).fit(data, 0.1)


def test_consistency_levels_are_levels_of_the_teachers_schedule():
    grid = karras_sigmas(25, 0.02, 10.0)[:-1]
    assert torch.equal(consistency_sigmas(1, 0.02, 10.0), torch.cat([grid[:1], grid.new_zeros(1)]))
    assert torch.equal(consistency_sigmas(2, 0.02, 10.0)[:-1], grid[[0, 6]])
    assert torch.equal(consistency_sigmas(3, 0.02, 10.0)[:-1], grid[[0, 4, 8]])
    assert torch.equal(consistency_sigmas(4, 0.02, 10.0)[:-1], grid[[0, 3, 6, 9]])
    with pytest.raises(InvalidInputError, match="1 to 12"):
        consistency_sigmas(13, 0.02, 10.0)


def test_a_distilled_model_and_its_teacher_each_refuse_the_others_sampler(ou_trajectories, tiny_config):
    """The student is a consistency function, not a denoiser (a denoiser's sampler would integrate it as a
    score), and the consistency sampler on a denoiser returns a posterior mean: both are one-line errors."""
    teacher, data = _exact_ou_teacher(ou_trajectories, tiny_config)
    student = ConsistencyDistiller(distillation_config(teacher, max_steps=2)).distill(teacher, data,
                                                                                       progress=False).fetch_model()
    with pytest.raises(InvalidInputError, match="consistency sampler only"):
        student.sample(np.zeros((2, 1)), lag=1, sampler="heun-churn")
    with pytest.raises(InvalidInputError, match="needs a distilled model"):
        teacher.sample(np.zeros((2, 1)), lag=1, sampler="consistency")


@pytest.mark.slow
def test_the_distilled_student_keeps_the_two_state_flip_fractions(tiny_config):
    """The bimodal two-state transition density (tests/training/test_estimator.py: mass q(N) at −s_t, 0.05 at
    N = 1 and 0.326 at N = 10, modes of width 0.15 at ±1): a teacher trained as there (2,000 steps),
    distilled for 1,500 steps, sampled with 4 evaluations per jump.

    Measured (one run, 4,000 samples per case): flipped 0.0575 / 0.041 at N = 1 and 0.3255 / 0.296 at
    N = 10 (binomial noise 0.0034 and 0.0074), stay means within 0.01 of ±1, widths 0.153–0.173
    (+2 … +15 %). Tolerances: 0.05, 0.03 and 25 %. Negative control: the undistilled teacher under the
    same sampler returns posterior means, not the two modes (measured: the widths at N = 10 fail)."""
    from tests.training.test_estimator import _two_state_errors, _two_state_jumps, _two_state_trajectories

    def errors(jumps):
        return _two_state_errors(jumps, flipped_within=0.05, mean_within=0.03, width_within=0.25)

    data = _two_state_trajectories()
    config = tiny_config(hidden=64, n_blocks=2, n_frequencies=8, batch_size=256, max_steps=2000, warmup_steps=100,
                         learning_rate=3e-3, ema_decay=0.995)
    teacher = ITOEstimator(config).fit(data, frame_interval=1.0, progress=False).fetch_model()
    student = ConsistencyDistiller(distillation_config(teacher, max_steps=1500, seed=1)).distill(
        teacher, data, progress=False).fetch_model()
    jumps = _two_state_jumps(student, torch.Generator().manual_seed(0))
    assert errors(jumps) == [], jumps
    undistilled = copy.deepcopy(teacher)
    undistilled.info.update(sampling={"sampler": "consistency", "n_steps": 4}, distillation={})  # let it through
    failed = {(case, what) for case, what in errors(_two_state_jumps(undistilled, torch.Generator().manual_seed(0)))}
    assert {case for case, what in failed if what == "width of the mode"} >= {(10, -1.0), (10, 1.0)}
