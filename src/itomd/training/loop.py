r"""The optimisation loop: one global batch per step, EMA weights, the learning-rate schedule and
data parallelism.

Reproducibility and data parallelism
-------------------------------------
All randomness of a step (lags, pair indices, noise levels, noise) comes from one CPU
``torch.Generator`` seeded by the config's seed, and every step draws one *global* batch of
``batch_size``. Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank draws the same global batch and
trains on its slice through ``DistributedDataParallel`` (gloo on CPU, NCCL on GPUs), so a run on k
processes follows the single-process run with the same global batch up to floating-point
summation order. ``batch_size`` must be divisible by the number of processes.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from itomd.data.pairs import PairSampler
from itomd.diffusion.denoiser import Denoiser
from itomd.errors import InvalidInputError
from itomd.representation import Representation
from itomd.training.config import TrainingConfig


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
        self._source: torch.nn.Module | None = None
        self._lists: tuple = ()

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        if self._source is not module:  # the tensor lists once per trained module (listing them costs)
            self._source = module
            self._lists = ([list(self.module.parameters()), list(module.parameters())],
                           [list(self.module.buffers()), list(module.buffers())])
        (averages, parameters), (buffers, sources) = self._lists
        # one foreach call per kind (a per-tensor loop was a few per cent of a small model's step)
        torch._foreach_lerp_(averages, parameters, 1 - d)
        if buffers:
            torch._foreach_copy_(buffers, sources)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


def learning_rate(step: int, config: TrainingConfig, schedule_steps: int | None = None) -> float:
    """Linear warm-up, then cosine decay to ``final_lr_fraction`` at ``schedule_steps`` (default
    ``max_steps``; a run with a wall-clock budget sets it to the steps the budget buys,
    :func:`budgeted_schedule_steps`)."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    end = config.max_steps if schedule_steps is None else min(int(schedule_steps), config.max_steps)
    span = max(end - config.warmup_steps, 1)
    progress = min((step - config.warmup_steps) / span, 1.0)
    floor = config.final_lr_fraction
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


#: A run with a wall-clock budget measures its speed over this fraction of the budget (and at least
#: until the warm-up ends), then fixes the end of its learning-rate decay to the steps the rest buys.
SCHEDULE_CALIBRATION_FRACTION = 0.05
#: Share of the predicted steps the decay is planned for (the speed varies; a decay that ends a little
#: early costs little, one cut off by the deadline leaves the learning rate high).
SCHEDULE_SAFETY = 0.95


def budgeted_schedule_steps(step: int, steps_per_second: float, seconds_left: float, config: TrainingConfig) -> int:
    """The step at which the learning-rate decay of a budgeted run ends: ``step`` plus the steps the
    remaining ``seconds_left`` buy at ``steps_per_second`` (× :data:`SCHEDULE_SAFETY`), at most
    ``max_steps`` and past the warm-up.

    Without it a run stopped by its budget keeps the learning rate of the middle of a decay planned
    for ``max_steps`` (the demo's 4 minutes: step 7,000 of 16,000 at 63 % of the peak rate) and its
    EMA weights average a noisy phase of training.
    """
    planned = step + int(SCHEDULE_SAFETY * max(steps_per_second, 0.0) * max(seconds_left, 0.0))
    return int(min(config.max_steps, max(planned, config.warmup_steps + 1, step + 1)))


# -- data parallelism ------------------------------------------------------------------------------
@dataclass
class Distributed:
    """This process's place in a data-parallel job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    #: Where the collectives' tensors live: NCCL (GPU jobs) reduces CUDA tensors only.
    collective_device: str = "cpu"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device) -> "Distributed":
        """The job torchrun describes in the environment (a process group is initialised)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        return cls(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                   collective_device=f"cuda:{local_rank}" if dist.get_backend() == "nccl" else "cpu")

    def rank0_decides(self, local: bool) -> bool:
        """Rank 0's decision (to stop, to fix the schedule...), broadcast to every rank."""
        if not self.enabled:
            return local
        import torch.distributed as dist

        flag = torch.tensor([1.0 if local else 0.0], device=self.collective_device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def mean(self, value: float) -> float:
        """The mean of ``value`` over ranks."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.collective_device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def batch_slice(self, batch_size: int) -> slice:
        """This rank's part of a global batch."""
        share = batch_size // self.world_size
        return slice(self.rank * share, (self.rank + 1) * share)


def select_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda[:k]``; one-line errors."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InvalidInputError(f"unknown device '{name}'") from None
    if device.type not in ("cpu", "cuda"):
        raise InvalidInputError(f"device '{name}' is not supported: choose auto, cpu or cuda[:k]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device 'cuda' was asked for but no CUDA GPU is available")
    return device


# -- one step ----------------------------------------------------------------------------------------
class BatchSource:
    """Global training batches from the prepared frames: multi-lag pairs (transition models) or single
    frames (equilibrium models), with noise levels and noise, all from one generator.

    Parameters
    ----------
    frames : torch.Tensor, shape [n_frames, dim], float32
        Every frame (the pairs' frames for a transition model).
    pairs : PairSampler, optional
        The pair sampler of a transition model; None for an equilibrium model.
    representation : Representation
        Aligns the targets (molecules: superposed on x_t for ITO models).
    """

    def __init__(self, frames: torch.Tensor, pairs: PairSampler | None, representation: Representation):
        self.frames = frames
        self.pairs = pairs
        self.representation = representation

    def draw(self, batch_size: int, denoiser: Denoiser, generator: torch.Generator
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """One global batch: (x0 [B, dim], conditioning {cond, lag} or {}, sigma [B], noise [B, dim])."""
        if self.pairs is None:
            index = torch.randint(len(self.frames), (batch_size,), generator=generator)
            x0, cond = self.frames[index], {}
        else:
            lag = self.pairs.lag_sampler.sample(batch_size, generator)
            i0, i1 = self.pairs.sample_indices(lag, generator)
            x_t = self.frames[i0]
            x0 = self.representation.align_targets(self.frames[i1], x_t)
            cond = {"cond": x_t, "lag": lag.to(torch.float32)}
        sigma = denoiser.sample_training_sigmas(batch_size, generator, **({"lag": cond["lag"]} if cond else {}))
        noise = torch.randn(x0.shape, generator=generator)
        return x0, cond, sigma, noise


@dataclass
class TrainingState:
    """What a training run changes as it goes (and a checkpoint saves)."""

    denoiser: Denoiser
    ema: ExponentialMovingAverage
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    step: int = 0
    elapsed_seconds: float = 0.0
    schedule_steps: int | None = None

    @classmethod
    def fresh(cls, denoiser: Denoiser, config: TrainingConfig, device: torch.device) -> "TrainingState":
        """A new state around ``denoiser`` (moved to ``device``); BoPITO's frozen prior is not trained."""
        denoiser.to(device)
        ema = ExponentialMovingAverage(denoiser, config.ema_decay)
        trainable = [p for p in denoiser.parameters() if p.requires_grad]
        # foreach: one call over all parameters (the per-tensor default on CPU was ~8 % of a small step);
        # the same arithmetic as the per-tensor code, so trained weights stay bit for bit the same
        optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay,
                                      foreach=True)
        if config.compile:  # after the EMA's copy: only the trained network runs compiled
            from itomd.nn.equivariant import set_compiled

            set_compiled(denoiser, True)
        return cls(denoiser, ema, optimizer, torch.Generator().manual_seed(config.seed))

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "elapsed_seconds": self.elapsed_seconds, "schedule_steps": self.schedule_steps,
                "denoiser": cpu_state(self.denoiser.state_dict()),
                "ema": {"module": cpu_state(self.ema.module.state_dict()), "updates": self.ema.updates},
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.denoiser.load_state_dict(state["denoiser"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])
        self.elapsed_seconds = float(state.get("elapsed_seconds", 0.0))
        schedule = state.get("schedule_steps")
        self.schedule_steps = None if schedule is None else int(schedule)


def train_step(state: TrainingState, batches: BatchSource, config: TrainingConfig, device: torch.device,
               dist: Distributed, trained: torch.nn.Module | None = None) -> float:
    """One optimiser step on one global batch (this rank's slice); returns the local loss."""
    x0, cond, sigma, noise = batches.draw(config.batch_size, state.denoiser, state.generator)
    part = dist.batch_slice(config.batch_size)
    x0, sigma, noise = x0[part].to(device), sigma[part].to(device), noise[part].to(device)
    cond = {k: v[part].to(device) for k, v in cond.items()}
    set_learning_rate(state, config)
    return optimizer_step(state, state.denoiser.loss_at(x0, sigma, noise, through=trained, **cond), config)


def set_learning_rate(state: TrainingState, config: TrainingConfig) -> None:
    """The schedule's learning rate (:func:`learning_rate`) for the coming step, in every parameter group."""
    for group in state.optimizer.param_groups:
        group["lr"] = learning_rate(state.step, config, state.schedule_steps)


def optimizer_step(state: TrainingState, loss: torch.Tensor, config: TrainingConfig) -> float:
    """Back-propagate ``loss``, clip the gradient norm, step the optimiser, update the EMA and count the
    step (the end of every step that trains ``state.denoiser``); returns the loss."""
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(state.denoiser.parameters(), config.grad_clip, foreach=True)
    state.optimizer.step()
    state.ema.update(state.denoiser)
    state.step += 1
    return float(loss.detach())


def cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a state dict."""
    return {k: v.detach().cpu().clone() for k, v in state.items()}
