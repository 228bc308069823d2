r"""Few-step transition sampling: consistency distillation of a trained ITO or BoPITO model.

A trained model draws x_{t+Nτ} ~ p(· | x_t, N) by integrating its reverse diffusion with 25 noise
levels (49 network evaluations with the default stochastic Heun). :class:`ConsistencyDistiller`
turns it into a *consistency model* (Song, Dhariwal, Chen & Sutskever 2023) that draws from the same
distribution in one to four evaluations (:func:`~itomd.diffusion.samplers.sample_consistency`).

Why consistency distillation
----------------------------
* It keeps a sampler of the **distribution**: the student f_θ(x; σ, x_t, N) maps any point of the
  teacher's probability-flow trajectory to that trajectory's end, so one evaluation at σ_max turns
  fresh noise into a fresh sample — stochastic, conditioned on x_t and N, for every lag of the
  model — and k evaluations re-noise in between (a restart-style correction of the one-step map).
* The student is the **teacher's own network**, copied with all its weights (for BoPITO also the
  learned equilibrium part, which is no longer frozen) and fine-tuned, so it starts from the
  teacher's denoiser, has the teacher's cost per evaluation, and its file is an ordinary model file:
  ``itomd sample``, rollouts, ``analyze``, ``speed`` and ``check`` use it like any other. An exact
  prior (toy BoPITO) has no weights; its dynamic part learns the whole correction.
* The training signal is local: one teacher Heun step between adjacent levels of a grid
  (:data:`~itomd.diffusion.schedules.CONSISTENCY_GRID_LEVELS` levels of the teacher's default
  Karras schedule, in units of the lag's data scale σ_d(N)), so the student learns the map of the
  teacher's own 25-level discretisation and never needs whole teacher trajectories.
  Progressive distillation needs a round per halving (49 → 1 is six rounds); distribution-matching
  distillation trains a second (fake-score) network beside the student.

The loss (improved consistency training's choices, Song & Dhariwal 2023): for a pair
(x_t, y = x_{t+Nτ}) of the training data and a grid index i, with σ_i > σ_{i+1} in units of σ_d(N),

.. math::
    x_i = y + \sigma_i z,\quad \hat x_{i+1} = \mathrm{Heun}_\text{teacher}(x_i;\ \sigma_i \to \sigma_{i+1}),\quad
    \mathcal L = \frac{1}{\sigma_i - \sigma_{i+1}}\;
    d\Big(\frac{f_\theta(x_i;\sigma_i) - \mathrm{sg}[f_\theta(\hat x_{i+1};\sigma_{i+1})]}{\sigma_d(N)}\Big),

d the pseudo-Huber distance :math:`\sqrt{\lVert u\rVert^2 + c^2} - c` with
:math:`c = 0.00054\sqrt{\dim}`, the target network the student itself without gradient, and at the
grid's last level the boundary f(x; σ_min) = D_teacher(x; σ_min) (the teacher sampler's final
step). Sampling uses the EMA weights.

What it inherits: the probability-flow ODE's map. Where a deterministic solver of the teacher's ODE
mis-places rare barrier crossings (Müller–Brown, see BENCHMARKS.md), so may the one-step student;
the multistep sampler's re-noising is the correction, and its effect is measured there.

The run directory is a training run directory (:mod:`itomd.training.run`): ``checkpoint.pt``,
``model.pt``, ``config.toml``, ``metrics.jsonl``; a killed run resumes bit for bit.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from itomd.diffusion.denoiser import append_dims
from itomd.diffusion.schedules import CONSISTENCY_GRID_LEVELS, karras_sigmas
from itomd.errors import InvalidInputError
from itomd.models import TransitionModel
from itomd.models.transition import DEFAULT_RHO, SIGMA_MAX_FACTOR, SIGMA_MIN_FACTOR
from itomd.training.config import TrainingConfig
from itomd.training.estimator import ITOEstimator, _Session, balanced_pairs, resumed_config
from itomd.training.loop import (BatchSource, Distributed, TrainingState, optimizer_step, select_device,
                                 set_learning_rate)
from itomd.training.run import RunDirectory
from itomd.validation import check_trajectories, require_int

#: Network evaluations per jump a distilled model samples with unless told otherwise: four, because
#: the restarts correct the one-step map's barrier leak (Müller–Brown, lag 10: −67 / −50 / −8 % in the
#: slowest timescale at 1 / 2 / 4 evaluations; BENCHMARKS.md).
DEFAULT_SAMPLING_STEPS = 4
#: Largest number of evaluations per jump a distilled model is meant for (it accepts up to the grid's).
MAX_SAMPLING_STEPS = 4
#: Distillation's own defaults where they differ from the teacher's training: fine-tuning from the
#: teacher's weights wants a smaller learning rate and a short warm-up.
DISTILLATION_LEARNING_RATE_FACTOR = 0.25
DEFAULT_DISTILLATION_STEPS = 4000


def distillation_config(teacher: TransitionModel, max_steps: int | None = None, minutes: float | None = None,
                        seed: int | None = None, device: str | None = None,
                        batch_size: int | None = None) -> TrainingConfig:
    """The training options of a distillation run: the teacher's (lags, batch, EMA...) with a quarter
    of its learning rate, 100 warm-up steps and :data:`DEFAULT_DISTILLATION_STEPS` steps unless
    given."""
    recorded = dict(teacher.info.get("config") or {})
    recorded.update(prior=None, lambda_hat=None, equilibrium=False, minutes=None)  # the student is not retrained
    recorded.setdefault("max_lag", teacher.max_lag)
    base = TrainingConfig.from_dict(recorded, source="the teacher's config")
    return TrainingConfig.from_dict(base.to_dict(), learning_rate=base.learning_rate * DISTILLATION_LEARNING_RATE_FACTOR,
                                    warmup_steps=min(base.warmup_steps, 100),
                                    max_steps=DEFAULT_DISTILLATION_STEPS if max_steps is None else max_steps,
                                    minutes=minutes, seed=seed, device=device, batch_size=batch_size)


def model_digest(model: TransitionModel) -> str:
    """SHA-256 of a model's weights (identifies the teacher of a distillation run)."""
    digest = hashlib.sha256()
    for key, value in sorted(model.denoiser.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class ConsistencyDistiller(ITOEstimator):
    """Distils a trained transition model into a few-step consistency model (see module docs).

    Parameters
    ----------
    config : TrainingConfig
        Usually :func:`distillation_config` of the teacher.
    sampling_steps : int
        Network evaluations per jump the distilled model uses by default (1 to
        :data:`MAX_SAMPLING_STEPS`).

    Examples
    --------
    >>> student = ConsistencyDistiller(distillation_config(teacher)).distill(teacher, trajectories)  # doctest: +SKIP
    >>> x_next = student.fetch_model().sample(x_t, lag=10)      # 2 network evaluations   # doctest: +SKIP
    """

    def __init__(self, config: TrainingConfig, sampling_steps: int = DEFAULT_SAMPLING_STEPS):
        super().__init__(config)
        sampling_steps = require_int("sampling_steps", sampling_steps, 1)
        if sampling_steps > MAX_SAMPLING_STEPS:
            raise InvalidInputError(f"a distilled model samples with 1 to {MAX_SAMPLING_STEPS} network evaluations "
                                    f"per jump, got {sampling_steps}")
        self.sampling_steps = sampling_steps

    def distill(self, teacher: TransitionModel, trajectories: Sequence[np.ndarray], run_dir: "str | Path | None" = None,
                resume: bool = False, progress: bool = True, stop: Callable[[], bool] | None = None,
                teacher_source: str | None = None, data_source: str | None = None) -> "ConsistencyDistiller":
        """Distil ``teacher`` on the pairs of ``trajectories`` (its training data or more of the same
        system, frame interval τ of the teacher); returns self (:meth:`fetch_model` gives the student).

        Parameters
        ----------
        teacher : TransitionModel
            A trained transition model (ITO or BoPITO; not an equilibrium model, not itself distilled).
        trajectories : sequence of np.ndarray, each [n_frames_i, dim]
        run_dir, resume, progress, stop
            As for :meth:`ITOEstimator.fit`.
        teacher_source, data_source : str, optional
            Where the teacher and the trajectories came from (recorded in the student's file).
        """
        self._session = _DistillationSession.open(self.config, teacher, trajectories, self.sampling_steps,
                                                  None if run_dir is None else RunDirectory(run_dir), resume,
                                                  teacher_source)
        self.config = self._session.config  # with the system's defaults filled in
        if data_source is not None:
            self._session.data_summary["source"] = str(data_source)
        return self._run(self.config.max_steps, progress, stop)

    def fit(self, *args: Any, **kwargs: Any) -> "ConsistencyDistiller":
        raise InvalidInputError("a distiller distils a trained model: call distill(teacher, trajectories)")

    def partial_fit(self, *args: Any, **kwargs: Any) -> "ConsistencyDistiller":
        raise InvalidInputError("a distiller distils a trained model: call distill(teacher, trajectories)")


def consistency_grid(grid_levels: int = CONSISTENCY_GRID_LEVELS) -> torch.Tensor:
    """The distillation grid in units of the lag's data scale σ_d(N), decreasing; shape [grid_levels]
    (the levels of the teacher's default schedule, :meth:`TransitionModel.sigmas`)."""
    return karras_sigmas(grid_levels, SIGMA_MIN_FACTOR, SIGMA_MAX_FACTOR, DEFAULT_RHO)[:-1].to(torch.float32)


def pseudo_huber(u: torch.Tensor) -> torch.Tensor:
    r""":math:`\sqrt{\lVert u\rVert^2 + c^2} - c` per row of ``u`` [B, dim] with :math:`c = 0.00054\sqrt{\dim}`; [B]."""
    c = 0.00054 * u.shape[1] ** 0.5
    return (u.pow(2).sum(-1) + c**2).sqrt() - c


class _DistillationSession(_Session):
    """A training session whose step is a consistency-distillation step against a frozen teacher."""

    teacher: torch.nn.Module
    grid: torch.Tensor
    distillation: dict[str, Any]
    lambda_interpolation: float | None

    @classmethod
    def open(cls, config: TrainingConfig, teacher: TransitionModel, trajectories: Sequence[np.ndarray],
             sampling_steps: int, run_dir: RunDirectory | None, resume: bool,
             teacher_source: str | None) -> "_DistillationSession":
        if not isinstance(teacher, TransitionModel):
            raise InvalidInputError(f"the teacher must be a TransitionModel, got {type(teacher).__name__}")
        if not teacher.conditional:
            raise InvalidInputError("an equilibrium model has no transitions to distil; give a transition model")
        if teacher.is_distilled:
            raise InvalidInputError("the teacher is itself distilled; distil the model it came from")
        if resume and run_dir is None:
            raise InvalidInputError("resume needs a run directory")
        trajectories = check_trajectories(trajectories)
        representation = teacher.spec.representation
        representation.check_dimension(trajectories[0].shape[1])
        trajectories = representation.prepare_trajectories(trajectories)
        config = config.with_system_defaults(representation.training_size())
        device = select_device(config.device)
        dist = Distributed()  # one process: the teacher's steps dominate and need no gradient sync

        frames = np.concatenate(trajectories)
        digest = model_digest(teacher)
        data_summary = {"n_trajectories": len(trajectories), "n_frames": int(len(frames)),
                        "mean": frames.mean(0).tolist(), "frame_interval": teacher.frame_interval,
                        "low": frames.min(0).tolist(), "high": frames.max(0).tolist(), "teacher_sha256": digest}
        if resume:
            checkpoint = run_dir.load_checkpoint(config, data_summary)
            if checkpoint["data"].get("teacher_sha256") != digest:
                raise InvalidInputError(f"{run_dir.path} distils another teacher; give the same RUN to resume it")
        else:
            checkpoint = None
            if run_dir is not None and run_dir.has_checkpoint():
                raise InvalidInputError(f"{run_dir.path} already holds a run; pass --resume to continue it "
                                        "or choose a new --out")
        if checkpoint is not None:
            config = resumed_config(config, checkpoint)
        pairs = balanced_pairs(trajectories, representation, config)

        torch.manual_seed(config.seed)
        student = teacher.spec.build()
        student.load_state_dict(teacher.denoiser.state_dict())
        student.requires_grad_(True)  # all of it, BoPITO's learned equilibrium part included
        state = TrainingState.fresh(student, config, device)
        if checkpoint is not None:
            state.load_state_dict(checkpoint)
        state.ema.module.to(device)

        facts = dict(frame_interval=teacher.frame_interval, max_lag=teacher.max_lag,
                     data_low=teacher.data_low.tolist(), data_high=teacher.data_high.tolist(), system=teacher.system)
        session = cls(config, teacher.spec, state, BatchSource(pairs.frames.to(torch.float32), pairs, representation),
                      device, dist, run_dir, data_summary, facts)
        session.teacher = teacher.spec.build()
        session.teacher.load_state_dict(teacher.denoiser.state_dict())
        session.teacher.to(device).eval().requires_grad_(False)
        session.grid = consistency_grid().to(device)
        session.lambda_interpolation = teacher.lambda_interpolation
        session.distillation = {"method": "consistency distillation", "teacher": teacher_source,
                                "teacher_sha256": digest, "teacher_steps": teacher.info.get("steps"),
                                "grid_levels": len(session.grid), "sampling_steps": sampling_steps,
                                "teacher_info": {k: v for k, v in teacher.info.items() if k != "data"}}
        return session

    @property
    def label(self) -> str:
        return "distil"

    def step(self) -> float:
        return distillation_step(self.state, self.teacher, self.batches, self.grid, self.config, self.device)

    def model(self) -> TransitionModel:
        model = super().model()
        model.info["distillation"] = dict(self.distillation)
        model.info["sampling"] = {"sampler": "consistency", "n_steps": self.distillation["sampling_steps"]}
        if self.lambda_interpolation is not None:
            model.set_interpolation(self.lambda_interpolation)
        return model


def distillation_step(state: TrainingState, teacher: torch.nn.Module, batches: BatchSource, grid: torch.Tensor,
                      config: TrainingConfig, device: torch.device) -> float:
    """One consistency-distillation step on one batch of pairs (see module docs); the loss."""
    generator = state.generator
    y, cond, _, noise = batches.draw(config.batch_size, state.denoiser, generator)
    index = torch.randint(len(grid) - 1, (len(y),), generator=generator)
    y, noise, index = y.to(device), noise.to(device), index.to(device)
    cond = {k: v.to(device) for k, v in cond.items()}
    scale = teacher.centre_and_scale(y, **cond)[1]
    high, low = grid[index] * scale, grid[index + 1] * scale
    x_high = y + append_dims(high, y.ndim) * noise
    with torch.no_grad():
        x_low = _heun_step(teacher, x_high, high, low, cond)
        target = state.denoiser(x_low, low, **cond)
        boundary = index + 1 == len(grid) - 1
        if boundary.any():  # f(x; σ_min) = the teacher sampler's last step, D_teacher(x; σ_min)
            rows = boundary.nonzero().squeeze(1)
            target[rows] = teacher(x_low[rows], low[rows], **{k: v[rows] for k, v in cond.items()})
    set_learning_rate(state, config)
    output = state.denoiser(x_high, high, **cond)
    weight = 1.0 / (grid[index] - grid[index + 1])
    return optimizer_step(state, (weight * pseudo_huber((output - target) / append_dims(scale, y.ndim))).mean(), config)


def _heun_step(denoiser: torch.nn.Module, x: torch.Tensor, high: torch.Tensor, low: torch.Tensor,
               cond: dict[str, torch.Tensor]) -> torch.Tensor:
    """One Heun step of the probability-flow ODE dx/dσ = (x − D(x; σ))/σ from ``high`` to ``low`` [B]."""
    d = (x - denoiser(x, high, **cond)) / append_dims(high, x.ndim)
    step = append_dims(low - high, x.ndim)
    x_euler = x + step * d
    d_low = (x_euler - denoiser(x_euler, low, **cond)) / append_dims(low, x.ndim)
    return x + step * 0.5 * (d + d_low)
