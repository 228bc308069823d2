"""How models see states: points in ℝ^d (identity everywhere, an MLP) vs centred molecules (superposed
targets for ITO, isotropic tables, an equivariant network), and which one a system gets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from itomd.errors import InvalidInputError
from itomd.geometry import remove_centroid, superpose
from itomd.nn.equivariant import EquivariantTransitionNet, MoleculeGraph
from itomd.nn.mlp import TransitionMLP
from itomd.representation import (CoordinateRepresentation, MolecularRepresentation, NetworkSize, Representation,
                                  TrainingSize, representation_for)
from itomd.systems import SystemSpec

SIZE = NetworkSize(hidden=8, depth=2, n_frequencies=3)
#: A 4-atom chain C–C–O–H (types by name, bond distances).
CHAIN = MoleculeGraph(atom_types=(0, 0, 2, 1),
                      graph_distance=((0, 1, 2, 3), (1, 0, 1, 2), (2, 1, 0, 1), (3, 2, 1, 0)),
                      type_names=("X:C", "X:H", "X:O"))


def _random_rotation(generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.linalg.det(q) > 0 else -q


def _centroids(x: np.ndarray | torch.Tensor, n_atoms: int) -> np.ndarray:
    return np.asarray(x).reshape(len(x), n_atoms, 3).mean(1)


# -- points ---------------------------------------------------------------------------------------------
def test_coordinates_are_the_identity_everywhere(generator):
    rep = CoordinateRepresentation(2)
    trajectories = [np.arange(10).reshape(5, 2), np.random.default_rng(0).normal(size=(7, 2)) + 3.0]
    prepared = rep.prepare_trajectories(trajectories)
    assert all(p.dtype == np.float64 for p in prepared)
    assert all(np.array_equal(p, t) for p, t in zip(prepared, trajectories))
    x = torch.randn(6, 2, generator=generator)
    target = torch.randn(6, 2, generator=generator)
    assert torch.equal(rep.prepare_states(x), x)
    assert torch.equal(rep.align_targets(target, x), target)
    frames = np.concatenate(prepared)
    assert np.array_equal(rep.data_mean(frames), frames.mean(0))  # the data's own centre
    assert all(np.array_equal(s, t) for s, t in zip(rep.slow_coordinates(trajectories), trajectories))
    assert rep.isotropic is False and rep.n_atoms is None
    assert rep.to_dict() is None and rep.for_model(True) is rep and rep.for_model(False) is rep


def test_coordinates_check_the_dimension_in_one_line():
    CoordinateRepresentation(3).check_dimension(3)
    with pytest.raises(InvalidInputError) as info:
        CoordinateRepresentation(3).check_dimension(4)
    assert "\n" not in str(info.value) and "4" in str(info.value) and "3" in str(info.value)


@pytest.mark.parametrize("conditional", [True, False])
def test_coordinates_build_a_transition_mlp(conditional):
    net = CoordinateRepresentation(2).inner_network(SIZE, conditional, math.log(20), [1.0, -1.0], [0.5, 2.0])
    assert isinstance(net, TransitionMLP)
    assert (net.dim, net.hidden, net.n_blocks, net.n_frequencies) == (2, 8, 2, 3)
    assert net.conditional is conditional and net.max_log_lag == pytest.approx(math.log(20))
    assert torch.equal(net.condition_shift, torch.tensor([1.0, -1.0]))
    assert torch.equal(net.condition_scale, torch.tensor([0.5, 2.0]))


def test_points_are_read_back_from_a_file_without_a_molecule_entry():
    assert Representation.from_dict(None, 3) == CoordinateRepresentation(3)


# -- molecules ----------------------------------------------------------------------------------------
def test_molecules_centre_trajectories_and_start_states(generator):
    rep = MolecularRepresentation(CHAIN)
    rng = np.random.default_rng(1)
    trajectories = [rng.normal(size=(5, 12)) + 4.0, rng.normal(size=(3, 12)).astype(np.float32) - 2.0]
    prepared = rep.prepare_trajectories(trajectories)
    for p, t in zip(prepared, trajectories):
        assert p.dtype == np.float64 and p.shape == t.shape
        assert np.allclose(_centroids(p, 4), 0.0, atol=1e-12)
        # only translated: every atom moved by the same vector
        moved = (np.asarray(t, dtype=np.float64) - p).reshape(len(p), 4, 3)
        assert np.allclose(moved, moved[:, :1], atol=1e-6)
    x = torch.randn(6, 12, generator=generator) + 3.0
    states = rep.prepare_states(x)
    assert states.shape == x.shape and torch.allclose(states.reshape(6, 4, 3).mean(1), torch.zeros(6, 3), atol=1e-6)
    assert torch.allclose(states, remove_centroid(x, 4))


def test_molecules_superpose_targets_only_when_asked(generator):
    reference = torch.randn(5, 12, generator=generator, dtype=torch.float64)
    rotation = _random_rotation(generator)
    # the targets: the references rotated and moved — superposed, they are the centred references again
    target = (reference.reshape(5, 4, 3) @ rotation.T + 2.0).reshape(5, 12)
    ito = MolecularRepresentation(CHAIN, superpose_targets=True)
    aligned = ito.align_targets(target, reference)
    assert torch.allclose(aligned, remove_centroid(reference, 4), atol=1e-10)
    assert torch.equal(aligned, superpose(target, reference, 4))
    plain = MolecularRepresentation(CHAIN, superpose_targets=False)
    assert torch.equal(plain.align_targets(target, reference), target)
    assert ito.for_model(False) == plain and plain.for_model(True) == ito


def test_molecules_have_zero_mean_isotropic_tables_and_atoms():
    rep = MolecularRepresentation(CHAIN)
    frames = np.random.default_rng(2).normal(size=(9, 12)) + 5.0
    assert np.array_equal(rep.data_mean(frames), np.zeros(12))
    assert rep.isotropic is True and rep.n_atoms == 4
    rep.check_dimension(12)
    with pytest.raises(InvalidInputError) as info:
        rep.check_dimension(13)
    assert "\n" not in str(info.value) and "4 atoms" in str(info.value)


@pytest.mark.parametrize("conditional", [True, False])
def test_molecules_build_an_equivariant_network(conditional):
    net = MolecularRepresentation(CHAIN).inner_network(SIZE, conditional, math.log(20), [0.0] * 12, [1.0] * 12)
    assert isinstance(net, EquivariantTransitionNet)
    assert (net.n_atoms, net.hidden, net.n_layers, net.conditional) == (4, 8, 2, conditional)
    assert net.graph == CHAIN


@pytest.mark.parametrize("superposed", [True, False])
def test_molecules_round_trip_through_the_model_file_entry(superposed):
    rep = MolecularRepresentation(CHAIN, superpose_targets=superposed)
    entry = rep.to_dict()
    assert entry == {**CHAIN.to_dict(), "superpose_targets": superposed}
    again = Representation.from_dict(entry, 12)
    assert isinstance(again, MolecularRepresentation) and again == rep
    assert again.superpose_targets is superposed and again.to_dict() == entry


def _chain_of(n_atoms: int) -> MoleculeGraph:
    distance = tuple(tuple(abs(i - j) for j in range(n_atoms)) for i in range(n_atoms))
    return MoleculeGraph(atom_types=(0,) * n_atoms, graph_distance=distance, type_names=("X:C",))


@pytest.mark.parametrize("n_atoms, batch", [(4, 64), (22, 64), (23, 56), (28, 40), (31, 32), (44, 16), (92, 16)])
def test_a_molecule_default_batch_keeps_the_pair_tensors_of_alanine_dipeptide(n_atoms, batch):
    """batch × n_atoms² ≈ 64 × 22² (the cost of a step), multiples of 8, from 16 to 64; 32 channels."""
    size = MolecularRepresentation(_chain_of(n_atoms)).training_size()
    assert size == TrainingSize(batch_size=batch, hidden=32, start_balance=0.0)


def test_points_train_a_wide_mlp_on_large_batches_by_default():
    assert CoordinateRepresentation(2).training_size() == TrainingSize(batch_size=512, hidden=128, start_balance=1.0)


def test_slow_coordinates_of_a_molecule_need_its_topology():
    with pytest.raises(InvalidInputError, match="topology"):
        MolecularRepresentation(CHAIN).slow_coordinates([np.zeros((2, 12))])


# -- which representation a system gets ---------------------------------------------------------------
@pytest.mark.parametrize("spec, dim", [(SystemSpec("prinz"), 1), (SystemSpec("muller-brown"), 2),
                                       (SystemSpec("double-well", dim=3), 3)])
def test_toy_systems_are_points(spec, dim):
    rep = representation_for(spec.build())
    assert rep == CoordinateRepresentation(dim)


def test_alanine_dipeptide_is_a_molecule_of_22_atoms():
    system = SystemSpec("ala2").build()
    rep = representation_for(system)
    assert isinstance(rep, MolecularRepresentation)
    assert rep.n_atoms == 22 and system.dim == 66 and rep.superpose_targets is False
    assert rep.topology is not None and rep.topology.n_atoms == 22
    assert rep.graph == MoleculeGraph.from_topology(system.topology())
    # with the topology it knows the backbone torsions: (cos, sin) of φ and ψ per frame
    frames = np.tile(system.initial_coordinates(), (3, 1))
    (slow,) = rep.slow_coordinates([frames])
    assert slow.shape == (3, 4)
    assert np.allclose(slow[:, :2] ** 2 + slow[:, 2:] ** 2, 1.0)
    # and keeps it when made the representation of an ITO model
    ito = rep.for_model(superpose_targets=True)
    assert ito.superpose_targets is True and ito.topology is rep.topology
