r"""How models see a system's states — the one home of what differs between a toy system and a molecule.

A toy system's state is a point in ℝ^d: models learn it as it is, with one regression slope per
coordinate, an MLP inside, and analyses on the raw coordinates. A molecule's state is the flattened
positions of its atoms [3·n_atoms] (nm): translations carry no information, so structures are
centred; its dynamics is rotation-equivariant, so the lag tables are isotropic and the inner network
is the equivariant one; an ITO model learns x_{t+N} superposed on x_t (the internal motion without
the tumbling), a BoPITO model the density marginalised over the orientation of x_{t+N} (whose
long-lag limit is its prior's isotropic μ); its slow processes live in the backbone torsions, not in
Cartesian coordinates.

How analyses see the states is the representation's choice too (:meth:`Representation.featurizer`).
Every one of those choices is a method of a :class:`Representation`; code above this module asks
the representation instead of testing what kind of system it has. There are two:

* :class:`CoordinateRepresentation` — toy systems (and any user potential);
* :class:`MolecularRepresentation` — molecules with a topology (atom types, bonds).

:func:`representation_for` chooses one for a :class:`~itomd.systems.System` (the only place where
the kind of system is looked at); :meth:`Representation.from_dict` reads the one a model file
recorded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from itomd.errors import InvalidInputError
from itomd.geometry import remove_centroid, superpose
from itomd.nn.equivariant import EquivariantTransitionNet, MoleculeGraph
from itomd.nn.mlp import TransitionMLP

if TYPE_CHECKING:  # pragma: no cover
    import mdtraj

    from itomd.analysis.features import Featurizer
    from itomd.systems.system import System


@dataclass(frozen=True)
class NetworkSize:
    """The size of an inner network.

    Parameters
    ----------
    hidden : int
        Width (MLP units, or scalar/vector channels per atom of the equivariant net).
    depth : int
        Residual blocks of the MLP, or message-passing layers of the equivariant net (the TOML
        and model-file key is ``n_blocks``).
    n_frequencies : int
        Sinusoidal frequencies of the noise-level and lag embeddings.
    """

    hidden: int
    depth: int
    n_frequencies: int


@dataclass(frozen=True)
class TrainingSize:
    """What a training run's cost depends on and the system decides when the user does not:
    pairs per optimiser step, the inner network's width and how strongly rare starts are favoured
    (see :meth:`Representation.training_size`).

    Parameters
    ----------
    batch_size : int
    hidden : int
    start_balance : float
        Exponent of the training pairs' start weights (:attr:`itomd.training.TrainingConfig.start_balance`).
    """

    batch_size: int
    hidden: int
    start_balance: float = 0.0


#: A molecule's default batch keeps batch × n_atoms² (the pair tensors' size, which sets a CPU step's
#: cost) at alanine dipeptide's validated 64 × 22², in multiples of 8, between these bounds.
MOLECULE_BATCH_PAIRS = 64 * 22 ** 2
MOLECULE_BATCH_RANGE = (16, 64)


class Representation(ABC):
    """How models and analyses see the states of one kind of system (see the module docs)."""

    #: Atoms per state (molecules), None for points in ℝ^d.
    n_atoms: int | None = None
    #: The model learns the transition density marginalised over the orientation of x_{t+N}
    #: (BoPITO models of molecules, see :class:`MolecularRepresentation`); points have no orientation.
    orientation_marginal: bool = False
    #: The form of a BoPITO model's dynamic part unless its config names one
    #: (:class:`~itomd.diffusion.BoPITODenoiser`): the original residual for points, whose
    #: data-efficiency results were measured with it; molecules override it.
    bopito_dynamic_part: str = "residual"

    # -- data ------------------------------------------------------------------------------------
    def prepare_trajectories(self, trajectories: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Training frames as the model sees them; each [n_i, dim] → [n_i, dim] float64."""
        return [np.asarray(t, dtype=np.float64) for t in trajectories]

    def prepare_states(self, x: torch.Tensor) -> torch.Tensor:
        """Start states of a jump as the model sees them, [W, dim] → [W, dim]."""
        return x

    def align_targets(self, target: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Training targets x_{t+N} [B, dim] in the frame the model learns them (given x_t, [B, dim])."""
        return target

    def prediction_frame(self, target: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """x_{t+N} [B, dim] in the frame where the preconditioning's linear prediction from x_t
        ([B, dim]) is compared with it (the lag tables' residuals): the training targets' frame."""
        return self.align_targets(target, reference)

    def data_mean(self, frames: np.ndarray) -> np.ndarray:
        """The centre m of the data [dim] (from frames [n, dim]) that the preconditioning uses."""
        return frames.mean(0)

    def outside_range(self, x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, tolerance: float) -> torch.Tensor:
        """Rows of ``x`` [W, dim] (as the model sees them) that are non-finite or beyond the training
        frames' box ``low``, ``high`` [dim] widened by ``tolerance`` × its extent; bool [W]. Points:
        beyond it in some coordinate."""
        margin = tolerance * (high - low)
        return ~torch.isfinite(x).all(-1) | ((x < low - margin) | (x > high + margin)).any(-1)

    @property
    def isotropic(self) -> bool:
        """One lag-N regression slope for all coordinates (rotation-equivariant tables)."""
        return False

    def slow_coordinates(self, trajectories: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Coordinates whose MSM reveals the slowest process (BoPITO's λ̂); each [n_i, k]."""
        return [np.asarray(t, dtype=np.float64) for t in trajectories]

    # -- models ----------------------------------------------------------------------------------
    @abstractmethod
    def training_size(self) -> TrainingSize:
        """The batch and width a training run uses unless its config sets them."""

    @abstractmethod
    def inner_network(self, size: NetworkSize, conditional: bool, max_log_lag: float,
                      condition_shift: Sequence[float], condition_scale: Sequence[float]) -> nn.Module:
        """A freshly initialised inner network ``F(x_in, c_noise, positions=, cond=, lag=)``."""

    @abstractmethod
    def check_dimension(self, dim: int) -> None:
        """Raise a one-line :class:`~itomd.errors.InvalidInputError` if ``dim`` does not fit."""

    # -- analysis --------------------------------------------------------------------------------
    @abstractmethod
    def featurizer(self, energy: "Callable[[np.ndarray], np.ndarray | None] | None" = None) -> "Featurizer":
        """How analyses see these states (:mod:`itomd.analysis.features`); ``energy`` (the system's
        :meth:`~itomd.systems.System.analysis_energies`) adds the potential-energy check where the
        representation has one (molecules)."""

    # -- model files -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any] | None:
        """What a model file records (the ``molecule`` entry of its description; None for points)."""
        return None

    @staticmethod
    def from_dict(molecule: dict[str, Any] | None, dim: int) -> "Representation":
        """The representation a model description recorded (its ``molecule`` entry, or None)."""
        if molecule is None:
            return CoordinateRepresentation(dim)
        return MolecularRepresentation(MoleculeGraph.from_dict(molecule),
                                       superpose_targets=bool(molecule.get("superpose_targets")),
                                       orientation_marginal=bool(molecule.get("orientation_marginal")))

    def for_model(self, superpose_targets: bool, orientation_marginal: bool = False) -> "Representation":
        """This representation for a model that learns superposed targets (ITO), or the density
        marginalised over orientation (BoPITO), or neither (equilibrium models); points have no
        orientation, so it is itself."""
        return self


@dataclass(frozen=True)
class CoordinateRepresentation(Representation):
    """Points in ℝ^dim: toy potentials and user potentials. Everything is the identity; the lag
    tables have one slope per coordinate; the inner network is a :class:`~itomd.nn.TransitionMLP`."""

    dim: int

    def check_dimension(self, dim: int) -> None:
        if dim != self.dim:
            raise InvalidInputError(f"states have {dim} coordinates, the system {self.dim}")

    def featurizer(self, energy: "Callable[[np.ndarray], np.ndarray | None] | None" = None) -> "Featurizer":
        """The raw coordinates (k-means or 1-D grid states, free energy on the first two); no energy
        check (a toy system's stationary density is compared exactly)."""
        from itomd.analysis.features import CoordinateFeaturizer

        return CoordinateFeaturizer()

    def training_size(self) -> TrainingSize:
        """512 pairs of a 128-unit MLP: a step costs milliseconds in a few dimensions; starts balanced
        over the coordinates' histogram (exponent 1: measured on Müller–Brown, BENCHMARKS.md
        "Balanced starts")."""
        return TrainingSize(batch_size=512, hidden=128, start_balance=1.0)

    def inner_network(self, size: NetworkSize, conditional: bool, max_log_lag: float,
                      condition_shift: Sequence[float], condition_scale: Sequence[float]) -> nn.Module:
        return TransitionMLP(self.dim, hidden=size.hidden, n_blocks=size.depth, n_frequencies=size.n_frequencies,
                             conditional=conditional, condition_shift=condition_shift,
                             condition_scale=condition_scale, max_log_lag=max_log_lag)


@dataclass(frozen=True)
class MolecularRepresentation(Representation):
    """Centred atom positions [3·n_atoms] (nm) of a molecule.

    Parameters
    ----------
    graph : MoleculeGraph
        Atom types and bond-graph distances (what the equivariant network needs of the topology).
    superpose_targets : bool
        Transition targets x_{t+N} are superposed on x_t (ITO models of molecules).
    orientation_marginal : bool
        The model learns the transition density marginalised over the orientation of x_{t+N}
        (BoPITO models of molecules): targets stay in the lab frame and the denoiser sees x_t
        superposed on the noisy state, so it depends on x_t's internal coordinates only and its
        long-lag limit is the prior's isotropic μ (see :class:`~itomd.diffusion.TransitionDenoiser`).
    topology : mdtraj.Topology, optional
        The full topology, where known (training from a system): it gives the backbone torsions.
    reference_structure : np.ndarray, shape [3·n_atoms], optional
        A valid structure (the system's start structure): the reference of the chemical-validity checks.
    """

    graph: MoleculeGraph
    superpose_targets: bool = False
    orientation_marginal: bool = False
    #: BoPITO's transition form: the residual form's short-lag kinetics of alanine dipeptide were 2-7×
    #: too fast at every attempt, the transition form's 1-ps jumps within 20 % of MD (BENCHMARKS.md, "BoPITO's
    #: transition part").
    bopito_dynamic_part = "transition"
    topology: "mdtraj.Topology | None" = field(default=None, compare=False, repr=False)
    reference_structure: "np.ndarray | None" = field(default=None, compare=False, repr=False)

    @property
    def n_atoms(self) -> int:  # type: ignore[override]
        return self.graph.n_atoms

    @property
    def isotropic(self) -> bool:
        return True

    def check_dimension(self, dim: int) -> None:
        if dim != 3 * self.n_atoms:
            raise InvalidInputError(f"trajectories have {dim} coordinates but the molecule has {self.n_atoms} atoms "
                                    f"({3 * self.n_atoms} coordinates)")

    def prepare_trajectories(self, trajectories: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [remove_centroid(torch.as_tensor(np.asarray(t, dtype=np.float64)), self.n_atoms).numpy()
                for t in trajectories]

    def prepare_states(self, x: torch.Tensor) -> torch.Tensor:
        return remove_centroid(x, self.n_atoms)

    def __post_init__(self) -> None:
        if self.superpose_targets and self.orientation_marginal:
            raise InvalidInputError("a molecular model learns superposed targets or the orientation-marginal "
                                    "density, not both")

    def align_targets(self, target: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return superpose(target, reference, self.n_atoms) if self.superpose_targets else target

    def prediction_frame(self, target: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Superposed on x_t for ITO models and for orientation-marginal ones, whose preconditioning
        predicts from x_t superposed on the (noisy) target — the same residual, rotated."""
        if self.superpose_targets or self.orientation_marginal:
            return superpose(target, reference, self.n_atoms)
        return target

    def data_mean(self, frames: np.ndarray) -> np.ndarray:
        return np.zeros(frames.shape[1])

    def outside_range(self, x: torch.Tensor, low: torch.Tensor, high: torch.Tensor, tolerance: float) -> torch.Tensor:
        """A molecule's orientation is arbitrary (a BoPITO model samples every orientation, a short MD
        set need not visit them all), so the check uses what does not depend on it: some atom's
        distance from the centroid beyond that of its box corner (the largest it had in the training
        frames' box) plus ``tolerance`` × the largest extent of its box."""
        n = self.n_atoms
        radius = remove_centroid(x, n).reshape(len(x), n, 3).norm(dim=-1)
        corner = torch.maximum(low.abs(), high.abs()).reshape(n, 3).norm(dim=-1)
        limit = corner + tolerance * (high - low).reshape(n, 3).amax(-1)
        return ~torch.isfinite(x).all(-1) | (radius > limit).any(-1)

    def slow_coordinates(self, trajectories: Sequence[np.ndarray]) -> list[np.ndarray]:
        """(cos, sin) of every backbone φ/ψ (:func:`~itomd.analysis.molecular.torsion_set` of φ and ψ:
        all cosines, then all sines; for alanine dipeptide (cos φ, cos ψ, sin φ, sin ψ)): the slowest
        process of a molecule in Cartesian coordinates would be its rotation. A molecule without φ/ψ
        (a ligand, a host with its guest) gives the analysis's TICA inputs instead: its torsions, or
        atom-pair distances (:func:`~itomd.analysis.molecular.slow_input_features`)."""
        if self.topology is None:
            raise InvalidInputError("the backbone torsions of a molecule need its topology")
        from itomd.analysis.molecular import slow_input_features, torsion_set

        backbone = torsion_set(self.topology, ("phi", "psi"))
        if not len(backbone):
            return slow_input_features(trajectories, self.topology)
        return [np.concatenate([np.cos(a), np.sin(a)], axis=1) for a in backbone.compute(trajectories, self.topology)]

    def featurizer(self, energy: "Callable[[np.ndarray], np.ndarray | None] | None" = None) -> "Featurizer":
        """The torsions (:func:`~itomd.analysis.features.torsion_featurizer`): φ/ψ grid states and the
        Ramachandran free energy for one φ/ψ pair (alanine dipeptide), else a TICA plane of all φ, ψ,
        χ₁; chemical validity against :attr:`reference_structure`; the potential-energy
        distribution where ``energy`` is given."""
        from itomd.analysis.features import torsion_featurizer

        if self.topology is None:
            raise InvalidInputError("the backbone torsions of a molecule need its topology")
        return torsion_featurizer(self.topology, reference_structure=self.reference_structure, energy=energy)

    def training_size(self) -> TrainingSize:
        """The ``ala2-ito`` recipe's 32 channels, with the batch scaled so that batch × n_atoms² stays at
        alanine dipeptide's 64 × 22² (a CPU step's cost grows with the atom pairs; BENCHMARKS.md,
        "Molecules: cost per training step vs atom count"): 64 structures at 22 atoms, 32 at 31, 16
        (the floor) from 44 atoms on."""
        low, high = MOLECULE_BATCH_RANGE
        batch = 8 * round(MOLECULE_BATCH_PAIRS / self.n_atoms ** 2 / 8)
        return TrainingSize(batch_size=int(min(max(batch, low), high)), hidden=32)

    def inner_network(self, size: NetworkSize, conditional: bool, max_log_lag: float,
                      condition_shift: Sequence[float], condition_scale: Sequence[float]) -> nn.Module:
        return EquivariantTransitionNet(self.graph, hidden=size.hidden, n_layers=size.depth,
                                        n_frequencies=size.n_frequencies, conditional=conditional,
                                        max_log_lag=max_log_lag)

    def to_dict(self) -> dict[str, Any]:
        d = {**self.graph.to_dict(), "superpose_targets": bool(self.superpose_targets)}
        if self.orientation_marginal:  # absent from model files written before it existed (lab-frame BoPITO)
            d["orientation_marginal"] = True
        return d

    def for_model(self, superpose_targets: bool, orientation_marginal: bool = False) -> "MolecularRepresentation":
        return MolecularRepresentation(self.graph, superpose_targets=superpose_targets,
                                       orientation_marginal=orientation_marginal, topology=self.topology,
                                       reference_structure=self.reference_structure)


def representation_for(system: "System") -> Representation:
    """The representation of ``system``'s states: molecular if it has a topology, else coordinates.

    This is the one place where the kind of system is looked at.
    """
    topology = system.topology()
    if topology is None:
        return CoordinateRepresentation(system.dim)
    representation = MolecularRepresentation(MoleculeGraph.from_topology(topology), topology=topology,
                                             reference_structure=system.default_start())
    representation.check_dimension(system.dim)
    return representation


__all__ = ["Representation", "CoordinateRepresentation", "MolecularRepresentation", "NetworkSize", "TrainingSize",
           "representation_for"]
