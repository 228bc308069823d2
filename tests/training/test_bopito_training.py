"""BoPITO training: a tiny model learns OU transitions, priors from runs, λ̂ floored for fast data (λ̂ on a
known spectrum: tests/analysis/test_msm.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from itomd.errors import DataFileError, InvalidInputError
from itomd.training import ITOEstimator
from itomd.models import ExactPrior, ForceFieldPrior, LearnedPrior, TransitionModel, prior_named
from itomd.systems.registry import SystemSpec

HARMONIC = SystemSpec("harmonic")  # U = x²/2, kT = 1: the OU data's stationary N(0, 1)


def _exact_prior() -> ExactPrior:
    return ExactPrior.of_system(HARMONIC.build())


def _learned_prior(path) -> LearnedPrior:
    return LearnedPrior.of_model(TransitionModel.load(path))


@pytest.mark.parametrize("dynamic_part", ["linear", "transition"])
def test_tiny_bopito_model_with_the_exact_prior_learns_ou_transitions(ou_trajectories, ou_decay, tiny_config,
                                                                      assert_learns_ou_transitions, dynamic_part):
    data = ou_trajectories(200, 300, seed=1)
    config = tiny_config(prior="exact", hidden=64, n_blocks=2, n_frequencies=8, batch_size=256, max_steps=1500,
                         warmup_steps=100, learning_rate=3e-3, ema_decay=0.995, dynamic_part=dynamic_part)
    model = ITOEstimator(config).fit(data, frame_interval=0.1, progress=False, system=HARMONIC,
                                     prior=_exact_prior()).fetch_model()
    assert model.is_bopito and abs(model.lambda_hat - ou_decay) < 0.02
    assert model.spec.dynamic_part == dynamic_part
    generator = torch.Generator().manual_seed(0)
    assert_learns_ou_transitions(model, generator)
    far = model.sample(torch.full((4000, 1), 1.5), lag=1000, generator=generator).numpy()[:, 0]
    assert abs(far.mean()) < 0.06 and abs(far.std() - 1) < 0.06  # relaxed to μ = N(0, 1)


@pytest.mark.slow  # 1500 steps (~15 s); the suite covers the prior's physics in tests/diffusion/test_forcefield.py
def test_tiny_bopito_model_with_the_forcefield_prior_learns_ou_transitions(ou_trajectories, ou_decay, tiny_config,
                                                                           assert_learns_ou_transitions, tmp_path):
    data = ou_trajectories(200, 300, seed=1)
    config = tiny_config(prior="forcefield", hidden=64, n_blocks=2, n_frequencies=8, batch_size=256, max_steps=1500,
                         warmup_steps=100, learning_rate=3e-3, ema_decay=0.995)
    prior = prior_named("forcefield", HARMONIC, data)
    assert isinstance(prior, ForceFieldPrior) and prior.module.weights[0] == 1.0
    model = ITOEstimator(config).fit(data, frame_interval=0.1, progress=False, system=HARMONIC,
                                     prior=prior).fetch_model()
    model.save(tmp_path / "model.pt")
    model = TransitionModel.load(tmp_path / "model.pt")  # the forces come back with the model's system
    assert isinstance(model.spec.prior, ForceFieldPrior) and model.denoiser.equilibrium.score_function is not None
    generator = torch.Generator().manual_seed(0)
    assert_learns_ou_transitions(model, generator)
    far = model.sample(torch.full((4000, 1), 1.5), lag=1000, generator=generator).numpy()[:, 0]
    assert abs(far.mean()) < 0.06 and abs(far.std() - 1) < 0.06  # relaxed to μ = N(0, 1)


def test_forcefield_prior_resumes_exactly(tmp_path, ou_data, tiny_config):
    """A run with the force-field prior stopped after 20 of 40 steps and resumed ends where an uninterrupted
    run does (the blend in the checkpoint, the forces re-attached from the system)."""
    prior = prior_named("forcefield", HARMONIC, ou_data)
    config = dict(prior="forcefield", lambda_hat=0.95, checkpoint_every=20)
    ITOEstimator(tiny_config(**config, max_steps=40)).fit(ou_data, 0.1, run_dir=tmp_path / "whole", progress=False,
                                                          system=HARMONIC, prior=prior)
    calls = iter(range(10_000))  # stopped (as by Ctrl-C) after 20 steps, checkpointed there
    ITOEstimator(tiny_config(**config, max_steps=40)).fit(ou_data, 0.1, run_dir=tmp_path / "part", progress=False,
                                                          system=HARMONIC, prior=prior, stop=lambda: next(calls) >= 20)
    assert TransitionModel.load(tmp_path / "part").info["steps"] < 40
    ITOEstimator(tiny_config(**config, max_steps=40)).fit(ou_data, 0.1, run_dir=tmp_path / "part", resume=True,
                                                          progress=False, system=HARMONIC)
    whole, part = TransitionModel.load(tmp_path / "whole"), TransitionModel.load(tmp_path / "part")
    for name, value in whole.denoiser.state_dict().items():
        assert torch.equal(part.denoiser.state_dict()[name], value), name
    assert torch.equal(part.denoiser.equilibrium.weights, prior.module.weights)
    x = part.sample(torch.zeros(8, 1), lag=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, whole.sample(torch.zeros(8, 1), lag=3, generator=torch.Generator().manual_seed(0)))


def test_prior_from_an_equilibrium_run_and_resume(tmp_path, ou_data, tiny_config):
    ITOEstimator(tiny_config(equilibrium=True)).fit(ou_data, 0.1, run_dir=tmp_path / "eq", progress=False)
    config = tiny_config(prior=str(tmp_path / "eq"), lambda_hat=0.95, max_steps=20)
    ITOEstimator(config).fit(ou_data, 0.1, run_dir=tmp_path / "bopito", progress=False,
                             prior=_learned_prior(tmp_path / "eq"))
    resumed = ITOEstimator(tiny_config(prior=str(tmp_path / "eq"), lambda_hat=0.95, max_steps=40))
    resumed.fit(ou_data, 0.1, run_dir=tmp_path / "bopito", resume=True, progress=False)
    model = TransitionModel.load(tmp_path / "bopito")
    prior = TransitionModel.load(tmp_path / "eq")
    assert model.is_bopito and model.lambda_hat == 0.95 and isinstance(model.spec.prior, LearnedPrior)
    for name, value in prior.denoiser.state_dict().items():
        assert torch.equal(model.denoiser.equilibrium.state_dict()[name], value), name  # frozen
    x = model.sample(torch.zeros(50, 1), lag=3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (50, 1) and torch.isfinite(x).all()
    assert model.sample_equilibrium(20).shape == (20, 1)


def test_bopito_configuration_errors(tmp_path, ou_data, tiny_config):
    with pytest.raises(InvalidInputError, match="needs a prior"):
        tiny_config(lambda_hat=0.9)
    with pytest.raises(InvalidInputError, match="lambda_hat"):
        tiny_config(prior="exact", lambda_hat=1.5)
    with pytest.raises(InvalidInputError, match="takes no prior"):
        tiny_config(prior="exact", equilibrium=True)
    with pytest.raises(InvalidInputError, match="pass it as prior="):
        ITOEstimator(tiny_config(prior="exact")).fit(ou_data, 0.1, progress=False)
    with pytest.raises(InvalidInputError, match="no exact equilibrium prior"):
        ExactPrior.of_system(SystemSpec("double-well", dim=4).build())
    ITOEstimator(tiny_config()).fit(ou_data, 0.1, run_dir=tmp_path / "ito", progress=False)
    with pytest.raises(InvalidInputError, match="equilibrium model"):
        _learned_prior(tmp_path / "ito")
    with pytest.raises(DataFileError):
        _learned_prior(tmp_path / "missing")
    ITOEstimator(tiny_config(equilibrium=True)).fit(ou_data, 0.1, run_dir=tmp_path / "eq", progress=False)
    two_d = [np.hstack([t, t]) for t in ou_data]
    with pytest.raises(InvalidInputError, match="same states"):
        ITOEstimator(tiny_config()).fit(two_d, 0.1, progress=False, prior=_learned_prior(tmp_path / "eq"))
    with pytest.raises(InvalidInputError, match="only BoPITO"):
        TransitionModel.load(tmp_path / "ito").set_interpolation(0.5)


def test_estimated_lambda_hat_is_floored_when_the_data_decorrelate_within_a_few_frames(ou_trajectories, tiny_config):
    """Fast data (AR(1) with a = 0.3): λ̂^N_max would underflow; λ̂ is raised so λ̂^N_max = 0.01."""
    rng = np.random.default_rng(0)
    data = [np.zeros((2000, 1)) for _ in range(4)]
    for t in data:
        for k in range(1, 2000):
            t[k] = 0.3 * t[k - 1] + rng.standard_normal(1)
    with pytest.warns(UserWarning, match="hold no process slower"):
        model = ITOEstimator(tiny_config(prior="exact", max_steps=5)).fit(data, 0.1, progress=False, system=HARMONIC,
                                                                          prior=_exact_prior()).fetch_model()
    assert model.lambda_hat == pytest.approx(0.01 ** (1 / 10))


def test_bopito_model_range_covers_its_prior(ou_data, tiny_config):
    """Rollouts are checked against the training range; a BoPITO model also knows the prior's region."""
    model = ITOEstimator(tiny_config(prior="exact", max_steps=2)).fit(ou_data, 0.1, progress=False, system=HARMONIC,
                                                                      prior=_exact_prior()).fetch_model()
    assert model.data_low[0] == -6.0 and model.data_high[0] == 6.0  # the harmonic system's box
