r"""Training ITO (and equilibrium) denoisers: :class:`ITOEstimator` and its :class:`TrainingConfig`.

``ITOEstimator(config).fit(trajectories, frame_interval, run_dir=...)`` trains a
:class:`~itomd.diffusion.Denoiser` around a :class:`~itomd.nn.TransitionMLP` on multi-lag pairs
(x_t, x_{t+Nτ}, N) — or, with ``config.equilibrium``, on single frames — and returns itself;
``fetch_model()`` returns an independent :class:`~itomd.model.TransitionModel` holding the EMA
weights. With ``config.prior`` the denoiser is a :class:`~itomd.diffusion.BoPITODenoiser`: the
equilibrium part (exact, or a trained equilibrium model) is frozen and only the dynamic part is
trained, with λ̂ estimated from the data unless given.

Run directory
-------------
With ``run_dir`` the estimator writes, atomically: ``checkpoint.pt`` (every
``checkpoint_every`` steps and at the end: weights, EMA weights, optimizer state, the batch
generator's state, the step count), ``model.pt`` (the EMA model, sampleable at any time),
``config.toml`` and ``metrics.jsonl`` (one JSON row per ``log_every`` steps: step, loss, learning
rate, steps/s, elapsed seconds). ``resume=True`` continues from ``checkpoint.pt`` exactly: the
parameters after N steps are bit-identical whether or not the run was killed in between.

Reproducibility and data parallelism
-------------------------------------
All randomness of a step (lags, pair indices, noise levels, noise) comes from one CPU
``torch.Generator`` seeded by ``config.seed``, and every step draws one *global* batch of
``batch_size``. Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank draws the same global batch
and trains on its slice through ``DistributedDataParallel`` (gloo on CPU, NCCL on GPUs), so a run
on k processes follows the single-process run with the same global batch up to floating-point
summation order. ``batch_size`` must be divisible by the number of processes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from itomd.analysis.msm import slowest_eigenvalue
from itomd.checkpoint import load_file, save_atomically
from itomd.data.pairs import PairSampler, make_lag_sampler
from itomd.data.store import write_text_atomically
from itomd.diffusion.bopito import check_eigenvalue
from itomd.diffusion.denoiser import Denoiser
from itomd.errors import DataFileError, InvalidInputError
from itomd.geometry import superpose
from itomd.model import (DenoiserSpec, TransitionModel, centre_structures, exact_prior, fit_denoiser_spec, model_prior,
                         prior_range)
from itomd.nn.equivariant import MoleculeGraph

CHECKPOINT_FORMAT = "itomd-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
LAG_DISTRIBUTIONS = ("fixed", "uniform", "log-uniform")
#: Config fields that may change when a run is resumed (they do not change what a step computes).
RESUMABLE_CHANGES = frozenset({"max_steps", "minutes", "checkpoint_every", "log_every", "device"})


@dataclass
class TrainingConfig:
    """Hyper-parameters of a training run (TOML keys have the same names).

    Parameters
    ----------
    max_lag : int
        Largest lag N (frames) of the pairs.
    lag_distribution : {"log-uniform", "uniform", "fixed"}
        Distribution of N on {1..max_lag} ("fixed": always max_lag).
    equilibrium : bool
        Train an unconditional model of the frames (the Boltzmann-generator part of BoPITO).
    prior : str, optional
        Train a BoPITO model with this frozen equilibrium part: ``"exact"`` (the quadrature score
        of the data's system, dimension ≤ 3) or the path of an equilibrium model (a run directory of
        ``equilibrium = true`` or its ``model.pt``). None: plain ITO.
    lambda_hat : float, optional
        BoPITO's λ̂ per frame; default: the slowest non-unit eigenvalue of an MSM at lag 1 frame of
        the training data (:func:`~itomd.analysis.msm.slowest_eigenvalue`), raised if needed so that
        λ̂^max_lag ≥ :data:`MIN_DYNAMIC_WEIGHT` (with a warning).
    batch_size : int
        Global batch (pairs per optimiser step, summed over data-parallel processes).
    learning_rate : float
        AdamW learning rate after a linear warm-up of ``warmup_steps``; cosine decay to
        ``final_lr_fraction`` × it over ``max_steps``.
    warmup_steps, max_steps : int
    final_lr_fraction : float
    weight_decay : float
    minutes : float, optional
        Wall-clock budget of this invocation (stops early, checkpointed; resume to continue).
    ema_decay : float
        Decay of the exponential moving average of the weights used for sampling.
    grad_clip : float
        Gradient-norm clip (0: none).
    hidden, n_blocks, n_frequencies : int
        Network size (:class:`~itomd.nn.TransitionMLP`).
    p_mean : float, optional
        Mean of ln(σ/σ_d) in training; default EDM's −1.2 + ln 2 (EDM's −1.2 for σ_d = 0.5).
    p_std : float
        Standard deviation of ln σ in training.
    checkpoint_every, log_every : int
        Steps between checkpoints / metric rows.
    seed : int
        Seeds initialisation and every batch.
    device : str
        "auto" (CUDA when present, else CPU), "cpu" or "cuda[:k]".
    """

    max_lag: int = 100
    lag_distribution: str = "log-uniform"
    equilibrium: bool = False
    prior: str | None = None
    lambda_hat: float | None = None
    batch_size: int = 512
    learning_rate: float = 2e-3
    warmup_steps: int = 200
    max_steps: int = 20_000
    final_lr_fraction: float = 0.05
    weight_decay: float = 0.0
    minutes: float | None = None
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    hidden: int = 128
    n_blocks: int = 3
    n_frequencies: int = 16
    p_mean: float | None = None
    p_std: float = 1.2
    checkpoint_every: int = 500
    log_every: int = 50
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("max_lag", "batch_size", "max_steps", "hidden", "n_blocks", "n_frequencies",
                     "checkpoint_every", "log_every"):
            _require_int(name, getattr(self, name), 1)
        for name in ("warmup_steps", "seed"):
            _require_int(name, getattr(self, name), 0)
        if self.lag_distribution not in LAG_DISTRIBUTIONS:
            raise InvalidInputError(f"lag_distribution must be one of {', '.join(LAG_DISTRIBUTIONS)}, "
                                    f"got {self.lag_distribution!r}")
        for name in ("learning_rate", "p_std"):
            if not _is_number(getattr(self, name)) or not getattr(self, name) > 0:
                raise InvalidInputError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        for name in ("weight_decay", "grad_clip", "final_lr_fraction"):
            if not _is_number(getattr(self, name)) or not getattr(self, name) >= 0:
                raise InvalidInputError(f"{name} must be a non-negative number, got {getattr(self, name)!r}")
        if not (_is_number(self.ema_decay) and 0 <= self.ema_decay < 1):
            raise InvalidInputError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.minutes is not None and not (_is_number(self.minutes) and self.minutes > 0):
            raise InvalidInputError(f"minutes must be a positive number, got {self.minutes!r}")
        if self.p_mean is not None and not _is_number(self.p_mean):
            raise InvalidInputError(f"p_mean must be a number, got {self.p_mean!r}")
        if not isinstance(self.equilibrium, bool):
            raise InvalidInputError(f"equilibrium must be true or false, got {self.equilibrium!r}")
        if self.prior is not None and (not isinstance(self.prior, str) or not self.prior):
            raise InvalidInputError(f"prior must be 'exact' or the path of an equilibrium model, got {self.prior!r}")
        if self.prior is not None and self.equilibrium:
            raise InvalidInputError("an equilibrium model takes no prior (the prior is an equilibrium model)")
        if self.lambda_hat is not None:
            if self.prior is None:
                raise InvalidInputError("lambda_hat is BoPITO's: it needs a prior (--prior exact or an equilibrium run)")
            check_eigenvalue(self.lambda_hat, "lambda_hat")

    @classmethod
    def from_toml(cls, path: str | os.PathLike, **overrides: Any) -> "TrainingConfig":
        """Read a TOML file of ``key = value`` lines (a ``[training]`` table is also accepted);
        ``overrides`` that are not None replace file values."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataFileError(f"no config file at {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataFileError(f"cannot read the config file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInputError(f"{path} is not valid TOML: {exc}") from None
        if set(data) == {"training"} and isinstance(data["training"], dict):
            data = data["training"]
        return cls.from_dict(data, source=str(path), **overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config", **overrides: Any) -> "TrainingConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InvalidInputError(f"{source}: unknown training option(s) {', '.join(unknown)}")
        merged = {**data, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**merged)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        """The config as TOML (None values are left out: they mean 'default')."""
        lines = []
        for key, value in self.to_dict().items():
            if value is None:
                continue
            lines.append(f"{key} = {json.dumps(value) if not isinstance(value, bool) else str(value).lower()}")
        return "\n".join(lines) + "\n"


class ExponentialMovingAverage:
    r"""EMA of a module's parameters, :math:`\bar\theta \leftarrow d\,\bar\theta + (1-d)\,\theta`.

    The decay warms up as :math:`d_k = \min(d, (1+k)/(10+k))` so early averages do not remember
    the random initialisation. Buffers are copied.

    Parameters
    ----------
    module : torch.nn.Module
    decay : float
    """

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, p in zip(self.module.parameters(), module.parameters()):
            avg.lerp_(p.detach(), 1 - d)
        for avg, b in zip(self.module.buffers(), module.buffers()):
            avg.copy_(b)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


@dataclass
class _Distributed:
    """This process's place in a data-parallel job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _distributed_from_environment(device: torch.device) -> _Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Distributed(rank=dist.get_rank(), world_size=dist.get_world_size(),
                        local_rank=int(os.environ.get("LOCAL_RANK", "0")))


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
        self.step = 0
        self.stopped_by_budget = False

    # -- public API ------------------------------------------------------------------------------
    def fit(self, trajectories: Sequence[np.ndarray], frame_interval: float, run_dir: str | os.PathLike | None = None,
            resume: bool = False, progress: bool = True, system: dict | None = None) -> "ITOEstimator":
        """Train; returns self.

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
        system : dict, optional
            The data's system spec, stored with the model.
        """
        config = self.config
        trajectories = [np.asarray(t, dtype=np.float64) for t in trajectories]
        if not trajectories:
            raise InvalidInputError("no trajectories to train on")
        if len({t.shape[1] if t.ndim == 2 else -1 for t in trajectories}) != 1 or trajectories[0].ndim != 2:
            raise InvalidInputError("trajectories must all have shape [n_frames, dim] with the same dim")
        for i, t in enumerate(trajectories):
            if not np.all(np.isfinite(t)):
                raise InvalidInputError(f"trajectory {i} contains NaN or inf values")
        if not (_is_number(frame_interval) and frame_interval > 0):
            raise InvalidInputError(f"frame_interval must be positive, got {frame_interval!r}")
        run_dir = None if run_dir is None else Path(run_dir)
        if resume and run_dir is None:
            raise InvalidInputError("resume needs a run directory")
        topology = _molecule_topology(system)
        if topology is not None:  # molecules: centred structures, an equivariant network
            if trajectories[0].shape[1] != 3 * topology.n_atoms:
                raise InvalidInputError(f"trajectories have {trajectories[0].shape[1]} coordinates but the molecule has "
                                        f"{topology.n_atoms} atoms ({3 * topology.n_atoms} coordinates)")
            trajectories = centre_structures(trajectories, topology.n_atoms)

        device = _select_device(config.device)
        dist = _distributed_from_environment(device)
        if dist.enabled and device.type == "cuda":
            device = torch.device("cuda", dist.local_rank)
            torch.cuda.set_device(device)
        if config.batch_size % dist.world_size:
            raise InvalidInputError(f"batch_size {config.batch_size} is not divisible by {dist.world_size} processes")

        frames = np.concatenate(trajectories)
        data_summary = {"n_trajectories": len(trajectories), "n_frames": int(len(frames)),
                        "mean": frames.mean(0).tolist(), "frame_interval": float(frame_interval),
                        "low": frames.min(0).tolist(), "high": frames.max(0).tolist()}
        if config.equilibrium:
            pairs = None
            frames_t = torch.as_tensor(frames, dtype=torch.float32)
        else:
            pairs = PairSampler(trajectories, make_lag_sampler(config.lag_distribution, config.max_lag))
            frames_t = pairs.frames.to(torch.float32)

        checkpoint = None
        if resume:
            checkpoint = _load_checkpoint(run_dir / "checkpoint.pt")
            _check_resumable(checkpoint, config, data_summary)
            spec = DenoiserSpec.from_dict(checkpoint["spec"])
        else:
            if run_dir is not None and (run_dir / "checkpoint.pt").exists():
                raise InvalidInputError(f"{run_dir} already holds a training run; pass --resume to continue it "
                                        "or choose a new --out")
            prior, prior_module = (None, None) if config.prior is None else _load_prior(config.prior, system)
            lambda_hat = config.lambda_hat
            if prior is not None and lambda_hat is None:
                lambda_hat = _estimated_lambda_hat(trajectories, config, topology)
            spec = fit_denoiser_spec(trajectories, conditional=not config.equilibrium, max_lag=config.max_lag,
                                     hidden=config.hidden, n_blocks=config.n_blocks, n_frequencies=config.n_frequencies,
                                     p_mean=config.p_mean, p_std=config.p_std, prior=prior, lambda_hat=lambda_hat,
                                     molecule=None if topology is None else MoleculeGraph.from_topology(topology),
                                     superpose_targets=prior is None)
            if prior is not None and prior.get("kind") == "model" and bool(prior["spec"].get("molecule")) != spec.is_molecular:
                raise InvalidInputError("the equilibrium model and the data must both be molecules (or both not)")

        torch.manual_seed(config.seed)
        denoiser = spec.build()
        if checkpoint is None and spec.is_bopito:
            denoiser.equilibrium.load_state_dict(prior_module.state_dict())
        denoiser.to(device)
        ema = ExponentialMovingAverage(denoiser, config.ema_decay)
        trainable = [p for p in denoiser.parameters() if p.requires_grad]  # BoPITO's prior is frozen
        optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
        generator = torch.Generator().manual_seed(config.seed)
        step, elapsed_before = 0, 0.0
        if checkpoint is not None:
            denoiser.load_state_dict(checkpoint["denoiser"])
            ema.load_state_dict(checkpoint["ema"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            generator.set_state(checkpoint["generator"])
            step = int(checkpoint["step"])
            elapsed_before = float(checkpoint.get("elapsed_seconds", 0.0))
        ema.module.to(device)

        low, high = frames.min(0), frames.max(0)
        known = prior_range(spec.prior)  # a BoPITO model also knows where its prior puts mass
        if known is not None:
            low, high = np.minimum(low, known[0]), np.maximum(high, known[1])
        model_kwargs = dict(frame_interval=float(frame_interval), max_lag=config.max_lag,
                            data_low=low.tolist(), data_high=high.tolist(), system=system)
        trained = denoiser
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            trained = DistributedDataParallel(denoiser, device_ids=[device.index] if device.type == "cuda" else None)

        metrics = None
        if run_dir is not None and dist.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomically(run_dir / "config.toml", config.to_toml())
            metrics = _MetricsLog(run_dir / "metrics.jsonl", keep_through_step=step)

        def ema_model(at_step: int, elapsed: float) -> TransitionModel:
            info = {"steps": at_step, "train_seconds": round(elapsed, 3), "config": config.to_dict(), "data": data_summary}
            return TransitionModel(spec, _cpu_state(ema.module.state_dict()), info=info, **model_kwargs)

        def save(at_step: int, elapsed: float, model: TransitionModel | None = None) -> None:
            if run_dir is None or not dist.is_main:
                return
            save_atomically({
                "format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION,
                "config": config.to_dict(), "spec": spec.to_dict(), "data": data_summary, "step": at_step,
                "elapsed_seconds": elapsed, "denoiser": _cpu_state(denoiser.state_dict()),
                "ema": {"module": _cpu_state(ema.module.state_dict()), "updates": ema.updates},
                "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
            }, run_dir / "checkpoint.pt")
            (model or ema_model(at_step, elapsed)).save(run_dir / "model.pt")

        deadline = None if config.minutes is None else time.monotonic() + 60.0 * config.minutes
        start = time.monotonic()
        bar = tqdm(total=config.max_steps, initial=step, disable=not (progress and dist.is_main), unit="step",
                   desc="train equilibrium" if config.equilibrium else "train BoPITO" if spec.is_bopito else "train ITO",
                   dynamic_ncols=True)
        loss_sum, loss_count, window_start, window_step = 0.0, 0, time.monotonic(), step
        lo, hi = dist.rank * (config.batch_size // dist.world_size), (dist.rank + 1) * (config.batch_size // dist.world_size)
        self.stopped_by_budget = False
        denoiser.train()
        while step < config.max_steps:
            if deadline is not None and _agree_to_stop(time.monotonic() > deadline, dist):
                self.stopped_by_budget = True
                break
            x0, cond, lag, sigma, noise = _draw_batch(pairs, frames_t, config.batch_size, denoiser, generator)
            if spec.superposes_targets:
                x0 = superpose(x0, cond, spec.n_atoms)
            x0, sigma, noise = x0[lo:hi].to(device), sigma[lo:hi].to(device), noise[lo:hi].to(device)
            kwargs = {} if cond is None else {"cond": cond[lo:hi].to(device), "lag": lag[lo:hi].to(device)}
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(step, config)
            loss = denoiser.loss_at(x0, sigma, noise, through=trained if dist.enabled else None, **kwargs)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(denoiser.parameters(), config.grad_clip)
            optimizer.step()
            ema.update(denoiser)
            step += 1
            loss_sum += float(loss.detach())
            loss_count += 1
            bar.update(1)
            if step % config.log_every == 0 or step == config.max_steps:
                mean_loss = _mean_over_ranks(loss_sum / loss_count, dist)
                now = time.monotonic()
                rate = (step - window_step) / max(now - window_start, 1e-9)
                bar.set_postfix(loss=f"{mean_loss:.4f}", steps_per_s=f"{rate:.1f}")
                if metrics is not None:
                    metrics.append({"step": step, "loss": mean_loss, "learning_rate": _learning_rate(step - 1, config),
                                    "steps_per_second": rate, "elapsed_seconds": elapsed_before + now - start})
                loss_sum, loss_count, window_start, window_step = 0.0, 0, now, step
                if not math.isfinite(mean_loss):
                    bar.close()
                    raise InvalidInputError(f"training diverged at step {step} (loss {mean_loss}); "
                                            "lower learning_rate or check the data")
            if step % config.checkpoint_every == 0 and step < config.max_steps:
                save(step, elapsed_before + time.monotonic() - start)
        bar.close()
        elapsed = elapsed_before + time.monotonic() - start
        self._model = ema_model(step, elapsed)
        save(step, elapsed, self._model)
        self.step = step
        return self

    def fetch_model(self) -> TransitionModel:
        """The trained model (EMA weights); an independent copy each call."""
        if self._model is None:
            raise InvalidInputError("the estimator has not been fit")
        return TransitionModel.from_payload(self._model.to_payload())


# -- helpers ----------------------------------------------------------------------------------------
def _draw_batch(pairs: PairSampler | None, frames: torch.Tensor, batch_size: int, denoiser: Denoiser,
                generator: torch.Generator):
    """One global batch: (x0, cond, lag, sigma, noise); cond and lag are None for equilibrium."""
    if pairs is None:
        index = torch.randint(len(frames), (batch_size,), generator=generator)
        x0, cond, lag = frames[index], None, None
    else:
        lag = pairs.lag_sampler.sample(batch_size, generator)
        i0, i1 = pairs.sample_indices(lag, generator)
        cond, x0 = frames[i0], frames[i1]
        lag = lag.to(torch.float32)
    sigma = denoiser.sample_training_sigmas(batch_size, generator, **({} if lag is None else {"lag": lag}))
    noise = torch.randn(x0.shape, generator=generator)
    return x0, cond, lag, sigma, noise


def _learning_rate(step: int, config: TrainingConfig) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_fraction`` at ``max_steps``."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    span = max(config.max_steps - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    floor = config.final_lr_fraction
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def _agree_to_stop(local: bool, dist: _Distributed) -> bool:
    if not dist.enabled:
        return local
    import torch.distributed as tdist

    flag = torch.tensor([1.0 if local else 0.0])
    tdist.broadcast(flag, src=0)
    return bool(flag.item())


def _mean_over_ranks(value: float, dist: _Distributed) -> float:
    if not dist.enabled:
        return value
    import torch.distributed as tdist

    t = torch.tensor([value], dtype=torch.float64)
    tdist.all_reduce(t)
    return float(t.item()) / dist.world_size


def _select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InvalidInputError(f"unknown device '{name}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' was asked for but no CUDA GPU is available")
    return device


#: Smallest weight λ̂^N_max of BoPITO's dynamic part at the largest training lag that an estimated
#: λ̂ may give. Data without slow processes (e.g. a few short trajectories in one well) give a fast
#: λ̂ whose λ̂^N_max underflows, so the network output would need to be astronomically large to
#: reproduce the data at long training lags (training diverges); λ̂ is then raised to this floor.
MIN_DYNAMIC_WEIGHT = 0.01


def _estimated_lambda_hat(trajectories: Sequence[np.ndarray], config: TrainingConfig, topology=None) -> float:
    """λ̂ from an MSM of the data at lag 1 frame, floored so that λ̂^max_lag ≥ MIN_DYNAMIC_WEIGHT.

    Molecules: the MSM is built on the backbone dihedrals (cos and sin of φ, ψ), not on Cartesian
    coordinates (whose slowest process would be the molecule's rotation).
    """
    if topology is not None:
        from itomd.analysis.molecular import backbone_dihedrals

        angles = backbone_dihedrals(trajectories, topology)
        trajectories = [np.concatenate([np.cos(a), np.sin(a)], axis=1) for a in angles]
    estimate = slowest_eigenvalue(trajectories, lag=1, seed=config.seed)
    floor = MIN_DYNAMIC_WEIGHT ** (1.0 / config.max_lag)
    if estimate < floor:
        warnings.warn(f"the data's slowest MSM eigenvalue {estimate:.4g} per frame would weight BoPITO's dynamic "
                      f"part by {estimate ** config.max_lag:.2g} at lag {config.max_lag}; using λ̂ = {floor:.6g} "
                      f"(weight {MIN_DYNAMIC_WEIGHT}); the data hold no process slower than a few frames — "
                      "pass lambda_hat to choose it", stacklevel=3)
        return floor
    return estimate


def _molecule_topology(system: dict | None):
    """The mdtraj topology of the data's system if it is a molecule, else None."""
    from itomd.systems.openmm import is_molecular
    from itomd.systems.registry import SystemSpec

    spec = SystemSpec.from_dict(system) if system else None
    if spec is None or not spec.is_molecular:
        return None
    built = spec.build()
    return built.topology() if is_molecular(built) else None


def _load_prior(prior: str, system: dict | None) -> tuple[dict[str, Any], torch.nn.Module]:
    """Description and module of BoPITO's equilibrium part from ``config.prior``."""
    if prior == "exact":
        from itomd.systems.reference import exact_reference
        from itomd.systems.registry import SystemSpec

        if system is None:
            raise InvalidInputError("the exact prior needs the data's system (record it in the trajectory metadata "
                                    "or pass system= to fit)")
        if _molecule_topology(system) is not None:
            raise InvalidInputError("a molecule has no exact equilibrium prior: train an equilibrium model "
                                    "(itomd train --equilibrium) and pass its run as --prior")
        return exact_prior(exact_reference(SystemSpec.from_dict(system).build(), n_eigen=2))
    return model_prior(TransitionModel.load(prior))


def _cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def _load_checkpoint(path: Path) -> dict[str, Any]:
    checkpoint = load_file(path, what="checkpoint")
    if checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise DataFileError(f"{path} is not an itomd training checkpoint")
    if checkpoint.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise DataFileError(f"{path} has checkpoint format version {checkpoint.get('format_version')}; "
                            f"this itomd reads version {CHECKPOINT_FORMAT_VERSION}")
    missing = {"config", "spec", "data", "step", "denoiser", "ema", "optimizer", "generator"} - set(checkpoint)
    if missing:
        raise DataFileError(f"{path} lacks {', '.join(sorted(missing))}")
    return checkpoint


def _check_resumable(checkpoint: dict[str, Any], config: TrainingConfig, data_summary: dict[str, Any]) -> None:
    recorded = checkpoint["config"]
    changed = [f"{k} {recorded.get(k)!r} → {v!r}" for k, v in config.to_dict().items()
               if k not in RESUMABLE_CHANGES and recorded.get(k) != v]
    if changed:
        raise InvalidInputError("cannot resume with a different configuration: " + "; ".join(changed[:4]))
    old = checkpoint["data"]
    if (old.get("n_trajectories"), old.get("n_frames")) != (data_summary["n_trajectories"], data_summary["n_frames"]) \
            or not np.allclose(old.get("mean"), data_summary["mean"], rtol=0, atol=1e-12):
        raise InvalidInputError("cannot resume on different data: the run was trained on "
                                f"{old.get('n_trajectories')} trajectories / {old.get('n_frames')} frames, "
                                f"got {data_summary['n_trajectories']} / {data_summary['n_frames']}")


class _MetricsLog:
    """``metrics.jsonl``: rows after the resumed step are dropped, then rows are appended."""

    def __init__(self, path: Path, keep_through_step: int):
        self.path = path
        rows = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a crash
                if isinstance(row, dict) and row.get("step", math.inf) <= keep_through_step:
                    rows.append(line)
        write_text_atomically(path, "".join(r + "\n" for r in rows))

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()


def _require_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"{name} must be an integer ≥ {minimum}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
