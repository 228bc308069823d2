"""TransitionModel: save/load round trip, sampling contract, determinism, load errors (blow-up detection
of rollouts: tests/test_rollout.py)."""

import pytest
import torch

from itomd.errors import DataFileError, InvalidInputError
from itomd.training import ITOEstimator
from itomd.models import TransitionModel


@pytest.fixture(scope="module")
def model(ou_data_module):
    from itomd.training import TrainingConfig

    config = TrainingConfig(max_lag=10, hidden=16, n_blocks=1, n_frequencies=4, batch_size=64, max_steps=20,
                            warmup_steps=5, device="cpu")
    return ITOEstimator(config).fit(ou_data_module, 0.1, progress=False).fetch_model()


@pytest.fixture(scope="module")
def ou_data_module(ou_trajectories):
    return ou_trajectories(32, 100)


def test_save_load_round_trip(model, tmp_path):
    path = model.save(tmp_path / "m.pt")
    loaded = TransitionModel.load(path)
    assert loaded.spec == model.spec and loaded.max_lag == 10 and loaded.frame_interval == 0.1
    x = torch.zeros(4, 1)
    a = model.sample(x, lag=3, generator=torch.Generator().manual_seed(0))
    b = loaded.sample(x, lag=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert TransitionModel.load(tmp_path / "m.pt").info == model.info


def test_sampling_is_deterministic_given_a_generator_and_shaped(model):
    x = torch.randn(7, 1)
    for sampler in ("heun", "euler", "euler-maruyama", "ancestral"):
        a = model.sample(x, lag=2, sampler=sampler, n_steps=5, generator=torch.Generator().manual_seed(3))
        b = model.sample(x, lag=2, sampler=sampler, n_steps=5, generator=torch.Generator().manual_seed(3))
        assert a.shape == (7, 1) and torch.equal(a, b)
    with pytest.raises(InvalidInputError, match="unknown sampler"):
        model.sample(x, lag=2, sampler="dpm")
    with pytest.raises(InvalidInputError, match="positive"):
        model.sample(x, lag=0)
    with pytest.raises(InvalidInputError, match=r"\[W, 1\]"):
        model.sample(torch.zeros(3, 2), lag=1)


def test_load_errors(tmp_path):
    with pytest.raises(DataFileError, match="no model file"):
        TransitionModel.load(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(DataFileError, match="is not an itomd (checkpoint|model) or is truncated"):
        TransitionModel.load(tmp_path / "bad.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(DataFileError, match="not an itomd model"):
        TransitionModel.load(tmp_path / "other.pt")
