"""Shared fixtures: fixed seeds, float64 physics, one torch thread (the machines have 2 cores)."""

from __future__ import annotations

import os

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


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(20261124)
