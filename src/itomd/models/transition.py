r"""Trained models as independent objects: :class:`TransitionModel` samples x_{t+Nτ} given x_t.

A model is what an :class:`~itomd.training.ITOEstimator` hands out (``fetch_model()``) and what
``itomd sample`` loads: the EMA weights of the denoiser, its description (:class:`DenoiserSpec`),
the data's frame interval τ, the largest training lag and the range of the training data (for
blow-up detection). Sampling uses the EMA weights — there are no others in a model file.

The same class holds an unconditional *equilibrium* model (``conditional=False``): then
``sample`` ignores the condition and lag and draws from the learned Boltzmann distribution.

Model files
-----------
``save``/``load`` write and read one torch file of plain values and tensors (read with
``weights_only=True``): ``format = "itomd-model"``, ``format_version`` (:data:`MODEL_FORMAT_VERSION`),
the description (:meth:`DenoiserSpec.to_dict`), the state dict, τ, the largest lag, the data range,
the system's spec, free-form training facts and BoPITO's λ_int. A model of a user's molecule also
carries the files it was trained on (``system_files``: prepared structure, Amber/XML inputs,
force-field files given as paths, each with its SHA-256), so it samples on any machine it is copied
to: where a recorded file is missing or changed, :meth:`load` restores the embedded copy into the
user's cache directory (:func:`~itomd.systems.molecules.restore_files`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from itomd.checkpoint import load_file, save_atomically
from itomd.diffusion.likelihood import log_density
from itomd.diffusion.samplers import DEFAULT_SAMPLER, sampler_named
from itomd.diffusion.schedules import consistency_sigmas, karras_sigmas
from itomd.errors import DataFileError, InvalidInputError
from itomd.models.spec import DenoiserSpec
from itomd.nn.equivariant import equivariant_networks, set_compiled
from itomd.systems.molecules import embed_files, restore_files
from itomd.systems.registry import SystemSpec
from itomd.validation import as_real_array

MODEL_FORMAT = "itomd-model"
MODEL_FORMAT_VERSION = 1
#: Dtypes of the molecular network's pair tensors when sampling (:meth:`TransitionModel.set_precision`).
PRECISIONS = ("float32", "bfloat16")

#: Default sampler (:data:`~itomd.diffusion.samplers.DEFAULT_SAMPLER`) and number of noise levels per
#: jump: EDM's stochastic Heun (49 network
#: evaluations). Deterministic ODE samplers carry score errors into spurious barrier crossings
#: (Müller–Brown, lag 25: one-jump slowest timescale 3.4 with DPM-Solver++(2M) at 24 or 48
#: evaluations vs 5.9 with stochastic Heun at 49 and 5.6 for exact Langevin jumps); see BENCHMARKS.md.
DEFAULT_N_STEPS = 25
#: Noise range of the sampling schedule in units of the data scale at the jump's lag, σ_d(N)
#: (σ_data for an equilibrium model), and Karras' ρ. On a Gaussian target this schedule gives
#: < 0.1 % error in the standard deviation with 24 DPM-Solver++(2M) or Heun levels.
SIGMA_MIN_FACTOR = 0.02
SIGMA_MAX_FACTOR = 10.0
DEFAULT_RHO = 7.0


class TransitionModel:
    """A trained (EMA) denoiser of p(x_{t+Nτ} | x_t) — or of μ(x) — ready to sample.

    Parameters
    ----------
    spec : DenoiserSpec
        Representation, architecture and data scales.
    state_dict : dict
        Weights of the denoiser built from ``spec`` (the EMA weights of training).
    frame_interval : float
        τ, the physical time between frames of the training data; a jump of lag N covers N·τ.
    max_lag : int
        Largest lag (frames) seen in training.
    data_low, data_high : sequence of float, length dim
        Per-coordinate range of the training frames (for BoPITO, widened to the prior's range:
        :meth:`~itomd.models.ExactPrior.region`); rollouts beyond it count as blow-ups.
    system : SystemSpec, optional
        The training data's system, if known (its rollouts carry it; model files hold its dict).
    info : dict, optional
        Free-form training facts (steps, wall time, loss...).
    """

    def __init__(self, spec: DenoiserSpec, state_dict: dict[str, torch.Tensor], frame_interval: float, max_lag: int,
                 data_low: Sequence[float], data_high: Sequence[float], system: SystemSpec | None = None,
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
            detail = " ".join(line.strip() for line in str(exc).splitlines()[:2])
            raise DataFileError(f"model weights do not match the model description: {detail}") from exc
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

    @property
    def precision(self) -> str:
        """The dtype of the molecular network's pair tensors when sampling: ``"float32"`` (default)
        or ``"bfloat16"`` (:meth:`set_precision`)."""
        networks = self._pair_networks()
        return str(networks[0].pair_dtype).removeprefix("torch.") if networks else "float32"

    def set_precision(self, precision: str) -> "TransitionModel":
        """Sample with the molecular network's pair tensors in ``precision`` (``"float32"`` or
        ``"bfloat16"``); returns self.

        bfloat16 halves the memory traffic that an evaluation of the equivariant network costs on a
        CPU (~2× evaluations per second; BENCHMARKS.md, "The molecular network in bfloat16"), with
        atom features and sums kept in float32; weights and training are unchanged. Toy systems'
        networks have no pair tensors: they take ``"float32"`` only.
        """
        if precision not in PRECISIONS:
            raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        networks = self._pair_networks()
        if precision != "float32" and not networks:
            raise InvalidInputError(f"--precision {precision} applies to molecular models (the pair tensors of their "
                                    "equivariant network); this model's network runs in float32")
        for network in networks:
            network.pair_dtype = getattr(torch, precision)
        return self

    @property
    def compiled(self) -> bool:
        """Whether the molecular network is evaluated through ``torch.compile`` when sampling
        (:meth:`set_compiled`)."""
        networks = self._pair_networks()
        return bool(networks) and all(network.compiled for network in networks)

    def set_compiled(self, compiled: bool = True) -> "TransitionModel":
        """Sample with the molecular network compiled by ``torch.compile`` (or not); returns self.

        The same function — its message sums fused into single loops over the pair tensors — at about
        twice the evaluations per second on a CPU, more with ``set_precision("bfloat16")``
        (BENCHMARKS.md, "The molecular network compiled"). The first evaluation of each batch shape
        compiles (seconds to tens of seconds, cached on disk for later runs); where no compiler works
        it warns once and runs eagerly. Toy systems' networks are not compiled: they take False only.
        """
        set_compiled(self.denoiser, compiled)
        return self

    def _pair_networks(self) -> list:
        """The equivariant networks (with pair tensors) inside the denoiser: the transition network
        and, for BoPITO, a learned prior's."""
        return equivariant_networks(self.denoiser)

    def to(self, device: torch.device | str) -> "TransitionModel":
        """Move the network to ``device`` (in place); returns self."""
        self.device = torch.device(device)
        self.denoiser.to(self.device)
        return self

    @property
    def default_sampler(self) -> str:
        """The sampler this model uses unless told otherwise: :data:`DEFAULT_SAMPLER`, or for a
        distilled model (:mod:`itomd.training.distillation`) the one it was distilled for."""
        return str((self.info.get("sampling") or {}).get("sampler", DEFAULT_SAMPLER))

    @property
    def default_n_steps(self) -> int:
        """Noise levels per jump unless told otherwise (:data:`DEFAULT_N_STEPS`; a distilled model's
        own number of network evaluations)."""
        return int((self.info.get("sampling") or {}).get("n_steps", DEFAULT_N_STEPS))

    @property
    def is_distilled(self) -> bool:
        """A few-step student distilled from a teacher model (:mod:`itomd.training.distillation`)."""
        return "distillation" in self.info

    def sigmas(self, n_steps: int | None = None, lag: int | Sequence[float] | None = None,
               sigma_min: float | None = None, sigma_max: float | None = None, rho: float = DEFAULT_RHO,
               sampler: str | None = None) -> torch.Tensor:
        """The noise schedule of ``n_steps`` levels (plus the final 0) for jumps of ``lag``.

        A Karras schedule from ``SIGMA_MAX_FACTOR`` × the largest to ``SIGMA_MIN_FACTOR`` × the
        smallest data scale σ_d(N) among the lags (all lags of the table if None; σ_data for an
        equilibrium model); for the ``consistency`` sampler, the levels of that range's distillation
        grid it samples at (:func:`~itomd.diffusion.schedules.consistency_sigmas`). Defaults: the
        model's own sampler and number of steps.
        """
        sampler = self.default_sampler if sampler is None else sampler
        n_steps = self.default_n_steps if n_steps is None else n_steps
        lags = None if lag is None else np.atleast_1d(np.asarray(lag, dtype=float))
        low, high = self.spec.noise_range(lags)
        low = SIGMA_MIN_FACTOR * low if sigma_min is None else sigma_min
        high = SIGMA_MAX_FACTOR * high if sigma_max is None else sigma_max
        if sampler == "consistency":
            return consistency_sigmas(n_steps, low, high, rho)
        return karras_sigmas(n_steps, low, high, rho)

    def states(self, x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
        """``x`` as states of this model: a float32 tensor [W, dim] on its device; one-line errors
        naming ``name`` for strings or complex numbers, a wrong shape, NaN or inf — the one check of
        start states (sampling and rollouts)."""
        if not isinstance(x, torch.Tensor) or x.is_complex():
            x = as_real_array(x if not isinstance(x, torch.Tensor) else x.cpu().numpy(), name)
        x = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InvalidInputError(f"{name} must have shape [W, {self.dim}], got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise InvalidInputError(f"{name} contain NaN or inf")
        return x

    # -- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, x_t: torch.Tensor | np.ndarray | None, lag: int | torch.Tensor | None = None,
               n_samples: int | None = None, sampler: str | Callable | None = None, n_steps: int | None = None,
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
        sampler : str or callable, optional
            A name in :data:`~itomd.diffusion.samplers.SAMPLERS` or a sampler function (default:
            :attr:`default_sampler`).
        n_steps : int, optional
            Noise levels of the default schedule (ignored when ``sigmas`` is given; default:
            :attr:`default_n_steps`).
        sigmas : torch.Tensor, optional
            A full schedule ending in 0.
        generator : torch.Generator, optional
            Source of randomness (on the model's device).

        Returns
        -------
        torch.Tensor, shape [W, dim], float32 on the model's device
        """
        sampler = self.default_sampler if sampler is None else sampler
        if isinstance(sampler, str) and (sampler == "consistency") != self.is_distilled:
            raise InvalidInputError("a distilled model samples with the consistency sampler only" if self.is_distilled
                                    else "the consistency sampler needs a distilled model (itomd distill)")
        sample_fn = _resolve_sampler(sampler)
        extra: dict[str, torch.Tensor] = {}
        if self.conditional:
            if x_t is None or lag is None:
                raise InvalidInputError("a transition model needs start states x_t and a lag")
            x_t = self.spec.representation.prepare_states(self.states(x_t, "start states x_t"))  # molecules: centred
            lag_t = torch.as_tensor(lag, dtype=torch.float32, device=self.device).expand(x_t.shape[0])
            if not torch.isfinite(lag_t).all() or torch.any(lag_t < 1):
                raise InvalidInputError(f"the lag must be a positive number of frames, got {lag}")
            extra = {"cond": x_t, "lag": lag_t}
            n = x_t.shape[0]
        else:
            n = n_samples if n_samples is not None else (len(x_t) if x_t is not None else None)
            if n is None or n < 1:
                raise InvalidInputError("an equilibrium model needs a positive number of samples")
        lags = extra["lag"].unique().cpu().numpy() if self.conditional else None
        schedule = (self.sigmas(n_steps, lag=lags, sampler=sampler if isinstance(sampler, str) else None)
                    if sigmas is None else torch.as_tensor(sigmas))
        schedule = schedule.to(self.device, torch.float32)
        noise = torch.randn((n, self.dim), generator=generator, device=self.device)
        # start from the noised linear-Gaussian approximation N(c, σ_max² + σ_d²): exact for OU dynamics
        centre, scale = self.denoiser.centre_and_scale(noise, **extra)
        x = centre + (schedule[0] ** 2 + scale[:, None] ** 2).sqrt() * noise
        return sample_fn(self.denoiser, x, schedule, extra_args=extra, generator=generator)

    def log_transition_density(self, y: torch.Tensor, x_t: torch.Tensor, lag: int, n_steps: int = DEFAULT_N_STEPS,
                               n_probes: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """ln p_θ(y | x_t, N) of the probability-flow sampler (``sampler="flow"``) on the same schedule.

        Computed through the probability-flow ODE (:func:`~itomd.diffusion.likelihood.log_density`):
        exact divergence for toy systems, Hutchinson with ``n_probes`` probes for molecules. ``y`` is
        taken as given — in the frame the model samples it (for an ITO model of a molecule: superposed
        on x_t).

        Parameters
        ----------
        y, x_t : torch.Tensor, shape [W, dim]
            End and start states (centred structures for molecules).
        lag : int
        n_steps : int
            Noise levels of the schedule (as for :meth:`sample`).
        n_probes : int, optional
        generator : torch.Generator, optional
            Source of the Hutchinson probes.

        Returns
        -------
        torch.Tensor, shape [W], float64
        """
        if not self.conditional:
            raise InvalidInputError("an equilibrium model has no transition density")
        y, x_t = self.states(y, "end states"), self.states(x_t, "start states")
        if len(y) != len(x_t):
            raise InvalidInputError(f"{len(y)} end states for {len(x_t)} start states")
        lag_t = torch.full((len(x_t),), float(lag), device=self.device)
        schedule = self.sigmas(n_steps, lag=[lag], sampler="flow").to(self.device, torch.float32)
        return log_density(self.denoiser, y, schedule[schedule > 0], {"cond": x_t, "lag": lag_t},
                           n_atoms=self.spec.representation.n_atoms, n_probes=n_probes, generator=generator)

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
        ``tolerance`` × its extent (:meth:`~itomd.representation.Representation.outside_range`:
        in some coordinate for points, in some atom's distance from the centroid for molecules); bool [W]."""
        low = torch.as_tensor(self.data_low, dtype=x.dtype, device=x.device)
        high = torch.as_tensor(self.data_high, dtype=x.dtype, device=x.device)
        return self.spec.representation.outside_range(x, low, high, tolerance)

    def untrained_starts(self, x0: np.ndarray) -> int:
        """How many start states [W, dim] of a BoPITO model lie outside its training data's range, where
        its dynamic part is untrained and jumps relax towards the prior at once (0 for other models)."""
        data = self.info.get("data") or {}
        if not self.is_bopito or "low" not in data:
            return 0
        representation = self.spec.representation  # the range is of the frames as the model saw them
        x0 = representation.prepare_states(torch.as_tensor(np.asarray(x0, dtype=np.float64)))
        low, high = (torch.as_tensor(data[k], dtype=torch.float64) for k in ("low", "high"))
        return int(representation.outside_range(x0, low, high, 0.0).sum())

    # -- persistence ---------------------------------------------------------------------------
    def to_payload(self) -> dict[str, Any]:
        """The model as a dict of tensors and plain values (what :meth:`save` writes)."""
        payload = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "spec": self.spec.to_dict(),
                   "state_dict": {k: v.detach().cpu() for k, v in self.denoiser.state_dict().items()},
                   "frame_interval": self.frame_interval, "max_lag": self.max_lag,
                   "data_low": self.data_low.tolist(), "data_high": self.data_high.tolist(),
                   "system": None if self.system is None else self.system.to_dict(), "info": self.info,
                   "lambda_interpolation": self.lambda_interpolation}
        files = [] if self.system is None else embed_files(self.system.molecule_files())
        if files:  # only a user's molecule has any (other payloads are unchanged)
            payload["system_files"] = files
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any], source: str = "model") -> "TransitionModel":
        if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
            raise DataFileError(f"{source} is not an itomd model file")
        if payload.get("format_version") != MODEL_FORMAT_VERSION:
            raise DataFileError(f"{source} has model format version {payload.get('format_version')}; "
                                f"this itomd reads version {MODEL_FORMAT_VERSION}")
        try:
            system = None if payload.get("system") is None else SystemSpec.from_dict(payload["system"])
            if system is not None and payload.get("system_files"):  # a user's molecule: its files travel along
                system = system.with_moved_files(restore_files(payload["system_files"]))
            model = cls(DenoiserSpec.from_dict(payload["spec"], system), payload["state_dict"], payload["frame_interval"],
                        payload["max_lag"], payload["data_low"], payload["data_high"], system, payload.get("info"))
        except KeyError as exc:
            raise DataFileError(f"{source} lacks the entry {exc}") from exc
        if payload.get("lambda_interpolation") is not None:
            model.set_interpolation(payload["lambda_interpolation"])
        return model

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model atomically to ``path`` (a torch file)."""
        return save_atomically(self.to_payload(), path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TransitionModel":
        """Read a model written by :meth:`save` (or a run directory holding ``model.pt``)."""
        path = Path(path)
        if path.is_dir():
            path = path / "model.pt"
        return cls.from_payload(load_file(path, what="model"), source=str(path))


def _resolve_sampler(sampler: str | Callable) -> Callable:
    return sampler if callable(sampler) else sampler_named(sampler)
