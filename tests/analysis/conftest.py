"""Shared, seeded data for the analysis tests: simulated Prinz trajectories and exact references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from itomd.simulate.integrators import simulate
from itomd.systems import resolve_system
from itomd.systems.reference import ExactReference, exact_reference
from itomd.systems.system import System


@pytest.fixture(scope="session")
def prinz_system() -> System:
    return resolve_system("prinz")


@pytest.fixture(scope="session")
def prinz_reference(prinz_system) -> ExactReference:
    return exact_reference(prinz_system)


@pytest.fixture(scope="session")
def prinz_trajectories(prinz_system, prinz_reference) -> list[np.ndarray]:
    """200 equilibrium-started trajectories of 2000 frames (10 time units, ≈ 12 slowest timescales)."""
    x0 = torch.as_tensor(prinz_reference.sample(200, seed=11))
    frames = simulate(prinz_system, x0, 2000, generator=torch.Generator().manual_seed(12))
    return list(frames.numpy())


@pytest.fixture(scope="session")
def double_well_2d_reference() -> ExactReference:
    return exact_reference(resolve_system("double-well", dim=2), n_grid=100)
