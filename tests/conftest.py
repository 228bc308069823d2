"""Shared fixtures: fixed seeds, float64 physics, one torch thread (the machines have 2 cores); the data
that tests of several packages share (exact OU trajectories, Prinz and its exact reference, alanine
dipeptide MD) — session-scoped, so each is made once per run."""

from __future__ import annotations

import os
from typing import Callable

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(1234)
    np.random.seed(1234)
    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _fast_pcca(monkeypatch):
    """PCCA+ populations without deeptime's 11-14 s membership optimisation (see
    ``itomd.analysis.molecular.PCCA_OPTIMISE``; tests/analysis/test_any_molecule.py runs the full one)."""
    import itomd.analysis.molecular as molecular

    monkeypatch.setattr(molecular, "PCCA_OPTIMISE", False)
    yield


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(20261124)


# -- exact Ornstein–Uhlenbeck data ------------------------------------------------------------------
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


# -- Prinz and its exact reference ------------------------------------------------------------------
@pytest.fixture(scope="session")
def prinz_system():
    from itomd.systems import resolve_system

    return resolve_system("prinz")


@pytest.fixture(scope="session")
def prinz_reference(prinz_system):
    from itomd.systems.reference import exact_reference

    return exact_reference(prinz_system)


# -- alanine dipeptide ---------------------------------------------------------------------------------
#: Frame interval (ps) of ``md_trajectories``: 50 steps of 2 fs.
MD_FRAME_INTERVAL = 0.1


@pytest.fixture(scope="session")
def ala2():
    from itomd.systems.openmm import molecular_system

    return molecular_system("ala2")


@pytest.fixture(scope="session")
def topology(ala2):
    return ala2.topology()


@pytest.fixture(scope="session")
def md_trajectories(ala2) -> list[np.ndarray]:
    """Two 100 ps Langevin runs (300 K, 1/ps, 2 fs, H bonds constrained; Reference platform) from the
    shipped structure after 10 ps of equilibration; frames every 0.1 ps, flattened, nm."""
    import openmm

    trajectories = []
    for seed in (1, 2):
        integrator = openmm.LangevinMiddleIntegrator(300.0, 1.0, 0.002)
        integrator.setRandomNumberSeed(seed)
        context = openmm.Context(ala2.openmm_system(), integrator, openmm.Platform.getPlatformByName("Reference"))
        context.setPositions(ala2.initial_coordinates().reshape(-1, 3))
        context.setVelocitiesToTemperature(300.0, seed)
        integrator.step(5000)
        frames = np.empty((1000, ala2.dim))
        for i in range(len(frames)):
            integrator.step(50)
            frames[i] = context.getState(getPositions=True).getPositions(asNumpy=True)._value.reshape(-1)
        trajectories.append(frames)
    return trajectories
