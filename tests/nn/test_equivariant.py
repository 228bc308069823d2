"""The equivariant molecular network: rotation/translation equivariance, mirror sensitivity, and a
tiny alanine-dipeptide model that trains in seconds, keeps L-chirality and samples equivariantly."""

from __future__ import annotations

import copy
import json

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


@pytest.fixture(scope="module")
def tiny_model_run(ala2, md_frames, tmp_path_factory):
    """A tiny ITO model of the two MD trajectories (200 steps, seconds) and its run directory."""
    from itomd.training import ITOEstimator, TrainingConfig
    from itomd.systems import SystemSpec

    run = tmp_path_factory.mktemp("equivariant") / "run"
    config = TrainingConfig(max_lag=5, batch_size=32, max_steps=200, warmup_steps=20, hidden=16, n_blocks=2,
                            n_frequencies=8, learning_rate=3e-3, checkpoint_every=1000, log_every=50, seed=0,
                            ema_decay=0.9)
    estimator = ITOEstimator(config).fit(list(md_frames), frame_interval=1.0, run_dir=run, progress=False,
                                         system=SystemSpec("ala2"))
    return estimator.fetch_model(), run


def test_tiny_model_trains_and_keeps_chirality(ala2, md_frames, tiny_model_run):
    """The loss falls (measured, rows at steps 50–200: 58.2, 43.0, 37.4, 36.1) and every one-jump sample
    from the 30 MD starts keeps L-chirality (measured: 30 of 30)."""
    model, run = tiny_model_run
    assert model.spec.representation.n_atoms == N_ATOMS
    losses = [json.loads(row)["loss"] for row in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 4 and losses[-1] < 0.75 * losses[0], losses
    start = torch.as_tensor(md_frames[:, ::10].reshape(-1, 3 * N_ATOMS))
    samples = model.sample(start, lag=1, generator=torch.Generator().manual_seed(0), n_steps=10)
    assert samples.shape == start.shape and torch.isfinite(samples).all()
    assert samples.reshape(-1, N_ATOMS, 3).mean(1).abs().max() < 1e-5  # centred
    signs = chirality_signs(samples.numpy().astype(np.float64), ala2.topology())
    assert np.all(signs == L_CHIRALITY_SIGN), f"only {np.mean(signs == L_CHIRALITY_SIGN):.0%} kept L-chirality"


def _conditional_means(model, starts: torch.Tensor, seed: int, repeats: int = 8) -> torch.Tensor:
    """Mean of ``repeats`` one-jump samples (lag 1) from each start: shape [n_starts, N_ATOMS, 3]."""
    samples = model.sample(starts.repeat_interleave(repeats, 0), lag=1, n_steps=10,
                           generator=torch.Generator().manual_seed(seed))
    return samples.reshape(len(starts), repeats, N_ATOMS, 3).mean(1)


def _rms(x: torch.Tensor) -> float:
    return float(x.pow(2).mean().sqrt())


def test_tiny_model_samples_are_rotation_equivariant_in_distribution(md_frames, tiny_model_run):
    """Rotating the start states rotates the transition density: the conditional means E[x' | R·x] match
    R·E[x' | x] within the sampling noise, for 10 MD starts × 8 samples (the sampler's noise is drawn in
    the lab frame, so samples agree in distribution, not one by one).

    The statistic: RMS of E[x' | R·x] − R·E[x' | x] over starts and coordinates, divided by the RMS
    difference of two independent estimates of E[x' | x] (~0.019 nm). Measured over five rotations and
    generators: 0.91–1.10 (0.97 ± 0.07); bound 1.3. Negative control: the same model with a fixed
    lab-frame vector (0.5 · N(0, 1) per coordinate) added to its network's output — a net that is not
    equivariant — gave 2.0–2.4.
    """
    model, _ = tiny_model_run
    starts = remove_centroid(torch.as_tensor(md_frames[:, ::30].reshape(-1, 3 * N_ATOMS), dtype=torch.float32),
                             N_ATOMS)
    rotation = _rotation(torch.Generator().manual_seed(5)).to(torch.float32)
    rotated_starts = _apply(starts, rotation)
    plain = _conditional_means(model, starts, seed=1)
    noise = _rms(_conditional_means(model, starts, seed=2) - plain)
    mismatch = _rms(_conditional_means(model, rotated_starts, seed=3) - plain @ rotation.T)
    assert mismatch < 1.3 * noise, (mismatch, noise)

    broken = copy.deepcopy(model)
    lab_frame = 0.5 * torch.randn(3 * N_ATOMS, generator=torch.Generator().manual_seed(6))
    broken.denoiser.inner.register_forward_hook(lambda module, args, output: output + lab_frame.to(output.dtype))
    broken_plain = _conditional_means(broken, starts, seed=1)
    broken_mismatch = _rms(_conditional_means(broken, rotated_starts, seed=3) - broken_plain @ rotation.T)
    assert broken_mismatch > 1.3 * noise, (broken_mismatch, noise)
