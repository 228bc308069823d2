r"""Trained models as independent objects: :class:`TransitionModel` samples x_{t+Nτ} given x_t.

A model is what an :class:`~itomd.estimator.ITOEstimator` hands out (``fetch_model()``) and what
``itomd sample`` loads: the EMA weights of the denoiser, the recipe to rebuild it
(:class:`DenoiserSpec`), the data's frame interval τ, the largest training lag and the range of the
training data (for blow-up detection). Sampling uses the EMA weights — there are no others in a
model file.

The same class holds an unconditional *equilibrium* model (``conditional=False``): then
``sample`` ignores the condition and lag and draws from the learned Boltzmann distribution.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from itomd.diffusion.bopito import BoPITODenoiser
from itomd.diffusion.denoiser import Denoiser, TransitionDenoiser
from itomd.diffusion.equilibrium import ExactEquilibriumDenoiser
from itomd.diffusion.samplers import SAMPLERS
from itomd.diffusion.schedules import karras_sigmas
from itomd.errors import DataFileError, InvalidInputError
from itomd.geometry import remove_centroid, superpose
from itomd.nn.equivariant import EquivariantTransitionNet, MoleculeGraph
from itomd.nn.mlp import TransitionMLP

MODEL_FORMAT = "itomd-model"
MODEL_FORMAT_VERSION = 1

#: Default sampler and number of noise levels per jump: EDM's stochastic Heun (49 network
#: evaluations). Deterministic ODE samplers carry score errors into spurious barrier crossings
#: (Müller–Brown, lag 25: one-jump slowest timescale 3.4 with DPM-Solver++(2M) at 24 or 48
#: evaluations vs 5.9 with stochastic Heun at 49 and 5.6 for exact Langevin jumps); see BENCHMARKS.md.
DEFAULT_SAMPLER = "heun-churn"
DEFAULT_N_STEPS = 25
#: Noise range of the sampling schedule in units of the data scale at the jump's lag, σ_d(N)
#: (σ_data for an equilibrium model), and Karras' ρ. On a Gaussian target this schedule gives
#: < 0.1 % error in the standard deviation with 24 DPM-Solver++(2M) or Heun levels.
SIGMA_MIN_FACTOR = 0.02
SIGMA_MAX_FACTOR = 10.0
DEFAULT_RHO = 7.0


@dataclass(frozen=True)
class DenoiserSpec:
    """Everything needed to rebuild a denoiser: a :class:`~itomd.nn.TransitionMLP` inside, or for
    molecules an :class:`~itomd.nn.EquivariantTransitionNet`.

    Parameters
    ----------
    dim : int
        State dimension.
    conditional : bool
        Transition model (conditioned on x_t and N) or equilibrium model.
    hidden, n_blocks, n_frequencies : int
        Network size (see :class:`~itomd.nn.TransitionMLP`).
    sigma_data : float
        Pooled standard deviation of the centred training frames.
    shift : tuple of float, length dim
        Mean of the training frames (the centre of an equilibrium denoiser).
    condition_shift, condition_scale : tuple of float, length dim
        Standardisation of the condition (mean and std of the frames per coordinate).
    max_log_lag : float
        ln of the largest training lag.
    p_mean, p_std : float
        Training distribution of ln σ (equilibrium) or of ln(σ/σ_d(N)) (transition).
    lag_coefficients : tuple of tuple of float, shape [max_lag, dim], optional
    lag_scales : tuple of float, length max_lag, optional
        Lag-N regression slopes and residual RMS of the data (transition models; see
        :class:`~itomd.diffusion.TransitionDenoiser` and :func:`lag_statistics`).
    prior : dict, optional
        BoPITO's frozen equilibrium part: ``{"kind": "exact", "shape", "box"}`` (the exact
        quadrature denoiser; its grid is in the weights) or ``{"kind": "model", "spec"}`` (a
        trained equilibrium model; its weights too). None: a plain ITO model.
    lambda_hat : float, optional
        BoPITO's λ̂, the per-frame decay of the dynamic part.
    molecule : dict, optional
        A molecule's graph (:meth:`~itomd.nn.MoleculeGraph.to_dict`): states are centred atom
        positions [3·n_atoms], the network is the equivariant one (``hidden`` channels,
        ``n_blocks`` message-passing layers) and the tables are isotropic (one slope per lag,
        zero mean), so the whole denoiser is rotation-equivariant.
    """

    dim: int
    conditional: bool
    hidden: int
    n_blocks: int
    n_frequencies: int
    sigma_data: float
    shift: tuple[float, ...]
    condition_shift: tuple[float, ...]
    condition_scale: tuple[float, ...]
    max_log_lag: float
    p_mean: float
    p_std: float
    lag_coefficients: tuple[tuple[float, ...], ...] | None = None
    lag_scales: tuple[float, ...] | None = None
    prior: dict[str, Any] | None = None
    lambda_hat: float | None = None
    molecule: dict[str, Any] | None = None

    @property
    def is_molecular(self) -> bool:
        """States are centred atom positions of a molecule (equivariant network)."""
        return self.molecule is not None

    @property
    def n_atoms(self) -> int | None:
        return None if self.molecule is None else len(self.molecule["atom_types"])

    @property
    def superposes_targets(self) -> bool:
        """Transition targets are x_{t+N} superposed on x_t (molecular ITO models)."""
        return bool(self.molecule and self.molecule.get("superpose_targets"))

    @property
    def is_bopito(self) -> bool:
        """A BoPITO transition model (frozen equilibrium part + decaying dynamic part)."""
        return self.prior is not None

    def build(self) -> Denoiser:
        """A freshly initialised denoiser (float32, CPU) of this shape (a prior's weights are
        loaded with the state dict)."""
        if self.is_molecular:
            graph = MoleculeGraph.from_dict(self.molecule)
            if 3 * graph.n_atoms != self.dim:
                raise DataFileError(f"a molecule of {graph.n_atoms} atoms has {3 * graph.n_atoms} coordinates, not {self.dim}")
            inner = EquivariantTransitionNet(graph, hidden=self.hidden, n_layers=self.n_blocks,
                                             n_frequencies=self.n_frequencies, conditional=self.conditional,
                                             max_log_lag=self.max_log_lag)
        else:
            inner = TransitionMLP(self.dim, hidden=self.hidden, n_blocks=self.n_blocks, n_frequencies=self.n_frequencies,
                                  conditional=self.conditional, condition_shift=self.condition_shift,
                                  condition_scale=self.condition_scale, max_log_lag=self.max_log_lag)
        atoms = {"n_atoms": self.n_atoms}
        if self.conditional:
            if not self.lag_scales or not self.lag_coefficients:
                raise DataFileError("a transition model description needs lag_coefficients and lag_scales")
            if self.is_bopito:
                if self.lambda_hat is None:
                    raise DataFileError("a BoPITO model description needs lambda_hat")
                return BoPITODenoiser(inner, build_prior(self.prior), self.lambda_hat, sigma_data=self.sigma_data,
                                      mean=list(self.shift), lag_coefficients=[list(c) for c in self.lag_coefficients],
                                      lag_scales=list(self.lag_scales), p_mean=self.p_mean, p_std=self.p_std, **atoms)
            return TransitionDenoiser(inner, sigma_data=self.sigma_data, mean=list(self.shift),
                                      lag_coefficients=[list(c) for c in self.lag_coefficients],
                                      lag_scales=list(self.lag_scales), p_mean=self.p_mean, p_std=self.p_std, **atoms)
        return Denoiser(inner, sigma_data=self.sigma_data, p_mean=self.p_mean, p_std=self.p_std, shift=list(self.shift),
                        **atoms)

    def noise_range(self, lags: Sequence[float] | None = None) -> tuple[float, float]:
        """(smallest, largest) data scale a sampling schedule must cover for jumps of these lags."""
        if not self.lag_scales:
            return self.sigma_data, self.sigma_data
        if lags is None:
            return min(self.lag_scales), max(self.lag_scales)
        index = np.clip(np.rint(np.asarray(lags, dtype=float)).astype(int), 1, len(self.lag_scales)) - 1
        scales = np.asarray(self.lag_scales)[index]
        return float(scales.min()), float(scales.max())

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples → lists

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DenoiserSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(d) - {"lag_scales", "lag_coefficients", "prior", "lambda_hat", "molecule"}
        if missing:
            raise DataFileError(f"model description lacks {', '.join(sorted(missing))}")
        return cls(**{k: _tuples(d[k]) if isinstance(d[k], list) else d[k] for k in names if k in d})


def exact_prior(reference) -> tuple[dict[str, Any], ExactEquilibriumDenoiser]:
    """The description and module of the exact equilibrium prior of an
    :class:`~itomd.systems.reference.ExactReference` (its grid density)."""
    module = ExactEquilibriumDenoiser.from_reference(reference)
    return {"kind": "exact", "shape": list(module.probabilities.shape), "box": [list(b) for b in module.box]}, module


def model_prior(model: "TransitionModel") -> tuple[dict[str, Any], Denoiser]:
    """The description and (frozen copy of the) denoiser of a trained equilibrium model."""
    if model.conditional:
        raise InvalidInputError("the prior must be an equilibrium model (itomd train --equilibrium), "
                                "not a transition model")
    module = model.spec.build()
    module.load_state_dict(model.denoiser.state_dict())
    return {"kind": "model", "spec": model.spec.to_dict(), "data_low": model.data_low.tolist(),
            "data_high": model.data_high.tolist()}, module


def prior_range(prior: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(low, high) per coordinate of the region a prior knows: the exact prior's box, or the range
    of a learned prior's training data; None if not recorded."""
    if not prior:
        return None
    if prior.get("kind") == "exact":
        box = np.asarray(prior["box"], dtype=float)
        return box[:, 0], box[:, 1]
    if "data_low" in prior and "data_high" in prior:
        return np.asarray(prior["data_low"], dtype=float), np.asarray(prior["data_high"], dtype=float)
    return None


def build_prior(prior: dict[str, Any]) -> torch.nn.Module:
    """An (uninitialised) equilibrium denoiser of the shape a prior description gives."""
    kind = prior.get("kind") if isinstance(prior, dict) else None
    if kind == "exact":
        return ExactEquilibriumDenoiser.empty(prior["shape"], [tuple(b) for b in prior["box"]])
    if kind == "model":
        return DenoiserSpec.from_dict(prior["spec"]).build()
    raise DataFileError(f"unknown equilibrium prior description {prior!r}")


def lag_statistics(trajectories: Sequence[np.ndarray], max_lag: int, max_pairs: int = 200_000,
                   seed: int = 0, isotropic: bool = False, superpose_atoms: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-lag linear (AR) prediction of x_{t+N} from x_t, for N = 1..max_lag.

    With m the mean of all frames: A(N)_d = Cov(x_{t+N,d}, x_{t,d}) / Var(x_{t,d}) and
    σ(N) = sqrt(mean over pairs and coordinates of (x_{t+N} − m − A(N)(x_t − m))²).
    ``isotropic=True`` (centred molecules): m = 0 and one slope for all coordinates,
    A(N) = Σ x_t·x_{t+N} / Σ x_t·x_t — the only linear prediction that commutes with rotations.
    ``superpose_atoms=n``: x_{t+N} is first superposed on x_t (molecules of n atoms whose transition
    targets are superposed, see :func:`~itomd.geometry.superpose`).

    Estimated from at most ``max_pairs`` random start frames per lag (deterministic given ``seed``).
    Lags no trajectory is long enough for repeat the previous lag's values.

    Returns
    -------
    coefficients : np.ndarray, shape [max_lag, dim]
    scales : np.ndarray, shape [max_lag], positive
    """
    rng = np.random.default_rng(seed)
    lengths = np.array([len(t) for t in trajectories])
    frames = np.concatenate([np.asarray(t, dtype=np.float64) for t in trajectories])
    mean = np.zeros(frames.shape[1]) if isotropic else frames.mean(0)
    centred = frames - mean
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    coefficients = np.ones((max_lag, frames.shape[1]))
    scales = np.zeros(max_lag)
    for lag in range(1, max_lag + 1):
        counts = np.clip(lengths - lag, 0, None)
        total = counts.sum()
        if total == 0:
            coefficients[lag - 1], scales[lag - 1] = coefficients[lag - 2], scales[lag - 2]
            continue
        u = rng.integers(total, size=min(total, max_pairs))
        cum = np.cumsum(counts)
        traj = np.searchsorted(cum, u, side="right")
        start = offsets[traj] + u - (cum[traj] - counts[traj])
        a, b = centred[start], centred[start + lag]
        if superpose_atoms:
            b = superpose(torch.as_tensor(b), torch.as_tensor(a), superpose_atoms).numpy()
        if isotropic:
            slope = np.full(frames.shape[1], (a * b).sum() / max((a * a).sum(), 1e-300))
            coefficients[lag - 1] = slope
            scales[lag - 1] = np.sqrt(np.mean((b - slope * a) ** 2))
            continue
        variance = (a * a).mean(0)
        slope = np.where(variance > 0, (a * b).mean(0) / np.where(variance > 0, variance, 1.0), 1.0)
        coefficients[lag - 1] = slope
        scales[lag - 1] = np.sqrt(np.mean((b - slope * a) ** 2))
    positive = scales[scales > 0]
    floor = positive.min() if positive.size else 1.0
    return coefficients, np.where(scales > 0, scales, floor)


def fit_denoiser_spec(trajectories: Sequence[np.ndarray], conditional: bool, max_lag: int, hidden: int, n_blocks: int,
                      n_frequencies: int, p_mean: float | None = None, p_std: float = 1.2,
                      prior: dict[str, Any] | None = None, lambda_hat: float | None = None,
                      molecule: MoleculeGraph | None = None, superpose_targets: bool = True) -> DenoiserSpec:
    """A :class:`DenoiserSpec` with the data scales estimated from ``trajectories`` (each [n_i, dim]).

    With a ``molecule`` graph the trajectories must be centred atom positions (see
    :func:`centre_structures`): the mean is zero and the lag tables isotropic. With
    ``superpose_targets`` (a transition model of a molecule) the model learns x_{t+N} superposed on
    x_t — the internal dynamics without the molecule's tumbling — and the tables are those of
    superposed pairs.

    σ_data is the pooled standard deviation of the centred frames; transition models also get the
    RMS displacement per lag (:func:`lag_statistics`). ``p_mean=None`` takes EDM's −1.2
    (tuned for σ_data = 0.5) in units of the data scale: −1.2 + ln 2 relative to σ_d. A ``prior``
    description (:func:`exact_prior`, :func:`model_prior`) and ``lambda_hat`` make it a BoPITO model.
    """
    frames = np.concatenate([np.asarray(t, dtype=np.float64) for t in trajectories])
    if molecule is not None and frames.shape[1] != 3 * molecule.n_atoms:
        raise InvalidInputError(f"frames have {frames.shape[1]} coordinates, the molecule {3 * molecule.n_atoms}")
    mean = np.zeros(frames.shape[1]) if molecule is not None else frames.mean(0)
    std = frames.std(0)
    std = np.where(std > 0, std, 1.0)
    sigma_data = float(np.sqrt(np.mean((frames - mean) ** 2))) or 1.0
    lag_scales = lag_coefficients = None
    if conditional:
        coefficients, scales = lag_statistics(trajectories, max_lag, isotropic=molecule is not None,
                                              superpose_atoms=molecule.n_atoms if molecule and superpose_targets else None)
        lag_coefficients, lag_scales = _tuples(coefficients.tolist()), _tuples(scales.tolist())
        if p_mean is None:
            p_mean = -1.2 + math.log(2.0)
    elif p_mean is None:
        p_mean = -1.2 + math.log(sigma_data / 0.5)
    return DenoiserSpec(dim=int(frames.shape[1]), conditional=bool(conditional), hidden=int(hidden), n_blocks=int(n_blocks),
                        n_frequencies=int(n_frequencies), sigma_data=sigma_data, shift=tuple(mean.tolist()),
                        condition_shift=tuple(mean.tolist()), condition_scale=tuple(std.tolist()),
                        max_log_lag=math.log(max(int(max_lag), 2)), p_mean=float(p_mean), p_std=float(p_std),
                        lag_coefficients=lag_coefficients, lag_scales=lag_scales, prior=prior,
                        lambda_hat=None if lambda_hat is None else float(lambda_hat),
                        molecule=None if molecule is None else
                        {**molecule.to_dict(), "superpose_targets": bool(superpose_targets and conditional)})


def centre_structures(trajectories: Sequence[np.ndarray], n_atoms: int) -> list[np.ndarray]:
    """Each frame of each trajectory [n_i, 3·n_atoms] minus its centroid (translations removed)."""
    return [remove_centroid(torch.as_tensor(np.asarray(t, dtype=np.float64)), n_atoms).numpy() for t in trajectories]


def _tuples(value: Any) -> Any:
    """Nested lists of numbers → nested tuples of float (specs are frozen and comparable)."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return float(value)


class TransitionModel:
    """A trained (EMA) denoiser of p(x_{t+Nτ} | x_t) — or of μ(x) — ready to sample.

    Parameters
    ----------
    spec : DenoiserSpec
        Architecture and data scales.
    state_dict : dict
        Weights of the denoiser built from ``spec`` (the EMA weights of training).
    frame_interval : float
        τ, the physical time between frames of the training data; a jump of lag N covers N·τ.
    max_lag : int
        Largest lag (frames) seen in training.
    data_low, data_high : sequence of float, length dim
        Per-coordinate range of the training frames (for BoPITO, widened to the prior's range:
        :func:`prior_range`); rollouts beyond it count as blow-ups.
    system : dict, optional
        The training data's system spec (:meth:`~itomd.systems.SystemSpec.to_dict`), if known.
    info : dict, optional
        Free-form training facts (steps, wall time, loss...).
    """

    def __init__(self, spec: DenoiserSpec, state_dict: dict[str, torch.Tensor], frame_interval: float, max_lag: int,
                 data_low: Sequence[float], data_high: Sequence[float], system: dict | None = None,
                 info: dict | None = None):
        self.spec = spec
        self.frame_interval = float(frame_interval)
        self.max_lag = int(max_lag)
        self.data_low = np.asarray(data_low, dtype=np.float64)
        self.data_high = np.asarray(data_high, dtype=np.float64)
        self.system = system
        self.info = dict(info or {})
        self.denoiser = spec.build()
        try:
            self.denoiser.load_state_dict(state_dict)
        except (RuntimeError, KeyError) as exc:
            raise DataFileError(f"model weights do not match the model description: {str(exc).splitlines()[0]}") from exc
        self.denoiser.eval().requires_grad_(False)
        self.device = torch.device("cpu")

    # -- properties ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def conditional(self) -> bool:
        return self.spec.conditional

    @property
    def is_bopito(self) -> bool:
        """A BoPITO model: frozen equilibrium part plus λ̂^N-weighted dynamic part."""
        return self.spec.is_bopito

    @property
    def lambda_hat(self) -> float | None:
        """BoPITO's λ̂ (per frame); None for ITO and equilibrium models."""
        return self.spec.lambda_hat

    @property
    def lambda_interpolation(self) -> float | None:
        """BoPITO's λ_int for lags beyond ``max_lag`` (None: λ̂)."""
        return self.denoiser.lambda_interpolation if self.is_bopito else None

    def set_interpolation(self, lambda_interpolation: float | None) -> "TransitionModel":
        """Set λ_int, the per-frame decay of a BoPITO model's dynamic part beyond the largest training
        lag (None restores λ̂); returns self. Equivalent to an effective timescale −τ/ln λ_int."""
        if not self.is_bopito:
            raise InvalidInputError("only BoPITO models (trained with a prior) have an interpolation eigenvalue")
        self.denoiser.set_interpolation(lambda_interpolation)
        return self

    def to(self, device: torch.device | str) -> "TransitionModel":
        """Move the network to ``device`` (in place); returns self."""
        self.device = torch.device(device)
        self.denoiser.to(self.device)
        return self

    def sigmas(self, n_steps: int = DEFAULT_N_STEPS, lag: int | Sequence[float] | None = None,
               sigma_min: float | None = None, sigma_max: float | None = None, rho: float = DEFAULT_RHO) -> torch.Tensor:
        """The Karras noise schedule of ``n_steps`` levels (plus the final 0) for jumps of ``lag``.

        From ``SIGMA_MAX_FACTOR`` × the largest to ``SIGMA_MIN_FACTOR`` × the smallest data scale
        σ_d(N) among the lags (all lags of the table if None; σ_data for an equilibrium model).
        """
        lags = None if lag is None else np.atleast_1d(np.asarray(lag, dtype=float))
        low, high = self.spec.noise_range(lags)
        return karras_sigmas(n_steps, SIGMA_MIN_FACTOR * low if sigma_min is None else sigma_min,
                             SIGMA_MAX_FACTOR * high if sigma_max is None else sigma_max, rho)

    # -- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, x_t: torch.Tensor | np.ndarray | None, lag: int | torch.Tensor | None = None,
               n_samples: int | None = None, sampler: str | Callable = DEFAULT_SAMPLER, n_steps: int = DEFAULT_N_STEPS,
               sigmas: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw x_{t+Nτ} ~ p(· | x_t) for every row of ``x_t`` (or μ for an equilibrium model).

        Parameters
        ----------
        x_t : array_like, shape [W, dim], optional
            Start states (conditional models); None for an equilibrium model.
        lag : int or torch.Tensor of shape [W]
            Lag N in frames (≥ 1); conditional models only.
        n_samples : int, optional
            Number of samples of an equilibrium model (default: ``len(x_t)``).
        sampler : str or callable
            A name in :data:`~itomd.diffusion.samplers.SAMPLERS` or a sampler function.
        n_steps : int
            Noise levels of the default schedule (ignored when ``sigmas`` is given).
        sigmas : torch.Tensor, optional
            A full schedule ending in 0.
        generator : torch.Generator, optional
            Source of randomness (on the model's device).

        Returns
        -------
        torch.Tensor, shape [W, dim], float32 on the model's device
        """
        sample_fn = _resolve_sampler(sampler)
        extra: dict[str, torch.Tensor] = {}
        if self.conditional:
            if x_t is None or lag is None:
                raise InvalidInputError("a transition model needs start states x_t and a lag")
            x_t = torch.as_tensor(x_t, dtype=torch.float32, device=self.device)
            if x_t.ndim != 2 or x_t.shape[1] != self.dim:
                raise InvalidInputError(f"start states must have shape [W, {self.dim}], got {tuple(x_t.shape)}")
            if self.spec.is_molecular:  # the model works on centred structures; samples are centred
                x_t = remove_centroid(x_t, self.spec.n_atoms)
            lag_t = torch.as_tensor(lag, dtype=torch.float32, device=self.device).expand(x_t.shape[0])
            if torch.any(lag_t < 1):
                raise InvalidInputError(f"the lag must be a positive number of frames, got {lag}")
            extra = {"cond": x_t, "lag": lag_t}
            n = x_t.shape[0]
        else:
            n = n_samples if n_samples is not None else (len(x_t) if x_t is not None else None)
            if n is None or n < 1:
                raise InvalidInputError("an equilibrium model needs a positive number of samples")
        lags = extra["lag"].unique().cpu().numpy() if self.conditional else None
        schedule = (self.sigmas(n_steps, lag=lags) if sigmas is None else torch.as_tensor(sigmas))
        schedule = schedule.to(self.device, torch.float32)
        noise = torch.randn((n, self.dim), generator=generator, device=self.device)
        # start from the noised linear-Gaussian approximation N(c, σ_max² + σ_d²): exact for OU dynamics
        centre, scale = self.denoiser.centre_and_scale(noise, **extra)
        x = centre + (schedule[0] ** 2 + scale[:, None] ** 2).sqrt() * noise
        return sample_fn(self.denoiser, x, schedule, extra_args=extra, generator=generator)

    @torch.no_grad()
    def sample_equilibrium(self, n_samples: int, sampler: str | Callable = DEFAULT_SAMPLER,
                           n_steps: int = DEFAULT_N_STEPS, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw from the model's equilibrium distribution μ: an equilibrium model's own samples, or
        those of a BoPITO model's frozen prior (exact or learned).

        Returns
        -------
        torch.Tensor, shape [n_samples, dim], float32 on the model's device
        """
        if not self.conditional:
            return self.sample(None, n_samples=n_samples, sampler=sampler, n_steps=n_steps, generator=generator)
        if not self.is_bopito:
            raise InvalidInputError("an ITO model has no equilibrium part to sample; give start states instead")
        if not n_samples >= 1:
            raise InvalidInputError("need a positive number of samples")
        prior = self.denoiser.equilibrium
        scale = self.spec.sigma_data
        schedule = karras_sigmas(n_steps, SIGMA_MIN_FACTOR * min(self.spec.lag_scales), SIGMA_MAX_FACTOR * scale,
                                 DEFAULT_RHO).to(self.device, torch.float32)
        mean = self.denoiser.shift.to(self.device, torch.float32)
        noise = torch.randn((n_samples, self.dim), generator=generator, device=self.device)
        x = mean + (schedule[0] ** 2 + scale**2) ** 0.5 * noise
        return _resolve_sampler(sampler)(prior, x, schedule, extra_args={}, generator=generator)

    def outside_training_range(self, x: torch.Tensor, tolerance: float = 0.5) -> torch.Tensor:
        """Rows of ``x`` [W, dim] that are non-finite or beyond the training range by more than
        ``tolerance`` × its extent in some coordinate; bool [W]."""
        low = torch.as_tensor(self.data_low, dtype=x.dtype, device=x.device)
        high = torch.as_tensor(self.data_high, dtype=x.dtype, device=x.device)
        margin = tolerance * (high - low)
        bad = ~torch.isfinite(x).all(-1)
        return bad | ((x < low - margin) | (x > high + margin)).any(-1)

    # -- persistence ---------------------------------------------------------------------------
    def to_payload(self) -> dict[str, Any]:
        """The model as a dict of tensors and plain values (what :meth:`save` writes)."""
        return {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "spec": self.spec.to_dict(),
                "state_dict": {k: v.detach().cpu() for k, v in self.denoiser.state_dict().items()},
                "frame_interval": self.frame_interval, "max_lag": self.max_lag,
                "data_low": self.data_low.tolist(), "data_high": self.data_high.tolist(),
                "system": self.system, "info": self.info, "lambda_interpolation": self.lambda_interpolation}

    @classmethod
    def from_payload(cls, payload: dict[str, Any], source: str = "model") -> "TransitionModel":
        if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
            raise DataFileError(f"{source} is not an itomd model file")
        if payload.get("format_version") != MODEL_FORMAT_VERSION:
            raise DataFileError(f"{source} has model format version {payload.get('format_version')}; "
                                f"this itomd reads version {MODEL_FORMAT_VERSION}")
        try:
            model = cls(DenoiserSpec.from_dict(payload["spec"]), payload["state_dict"], payload["frame_interval"],
                        payload["max_lag"], payload["data_low"], payload["data_high"], payload.get("system"),
                        payload.get("info"))
        except KeyError as exc:
            raise DataFileError(f"{source} lacks the entry {exc}") from exc
        if payload.get("lambda_interpolation") is not None:
            model.set_interpolation(payload["lambda_interpolation"])
        return model

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model atomically to ``path`` (a torch file)."""
        from itomd.checkpoint import save_atomically

        return save_atomically(self.to_payload(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TransitionModel":
        """Read a model written by :meth:`save` (or a run directory holding ``model.pt``)."""
        from itomd.checkpoint import load_file

        path = Path(path)
        if path.is_dir():
            path = path / "model.pt"
        return cls.from_payload(load_file(path, what="model"), source=str(path))


def _resolve_sampler(sampler: str | Callable) -> Callable:
    if callable(sampler):
        return sampler
    if sampler not in SAMPLERS:
        raise InvalidInputError(f"unknown sampler '{sampler}': choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[sampler]
