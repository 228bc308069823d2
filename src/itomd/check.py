r"""Does a model agree with itself across time scales? The multi-time-scale self-consistency check.

A transition density learned for every lag must obey Chapman–Kolmogorov: one jump of lag N and k
nested jumps of lag N/k, from the same start state x₀, are two samples of the same distribution
p(x_{t+Nτ} | x_t = x₀). ITO's paper uses this to judge models without reference data;
:func:`self_consistency` (the ``itomd check`` command) measures it.

For each lag N, each split k (N divisible by k) and each of a few start states, the model draws

* ``direct``  — ``n_samples`` end points of one jump of N,
* ``direct'`` — ``n_samples`` more, with other noise (the sampling-noise floor), and
* ``nested``  — ``n_samples`` end points of k jumps of N/k,

and compares their histograms (JS divergence in nats; toy systems: the coordinates, on a fixed grid
over the system's box; molecules: every backbone torsion, the largest per-torsion value) and the
conditional expectations E[f(x_{t+Nτ}) | x₀] of slow observables f (toy systems with an exact
reference: its slowest eigenfunctions, whose exact expectation is e^{κNτ} f(x₀); otherwise the
features — cos and sin of each torsion for molecules), in units of f's standard deviation. A
conditional expectation is the transfer operator applied to f: its difference is the |ΔC| of the
slow observables, start by start. Records keep the worst start.

Judging a number needs its noise: JS of histograms is biased upwards by finite samples, so
``js_floor`` (direct vs direct') is what a perfectly self-consistent model scores with these sample
sizes. A record is **flagged** when the direct-vs-nested JS exceeds :data:`FLAG_FACTOR` × that floor.
For toy systems the exact transfer operator is sampled too — the system's own Langevin integrator
(the dynamics the model learned, time-step error far below these sample sizes' noise) run for N·τ
from the same start states, twice: the records add direct and nested against exact samples, and
exact-vs-exact at the same sample size, the floor the ITO paper's diagnostic is judged by. (An
SqRA propagator e^{Qt} on the reference grid would be exact too, but its generator is stiff — exit
rates ~10⁵ on a 240² Müller–Brown grid — and costs minutes per lag.) With an exact reference
(dimension ≤ 2) the slow observables are its eigenfunctions, whose exact conditional expectation
e^{κNτ} f(x₀) needs no sampling.

Kinetics against the user's own MD (:func:`kinetics_against_data`, ``itomd check --kinetics LAGS
--from DIR``). Self-consistency cannot tell whether a model's kinetics are right: a model can agree
with itself and still be 20 % slow (BENCHMARKS.md, "The same recipe, other seeds"). The MD a model was
trained on can: from its frames the model rolls out short chains of jumps of N, and the slowest
implied timescale of an MSM of those chains is compared with the MD's at the same lag times (N, 2N,
3N, 5N), on the same states (:func:`~itomd.analysis.compare`). On alanine dipeptide the ratio of a
rollout against the training MD was within 0.04 of its ratio against independent MD for five models
whose ratios spread from 0.66 to 1.34, and the check's own rollouts agreed with the benchmark's verdicts
(BENCHMARKS.md, "Training noise levels for short-lag kinetics").

A lag time is **flagged** when both estimates resolve the process and the ratio is outside
1 ± :data:`KINETICS_TOLERANCE`, or when only one resolves it (the other's timescale is then at most
about the larger of the lag time and its own unresolved estimate) and the resolved timescale is off
that bound by more than the tolerance (a model so fast that its process is gone within the lag time
is flagged, not skipped; an MD estimate just short of resolving at the lag time flags nothing). The MD's own
credible interval is recorded beside it (``data_interval``) but does not decide the flag: Bayesian MSM
intervals of a barely resolved process can be open-ended, and a 20 % error is what the field's
benchmarks judge.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from itomd.analysis.divergence import js_divergence
from itomd.errors import InvalidInputError
from itomd.models import TransitionModel
from itomd.rollout import DEFAULT_TOLERANCE, rollout
from itomd.validation import check_trajectories, require_int

#: A record is flagged when JS(direct, nested) exceeds this multiple of JS(direct, direct').
FLAG_FACTOR = 2.0
#: Start states and end points per start (and per sample set) by default.
DEFAULT_STARTS, DEFAULT_SAMPLES = 4, 1000
#: Splits k tried for each lag by default (those that divide it).
DEFAULT_SPLITS = (2, 4)
#: Histogram bins per coordinate of toy systems (1-D, 2-D).
COORDINATE_BINS = {1: 50, 2: 20}
#: A kinetics lag time is flagged when the slowest-timescale ratio model / MD is outside 1 ± this.
KINETICS_TOLERANCE = 0.2
#: Lag times of the kinetics comparison, in jumps of N.
KINETICS_LAG_JUMPS = (1, 2, 3, 5)
#: Walkers and jumps per walker of a kinetics comparison by default (≈ 4·10⁴ jumps: the rare basin changes
#: of a 1-ps alanine-dipeptide jump, ~1 % of jumps, are then counted a few hundred times).
DEFAULT_KINETICS_WALKERS, DEFAULT_KINETICS_JUMPS = 256, 160
#: File name of the check's result inside a run directory (read by ``itomd report``).
CHECK_FILE = "check.json"


@dataclass
class SelfConsistencyRecord:
    """Direct vs nested jumps at one (lag, split): the worst start state.

    Attributes
    ----------
    lag : int
        N, in frames of the training data.
    k : int
        Nested jumps of N/k.
    js_divergence : float
        JS (nats) of direct vs nested end points.
    js_floor : float
        JS of direct vs direct' (sampling noise at this sample size).
    flagged : bool
        ``js_divergence > FLAG_FACTOR * js_floor``.
    delta_expectation, delta_expectation_floor : float
        Largest |E_direct f − E_nested f| (resp. direct') over slow observables, in standard deviations of f.
    n_samples : int
        End points per set and start.
    start : int
        Index of the worst start state (largest js_divergence / js_floor).
    js_direct_vs_exact, js_nested_vs_exact, js_exact_floor : float or None
        Toy systems with an exact reference: against exact samples, and exact vs exact.
    delta_expectation_direct_vs_exact, delta_expectation_nested_vs_exact : float or None
        Against the exact conditional expectations e^{κNτ} f(x₀).
    per_start : list of dict
        ``js_divergence``, ``js_floor`` (and exact entries) of every start.
    """

    lag: int
    k: int
    js_divergence: float
    js_floor: float
    flagged: bool
    delta_expectation: float
    delta_expectation_floor: float
    n_samples: int
    start: int
    js_direct_vs_exact: float | None = None
    js_nested_vs_exact: float | None = None
    js_exact_floor: float | None = None
    delta_expectation_direct_vs_exact: float | None = None
    delta_expectation_nested_vs_exact: float | None = None
    per_start: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class KineticsRecord:
    """A model's slowest implied timescale against MD's at one jump lag N (:func:`kinetics_against_data`).

    Attributes
    ----------
    lag : int
        Jump lag N, in frames of the training data.
    lag_times : list of float, length L
        MSM lag times (N times :data:`KINETICS_LAG_JUMPS`), in the system's time unit.
    slowest_timescale_model, slowest_timescale_data : list of float or None, length L
        Slowest implied timescale of the rollout's and of the MD's MSM (None where unresolved: not
        above the lag time).
    data_interval : list of [float, float] or None, length L
        The MD estimate's credible interval (None where unresolved).
    ratio : list of float or None, length L
        Model / MD where both resolve the process.
    timescale_estimate_model, timescale_estimate_data : list of float or None, length L
        The slowest implied timescale estimates, resolved or not (None where the eigenvalue gives none).
    flagged_lag_times : list of bool, length L
        Both resolve the process and the ratio is outside 1 ± ``tolerance``, or one does not resolve it (its
        timescale is then at most about the larger of the lag time and its own estimate) where the other's
        exceeds that bound by more than the tolerance (e.g. a model so fast that its process is gone within
        the lag time).
    flagged : bool
        Any lag time flagged.
    resolved : bool
        Any lag time where both estimates resolve the process (else nothing can be judged here).
    tolerance : float
    js_divergence : float
        JS divergence (nats) of the rollout's frames against the MD's (the analysis's histogram).
    mfpt_ratio : dict or None
        Model / MD mean first passage times between the analysis's cores, where it has them.
    n_walkers, n_jumps : int
    redrawn_jumps : int
        Jumps drawn again because they blew up (``max_redraws``).
    """

    lag: int
    lag_times: list[float]
    slowest_timescale_model: list[float | None]
    slowest_timescale_data: list[float | None]
    data_interval: list[list[float] | None]
    ratio: list[float | None]
    timescale_estimate_model: list[float | None]
    timescale_estimate_data: list[float | None]
    flagged_lag_times: list[bool]
    flagged: bool
    resolved: bool
    tolerance: float
    js_divergence: float
    mfpt_ratio: dict[str, Any] | None
    n_walkers: int
    n_jumps: int
    redrawn_jumps: int = 0


@dataclass
class SelfConsistencyResult:
    """All records of one check, with what they were computed on."""

    records: list[SelfConsistencyRecord]
    starts: np.ndarray
    features: str
    observables: list[str]
    time_unit: str
    frame_interval: float
    sampler: str
    n_steps: int
    flag_factor: float = FLAG_FACTOR
    kinetics: list[KineticsRecord] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        """Whether any record is flagged (self-consistency or kinetics against MD)."""
        return any(r.flagged for r in self.records) or any(r.flagged for r in self.kinetics)

    def to_dict(self) -> dict[str, Any]:
        return {"self_consistency": [asdict(r) for r in self.records], "kinetics": [asdict(r) for r in self.kinetics],
                "flagged": self.flagged,
                "flag_factor": self.flag_factor, "features": self.features, "observables": self.observables,
                "time_unit": self.time_unit, "frame_interval": self.frame_interval, "sampler": self.sampler,
                "n_steps": self.n_steps, "starts": self.starts.tolist()}

    def summary(self) -> str:
        lines = [f"{'lag':>6} {'k':>3} {'JS direct/nested':>17} {'floor':>9} {'ratio':>6} {'Δ⟨f⟩':>7}"
                 + ("  JS direct/exact nested/exact exact/exact" if self.records and
                    self.records[0].js_exact_floor is not None else "")]
        for r in self.records:
            ratio = r.js_divergence / r.js_floor if r.js_floor > 0 else math.inf
            line = (f"{r.lag:>6} {r.k:>3} {r.js_divergence:>17.4g} {r.js_floor:>9.4g} {ratio:>6.2f} "
                    f"{r.delta_expectation:>7.3f}")
            if r.js_exact_floor is not None:
                line += f"  {r.js_direct_vs_exact:>15.4g} {r.js_nested_vs_exact:>12.4g} {r.js_exact_floor:>11.4g}"
            lines.append(line + ("  FLAGGED" if r.flagged else ""))
        inconsistent = any(r.flagged for r in self.records)
        verdict = (f"flagged: direct and nested jumps disagree beyond {self.flag_factor:g}× the sampling noise — "
                   "the model is not consistent with itself at these lags" if inconsistent else
                   f"consistent: every JS within {self.flag_factor:g}× the sampling noise")
        lines.append(f"({self.features}; JS in nats, worst start of {len(self.starts)}; "
                     f"Δ⟨f⟩ in standard deviations) {verdict}")
        for k in self.kinetics:
            redrawn = f", {k.redrawn_jumps} jumps redrawn" if k.redrawn_jumps else ""
            lines.append(f"kinetics against MD, jumps of {k.lag} ({k.n_walkers} × {k.n_jumps}{redrawn}; "
                         f"JS {k.js_divergence:.3g}): "
                         "slowest timescale model / MD at " + ", ".join(
                             f"{t:g} {self.time_unit}: " + (f"{m:.3g} / {d:.3g} = {r:.2f}" if r is not None else
                                                            f"{'unresolved' if m is None else f'{m:.3g}'} / "
                                                            f"{'unresolved' if d is None else f'{d:.3g}'}")
                             + (" FLAGGED" if f else "")
                             for t, m, d, r, f in zip(k.lag_times, k.slowest_timescale_model, k.slowest_timescale_data,
                                                      k.ratio, k.flagged_lag_times)))
            if not k.resolved:
                lines.append("  (no lag time resolves the slowest process for both: shorter jumps judge it)")
        if any(k.flagged for k in self.kinetics):
            lines.append(f"flagged: the model's slowest timescale is off MD's by more than {KINETICS_TOLERANCE:.0%}")
        return "\n".join(lines)


class _Space:
    """What a check compares: features of end points, a JS divergence, slow observables."""

    features: str
    observables: list[str]

    def js(self, a: np.ndarray, b: np.ndarray) -> float:
        raise NotImplementedError

    def observe(self, x: np.ndarray) -> np.ndarray:
        """Slow observables of states [n, dim] → [n, n_observables]."""
        raise NotImplementedError


class _CoordinateSpace(_Space):
    def __init__(self, system: Any, reference: Any, starts: np.ndarray, n_observables: int = 2):
        dim = system.dim
        self.features = "coordinates"
        if system.box is not None:
            self.range = [tuple(map(float, b)) for b in system.box][:2]
        else:
            low, high = starts.min(0), starts.max(0)
            pad = np.maximum(high - low, 1.0)
            self.range = list(zip(low - pad, high + pad))[:2]
        self.bins = COORDINATE_BINS[min(dim, 2)]
        self.reference = reference
        if reference is not None:  # the slowest eigenfunctions f_k = Π^{-1/2} v_k (right eigenvectors of Q)
            pi = np.maximum(reference.cell_probabilities.ravel(), 1e-300)
            k = min(n_observables, reference.eigenvectors.shape[1] - 1)
            self.eigenfunctions = reference.eigenvectors[:, 1:1 + k] / np.sqrt(pi)[:, None]
            self.rates = np.asarray(reference.rates[1:1 + k], dtype=float)
            self.observables = [f"eigenfunction {i + 1}" for i in range(k)]
        else:
            self.observables = [f"x{i}" for i in range(dim)]

    def js(self, a: np.ndarray, b: np.ndarray) -> float:
        features = tuple(range(min(a.shape[1], 2)))
        return js_divergence(a, b, bins=self.bins, range=self.range, features=features).value

    def cells(self, x: np.ndarray) -> np.ndarray:
        reference = self.reference
        index = []
        for d, axis in enumerate(reference.axes):
            h = axis[1] - axis[0]
            index.append(np.clip(np.floor((x[:, d] - (axis[0] - h / 2)) / h).astype(int), 0, len(axis) - 1))
        return np.ravel_multi_index(index, tuple(len(a) for a in reference.axes))

    def observe(self, x: np.ndarray) -> np.ndarray:
        if self.reference is None:
            return np.asarray(x, dtype=float)
        return self.eigenfunctions[self.cells(x)]


class _DistanceSpace(_Space):
    """A molecule with fewer than two torsions (a rigid ligand, a host with its guest): its atom-pair
    distances (:func:`~itomd.analysis.molecular.distance_pairs`), 1-D histograms on the range both
    sets span; the largest per-distance JS."""

    def __init__(self, topology: Any, pairs: np.ndarray):
        from itomd.analysis.molecular import TORSION_BINS

        self.topology, self.pairs = topology, pairs
        self.bins = TORSION_BINS
        self.features = f"{len(pairs)} atom-pair distances (the molecule has fewer than two torsions; largest per-distance JS)"
        atoms = list(topology.atoms)
        self.observables = [f"d {atoms[i].name}–{atoms[j].name}" for i, j in pairs]

    def observe(self, x: np.ndarray) -> np.ndarray:
        xyz = np.asarray(x, dtype=np.float64).reshape(len(x), -1, 3)
        return np.linalg.norm(xyz[:, self.pairs[:, 0]] - xyz[:, self.pairs[:, 1]], axis=-1)

    def js(self, a: np.ndarray, b: np.ndarray) -> float:
        da, db = self.observe(a), self.observe(b)
        low, high = np.minimum(da.min(0), db.min(0)), np.maximum(da.max(0), db.max(0))
        return max(js_divergence(da[:, [i]], db[:, [i]], bins=self.bins,
                                 range=((float(low[i]), float(max(high[i], low[i] + 1e-9))),)).value
                   for i in range(da.shape[1]))


def _molecule_space(topology: Any) -> _Space:
    """Torsions where the molecule has at least two, else atom-pair distances (the analysis's choice)."""
    from itomd.analysis.molecular import slow_inputs

    torsions, pairs = slow_inputs(topology)
    return _TorsionSpace(topology, torsions) if torsions is not None else _DistanceSpace(topology, pairs)


class _TorsionSpace(_Space):
    """A molecule's torsions (at least two: :func:`~itomd.analysis.molecular.slow_inputs`); the largest per-torsion JS."""

    def __init__(self, topology: Any, torsions: Any):
        from itomd.analysis.molecular import TORSION_BINS

        self.topology = topology
        self.torsions = torsions
        self.bins = TORSION_BINS
        self.features = f"torsions ({', '.join(self.torsions.labels)}; largest per-torsion JS)"
        self.observables = [f"{f} {label}" for label in self.torsions.labels for f in ("cos", "sin")]

    def angles(self, x: np.ndarray) -> np.ndarray:
        return self.torsions.compute([np.asarray(x, dtype=np.float64)], self.topology)[0]

    def js(self, a: np.ndarray, b: np.ndarray) -> float:
        from itomd.analysis.molecular import TORUS

        angles_a, angles_b = self.angles(a), self.angles(b)
        return max(js_divergence(angles_a[:, [i]], angles_b[:, [i]], bins=self.bins, range=(TORUS[0],)).value
                   for i in range(angles_a.shape[1]))

    def observe(self, x: np.ndarray) -> np.ndarray:
        angles = self.angles(x)
        return np.stack([f(angles[:, i]) for i in range(angles.shape[1]) for f in (np.cos, np.sin)], axis=1)


def check_request(model: TransitionModel, lags: Sequence[int] | None, n_samples: int) -> None:
    """One line, before any work, for a request the check cannot answer: an equilibrium model, a lag
    beyond the model's largest training lag, fewer than two end points per set."""
    if not model.conditional:
        raise InvalidInputError("the self-consistency check needs a transition model, not an equilibrium model")
    if lags is not None and len(lags) and max(lags) > model.max_lag:
        raise InvalidInputError(f"lag {max(lags)} is beyond the model's largest training lag {model.max_lag}")
    require_int("n_samples", n_samples)
    if n_samples < 2:
        raise InvalidInputError(f"n_samples must be at least 2 (two end points per set), got {n_samples}")


def kinetics_request(model: TransitionModel, lags: Sequence[int], n_walkers: int, n_jumps: int) -> None:
    """One line, before any work, for a kinetics comparison that cannot be made: a lag beyond the model's
    largest training lag, or too few jumps per walker for MSM lag times of up to 5 jumps."""
    check_request(model, lags, 2)
    for lag in lags:
        require_int("lag", lag)
    require_int("n_walkers", n_walkers)
    require_int("n_jumps", n_jumps)
    if n_jumps < max(KINETICS_LAG_JUMPS) + 1:
        raise InvalidInputError(f"the kinetics comparison needs at least {max(KINETICS_LAG_JUMPS) + 1} jumps per "
                                f"walker (MSM lag times up to {max(KINETICS_LAG_JUMPS)} jumps), got {n_jumps}")


def self_consistency(model: TransitionModel, starts: np.ndarray, lags: Sequence[int] | None = None,
                     splits: Sequence[int] = DEFAULT_SPLITS, n_samples: int = DEFAULT_SAMPLES,
                     sampler: str | None = None, n_steps: int | None = None, seed: int = 0,
                     tolerance: float = DEFAULT_TOLERANCE, exact: bool = True,
                     progress: bool = False) -> SelfConsistencyResult:
    """One jump of lag N against k nested jumps of N/k, from the same start states.

    Parameters
    ----------
    model : TransitionModel
        A transition model.
    starts : np.ndarray, shape [n_starts, dim]
        Start states; each gets ``n_samples`` end points per set.
    lags : sequence of int, optional
        Lags N (default: the largest multiple of 4 up to the model's largest training lag, else that lag).
    splits : sequence of int
        k values; a (lag, k) pair is checked when k divides N (k ≥ 2).
    n_samples : int
    sampler, n_steps :
        As for ``itomd sample`` (default: the model's own).
    seed : int
    tolerance : float
        Blow-up threshold of the jumps (as for rollouts).
    exact : bool
        For toy systems of dimension ≤ 2: compare with the exact transfer operator as well.
    progress : bool

    Returns
    -------
    SelfConsistencyResult
    """
    check_request(model, lags, n_samples)
    sampler = model.default_sampler if sampler is None else sampler
    n_steps = model.default_n_steps if n_steps is None else n_steps
    starts = np.asarray(starts, dtype=np.float64)
    if starts.ndim != 2 or starts.shape[1] != model.dim or not len(starts):
        raise InvalidInputError(f"start states must have shape [n_starts, {model.dim}], got {starts.shape}")
    if lags is None:
        lags = [model.max_lag - model.max_lag % 4 if model.max_lag >= 4 else model.max_lag]
    pairs = [(int(lag), int(k)) for lag in lags for k in splits if k >= 2 and lag % k == 0]
    for lag in lags:
        require_int("lag", lag)
    if not pairs:
        raise InvalidInputError(f"no split k in {list(splits)} divides any lag in {list(lags)}: "
                                "give lags with a divisor ≥ 2 (e.g. even lags)")
    system = model.system.build() if model.system is not None else None
    time_unit = system.time_unit if system is not None else "time units"
    reference = None
    if system is not None and system.topology() is None and system.dim <= 2 and exact and system.box is not None:
        from itomd.systems.reference import exact_reference

        reference = exact_reference(system)
    space: _Space = (_molecule_space(system.topology()) if system is not None and system.topology() is not None
                     else _CoordinateSpace(system if system is not None else _NoSystem(model.dim), reference, starts))
    exact_propagator = (_ExactPropagator(system) if exact and system is not None and system.topology() is None
                        else None)

    generator = torch.Generator(device=model.device).manual_seed(int(seed))
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(7,)))
    walkers = np.repeat(starts, n_samples, axis=0)

    def jumps(lag: int, count: int) -> np.ndarray:
        return rollout(model, walkers, lag, count, generator=generator, sampler=sampler, n_steps=n_steps,
                       tolerance=tolerance)[:, -1].astype(np.float64).reshape(len(starts), n_samples, -1)

    records = []
    direct_cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for lag, k in tqdm(pairs, disable=not progress, desc="self-consistency", unit="(N, k)"):
        if lag not in direct_cache:
            direct_cache[lag] = (jumps(lag, 1), jumps(lag, 1))
        direct, direct2 = direct_cache[lag]
        nested = jumps(lag // k, k)
        exact_sets = (exact_propagator.sample(starts, lag, n_samples, int(rng.integers(2**31)))
                      if exact_propagator is not None else None)
        per_start = []
        for s in range(len(starts)):
            entry = {"js_divergence": space.js(direct[s], nested[s]), "js_floor": space.js(direct[s], direct2[s])}
            f_direct, f_nested, f_direct2 = (space.observe(x[s]) for x in (direct, nested, direct2))
            scale = np.maximum(np.concatenate([f_direct, f_nested]).std(0), 1e-12)
            entry["delta_expectation"] = float(np.max(np.abs(f_direct.mean(0) - f_nested.mean(0)) / scale))
            entry["delta_expectation_floor"] = float(np.max(np.abs(f_direct.mean(0) - f_direct2.mean(0)) / scale))
            if exact_sets is not None:
                first, second = exact_sets[0][s], exact_sets[1][s]
                entry["js_direct_vs_exact"] = space.js(direct[s], first)
                entry["js_nested_vs_exact"] = space.js(nested[s], first)
                entry["js_exact_floor"] = space.js(first, second)
                f_exact = space.observe(first)
                if reference is not None:  # eigenfunctions: E[f(x_t) | x_0] = e^{κt} f(x_0) exactly
                    expected = np.exp(space.rates * lag * model.frame_interval) * space.observe(starts[[s]])[0]
                else:
                    expected = f_exact.mean(0)
                entry["delta_expectation_direct_vs_exact"] = float(np.max(np.abs(f_direct.mean(0) - expected) / scale))
                entry["delta_expectation_nested_vs_exact"] = float(np.max(np.abs(f_nested.mean(0) - expected) / scale))
            per_start.append(entry)
        worst = max(range(len(starts)), key=lambda s: per_start[s]["js_divergence"] / max(per_start[s]["js_floor"], 1e-12))
        chosen = per_start[worst]
        records.append(SelfConsistencyRecord(
            lag=lag, k=k, js_divergence=chosen["js_divergence"], js_floor=chosen["js_floor"],
            flagged=bool(chosen["js_divergence"] > FLAG_FACTOR * chosen["js_floor"]),
            delta_expectation=max(e["delta_expectation"] for e in per_start),
            delta_expectation_floor=max(e["delta_expectation_floor"] for e in per_start),
            n_samples=int(n_samples), start=int(worst),
            js_direct_vs_exact=chosen.get("js_direct_vs_exact"), js_nested_vs_exact=chosen.get("js_nested_vs_exact"),
            js_exact_floor=chosen.get("js_exact_floor"),
            delta_expectation_direct_vs_exact=(max(e["delta_expectation_direct_vs_exact"] for e in per_start)
                                               if exact_sets is not None else None),
            delta_expectation_nested_vs_exact=(max(e["delta_expectation_nested_vs_exact"] for e in per_start)
                                               if exact_sets is not None else None),
            per_start=per_start))
    return SelfConsistencyResult(records=records, starts=starts, features=space.features,
                                 observables=space.observables, time_unit=time_unit,
                                 frame_interval=float(model.frame_interval), sampler=sampler, n_steps=int(n_steps))


def kinetics_against_data(model: TransitionModel, data: Sequence[np.ndarray], data_frame_interval: float, lag: int,
                          n_walkers: int = DEFAULT_KINETICS_WALKERS, n_jumps: int = DEFAULT_KINETICS_JUMPS,
                          sampler: str | None = None, n_steps: int | None = None, seed: int = 0,
                          tolerance: float = DEFAULT_TOLERANCE, kinetics_tolerance: float = KINETICS_TOLERANCE,
                          max_redraws: int = 0, progress: bool = False) -> KineticsRecord:
    """Roll the model out from MD frames in jumps of ``lag`` and compare its slowest implied timescale
    with the MD's at the same lag times (the module docstring says why and when a lag time is flagged).

    Parameters
    ----------
    model : TransitionModel
        A transition model.
    data : sequence of np.ndarray, each [T_i, dim]
        MD trajectories (typically the model's training data): the start frames and the reference.
    data_frame_interval : float
        Their frame interval (the system's time unit).
    lag : int
        Jump lag N, in frames of the model's training data.
    n_walkers, n_jumps : int
        Rollout size (walkers start from frames drawn uniformly from ``data``).
    sampler, n_steps, seed, tolerance :
        As for ``itomd sample``.
    kinetics_tolerance : float
        Relative tolerance of the timescale ratio.
    max_redraws : int
        Redraw a walker's blown-up jump up to this many times instead of stopping (as ``itomd sample
        --redraws``); the count is recorded (``redrawn_jumps``).
    progress : bool

    Returns
    -------
    KineticsRecord
    """
    from itomd.analysis import analyze, compare
    from itomd.data.starts import start_points_from_trajectories
    from itomd.representation import CoordinateRepresentation, representation_for

    kinetics_request(model, [lag], n_walkers, n_jumps)
    data = check_trajectories(data)
    if data[0].shape[1] != model.dim:
        raise InvalidInputError(f"MD trajectories of dimension {model.dim} are needed to judge the kinetics, "
                                f"got {data[0].shape[1]}")
    system = model.system.build() if model.system is not None else None
    representation = representation_for(system) if system is not None else CoordinateRepresentation(model.dim)
    starts = start_points_from_trajectories(data, n_walkers, seed)
    generator = torch.Generator(device=model.device).manual_seed(int(seed) + 1)
    paths, redrawn = rollout(model, starts, lag, n_jumps, generator=generator, sampler=sampler, n_steps=n_steps,
                             tolerance=tolerance, progress=progress, max_redraws=max_redraws, return_redraws=True)
    time_unit = system.time_unit if system is not None else "time units"
    result = analyze([p.astype(np.float64) for p in paths], model.frame_interval * lag,
                     system.kT if system is not None else 1.0, lags=list(KINETICS_LAG_JUMPS), seed=seed,
                     featurizer=representation.featurizer(None), time_unit=time_unit)
    comparison = compare(result, data, data_frame_interval, seed=seed)
    mine, theirs = result.implied_timescales, comparison.implied_timescales
    model_its, data_its = mine.resolved_timescales()[:, 0], theirs.resolved_timescales()[:, 0]
    lower, upper = theirs.lower[:, 0], theirs.upper[:, 0]
    ratio = model_its / data_its
    both = np.isfinite(ratio)
    outside = both & (np.abs(np.where(both, ratio, 1.0) - 1) > kinetics_tolerance)
    # One resolves the process and the other does not: the unresolved timescale is at most about the lag time or
    # its own (unresolved) estimate, whichever is larger — the bound most favourable to agreement; flagged only
    # where even that bound leaves the ratio beyond the tolerance.
    times = np.asarray(mine.lag_times, dtype=float)
    model_raw, data_raw = mine.timescales[:, 0], theirs.timescales[:, 0]
    model_bound = np.fmax(np.where(np.isfinite(model_raw), model_raw, times), times)
    data_bound = np.fmax(np.where(np.isfinite(data_raw), data_raw, times), times)
    model_too_fast = np.isfinite(data_its) & ~np.isfinite(model_its) & (np.nan_to_num(data_its) * (1 - kinetics_tolerance) > model_bound)
    model_too_slow = np.isfinite(model_its) & ~np.isfinite(data_its) & (np.nan_to_num(model_its) > (1 + kinetics_tolerance) * data_bound)
    outside = outside | model_too_fast | model_too_slow

    def number(v: float) -> float | None:
        return float(v) if np.isfinite(v) else None

    mfpt_ratio = comparison.to_dict().get("mfpt_ratio")
    return KineticsRecord(
        lag=int(lag), lag_times=[float(t) for t in mine.lag_times], slowest_timescale_model=[number(v) for v in model_its],
        slowest_timescale_data=[number(v) for v in data_its],
        data_interval=[[float(a), float(b)] if np.isfinite(d) else None for a, b, d in zip(lower, upper, data_its)],
        ratio=[number(v) for v in ratio], timescale_estimate_model=[number(v) for v in model_raw],
        timescale_estimate_data=[number(v) for v in data_raw], flagged_lag_times=[bool(v) for v in outside], flagged=bool(outside.any()),
        resolved=bool(both.any()), tolerance=float(kinetics_tolerance), js_divergence=float(comparison.js_divergence.value),
        mfpt_ratio=mfpt_ratio, n_walkers=int(n_walkers), n_jumps=int(n_jumps), redrawn_jumps=int(np.sum(redrawn)))


@dataclass
class _NoSystem:
    dim: int
    box: Any = None


class _ExactPropagator:
    """Samples of the exact transfer operator of a toy system: its own Langevin integrator (the
    dynamics the model learned) run from the same start states for N·τ."""

    def __init__(self, system: Any):
        from itomd.simulate.engines import make_engine

        self.engine = make_engine(system)

    def sample(self, starts: np.ndarray, lag: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Two independent sets of ``n`` end points per start after ``lag`` frames, each [n_starts, n, dim]."""
        walkers = np.repeat(starts, n, axis=0)
        sets = tuple(self.engine.run(walkers, lag + 1, seed + i)[:, -1].reshape(len(starts), n, -1) for i in (1, 2))
        return sets[0], sets[1]


def check_file(run: Any) -> Any:
    """Where ``itomd check`` keeps its result for a run directory (or a model file)."""
    from pathlib import Path

    run = Path(run)
    return run / CHECK_FILE if run.is_dir() else run.with_suffix(".check.json")


def report_sections(check: dict[str, Any]) -> list[tuple[str, Any]]:
    """The report's section for a stored check result: a table and a plot of JS against its floors."""
    from matplotlib.figure import Figure

    from itomd.analysis._html import html_table

    records = check["self_consistency"]
    exact = bool(records) and records[0].get("js_exact_floor") is not None
    header = ["lag N", "k", "JS direct vs nested", "floor (direct vs direct')", "ratio", "Δ⟨f⟩ (sd)", "flagged"]
    if exact:
        header += ["JS direct vs exact", "JS nested vs exact", "exact vs exact"]
    rows = []
    for r in records:
        row = [str(r["lag"]), str(r["k"]), f"{r['js_divergence']:.4g}", f"{r['js_floor']:.4g}",
               f"{r['js_divergence'] / r['js_floor']:.2f}" if r["js_floor"] > 0 else "–",
               f"{r['delta_expectation']:.3f}", "yes" if r["flagged"] else "no"]
        if exact:
            row += [f"{r['js_direct_vs_exact']:.4g}", f"{r['js_nested_vs_exact']:.4g}", f"{r['js_exact_floor']:.4g}"]
        rows.append(row)
    verdict = ("<p><b>Flagged:</b> one jump of N and k nested jumps of N/k disagree beyond "
               f"{check['flag_factor']:g}× the sampling noise.</p>" if check["flagged"] else
               f"<p>Consistent: every direct-vs-nested JS within {check['flag_factor']:g}× the sampling noise.</p>")
    text = (verdict + html_table(header, rows)
            + f"<p class='note'>{len(check['starts'])} start states, {records[0]['n_samples'] if records else 0} end "
            f"points per set; {check['features']}; worst start shown. Δ⟨f⟩: largest difference of the conditional "
            "expectations of the slow observables, in standard deviations.</p>")
    figure = Figure(figsize=(6, 3.6))
    ax = figure.add_subplot()
    labels = [f"N={r['lag']}, k={r['k']}" for r in records]
    x = np.arange(len(records))
    width = 0.8 / (3 if exact else 2)
    ax.bar(x - width / 2 * (2 if exact else 1), [r["js_divergence"] for r in records], width, label="direct vs nested",
           color=["#c0392b" if r["flagged"] else "#2c7fb8" for r in records])
    ax.bar(x + (0 if exact else width / 2), [r["js_floor"] for r in records], width, label="direct vs direct' (floor)",
           color="#999999")
    if exact:
        ax.bar(x + width, [r["js_exact_floor"] for r in records], width, label="exact vs exact", color="#41ab5d")
    ax.set_xticks(x, labels)
    ax.set_ylabel("JS divergence (nats)")
    ax.legend(fontsize=8)
    figure.tight_layout()
    sections: list[tuple[str, Any]] = [("Self-consistency: one jump of N vs k jumps of N/k", text),
                                       ("Self-consistency plot", figure)]
    if check.get("kinetics"):
        sections += _kinetics_sections(check["kinetics"], check.get("time_unit", ""))
    return sections


def _kinetics_sections(kinetics: list[dict[str, Any]], time_unit: str) -> list[tuple[str, Any]]:
    """Table and plot of :class:`KineticsRecord` dicts: the slowest timescale of rollouts from MD frames against MD's."""
    from matplotlib.figure import Figure

    from itomd.analysis._html import html_table

    def fmt(v: Any) -> str:
        return "unresolved" if v is None else f"{v:.3g}"

    rows = []
    for k in kinetics:
        for t, m, d, interval, r, f in zip(k["lag_times"], k["slowest_timescale_model"], k["slowest_timescale_data"],
                                           k["data_interval"], k["ratio"], k["flagged_lag_times"]):
            rows.append([str(k["lag"]), f"{t:g}", fmt(m), fmt(d),
                         "–" if interval is None else f"[{interval[0]:.3g}, {interval[1]:.3g}]",
                         "–" if r is None else f"{r:.2f}", "yes" if f else "no"])
    flagged = any(k["flagged"] for k in kinetics)
    tolerance = kinetics[0]["tolerance"]
    text = (("<p><b>Flagged:</b> the model's slowest implied timescale is off the MD's by more than "
             f"{tolerance:.0%}.</p>" if flagged else
             f"<p>Kinetics within {tolerance:.0%} of the MD's at every lag time that resolves them.</p>")
            + html_table(["jump lag N", f"lag time ({time_unit})", "model", "MD", "MD interval", "ratio", "flagged"], rows)
            + "<p class='note'>Rollouts from the MD's frames in jumps of N, MSM on the analysis's states at 1, 2, 3 "
            "and 5 jumps, against the MD (itomd check --kinetics --from DIR); unresolved: the timescale is not "
            "above the lag time.</p>")
    figure = Figure(figsize=(6, 3.6))
    ax = figure.add_subplot()
    for k in kinetics:
        times = np.asarray(k["lag_times"], dtype=float)
        data = np.array([np.nan if v is None else v for v in k["slowest_timescale_data"]], dtype=float)
        model = np.array([np.nan if v is None else v for v in k["slowest_timescale_model"]], dtype=float)
        low = np.array([np.nan if i is None else i[0] for i in k["data_interval"]], dtype=float)
        high = np.array([np.nan if i is None else i[1] for i in k["data_interval"]], dtype=float)
        line = ax.plot(times, model, "o-", label=f"model, jumps of {k['lag']}")[0]
        ax.plot(times, data, "s--", color=line.get_color(), alpha=0.6, label=f"MD (lag times of jumps of {k['lag']})")
        ax.fill_between(times, low, high, color=line.get_color(), alpha=0.15)
    right = 1.15 * max(max(k["lag_times"]) for k in kinetics)
    top = ax.get_ylim()[1]
    ax.fill_between([0, right], [0, right], color="#999999", alpha=0.2, label="t < lag time (unresolved)")
    ax.set_xlabel(f"lag time ({time_unit})")
    ax.set_ylabel(f"slowest implied timescale ({time_unit})")
    ax.set_xlim(0, right)
    ax.set_ylim(0, max(top, right))
    ax.legend(fontsize=8)
    figure.tight_layout()
    return [("Kinetics against MD: rollouts from MD frames", text), ("Kinetics against MD plot", figure)]


__all__ = ["SelfConsistencyRecord", "SelfConsistencyResult", "self_consistency", "FLAG_FACTOR", "CHECK_FILE",
           "KineticsRecord", "kinetics_against_data", "KINETICS_TOLERANCE",
           "check_file", "report_sections"]
