"""Tiny exact Ornstein–Uhlenbeck data and tiny training configs shared by the training tests."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch

from itomd.training import TrainingConfig

#: One-frame autocorrelation of the OU data: E[x_{t+N} | x_t] = OU_DECAY**N x_t, stationary variance 1.
OU_DECAY = 0.9


def _ou_trajectories(n_traj: int, n_frames: int, seed: int = 0) -> list[np.ndarray]:
    """Exact OU (AR(1)) trajectories of unit stationary variance started from equilibrium; each [n_frames, 1]."""
    rng = np.random.default_rng(seed)
    x = np.empty((n_traj, n_frames))
    x[:, 0] = rng.standard_normal(n_traj)
    noise = np.sqrt(1 - OU_DECAY**2)
    for k in range(1, n_frames):
        x[:, k] = OU_DECAY * x[:, k - 1] + noise * rng.standard_normal(n_traj)
    return [t[:, None] for t in x]


@pytest.fixture(scope="session")
def ou_decay() -> float:
    return OU_DECAY


@pytest.fixture(scope="session")
def ou_trajectories() -> Callable[..., list[np.ndarray]]:
    return _ou_trajectories


@pytest.fixture(scope="session")
def ou_data() -> list[np.ndarray]:
    return _ou_trajectories(64, 200)


@pytest.fixture
def tiny_config() -> Callable[..., TrainingConfig]:
    """A factory of small, fast training configs; keyword arguments override."""

    def make(**changes) -> TrainingConfig:
        base = dict(max_lag=10, hidden=32, n_blocks=1, n_frequencies=4, batch_size=64, max_steps=40,
                    warmup_steps=5, checkpoint_every=10, log_every=10, device="cpu")
        return TrainingConfig(**{**base, **changes})

    return make


@pytest.fixture(scope="session")
def assert_learns_ou_transitions() -> Callable[..., None]:
    """Checks E[x_{t+N} | x_t] = a^N x_t and sd = sqrt(1 − a^{2N}) (exact OU) at N = 1 and 10 from three
    start states, 4000 samples each (mean within 0.08, sd within 15 %)."""

    def check(model, generator: torch.Generator) -> None:
        for lag in (1, 10):
            for x_t in (-1.5, 0.0, 1.5):
                samples = model.sample(torch.full((4000, 1), x_t), lag=lag, generator=generator).numpy()[:, 0]
                mean, std = OU_DECAY**lag * x_t, np.sqrt(1 - OU_DECAY ** (2 * lag))
                assert abs(samples.mean() - mean) < 0.08, (lag, x_t, samples.mean(), mean)
                assert abs(samples.std() / std - 1) < 0.15, (lag, x_t, samples.std(), std)

    return check
