"""Tiny training configs and the OU-transition check shared by the training tests (the OU data
themselves are in tests/conftest.py)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch

from itomd.training import TrainingConfig


@pytest.fixture
def tiny_config() -> Callable[..., TrainingConfig]:
    """A factory of small, fast training configs; keyword arguments override."""

    def make(**changes) -> TrainingConfig:
        base = dict(max_lag=10, hidden=32, n_blocks=1, n_frequencies=4, batch_size=64, max_steps=40,
                    warmup_steps=5, checkpoint_every=10, log_every=10, device="cpu")
        return TrainingConfig(**{**base, **changes})

    return make


@pytest.fixture(scope="session")
def assert_learns_ou_transitions(ou_decay) -> Callable[..., None]:
    """Checks E[x_{t+N} | x_t] = a^N x_t and sd = sqrt(1 − a^{2N}) (exact OU) at N = 1 and 10 from three
    start states, 4000 samples each (mean within 0.12, sd within 15 %). The mean's tolerance is the
    spread of short trainings, not Monte Carlo error (0.016): over training seeds 0–5 of the ITO
    plumbing test, with either pair-drawing code, the worst mean error was 0.027–0.093 and the worst
    sd error 2–8 %. A model sampled at the other lag misses the mean by 0.83 at x_t = ±1.5."""

    def check(model, generator: torch.Generator) -> None:
        for lag in (1, 10):
            for x_t in (-1.5, 0.0, 1.5):
                samples = model.sample(torch.full((4000, 1), x_t), lag=lag, generator=generator).numpy()[:, 0]
                mean, std = ou_decay**lag * x_t, np.sqrt(1 - ou_decay ** (2 * lag))
                assert abs(samples.mean() - mean) < 0.12, (lag, x_t, samples.mean(), mean)
                assert abs(samples.std() / std - 1) < 0.15, (lag, x_t, samples.std(), std)

    return check
