"""The optimisation loop's parts: the learning-rate schedule, the EMA of the weights, the global batches
of (x_t, x_{t+N}) pairs and a rank's slice of them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from itomd.data.pairs import PairSampler, UniformLag
from itomd.diffusion.denoiser import Denoiser, TransitionDenoiser
from itomd.geometry import remove_centroid
from itomd.nn.equivariant import MoleculeGraph
from itomd.representation import CoordinateRepresentation, MolecularRepresentation
from itomd.training import ExponentialMovingAverage, TrainingConfig
from itomd.training.loop import BatchSource, Distributed, budgeted_schedule_steps, learning_rate


class Zero(torch.nn.Module):
    def forward(self, x, c_noise, **cond):
        return torch.zeros_like(x)


def _transition_denoiser(max_lag: int, dim: int) -> TransitionDenoiser:
    return TransitionDenoiser(Zero(), sigma_data=1.0, mean=[0.0] * dim, lag_coefficients=[[1.0] * dim] * max_lag,
                              lag_scales=[0.1 * n for n in range(1, max_lag + 1)])


# -- learning rate ----------------------------------------------------------------------------------
def test_learning_rate_warms_up_linearly_then_decays_by_a_cosine_to_its_floor():
    config = TrainingConfig(learning_rate=1e-2, warmup_steps=10, max_steps=110, final_lr_fraction=0.1)
    rates = np.array([learning_rate(step, config) for step in range(200)])
    np.testing.assert_allclose(rates[:10], 1e-2 * np.arange(1, 11) / 10, rtol=1e-12)  # warm-up ends at full rate
    assert rates[10] == pytest.approx(1e-2, rel=1e-12)  # the cosine starts at the full rate
    assert rates[60] == pytest.approx(1e-2 * (0.1 + 0.9 * 0.5), rel=1e-12)  # halfway: the mean of full and floor
    assert rates[110] == pytest.approx(1e-3, rel=1e-12) and np.all(rates[110:] == rates[110])  # the floor, held
    assert np.all(np.diff(rates[10:111]) < 0)
    no_warmup = TrainingConfig(learning_rate=1e-2, warmup_steps=0, max_steps=100, final_lr_fraction=0.0)
    assert learning_rate(0, no_warmup) == pytest.approx(1e-2) and learning_rate(100, no_warmup) == pytest.approx(0.0)
    cosine = [learning_rate(s, no_warmup) for s in (25, 50, 75)]
    np.testing.assert_allclose(cosine, [1e-2 * 0.5 * (1 + math.cos(math.pi * p)) for p in (0.25, 0.5, 0.75)])


def test_a_budgeted_schedule_ends_the_decay_where_the_budget_ends():
    config = TrainingConfig(learning_rate=1e-2, warmup_steps=10, max_steps=16_000, final_lr_fraction=0.1)
    # 30 steps/s with 200 s left at step 500: the decay ends at 500 + 0.95 · 6000 = 6200, not at 16,000
    end = budgeted_schedule_steps(500, 30.0, 200.0, config)
    assert end == 6200
    assert learning_rate(6200, config, end) == pytest.approx(1e-3) and learning_rate(6200, config) > 5e-3
    assert learning_rate(5, config, end) == learning_rate(5, config)  # the warm-up is untouched
    assert budgeted_schedule_steps(500, 1e9, 1e9, config) == 16_000  # never beyond max_steps
    assert budgeted_schedule_steps(5, 0.0, 10.0, config) == 11  # past the warm-up


# -- EMA ----------------------------------------------------------------------------------------------
def test_ema_warms_up_and_tracks():
    module = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        module.weight.fill_(0.0)
    ema = ExponentialMovingAverage(module, decay=0.99)
    with torch.no_grad():
        module.weight.fill_(1.0)
    ema.update(module)  # first decay min(0.99, 1/10) = 0.1
    assert ema.module.weight.item() == pytest.approx(0.9)
    for _ in range(2000):
        ema.update(module)
    assert ema.module.weight.item() == pytest.approx(1.0, abs=1e-6)


def test_ema_copies_buffers_and_its_state_round_trips():
    module = torch.nn.BatchNorm1d(2)
    ema = ExponentialMovingAverage(module, decay=0.9)
    module.running_mean.fill_(3.0)
    ema.update(module)
    assert torch.equal(ema.module.running_mean, module.running_mean)  # buffers are copied, not averaged
    assert not ema.module.weight.requires_grad
    again = ExponentialMovingAverage(torch.nn.BatchNorm1d(2), decay=0.9)
    again.load_state_dict(ema.state_dict())
    assert again.updates == 1 and torch.equal(again.module.running_mean, module.running_mean)


# -- batches ------------------------------------------------------------------------------------------
def _indexed_trajectories(lengths=(30, 7, 18)) -> list[np.ndarray]:
    """1-D trajectories whose value is 1000 × (trajectory number) + (frame index)."""
    return [(1000.0 * k + np.arange(n))[:, None] for k, n in enumerate(lengths)]


def test_batches_are_valid_pairs_at_the_drawn_lags():
    pairs = PairSampler(_indexed_trajectories(), UniformLag(6))
    batches = BatchSource(pairs.frames.to(torch.float32), pairs, CoordinateRepresentation(1))
    x0, cond, sigma, noise = batches.draw(4000, _transition_denoiser(6, 1), torch.Generator().manual_seed(0))
    start, end, lag = cond["cond"][:, 0], x0[:, 0], cond["lag"]
    assert x0.shape == noise.shape == (4000, 1) and sigma.shape == lag.shape == (4000,)
    assert torch.equal(end - start, lag)  # the same trajectory, N frames later
    assert set(lag.unique().tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0, 6.0}
    trajectory, frame = torch.div(start, 1000, rounding_mode="floor"), start % 1000
    lengths = torch.tensor([30.0, 7.0, 18.0])[trajectory.long()]
    assert torch.all(frame + lag <= lengths - 1)  # the end frame exists
    assert set(trajectory.unique().tolist()) == {0.0, 1.0, 2.0}
    # noise levels follow the lag's scale (0.1 N here) around EDM's log-normal
    ratio = (sigma / (0.1 * lag)).log()
    assert ratio.mean().item() == pytest.approx(-1.2 + math.log(2.0), abs=0.06)  # ±3σ of 4000 draws
    assert ratio.std().item() == pytest.approx(1.2, rel=0.05)
    again = batches.draw(4000, _transition_denoiser(6, 1), torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip((x0, sigma, noise), (again[0], again[2], again[3])))


def test_equilibrium_batches_are_single_frames():
    frames = torch.arange(50.0)[:, None]
    batches = BatchSource(frames, None, CoordinateRepresentation(1))
    x0, cond, sigma, noise = batches.draw(500, Denoiser(Zero(), sigma_data=1.0), torch.Generator().manual_seed(1))
    assert cond == {} and x0.shape == (500, 1) and sigma.shape == (500,) and noise.shape == (500, 1)
    assert set(x0[:, 0].tolist()) <= set(range(50)) and len(x0.unique()) > 40


def test_batches_align_the_targets_through_the_representation():
    """A rigid 4-atom body turning about z: superposed on x_t, every target is x_t itself."""
    graph = MoleculeGraph(atom_types=(0, 0, 2, 1),
                          graph_distance=((0, 1, 2, 3), (1, 0, 1, 2), (2, 1, 0, 1), (3, 2, 1, 0)),
                          type_names=("X:C", "X:H", "X:O"))
    body = remove_centroid(torch.tensor([[0.0, 0.0, 0.0, 0.15, 0.0, 0.0, 0.2, 0.1, 0.05, 0.1, 0.2, -0.1]],
                                        dtype=torch.float64), 4).reshape(4, 3)
    frames = []
    for t in range(20):
        c, s = math.cos(0.3 * t), math.sin(0.3 * t)
        rotation = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        frames.append((body @ rotation.T).reshape(-1))
    pairs = PairSampler([torch.stack(frames).numpy()], UniformLag(5))
    denoiser = _transition_denoiser(5, 12)
    prepared = pairs.frames.to(torch.float32)
    superposed = BatchSource(prepared, pairs, MolecularRepresentation(graph, superpose_targets=True))
    x0, cond, _, _ = superposed.draw(64, denoiser, torch.Generator().manual_seed(2))
    torch.testing.assert_close(x0, cond["cond"], atol=1e-5, rtol=0)
    lab = BatchSource(prepared, pairs, MolecularRepresentation(graph, superpose_targets=False))
    x0, cond, _, _ = lab.draw(64, denoiser, torch.Generator().manual_seed(2))
    assert (x0 - cond["cond"]).abs().max() > 0.01  # negative control: lab-frame targets are rotated


# -- data parallelism ---------------------------------------------------------------------------------
def test_each_rank_takes_its_share_of_the_global_batch():
    single = Distributed()
    assert not single.enabled and single.is_main and single.batch_slice(10) == slice(0, 10)
    assert single.rank0_decides(True) is True and single.mean(2.5) == 2.5  # no process group needed
    shares = [Distributed(rank=r, world_size=4).batch_slice(12) for r in range(4)]
    assert shares == [slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12)]
    assert Distributed(rank=2, world_size=4).enabled and not Distributed(rank=2, world_size=4).is_main
