"""Shared, seeded data for the analysis tests: simulated Prinz trajectories, an exact 2-D reference and
one full analysis of the Prinz data (``prinz_system`` and ``prinz_reference`` are in tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from itomd.analysis import analyze
from itomd.simulate.integrators import simulate
from itomd.systems import resolve_system
from itomd.systems.reference import ExactReference, exact_reference


@pytest.fixture(scope="session")
def prinz_trajectories(prinz_system, prinz_reference) -> list[np.ndarray]:
    """200 equilibrium-started trajectories of 2000 frames (10 time units, ≈ 12 slowest timescales)."""
    x0 = torch.as_tensor(prinz_reference.sample(200, seed=11))
    frames = simulate(prinz_system, x0, 2000, generator=torch.Generator().manual_seed(12))
    return list(frames.numpy())


@pytest.fixture(scope="session")
def double_well_2d_reference() -> ExactReference:
    return exact_reference(resolve_system("double-well", dim=2), n_grid=100)


@pytest.fixture(scope="session")
def prinz_result(prinz_system, prinz_trajectories, prinz_reference):
    """``analyze`` of all the Prinz trajectories against the exact reference (20 posterior samples)."""
    return analyze(prinz_trajectories, prinz_system.frame_interval, prinz_system.kT, reference=prinz_reference,
                   n_samples=20)
