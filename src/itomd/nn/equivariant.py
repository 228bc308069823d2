r"""An SE(3)-equivariant, chirality-aware message-passing network for molecules (PaiNN-style).

:class:`EquivariantTransitionNet` is the ``inner`` of a denoiser for molecules: positions are
flattened ``[B, 3·n_atoms]`` (nm) and the network output is one vector per atom, ``[B, 3·n_atoms]``,
with zero centroid. It follows PaiNN (Schütt, Unke & Gastegger 2021): every atom carries ``hidden``
invariant scalar features s_i and ``hidden`` vector features v_i ∈ ℝ³; message passing over all
atom pairs mixes them with filters of the inter-atomic distances, and updates mix vector channels
linearly, so rotating every input rotates the output (and translations do nothing).

Chirality. A network built only from distances, vectors and their dot products is also
equivariant under reflections, so it cannot tell L- from D-alanine and would learn a transition
density symmetric under mirroring. As in ChiroPaiNN we add the cross product of two linear mixes
of an atom's vector channels to its vector update and their triple product (a pseudoscalar) to
its scalar update: both are unchanged by proper rotations but change under reflection.

Inputs (all per sample):

* ``positions`` — the noisy structure x^σ (its geometry: distances and directions of pairs);
* ``x_in`` — the preconditioned displacement c_in·(x^σ − c), fed as an initial vector feature;
* ``cond`` — the conditioning structure x_t (pair distances and directions; transition models);
* ``c_noise`` and ``lag`` — sinusoidal embeddings that modulate the scalar features (FiLM).

Atoms are typed from the topology — the sum of a learned embedding of the element and one of the
(residue, atom name) type, so rare types share what their element has in common (model files written
before elements were recorded keep the (residue, atom) embedding alone) — and pairs by their
bond-graph distance (1, 2, 3 or more bonds apart), so the network knows the covalent structure
without inferring it from noisy geometry.

Cost. Messages run over all n² atom pairs, so time and memory per training step grow as n² (measured
in BENCHMARKS.md, "Molecules: cost per training step vs atom count"). Without gradients (sampling,
rollouts) a large batch is evaluated in pieces whose pair tensors hold at most
:attr:`EquivariantTransitionNet.max_pair_elements` numbers each: the same outputs, with memory that no
longer grows with the number of walkers beyond the walkers' own states, and faster at large batches
(one huge pair tensor per layer costs more in memory traffic and page faults than its arithmetic;
BENCHMARKS.md, "The molecular network: cost of one evaluation"). With
:attr:`EquivariantTransitionNet.compiled` the same function runs through ``torch.compile``, whose
fused message sums read each pair tensor once (about twice the evaluations per second on a CPU).
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from itomd._allocator import keep_freed_memory
from itomd.errors import InvalidInputError
from itomd.geometry import remove_centroid
from itomd.nn.mlp import SinusoidalEmbedding

#: Bond-graph distances are capped here (pairs further apart share one class).
MAX_GRAPH_DISTANCE = 4
_SQRT_HALF = math.sqrt(0.5)
#: The element symbol of an atom whose element nobody knows (no element, a virtual site, a dummy).
UNKNOWN_ELEMENT = "X"
#: Prefixes of the residue part of a type for amino-acid residues at a free chain end (as Amber's
#: NALA/CALA templates): the NH₃⁺ (or NH₂⁺ of proline) and COO⁻ ends are other chemistry than the
#: amide of the same residue inside a chain or next to an ACE/NME cap.
N_TERMINAL, C_TERMINAL = "N", "C"


def _element_symbol(atom: Any) -> str:
    """The element symbol of an mdtraj or OpenMM atom (``"C"``, ``"Na"``; :data:`UNKNOWN_ELEMENT` when
    the topology does not know it, e.g. virtual sites or atoms of an unknown residue read without one)."""
    element = getattr(atom, "element", None)
    symbol = getattr(element, "symbol", None)
    if not symbol or not isinstance(symbol, str) or getattr(element, "number", 1) <= 0:
        return UNKNOWN_ELEMENT
    return symbol.strip().capitalize()


def _atoms_and_bonds(topology: Any) -> tuple[list, list[tuple[int, int]]]:
    """Atoms and bonds (index pairs) of an mdtraj ``Topology`` (properties) or an OpenMM one (methods)."""
    atoms = topology.atoms() if callable(getattr(topology, "atoms", None)) else topology.atoms
    bonds = topology.bonds() if callable(getattr(topology, "bonds", None)) else topology.bonds
    atoms = list(atoms)
    pairs = []
    for bond in bonds:
        a, b = bond[0], bond[1]
        pairs.append((int(a.index), int(b.index)))
    return atoms, pairs


def _residue_labels(atoms: list, bonds: list[tuple[int, int]]) -> list[str]:
    """The residue part of each atom's type: the residue name, prefixed by :data:`N_TERMINAL` and/or
    :data:`C_TERMINAL` for an amino-acid residue (atoms N, CA and C) whose N or C has no bond to
    another residue (charged termini; a capped peptide's residues are bonded to ACE/NME and keep
    their names). A topology without any bond marks no terminus (nothing is known)."""
    residue_of = [atom.residue for atom in atoms]
    linked = set()  # atoms bonded to an atom of another residue
    for a, b in bonds:
        if residue_of[a] is not residue_of[b]:
            linked.update((a, b))
    by_residue: dict[int, dict[str, int]] = {}
    for i, atom in enumerate(atoms):
        by_residue.setdefault(id(residue_of[i]), {}).setdefault(str(atom.name or "").strip(), i)
    labels = []
    for i, atom in enumerate(atoms):
        name = str(atom.residue.name or "").strip() or "UNK"
        names = by_residue[id(residue_of[i])]
        if bonds and {"N", "CA", "C"} <= set(names):
            prefix = (N_TERMINAL if names["N"] not in linked else "") + (C_TERMINAL if names["C"] not in linked else "")
            name = prefix + name
        labels.append(name)
    return labels


def _graph_distances(n: int, bonds: list[tuple[int, int]]) -> np.ndarray:
    """Bonds between every two atoms [n, n] (breadth-first search), capped at :data:`MAX_GRAPH_DISTANCE`."""
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for a, b in bonds:
        neighbours[a].append(b)
        neighbours[b].append(a)
    distance = np.full((n, n), MAX_GRAPH_DISTANCE, dtype=int)
    for source in range(n):
        distance[source, source] = 0
        frontier, depth = [source], 0
        while frontier and depth < MAX_GRAPH_DISTANCE - 1:
            depth += 1
            nxt = []
            for atom in frontier:
                for other in neighbours[atom]:
                    if distance[source, other] > depth:
                        distance[source, other] = depth
                        nxt.append(other)
            frontier = nxt
    return distance


@dataclass(frozen=True)
class MoleculeGraph:
    """Atom types and bond-graph distances of a molecule (what the network needs of a topology).

    An atom's type has two parts, both embedded by the network and summed: its **element** (shared by
    all carbons, all hydrogens, ... of the molecule) and its **(residue, atom name)** type
    (``"ALA:CB"``; terminal amino-acid residues are ``"NALA"``/``"CALA"``, see
    :func:`MoleculeGraph.from_topology`). So an atom whose (residue, atom) type occurs once — a
    terminal hydrogen, an atom of a ligand or of a non-standard residue — still shares what all atoms
    of its element have in common. Every atom of every topology gets both parts; nothing is looked
    up in a fixed table, so no combination is unknown.

    Parameters
    ----------
    atom_types : tuple of int, length n_atoms
        (Residue, atom name) type index per atom (0..n_types−1).
    graph_distance : tuple of tuple of int, shape [n_atoms, n_atoms]
        Bonds between atoms i and j, capped at :data:`MAX_GRAPH_DISTANCE` (0 on the diagonal).
    type_names : tuple of str
        The name of each type ("RES:ATOM").
    elements : tuple of str, length n_atoms, optional
        Element symbol per atom (:data:`UNKNOWN_ELEMENT` where unknown). None in model files written
        before elements were recorded: their network has no element embedding, as then.
    """

    atom_types: tuple[int, ...]
    graph_distance: tuple[tuple[int, ...], ...]
    type_names: tuple[str, ...]
    elements: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.atom_types)
        if n == 0:
            raise InvalidInputError("a molecule graph needs at least one atom")
        if len(self.graph_distance) != n or any(len(row) != n for row in self.graph_distance):
            raise InvalidInputError(f"graph_distance must be {n} × {n} (one row and column per atom)")
        if min(self.atom_types) < 0 or max(self.atom_types) >= len(self.type_names):
            raise InvalidInputError(f"atom types must be indices into the {len(self.type_names)} type names")
        if self.elements is not None and len(self.elements) != n:
            raise InvalidInputError(f"{len(self.elements)} elements given for {n} atoms")

    @property
    def n_atoms(self) -> int:
        return len(self.atom_types)

    @property
    def element_names(self) -> tuple[str, ...]:
        """The molecule's distinct element symbols, sorted (the rows of the element embedding); () without elements."""
        return tuple(sorted(set(self.elements))) if self.elements is not None else ()

    @property
    def element_types(self) -> tuple[int, ...] | None:
        """Element index per atom into :attr:`element_names`, or None (a graph without elements)."""
        if self.elements is None:
            return None
        index = {name: i for i, name in enumerate(self.element_names)}
        return tuple(index[e] for e in self.elements)

    @classmethod
    def from_topology(cls, topology: Any) -> "MoleculeGraph":
        """Types and distances of a topology.

        Parameters
        ----------
        topology : mdtraj.Topology or openmm.app.Topology
            Atoms (element, residue, name) and bonds.

        Returns
        -------
        MoleculeGraph
            ``atom_types`` by "RESIDUE:ATOM" (the residue name prefixed ``N``/``C`` for an amino-acid
            residue at a free chain end: ``NALA:H1``, ``CGLY:OXT``; ``UNK`` for a residue without a
            name), sorted by name; ``elements`` by the atoms' elements; distances by breadth-first
            search on the bonds. Any residue and atom name is accepted (ligands, ions, caps,
            non-standard residues); an atom without an element is :data:`UNKNOWN_ELEMENT`.
        """
        atoms, bonds = _atoms_and_bonds(topology)
        if not atoms:
            raise InvalidInputError("the topology has no atoms")
        elements = [_element_symbol(atom) for atom in atoms]
        residues = _residue_labels(atoms, bonds)
        names = [f"{residue}:{str(atom.name or '').strip() or element}"
                 for residue, atom, element in zip(residues, atoms, elements)]
        type_names = tuple(sorted(set(names)))
        index = {name: i for i, name in enumerate(type_names)}
        distance = _graph_distances(len(atoms), bonds)
        return cls(tuple(index[name] for name in names), tuple(tuple(int(v) for v in row) for row in distance),
                   type_names, tuple(elements))

    def without_elements(self) -> "MoleculeGraph":
        """This graph as model files before elements recorded it (types by residue and atom name only)."""
        return MoleculeGraph(self.atom_types, self.graph_distance, self.type_names)

    def to_dict(self) -> dict:
        """The ``molecule`` entry of a model file (``elements`` only when known, so older files round-trip)."""
        d = {"atom_types": list(self.atom_types), "graph_distance": [list(r) for r in self.graph_distance],
             "type_names": list(self.type_names)}
        if self.elements is not None:
            d["elements"] = list(self.elements)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MoleculeGraph":
        """Read :meth:`to_dict`'s dict (or a model file's ``molecule`` entry, with or without ``elements``)."""
        elements = d.get("elements")
        return cls(tuple(int(t) for t in d["atom_types"]), tuple(tuple(int(v) for v in r) for r in d["graph_distance"]),
                   tuple(str(n) for n in d["type_names"]),
                   None if elements is None else tuple(str(e) for e in elements))


class _RadialBasis(nn.Module):
    """Gaussian radial basis of distances on [0, cutoff] (cutoff in nm); beyond it the features
    decay smoothly to zero."""

    def __init__(self, n: int, cutoff: float):
        super().__init__()
        self.register_buffer("centres", torch.linspace(0.0, cutoff, n), persistent=False)
        self.width = cutoff / (n - 1)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.exp(-0.5 * ((d[..., None] - self.centres) / self.width) ** 2)


class _Interaction(nn.Module):
    """PaiNN message block: scalar and vector messages from every atom to every atom.

    Self-pairs (i = i) are kept: their direction vectors are zero, so they only add a learned
    function of the atom's own features (cheaper than masking them out).
    """

    def __init__(self, hidden: int, n_edge_features: int, n_atoms: int):
        super().__init__()
        self.hidden = hidden
        self.scalar_net = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 4 * hidden))
        self.filter = nn.Linear(n_edge_features, 4 * hidden)
        self.normaliser = 1.0 / math.sqrt(n_atoms)

    def forward(self, s, v, edge, unit_noisy, unit_cond):
        # s [B,n,H], v [B,n,3,H], edge [B,n,n,E], unit_* [B,n,n,3] (unit_cond None: unconditional).
        # Pair tensors in edge's dtype: s's own, or a narrower one (EquivariantTransitionNet.pair_dtype)
        # whose messages are summed into s and v in s's dtype.
        pair = edge.dtype
        if pair == s.dtype:
            filtered = self.filter(edge)
        else:
            filtered = nn.functional.linear(edge, self.filter.weight.to(pair), self.filter.bias.to(pair))
        phi = (self.scalar_net(s) * self.normaliser).to(pair)[:, None, :, :] * filtered  # [B,i,j,4H]: j → i
        a, b, c, d = phi.split(self.hidden, dim=-1)
        ds = a.sum(2, dtype=s.dtype)
        if torch.compiler.is_compiling():
            # The same sums written as broadcast products: eagerly they would materialise [B,n,n,3,H]
            # tensors, but the compiler fuses each into one loop that reads the pair tensors once
            # (EquivariantTransitionNet.compiled); the einsums' permuting copies are what cost eagerly.
            dv = (b[:, :, :, None, :] * v.to(pair)[:, None]).sum(2) + (c[:, :, :, None, :] * unit_noisy[..., None]).sum(2)
            if unit_cond is not None:
                dv = dv + (d[:, :, :, None, :] * unit_cond[..., None]).sum(2)
            return s + ds, v + dv.to(s.dtype)
        dv = torch.einsum("bijh,bjch->bich", b, v.to(pair)) + torch.einsum("bijh,bijc->bich", c, unit_noisy)
        if unit_cond is not None:  # equilibrium models have no conditioning structure
            dv = dv + torch.einsum("bijh,bijc->bich", d, unit_cond)
        return s + ds, v + dv.to(s.dtype)


def _products_cross(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """u × w along dim 2 of [B, n, 3, H] tensors, each component as one fused multiply-add
    (``addcmul``), the rounding of PyTorch's own cross kernel: the same bits as ``torch.cross``."""
    u0, u1, u2 = u.unbind(2)
    w0, w1, w2 = w.unbind(2)
    return torch.stack([torch.addcmul(-(u2 * w1), u1, w2), torch.addcmul(-(u0 * w2), u2, w0),
                        torch.addcmul(-(u1 * w0), u0, w1)], dim=2)


class _Cross(torch.autograd.Function):
    """``torch.cross(u, w, dim=2)`` for [B, n, 3, H] tensors, 3–4× faster: the library kernel is slow
    on a non-last dimension and was a tenth of a forward pass. Values and gradients (w × g, g × u, as
    PyTorch's) are bit-for-bit those of ``torch.cross``, so trained weights do not change."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(u, w)
        return _products_cross(u, w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u, w = ctx.saved_tensors
        return _Cross.apply(w, grad), _Cross.apply(grad, u)


class _Update(nn.Module):
    """PaiNN update block with a chirality-sensitive cross product (ChiroPaiNN)."""

    def __init__(self, hidden: int, embedding: int):
        super().__init__()
        self.hidden = hidden
        self.mix = nn.Linear(hidden, 3 * hidden, bias=False)  # U, V, W mixes of the vector channels
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.modulation = nn.Linear(embedding, 2 * hidden)
        self.net = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 4 * hidden))

    def forward(self, s, v, emb):
        u, w, z = self.mix(v).split(self.hidden, dim=-1)  # each [B,n,3,H]
        cross = _Cross.apply(u, w)  # pseudovector: flips relative to vectors under reflection
        triple = (cross * z).sum(2)  # pseudoscalar [B,n,H]
        norm_w = torch.sqrt((w * w).sum(2) + 1e-8)
        scale, shift = self.modulation(emb)[:, None, :].chunk(2, dim=-1)
        h = self.norm(s) * (1 + scale) + shift
        a_vv, a_sv, a_ss, a_cross = self.net(torch.cat([h, norm_w, triple], dim=-1)).split(self.hidden, dim=-1)
        v = v + a_vv[:, :, None, :] * u + a_cross[:, :, None, :] * cross
        s = s + a_ss + a_sv * (u * w).sum(2)
        return s, v


class EquivariantTransitionNet(nn.Module):
    r"""Inner network F(x_in, c_noise; x^σ, x_t, N) → [B, 3·n_atoms] for molecules.

    Equivariant under proper rotations and translations of all structures together, not under
    reflections (see the module docstring). Output has zero centroid.

    Parameters
    ----------
    graph : MoleculeGraph
        Atom types and bond-graph distances (from the topology).
    hidden : int
        Scalar and vector channels per atom.
    n_layers : int
        Message-passing layers (interaction + update).
    n_frequencies : int
        Sinusoidal frequencies of the noise-level and lag embeddings.
    conditional : bool
        Transition model (needs ``cond`` and ``lag``) or equilibrium model (neither).
    max_log_lag : float
        ln of the largest training lag (range of the lag embedding).
    n_radial : int
        Gaussian radial basis functions per geometry.
    cutoff : float
        Range of the radial basis (nm); all pairs interact.
    """

    def __init__(self, graph: MoleculeGraph, hidden: int = 32, n_layers: int = 3, n_frequencies: int = 16,
                 conditional: bool = True, max_log_lag: float = math.log(1000.0), n_radial: int = 8,
                 cutoff: float = 1.0):
        super().__init__()
        if hidden < 1 or n_layers < 1:
            raise InvalidInputError("EquivariantTransitionNet needs hidden and n_layers ≥ 1")
        # Its pair tensors are allocated afresh at every evaluation: without this, glibc maps and
        # unmaps them each time and training and sampling run ~2x slower from Python than from the
        # itomd executable, which sets the same (process-wide; numbers unchanged; itomd._allocator).
        keep_freed_memory()
        self.graph = graph
        self.n_atoms = graph.n_atoms
        self.hidden = int(hidden)
        self.n_layers = int(n_layers)
        self.conditional = bool(conditional)
        n_types = max(graph.atom_types) + 1
        self.register_buffer("atom_types", torch.tensor(graph.atom_types, dtype=torch.long), persistent=False)
        distance = torch.tensor(graph.graph_distance, dtype=torch.long)
        self.register_buffer("graph_distance", distance, persistent=False)
        self.type_embedding = nn.Embedding(n_types, hidden)
        self.radial = _RadialBasis(n_radial, cutoff)
        n_edge = 2 * n_radial + (MAX_GRAPH_DISTANCE + 1) if conditional else n_radial + (MAX_GRAPH_DISTANCE + 1)
        self.noise_embedding = SinusoidalEmbedding(n_frequencies, 0.05, 5.0)
        emb_in = self.noise_embedding.out_features
        if conditional:
            self.lag_embedding = SinusoidalEmbedding(n_frequencies, 0.5 / max(max_log_lag, 1.0), 5.0)
            emb_in += self.lag_embedding.out_features
        self.embed = nn.Sequential(nn.Linear(emb_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.displacement_in = nn.Linear(1, hidden, bias=False)
        self.interactions = nn.ModuleList([_Interaction(hidden, n_edge, self.n_atoms) for _ in range(n_layers)])
        self.updates = nn.ModuleList([_Update(hidden, hidden) for _ in range(n_layers)])
        self.output = nn.Linear(hidden, 1, bias=False)
        nn.init.zeros_(self.output.weight)
        if graph.elements is not None:  # created last: the other weights start as without it
            self.register_buffer("element_types", torch.tensor(graph.element_types, dtype=torch.long),
                                 persistent=False)
            self.element_embedding = nn.Embedding(len(graph.element_names), hidden)
        else:  # a model file from before elements were recorded: the network it was trained as
            self.element_types = None
            self.element_embedding = None

    def atom_features(self) -> torch.Tensor:
        """The atoms' initial scalar features [n_atoms, hidden]: (element embedding + (residue, atom)
        embedding)/√2, or the (residue, atom) embedding alone for a graph without elements."""
        s = self.type_embedding(self.atom_types)
        if self.element_embedding is not None:  # the sum keeps the variance of one embedding at init
            s = (s + self.element_embedding(self.element_types)) * _SQRT_HALF
        return s

    def _geometry(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Radial features [B,n,n,R] and unit vectors [B,n,n,3] (pair i→j: x_j − x_i)."""
        positions = x.reshape(x.shape[0], self.n_atoms, 3)
        r = positions[:, None, :, :] - positions[:, :, None, :]
        d = torch.sqrt((r * r).sum(-1) + 1e-10)
        return self.radial(d), r / d[..., None]

    #: Without gradients, batches are evaluated in pieces whose pair tensors ([piece, n, n, 4·hidden])
    #: hold at most this many numbers (2²⁶: 256 MB in float32; 1,057 alanine-dipeptide structures at
    #: 32 channels). A class attribute, so a user may set it for a device with more or less memory.
    max_pair_elements: int = 2**26

    #: The dtype of the pair tensors (edge features, pair directions, filters and messages) when
    #: gradients are off: float32, or ``torch.bfloat16`` to halve their memory traffic — the cost of
    #: an evaluation on a CPU (BENCHMARKS.md, "The molecular network in bfloat16"). Atom features,
    #: updates and sums of messages stay in the inputs' dtype; training (gradients on) always runs
    #: in it. Set by :meth:`itomd.models.TransitionModel.set_precision`; not part of the weights.
    pair_dtype: torch.dtype = torch.float32

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, positions: torch.Tensor | None = None,
                cond: torch.Tensor | None = None, lag: torch.Tensor | None = None) -> torch.Tensor:
        """Network output (in pieces of the batch when gradients are off; see :attr:`max_pair_elements`).

        Parameters
        ----------
        x_in : torch.Tensor, shape [B, 3·n_atoms]
            Preconditioned displacement of the noisy structure from the denoiser's centre.
        c_noise : torch.Tensor, shape [B]
        positions : torch.Tensor, shape [B, 3·n_atoms]
            The noisy structure itself (nm).
        cond : torch.Tensor, shape [B, 3·n_atoms], optional
            x_t (transition models).
        lag : torch.Tensor, shape [B], optional
            N in frames (transition models).

        Returns
        -------
        torch.Tensor, shape [B, 3·n_atoms], zero centroid
        """
        b = x_in.shape[0] if x_in.ndim == 2 else 0
        if self.compiled and b > 0:
            compiled = _compiled_forward(self)
            if compiled is not None:
                return self._forward_compiled(compiled, x_in, c_noise, positions, cond, lag)
        piece = max(1, self.max_pair_elements // self.pair_elements_per_structure)
        if b <= piece or torch.is_grad_enabled():
            return self._forward(x_in, c_noise, positions, cond, lag)

        def part(t: torch.Tensor | None, i: int) -> torch.Tensor | None:
            return t[i:i + piece] if isinstance(t, torch.Tensor) and t.ndim > 0 and t.shape[0] == b else t

        return torch.cat([self._forward(part(x_in, i), part(c_noise, i), part(positions, i), part(cond, i), part(lag, i))
                          for i in range(0, b, piece)])

    def _check_inputs(self, x_in: torch.Tensor, positions: torch.Tensor | None, cond: torch.Tensor | None,
                      lag: torch.Tensor | None) -> None:
        """One-line errors for inputs of the wrong shape or kind (:meth:`forward`'s parameters)."""
        dim = 3 * self.n_atoms
        if x_in.ndim != 2 or x_in.shape[1] != dim:
            raise InvalidInputError(f"expected structures of shape [B, {dim}], got {tuple(x_in.shape)}")
        if positions is None or positions.shape != x_in.shape:
            raise InvalidInputError("EquivariantTransitionNet needs positions= (the noisy structure) of the input's shape")
        if self.conditional:
            if cond is None or lag is None:
                raise InvalidInputError("a conditional EquivariantTransitionNet needs cond= (x_t) and lag= (N)")
            if cond.shape != x_in.shape:
                raise InvalidInputError(f"cond must have shape {tuple(x_in.shape)}, got {tuple(cond.shape)}")
        elif cond is not None or lag is not None:
            raise InvalidInputError("an unconditional EquivariantTransitionNet takes no cond/lag")

    #: Evaluate through ``torch.compile`` (inductor): the message sums become fused loops that read
    #: each pair tensor once instead of the einsums' permuting copies — the same function (float32
    #: outputs agree to rounding), ~2× the evaluations per second on a CPU, 1.6–1.8× the training steps
    #: (BENCHMARKS.md, "The molecular network compiled"). Set by
    #: :meth:`itomd.models.TransitionModel.set_compiled` for sampling and by ``TrainingConfig.compile``
    #: for training. Where the compiler is unavailable (no C++ compiler, an unsupported device) the
    #: first evaluation warns once and the network runs eagerly.
    compiled: bool = False

    #: Compiled evaluation on a CPU runs in pieces of a power-of-two number of structures whose pair
    #: tensors hold at most this many numbers (2²³: 128 alanine-dipeptide structures, small enough to
    #: stay in a CPU's cache; on a GPU :attr:`max_pair_elements` bounds them); a shorter last piece is padded to the next power of two (at least 8), so a
    #: rollout compiles a handful of shapes once (the compiler caches them on disk between runs).
    compiled_pair_elements: int = 2**23

    @property
    def pair_elements_per_structure(self) -> int:
        """Numbers in one structure's pair tensor [n, n, 4·hidden] (what pieces are sized by)."""
        return self.n_atoms**2 * 4 * self.hidden

    def compiled_piece(self, device: torch.device | str = "cpu") -> int:
        """Structures per piece of a compiled evaluation on ``device``: the largest power of two whose
        pair tensors hold at most :attr:`compiled_pair_elements` numbers on a CPU (its cache), at most
        :attr:`max_pair_elements` on a GPU (whose kernels want large batches); at least 1."""
        limit = self.compiled_pair_elements if torch.device(device).type == "cpu" else self.max_pair_elements
        fits = max(1, limit // self.pair_elements_per_structure)
        return 1 << (fits.bit_length() - 1)

    def _forward_compiled(self, compiled: Any, x_in: torch.Tensor, c_noise: torch.Tensor,
                          positions: torch.Tensor | None, cond: torch.Tensor | None,
                          lag: torch.Tensor | None) -> torch.Tensor:
        """:meth:`forward` through the compiled :meth:`_forward`: without gradients in pieces of fixed
        shapes, with them (training, whose batch size is fixed) the whole batch."""
        self._check_inputs(x_in, positions, cond, lag)
        b = x_in.shape[0]
        # Per-structure tensors of shape [B] (a float lag or a 0-d noise level would make the compiler
        # specialise on its value and compile again for every lag).
        c_noise = torch.as_tensor(c_noise, dtype=x_in.dtype, device=x_in.device).expand(b)
        if lag is not None:
            lag = torch.as_tensor(lag, dtype=x_in.dtype, device=x_in.device).expand(b)
        training = torch.is_grad_enabled()
        piece = b if training else self.compiled_piece(x_in.device)
        outputs = []
        for start in range(0, b, piece):
            n = min(piece, b - start)
            size = n if training else min(piece, max(8, 1 << (n - 1).bit_length()))

            def part(t: torch.Tensor | None) -> torch.Tensor | None:
                if t is None:
                    return None
                t = t[start:start + n]
                return torch.cat([t, t[-1:].expand(size - n, *t.shape[1:])]) if size > n else t.contiguous()

            arguments = (part(x_in), part(c_noise), part(positions), part(cond), part(lag))
            try:
                with warnings.catch_warnings():  # torch's own deprecation notes while compiling, not the user's business
                    warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated")
                    out = compiled(*arguments)
            except InvalidInputError:
                raise
            except Exception as error:  # noqa: BLE001 — the compiler's failures are many; eager is always right
                _COMPILED[self] = None
                warnings.warn(f"torch.compile could not compile the molecular network ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''}); it runs eagerly", stacklevel=2)
                return self.forward(x_in, c_noise, positions, cond, lag)
            outputs.append(out[:n])
        return torch.cat(outputs)

    def _forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, positions: torch.Tensor | None,
                 cond: torch.Tensor | None, lag: torch.Tensor | None) -> torch.Tensor:
        """:meth:`forward` on one piece of the batch."""
        self._check_inputs(x_in, positions, cond, lag)
        dim = 3 * self.n_atoms
        b = x_in.shape[0]
        features = [self.noise_embedding(c_noise.to(x_in.dtype))]
        radial, unit = self._geometry(positions)
        edge = [radial]
        if self.conditional:
            lag = torch.as_tensor(lag, dtype=x_in.dtype, device=x_in.device).expand(b)
            features.append(self.lag_embedding(lag.log()))
            radial_t, unit_t = self._geometry(cond)
            edge.append(radial_t)
        else:
            unit_t = None
        bonds = nn.functional.one_hot(self.graph_distance, MAX_GRAPH_DISTANCE + 1).to(x_in.dtype)
        edge.append(bonds.expand(b, -1, -1, -1))
        edge = torch.cat(edge, dim=-1)
        if self.pair_dtype != x_in.dtype and not torch.is_grad_enabled():  # sampling in lower precision
            edge, unit = edge.to(self.pair_dtype), unit.to(self.pair_dtype)
            unit_t = None if unit_t is None else unit_t.to(self.pair_dtype)
        emb = self.embed(torch.cat(features, dim=-1))

        s = self.atom_features().expand(b, -1, -1)
        displacement = remove_centroid(x_in, self.n_atoms).reshape(b, self.n_atoms, 3)
        v = self.displacement_in(displacement[..., None])  # [B,n,3,H]
        for interaction, update in zip(self.interactions, self.updates):
            s, v = interaction(s, v, edge, unit, unit_t)
            s, v = update(s, v, emb)
        out = self.output(v).squeeze(-1)  # [B,n,3]
        return remove_centroid(out.reshape(b, dim), self.n_atoms)


#: The compiled :meth:`EquivariantTransitionNet._forward` of each network (None: compiling failed, the
#: network runs eagerly). Kept outside the module so that copies, pickles and state dicts of a network
#: never carry compiled code.
_COMPILED: "weakref.WeakKeyDictionary[EquivariantTransitionNet, Callable | None]" = weakref.WeakKeyDictionary()

#: Compiled shapes a process may hold per compiled function before torch falls back to eager code:
#: every network (BoPITO has two), piece size and pair dtype is one.
_RECOMPILE_LIMIT = 64


def equivariant_networks(module: nn.Module) -> list[EquivariantTransitionNet]:
    """The equivariant networks inside ``module`` (a denoiser: its transition network and, for BoPITO,
    a learned prior's); [] for a toy system's."""
    return [m for m in module.modules() if isinstance(m, EquivariantTransitionNet)]


def set_compiled(module: nn.Module, compiled: bool) -> None:
    """Evaluate (sampling and training alike) every equivariant network inside ``module`` through
    ``torch.compile``, or not (:attr:`EquivariantTransitionNet.compiled`); compiling a module without
    one (a toy system's MLP) is an error: one line."""
    networks = equivariant_networks(module)
    if compiled and not networks:
        raise InvalidInputError("--compile applies to molecular models (the equivariant network's message "
                                "passing); this model's network runs eagerly")
    for network in networks:
        network.compiled = bool(compiled)


def _compiled_forward(network: EquivariantTransitionNet) -> Callable | None:
    """The network's compiled :meth:`~EquivariantTransitionNet._forward` (created on first use;
    compilation itself happens at the first call of each shape), or None after a failure."""
    if network not in _COMPILED:
        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, _RECOMPILE_LIMIT)
        _COMPILED[network] = torch.compile(network._forward, dynamic=False)
    return _COMPILED[network]
