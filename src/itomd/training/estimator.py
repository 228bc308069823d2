r"""Training ITO (and equilibrium) denoisers: :class:`ITOEstimator`.

``ITOEstimator(config).fit(trajectories, frame_interval, system=spec, run_dir=...)`` trains a
denoiser on multi-lag pairs (x_t, x_{t+Nτ}, N) — or, with ``config.equilibrium``, on single frames —
and returns itself; ``fetch_model()`` returns an independent :class:`~itomd.models.TransitionModel`
holding the EMA weights. The system's :class:`~itomd.representation.Representation` decides how
states are seen (molecules: centred structures, superposed targets, an equivariant network). With a
``prior`` (:class:`~itomd.models.ExactPrior`, :class:`~itomd.models.LearnedPrior` or
:class:`~itomd.models.ForceFieldPrior`) the denoiser is
a :class:`~itomd.diffusion.BoPITODenoiser`: the equilibrium part is frozen and only the dynamic part
is trained, with λ̂ estimated from the data unless the config gives it.

The loop (one global batch per step, EMA, learning-rate schedule, DDP) is :mod:`itomd.training.loop`;
the run directory (checkpoints, model, metrics, exact resume) is :mod:`itomd.training.run`.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from itomd.analysis.msm import slowest_eigenvalue
from itomd.analysis.features import slow_plane
from itomd.data.pairs import PairSampler, balanced_start_weights, make_lag_sampler
from itomd.errors import InvalidInputError
from itomd.models import DenoiserSpec, Prior, TransitionModel, fit_denoiser_spec
from itomd.representation import CoordinateRepresentation, Representation, representation_for
from itomd.training.config import TrainingConfig
from itomd.training.loop import (SCHEDULE_CALIBRATION_FRACTION, BatchSource, Distributed, TrainingState,
                                 budgeted_schedule_steps, cpu_state, learning_rate, select_device, train_step)
from itomd.training.run import MetricsLog, RunDirectory
from itomd.validation import check_frame_interval, check_trajectories, require_int

if TYPE_CHECKING:  # pragma: no cover
    from itomd.systems.registry import SystemSpec

#: Smallest weight λ̂^N_max of BoPITO's dynamic part at the largest training lag that an estimated
#: λ̂ may give. Data without slow processes (e.g. a few short trajectories in one well) give a fast
#: λ̂ whose λ̂^N_max underflows, so the network output would need to be astronomically large to
#: reproduce the data at long training lags (training diverges); λ̂ is then raised to this floor.
MIN_DYNAMIC_WEIGHT = 0.01


class ITOEstimator:
    """Fits a multi-lag transition denoiser (or an equilibrium denoiser) to trajectories.

    Parameters
    ----------
    config : TrainingConfig

    Examples
    --------
    >>> est = ITOEstimator(TrainingConfig(max_lag=50, max_steps=2000))       # doctest: +SKIP
    >>> model = est.fit(trajectories, frame_interval=5e-3).fetch_model()     # doctest: +SKIP
    >>> x_next = model.sample(x_t, lag=50)                                   # doctest: +SKIP
    """

    def __init__(self, config: TrainingConfig):
        if not isinstance(config, TrainingConfig):
            raise InvalidInputError(f"config must be a TrainingConfig, got {type(config).__name__}")
        self.config = config
        self._model: TransitionModel | None = None
        self._session: _Session | None = None
        self.step = 0
        self.stopped_by_budget = False
        self.stopped_by_request = False

    def get_params(self) -> dict[str, Any]:
        """The estimator's parameters (its config's fields)."""
        return self.config.to_dict()

    # -- public API ------------------------------------------------------------------------------
    def fit(self, trajectories: Sequence[np.ndarray], frame_interval: float, run_dir: "str | Path | None" = None,
            resume: bool = False, progress: bool = True, system: "SystemSpec | None" = None,
            prior: Prior | None = None, stop: Callable[[], bool] | None = None,
            data_source: str | None = None) -> "ITOEstimator":
        """Train from scratch (or resume ``run_dir``) until ``config.max_steps``; returns self.

        Parameters
        ----------
        trajectories : sequence of np.ndarray, each [n_frames_i, dim]
        frame_interval : float
            τ, physical time between frames.
        run_dir : str or os.PathLike, optional
            Where checkpoints, the model and metrics go (nothing is written without it).
        resume : bool
            Continue from ``run_dir/checkpoint.pt`` (which must exist).
        progress : bool
            Show a progress bar with the loss and steps/s.
        system : SystemSpec, optional
            The data's system: it chooses the representation (molecules: an equivariant network on
            centred structures) and is recorded with the model. Without it the states are points.
        prior : ExactPrior, LearnedPrior or ForceFieldPrior, optional
            BoPITO's frozen equilibrium part (required when ``config.prior`` names one, unless
            resuming: the checkpoint has it).
        stop : callable, optional
            Asked between steps (e.g. "was Ctrl-C pressed?"); when it returns True the run stops at
            that step, writes its checkpoint and model, and sets :attr:`stopped_by_request`.
            Resuming from that checkpoint continues bit for bit as if the run had not stopped.
        data_source : str, optional
            Where the trajectories came from (a store's path), recorded with the model
            (``info["data"]["source"]``; ``itomd distill`` finds the pairs there).
        """
        self._session = _Session.open(self.config, trajectories, frame_interval, system, prior,
                                      None if run_dir is None else RunDirectory(run_dir), resume, progress=progress)
        self.config = self._session.config  # with the system's defaults filled in
        if data_source is not None:
            self._session.data_summary["source"] = str(data_source)
        return self._run(self.config.max_steps, progress, stop)

    def partial_fit(self, trajectories: Sequence[np.ndarray], frame_interval: float, n_steps: int,
                    progress: bool = False, system: "SystemSpec | None" = None,
                    prior: Prior | None = None) -> "ITOEstimator":
        """Train ``n_steps`` more steps, in memory, continuing the previous ``fit``/``partial_fit`` on
        the same data (or starting a new run); returns self."""
        n_steps = require_int("n_steps", n_steps)
        if self._session is None:
            self._session = _Session.open(self.config, trajectories, frame_interval, system, prior, None, False)
            self.config = self._session.config
        else:
            self._session.check_same_data(trajectories)
        return self._run(self._session.state.step + n_steps, progress)

    def fetch_model(self) -> TransitionModel:
        """The trained model (EMA weights); an independent copy each call."""
        if self._model is None:
            raise InvalidInputError("the estimator has not been fit")
        return TransitionModel.from_payload(self._model.to_payload())

    # -- the loop --------------------------------------------------------------------------------
    def _run(self, until_step: int, progress: bool, stop: Callable[[], bool] | None = None) -> "ITOEstimator":
        session, config = self._session, self.config
        state, dist = session.state, session.dist
        metrics: MetricsLog | None = None
        if session.run_dir is not None and dist.is_main:
            metrics = session.run_dir.start(config, state.step)
        deadline = None if config.minutes is None else time.monotonic() + 60.0 * config.minutes
        start, elapsed_before, first_step = time.monotonic(), state.elapsed_seconds, state.step
        timed_from, timed_step = start, first_step  # the learning-rate schedule's speed, from the first step on
        bar = tqdm(total=max(until_step, config.max_steps), initial=state.step, unit="step", dynamic_ncols=True,
                   disable=not (progress and dist.is_main), desc=session.label)
        loss_sum, loss_count, window_start, window_step = 0.0, 0, time.monotonic(), state.step
        self.stopped_by_budget = self.stopped_by_request = False
        state.denoiser.train()
        while state.step < until_step:
            if deadline is not None or stop is not None:  # rank 0 decides for every rank
                requested = stop is not None and stop()
                if dist.rank0_decides(requested or (deadline is not None and time.monotonic() > deadline)):
                    self.stopped_by_request, self.stopped_by_budget = requested, not requested
                    break
            if deadline is not None and state.schedule_steps is None and state.step > config.warmup_steps:
                # the budget's speed is measured, then the learning-rate decay is fixed to end with it
                # (rank 0 decides when, every rank the same step; checkpointed, so resumes keep it)
                now = time.monotonic()
                if dist.rank0_decides(now - start >= SCHEDULE_CALIBRATION_FRACTION * 60.0 * config.minutes):
                    # timed from the end of this invocation's first step: that one pays one-off costs
                    # (a compiled network compiles there, for tens of seconds)
                    rate = (state.step - timed_step) / max(now - timed_from, 1e-9)
                    planned = budgeted_schedule_steps(state.step, rate, deadline - now, config)
                    state.schedule_steps = int(round(dist.mean(float(planned))))
            loss_sum += session.step()
            if state.step == first_step + 1:
                timed_from, timed_step = time.monotonic(), state.step
            loss_count += 1
            bar.update(1)
            step = state.step
            if step % config.log_every == 0 or step == until_step:
                mean_loss = dist.mean(loss_sum / loss_count)
                now = time.monotonic()
                rate = (step - window_step) / max(now - window_start, 1e-9)
                bar.set_postfix(loss=f"{mean_loss:.4f}", steps_per_s=f"{rate:.1f}")
                if metrics is not None:
                    metrics.append({"step": step, "loss": mean_loss,
                                    "learning_rate": learning_rate(step - 1, config, state.schedule_steps),
                                    "steps_per_second": rate, "elapsed_seconds": elapsed_before + now - start})
                loss_sum, loss_count, window_start, window_step = 0.0, 0, now, step
                if not math.isfinite(mean_loss):
                    bar.close()
                    raise InvalidInputError(f"training diverged at step {step} (loss {mean_loss}); "
                                            "lower learning_rate or check the data")
            if step % config.checkpoint_every == 0 and step < until_step:
                state.elapsed_seconds = elapsed_before + time.monotonic() - start
                session.save()
        bar.close()
        state.elapsed_seconds = elapsed_before + time.monotonic() - start
        self._model = session.save()
        self.step = state.step
        return self


class _Session:
    """Everything a run needs between steps: the data, the description, the state, the devices."""

    def __init__(self, config: TrainingConfig, spec: DenoiserSpec, state: TrainingState, batches: BatchSource,
                 device: torch.device, dist: Distributed, run_dir: RunDirectory | None, data_summary: dict[str, Any],
                 model_facts: dict[str, Any]):
        self.config, self.spec, self.state, self.batches = config, spec, state, batches
        self.device, self.dist, self.run_dir = device, dist, run_dir
        self.data_summary, self.model_facts = data_summary, model_facts
        self.trained: torch.nn.Module | None = None
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.trained = DistributedDataParallel(state.denoiser,
                                                   device_ids=[device.index] if device.type == "cuda" else None)

    @classmethod
    def open(cls, config: TrainingConfig, trajectories: Sequence[np.ndarray], frame_interval: float,
             system: "SystemSpec | None", prior: Prior | None, run_dir: RunDirectory | None,
             resume: bool, progress: bool = False) -> "_Session":
        trajectories = check_trajectories(trajectories)
        frame_interval = check_frame_interval(frame_interval)
        if resume and run_dir is None:
            raise InvalidInputError("resume needs a run directory")
        built = None if system is None else system.build()
        representation = (CoordinateRepresentation(trajectories[0].shape[1]) if built is None
                          else representation_for(built))
        representation.check_dimension(trajectories[0].shape[1])
        trajectories = representation.prepare_trajectories(trajectories)
        config = config.with_system_defaults(representation.training_size())

        device = select_device(config.device)
        dist = Distributed.from_environment(device)
        if dist.enabled and device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(device)
        if config.batch_size % dist.world_size:
            raise InvalidInputError(f"batch_size {config.batch_size} is not divisible by {dist.world_size} processes")

        frames = np.concatenate(trajectories)
        data_summary = {"n_trajectories": len(trajectories), "n_frames": int(len(frames)),
                        "mean": frames.mean(0).tolist(), "frame_interval": float(frame_interval),
                        "low": frames.min(0).tolist(), "high": frames.max(0).tolist()}
        inputs = None if built is None else built.metadata().get("inputs")
        if inputs is not None:  # a user's molecule: its spec, force field and input files (SHA-256) in the model
            data_summary["inputs"] = inputs
        checkpoint = None
        if resume:
            checkpoint = run_dir.load_checkpoint(config, data_summary)
            config = resumed_config(config, checkpoint)
        elif run_dir is not None and run_dir.has_checkpoint():
            raise InvalidInputError(f"{run_dir.path} already holds a training run; pass --resume to continue it "
                                    "or choose a new --out")
        pairs = None if config.equilibrium else balanced_pairs(trajectories, representation, config, data_summary)
        frames_t = torch.as_tensor(frames, dtype=torch.float32) if pairs is None else pairs.frames.to(torch.float32)
        if checkpoint is not None:
            spec = DenoiserSpec.from_dict(checkpoint["spec"], system)
        else:
            spec = _new_spec(config, trajectories, representation, pairs, prior, progress and dist.is_main)

        torch.manual_seed(config.seed)
        denoiser = spec.build()
        if checkpoint is None and spec.is_bopito:
            denoiser.equilibrium.load_state_dict(prior.module.state_dict())
        state = TrainingState.fresh(denoiser, config, device)
        if checkpoint is not None:
            state.load_state_dict(checkpoint)
        state.ema.module.to(device)

        low, high = frames.min(0), frames.max(0)
        known = None if spec.prior is None else spec.prior.region()  # BoPITO also knows where its prior puts mass
        if known is not None:
            low, high = np.minimum(low, known[0]), np.maximum(high, known[1])
        model_facts = dict(frame_interval=float(frame_interval), max_lag=config.max_lag, data_low=low.tolist(),
                           data_high=high.tolist(), system=system)
        return cls(config, spec, state, BatchSource(frames_t, pairs, spec.representation), device, dist, run_dir,
                   data_summary, model_facts)

    @property
    def label(self) -> str:
        """What the progress bar calls this run."""
        kind = "equilibrium" if self.config.equilibrium else "BoPITO" if self.spec.is_bopito else "ITO"
        return f"train {kind}"

    def step(self) -> float:
        """One optimiser step (:func:`~itomd.training.loop.train_step`); the local loss."""
        return train_step(self.state, self.batches, self.config, self.device, self.dist, self.trained)

    def check_same_data(self, trajectories: Sequence[np.ndarray]) -> None:
        n_frames = sum(len(t) for t in trajectories)
        if (len(trajectories), n_frames) != (self.data_summary["n_trajectories"], self.data_summary["n_frames"]):
            raise InvalidInputError("partial_fit continues on the data of the first call: "
                                    f"{self.data_summary['n_trajectories']} trajectories / "
                                    f"{self.data_summary['n_frames']} frames, got {len(trajectories)} / {n_frames}")

    def model(self) -> TransitionModel:
        """The EMA model at the current step."""
        info = {"steps": self.state.step, "train_seconds": round(self.state.elapsed_seconds, 3),
                "config": self.config.to_dict(), "data": self.data_summary}
        return TransitionModel(self.spec, cpu_state(self.state.ema.module.state_dict()), info=info, **self.model_facts)

    def save(self) -> TransitionModel:
        """The current model, written with a checkpoint to the run directory (rank 0 only)."""
        model = self.model()
        if self.run_dir is not None and self.dist.is_main:
            self.run_dir.save(self.config, self.spec, self.data_summary, self.state, model)
        return model


def resumed_config(config: TrainingConfig, checkpoint: dict[str, Any]) -> TrainingConfig:
    """``config`` for resuming ``checkpoint``: a run written before ``start_balance`` existed drew its
    starts uniformly and goes on doing so."""
    if "start_balance" not in checkpoint["config"]:
        return dataclasses.replace(config, start_balance=0.0)
    return config


def balanced_pairs(trajectories: list[np.ndarray], representation: Representation, config: TrainingConfig,
                   data_summary: dict[str, Any] | None = None) -> PairSampler:
    """The training pairs of ``config``: starts weighted by :func:`~itomd.data.pairs.balanced_start_weights`
    on the plane of the system's slow coordinates (:meth:`~itomd.representation.Representation.slow_coordinates`,
    :func:`~itomd.analysis.features.slow_plane`) with exponent ``config.start_balance``, uniform where it is 0.
    ``data_summary`` (a run's record of its data) gets the weights' effective fraction of the frames
    (Kish: (Σw)²/(n Σw²)) under ``start_weights_effective_fraction``."""
    lags = make_lag_sampler(config.lag_distribution, config.max_lag)
    if not config.start_balance:
        return PairSampler(trajectories, lags)
    weights = balanced_start_weights(slow_plane(representation.slow_coordinates(trajectories)), config.start_balance)
    if data_summary is not None:
        data_summary["start_weights_effective_fraction"] = round(float(weights.sum() ** 2 / (len(weights) * (weights ** 2).sum())), 4)
    return PairSampler(trajectories, lags, start_weights=weights)


def _new_spec(config: TrainingConfig, trajectories: list[np.ndarray], representation: Representation,
              pairs: PairSampler | None, prior: Prior | None, progress: bool = False) -> DenoiserSpec:
    """The description of a new run's denoiser, with the data scales (and BoPITO's λ̂) estimated
    (``progress``: a progress bar over the lags of the lag statistics)."""
    if config.prior is not None and prior is None:
        raise InvalidInputError(f"the config names the prior '{config.prior}': pass it as prior= "
                                "(itomd.models.ExactPrior.of_system, LearnedPrior.of_model or ForceFieldPrior.of_data)")
    if prior is not None and config.equilibrium:
        raise InvalidInputError("an equilibrium model takes no prior (the prior is an equilibrium model)")
    if config.lambda_hat is not None and prior is None:
        raise InvalidInputError("lambda_hat is BoPITO's: it needs a prior (--prior exact or an equilibrium run)")
    lambda_hat = config.lambda_hat
    if prior is not None:
        if prior.n_atoms != representation.n_atoms or prior.dim != trajectories[0].shape[1]:
            raise InvalidInputError("the equilibrium model and the data must describe the same states "
                                    f"(prior: {prior.dim} coordinates, data: {trajectories[0].shape[1]}; "
                                    "both molecules or both not)")
        if lambda_hat is None:
            lambda_hat = estimated_lambda_hat(representation.slow_coordinates(trajectories), config.max_lag,
                                              config.seed)
    # molecules: ITO (and BoPITO's transition part) learn superposed targets, BoPITO's other forms the
    # orientation-marginal density
    transition = pairs is not None
    dynamic_part = config.dynamic_part or representation.bopito_dynamic_part
    superposed = prior is None or dynamic_part == "transition"
    representation = representation.for_model(superpose_targets=transition and superposed,
                                              orientation_marginal=transition and not superposed)
    return fit_denoiser_spec(trajectories, representation,
                             config.network, config.max_lag, pairs=pairs, p_mean=config.p_mean, p_std=config.p_std,
                             prior=prior, lambda_hat=lambda_hat, progress=progress,
                             dynamic_part=dynamic_part)


def estimated_lambda_hat(trajectories: Sequence[np.ndarray], max_lag: int, seed: int = 0) -> float:
    """λ̂ from an MSM of ``trajectories`` (the slow coordinates) at lag 1 frame, floored so that
    λ̂^max_lag ≥ :data:`MIN_DYNAMIC_WEIGHT` (with a warning)."""
    estimate = slowest_eigenvalue(trajectories, lag=1, seed=seed)
    floor = MIN_DYNAMIC_WEIGHT ** (1.0 / max_lag)
    if estimate < floor:
        warnings.warn(f"the data's slowest MSM eigenvalue {estimate:.4g} per frame would weight BoPITO's dynamic "
                      f"part by {estimate ** max_lag:.2g} at lag {max_lag}; using λ̂ = {floor:.6g} "
                      f"(weight {MIN_DYNAMIC_WEIGHT}); the data hold no process slower than a few frames — "
                      "pass lambda_hat to choose it", stacklevel=4)
        return floor
    return estimate
