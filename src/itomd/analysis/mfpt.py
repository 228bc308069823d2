r"""Mean first passage times (MFPTs) between metastable basins, from MSMs, with Bayesian intervals.

The MFPT from basin A to basin B is the mean time a trajectory started in A — distributed as the
equilibrium density restricted to A — needs to first enter B. It is the kinetic number that the ITO
paper compared between surrogates and MD for its proteins, and unlike an implied timescale it names
which transition is fast or slow.

**From an MSM** (deeptime, ``MarkovStateModel.mfpt``): with the reversible maximum-likelihood
transition matrix P at lag τ on the largest connected set,

.. math::
    m_i = 0 \;(i \in B), \qquad m_i = \tau\Delta t + \sum_j P_{ij}\, m_j \;(i \notin B), \qquad
    \mathrm{MFPT}(A \to B) = \frac{\sum_{i \in A} \pi_i m_i}{\sum_{i \in A} \pi_i},

with Δt the frame interval. The MSM sees the trajectory only every τ, so it misses excursions into B
shorter than τ and its MFPT converges from above as τ shrinks (and from any side as the states get
finer); compare estimates at the same lag time and on the same states, as :func:`compare
<itomd.analysis.pipeline.compare>` does. Intervals: quantiles over transition matrices sampled from
deeptime's Bayesian MSM posterior given the effective counts (as for implied timescales,
:mod:`itomd.analysis.msm`). The number of observed basin-to-basin switches is recorded with every
estimate: an MFPT that rests on a handful of transitions has an interval to match.

**Basins** (:class:`Basins`): a partition of the MSM states into named sets. A featurizer that knows
its molecule's basins provides them (alanine dipeptide: αR, β/PII and αL by the φ/ψ of each state,
:func:`ramachandran_basins`); otherwise they are the crisp PCCA+ metastable sets of the MSM
(:func:`pcca_basins`, ordered by population, the sets of the CK test).

**Exact** (toy systems): :func:`exact_mean_first_passage_times` solves :math:`Q m = -1` off B with
the SqRA generator Q of the exact reference (:mod:`itomd.systems.reference`), each grid cell in the
basin of the MSM state it falls in — the continuous-time limit of the same quantity.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
from deeptime.markov import BayesianMSMPosterior
from deeptime.markov.msm import MarkovStateModel
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg

from itomd.analysis._axes import DEFAULT_TIME_UNIT
from itomd.analysis.msm import DEFAULT_N_SAMPLES, _check_confidence, _estimate_msm, _to_json
from itomd.errors import InvalidInputError

if TYPE_CHECKING:
    import matplotlib.axes

    from itomd.analysis.discretize import Discretization
    from itomd.systems.reference import ExactReference

#: Ramachandran basin cores of a residue, boxes in (φ, ψ) degrees (ψ ranges may wrap): αR, β/PII (the
#: extended region with C7eq) and αL (with C7ax). States between them belong to no core.
RAMACHANDRAN_CORES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "αR": ((-180.0, -20.0), (-100.0, 30.0)),
    "β/PII": ((-180.0, -20.0), (100.0, -150.0)),
    "αL": ((20.0, 160.0), (-180.0, 180.0)),
}
#: PCCA+ membership a state needs to belong to the core of its metastable set.
CORE_MEMBERSHIP = 0.9


@dataclass(frozen=True)
class Basins:
    """A partition of MSM states into named basins.

    Attributes
    ----------
    names : tuple of str
        Basin names, in the order of the MFPT matrices.
    labels : np.ndarray of int, shape [n_states]
        Basin (core) index of each state of the discretisation; −1 for a state in no core (the
        transition regions between them).
    definition : str
        How the basins were made (for notes and the report).
    """

    names: tuple[str, ...]
    labels: np.ndarray
    definition: str

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=int)
        if labels.ndim != 1 or np.any(labels < -1) or np.any(labels >= len(self.names)):
            raise InvalidInputError(f"basin labels must be −1 or an index below {len(self.names)}, one per state")
        if len(self.names) < 2:
            raise InvalidInputError("first passage times need at least two basins")
        object.__setattr__(self, "labels", labels)

    @property
    def n_basins(self) -> int:
        return len(self.names)

    def states(self, basin: int) -> np.ndarray:
        """The states of basin ``basin`` (indices of the discretisation)."""
        return np.flatnonzero(self.labels == basin)

    def of_frames(self, dtrajs: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Basin index of every frame of discrete trajectories (−1: in no basin)."""
        return [self.labels[np.asarray(d, dtype=int)] for d in dtrajs]


def ramachandran_basins(centers: np.ndarray) -> Basins:
    """The cores αR, β/PII and αL (:data:`RAMACHANDRAN_CORES`) of states given by their (φ, ψ) centres
    in radians, [n_states, 2]; states outside every core get −1."""
    centers = np.asarray(centers, dtype=float)
    if centers.ndim != 2 or centers.shape[1] != 2:
        raise InvalidInputError(f"Ramachandran basins need (φ, ψ) state centres [n, 2], got {centers.shape}")
    phi, psi = np.degrees(centers[:, 0]), np.degrees(centers[:, 1])
    labels = np.full(len(centers), -1)
    for index, (phi_range, psi_range) in enumerate(RAMACHANDRAN_CORES.values()):
        labels[(labels < 0) & _in_range(phi, phi_range) & _in_range(psi, psi_range)] = index
    boxes = "; ".join(f"{name} φ ∈ ({a:g}°, {b:g}°), ψ ∈ ({c:g}°, {d:g}°)"
                      for name, ((a, b), (c, d)) in RAMACHANDRAN_CORES.items())
    return Basins(tuple(RAMACHANDRAN_CORES), labels, f"Ramachandran cores ({boxes}; ψ ranges wrap at ±180°)")


def _in_range(angle: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Whether angles (degrees) lie in (low, high), the range wrapping through ±180° where low > high."""
    low, high = bounds
    return ((angle > low) & (angle < high)) if low < high else ((angle > low) | (angle < high))


def pcca_basins(msm: MarkovStateModel, n_basins: int, n_states: int) -> Basins:
    """The cores of the PCCA+ metastable sets of ``msm`` as basins, largest population first: the
    states whose membership of a set is at least :data:`CORE_MEMBERSHIP` (PCCA+ puts at least one state
    fully in each set); the transition states between them belong to no core.

    Parameters
    ----------
    msm : MarkovStateModel
        Reversible, on a connected subset of the discretisation's states (its count model's state
        symbols).
    n_basins : int
        Number of metastable sets (≥ 2).
    n_states : int
        States of the whole discretisation (those outside the MSM get no basin).
    """
    if int(n_basins) != n_basins or n_basins < 2:
        raise InvalidInputError(f"need an integer number ≥ 2 of basins, got {n_basins}")
    if n_basins > msm.n_states:
        raise InvalidInputError(f"{n_basins} basins requested but the MSM has {msm.n_states} states")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pcca = msm.pcca(int(n_basins))
    memberships = np.asarray(pcca.memberships, dtype=float)
    assignments = np.argmax(memberships, axis=1)
    populations = np.bincount(assignments, weights=msm.stationary_distribution, minlength=n_basins)
    order = np.argsort(-populations, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(n_basins)
    labels = np.full(int(n_states), -1)
    core = memberships.max(axis=1) >= CORE_MEMBERSHIP
    labels[np.asarray(msm.count_model.state_symbols, dtype=int)[core]] = rank[assignments[core]]
    return Basins(tuple(f"S{i + 1}" for i in range(n_basins)), labels,
                  f"cores (membership ≥ {CORE_MEMBERSHIP:g}) of the PCCA+ metastable sets of the MSM at lag "
                  f"{msm.lagtime} frames, largest population first")


@dataclass
class MFPTResult:
    """Mean first passage times between basins from an MSM at one lag.

    Attributes
    ----------
    basins : Basins
    lag : int
        MSM lag in frames.
    lag_time : float
        The lag in physical time.
    times : np.ndarray, shape [m, m]
        MFPT from basin i (row) to basin j (column), maximum likelihood; NaN on the diagonal and for
        basins outside the MSM's connected set.
    lower, upper : np.ndarray, shape [m, m]
        Bounds of the Bayesian interval (NaN where not computed).
    confidence : float
    populations : np.ndarray, shape [m]
        Stationary probability of each basin in the MSM.
    transitions : np.ndarray of int, shape [m, m]
        Observed switches from basin i to basin j between consecutive frames (frames in no basin
        skipped): the number of events the estimate rests on.
    reference : np.ndarray, shape [m, m], optional
        Exact MFPTs (toy systems).
    time_unit : str
    """

    basins: Basins
    lag: int
    lag_time: float
    times: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    confidence: float
    populations: np.ndarray
    transitions: np.ndarray
    reference: np.ndarray | None = None
    time_unit: str = DEFAULT_TIME_UNIT

    @property
    def names(self) -> tuple[str, ...]:
        return self.basins.names

    def pairs(self) -> list[tuple[int, int]]:
        """(from, to) basin pairs off the diagonal, row by row."""
        m = self.basins.n_basins
        return [(i, j) for i in range(m) for j in range(m) if i != j]

    def estimated_pairs(self, *others: "MFPTResult") -> list[tuple[int, int]]:
        """The pairs with an estimate in this result or one of ``others`` (on the same basins)."""
        return [(i, j) for i, j in self.pairs() if any(np.isfinite(r.times[i, j]) for r in (self, *others))]

    def missing_basins(self) -> list[str]:
        """Basins none of whose states is in the MSM's connected set (no passage time to or from them)."""
        return [name for i, name in enumerate(self.names)
                if np.all(np.isnan(np.delete(self.times[i], i))) and np.all(np.isnan(np.delete(self.times[:, i], i)))]

    def relative_error_vs_reference(self) -> np.ndarray | None:
        """(estimate − exact)/exact per pair [m, m]; None without a reference."""
        return None if self.reference is None else self.times / self.reference - 1.0

    def to_dict(self) -> dict:
        """JSON-serialisable summary (NaN becomes null); times in physical units."""
        error = self.relative_error_vs_reference()
        return {"basins": list(self.names), "definition": self.basins.definition, "lag": int(self.lag),
                "lag_time": float(self.lag_time), "time_unit": self.time_unit, "times": _to_json(self.times),
                "lower": _to_json(self.lower), "upper": _to_json(self.upper), "confidence": float(self.confidence),
                "populations": _to_json(self.populations), "transitions": self.transitions.astype(int).tolist(),
                "reference": None if self.reference is None else _to_json(self.reference),
                "relative_error": None if error is None else _to_json(error)}

    def plot(self, ax: "matplotlib.axes.Axes | None" = None, others: Sequence[tuple[str, "MFPTResult"]] = ()
             ) -> "matplotlib.axes.Axes":
        """MFPT per (from → to) pair with an estimate on a log axis with its interval, beside ``others``
        (label, result) on the same basins (e.g. MD) and the exact values (black bars) where known."""
        import matplotlib.pyplot as plt

        if ax is None:
            ax = plt.subplots(figsize=(5.5, 4.0))[1]
        pairs = self.estimated_pairs(*(result for _, result in others))
        x = np.arange(len(pairs))
        series = [("this data", self), *others]
        width = 0.8 / len(series)
        for k, (label, result) in enumerate(series):
            offset = (k - (len(series) - 1) / 2) * width
            values = np.array([result.times[i, j] for i, j in pairs])
            low = np.array([result.lower[i, j] for i, j in pairs])
            high = np.array([result.upper[i, j] for i, j in pairs])
            has_band = np.isfinite(low) & np.isfinite(high)
            errors = np.vstack([np.where(has_band, values - low, 0), np.where(has_band, high - values, 0)])
            ax.errorbar(x + offset, values, yerr=np.clip(errors, 0, None), fmt="os"[k % 2], ms=5, capsize=3,
                        label=label)
        if self.reference is not None:
            exact = np.array([self.reference[i, j] for i, j in pairs])
            ax.hlines(exact, x - 0.45, x + 0.45, colors="k", lw=1.5, label="exact")
        ax.set_yscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels([f"{self.names[i]}→{self.names[j]}" for i, j in pairs], fontsize=8,
                           rotation=30 if len(pairs) > 6 else 0)
        ax.set_ylabel(f"mean first passage time ({self.time_unit})")
        ax.set_title(f"MFPTs between basins (MSM at {self.lag_time:g} {self.time_unit}, "
                     f"{self.confidence:.0%} CI)", fontsize=10)
        ax.legend(fontsize=8)
        return ax


def mean_first_passage_times(
    dtrajs: Sequence[np.ndarray],
    frame_interval: float,
    lag: int,
    basins: Basins,
    n_samples: int = DEFAULT_N_SAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
    time_unit: str = DEFAULT_TIME_UNIT,
) -> MFPTResult:
    """MFPTs between ``basins`` from a reversible MSM at ``lag`` frames (module docstring).

    Parameters
    ----------
    dtrajs : list of np.ndarray, each [n_frames_i], int
        Discrete trajectories on the states ``basins`` partitions.
    frame_interval : float
        Physical time between frames.
    lag : int
        MSM lag in frames.
    basins : Basins
    n_samples : int
        Bayesian posterior samples for the interval (0: none).
    confidence : float
    seed : int
        Seed of the posterior sampler.
    time_unit : str

    Returns
    -------
    MFPTResult
    """
    confidence = _check_confidence(confidence)
    lag = int(lag)
    model = _estimate_msm(list(dtrajs), lag, n_samples, seed)
    if model is None:
        raise InvalidInputError(f"the MSM at lag {lag} frames has fewer than two connected states")
    prior = model.prior if isinstance(model, BayesianMSMPosterior) else model
    active = np.asarray(prior.count_model.state_symbols, dtype=int)
    members = [np.flatnonzero(np.isin(active, basins.states(b))) for b in range(basins.n_basins)]  # MSM indices
    m = basins.n_basins

    def matrix(msm: MarkovStateModel) -> np.ndarray:
        out = np.full((m, m), np.nan)
        for i in range(m):
            for j in range(m):
                if i != j and members[i].size and members[j].size:
                    out[i, j] = float(msm.mfpt(members[i], members[j])) * frame_interval
        return out

    times = matrix(prior)
    lower = upper = np.full((m, m), np.nan)
    if isinstance(model, BayesianMSMPosterior):
        samples = np.stack([matrix(s) for s in model.samples])
        alpha = (1.0 - confidence) / 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # all-NaN pairs
            lower, upper = np.nanquantile(samples, alpha, axis=0), np.nanquantile(samples, 1 - alpha, axis=0)
    populations = np.array([prior.stationary_distribution[idx].sum() for idx in members])
    return MFPTResult(basins=basins, lag=lag, lag_time=lag * frame_interval, times=times, lower=lower, upper=upper,
                      confidence=confidence, populations=populations,
                      transitions=basin_transitions(basins.of_frames(dtrajs), m), time_unit=str(time_unit))


def basin_transitions(basin_trajectories: Sequence[np.ndarray], n_basins: int) -> np.ndarray:
    """Switches from basin i to basin j between consecutive assigned frames, [n_basins, n_basins]."""
    counts = np.zeros((n_basins, n_basins), dtype=int)
    for labels in basin_trajectories:
        labels = np.asarray(labels)[np.asarray(labels) >= 0]
        if len(labels) > 1:
            change = labels[1:] != labels[:-1]
            np.add.at(counts, (labels[:-1][change], labels[1:][change]), 1)
    return counts


def exact_mean_first_passage_times(reference: "ExactReference", discretization: "Discretization",
                                   basins: Basins) -> np.ndarray:
    r"""Exact MFPTs [m, m] between basins of a toy system: :math:`Q m = -1` off the target basin.

    Each cell of the reference grid belongs to the basin of the state it is assigned to
    (``discretization.transform``); Q is the SqRA generator on the grid (rates out of each cell)
    and the start density within a basin is the exact equilibrium density.
    """
    from itomd.systems.reference import sqra_generator

    states = discretization.transform([reference.points])[0]
    cell_basin = basins.labels[states]
    symmetric = sqra_generator(reference.energy, reference.spacing, reference.kT, reference.diffusion).tocsr()
    log_p = reference.log_density.ravel()
    root = np.exp(0.5 * (log_p - log_p.max()))
    generator = sparse.diags(1.0 / root) @ symmetric @ sparse.diags(root)  # Q = Π^{-1/2} S Π^{1/2}
    pi = np.exp(log_p - log_p.max())
    pi /= pi.sum()
    m = basins.n_basins
    out = np.full((m, m), np.nan)
    for j in range(m):
        outside = np.flatnonzero(cell_basin != j)
        if outside.size == len(cell_basin):
            continue
        block = generator[outside][:, outside].tocsc()
        passage = np.zeros(len(cell_basin))
        passage[outside] = sparse_linalg.spsolve(block, -np.ones(outside.size))
        for i in range(m):
            start = cell_basin == i
            if i != j and start.any():
                out[i, j] = float(np.sum(pi[start] * passage[start]) / np.sum(pi[start]))
    return out
