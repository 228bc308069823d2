r"""How much faster than MD is a model? Surrogate rollouts and the system's own MD timed in one run.

:func:`measure_speed` (the ``itomd speed`` command) times, one after the other on the same machine,

* the **surrogate**: walkers jumping ``lag`` frames at a time with the model's sampler (as ``itomd
  sample`` runs it, in one batch, on every CPU thread torch uses, or on the model's device; with
  ``relax_steps`` every jump is followed by that many steps of the molecule's force field, as
  ``itomd sample --relax-steps`` does, and their cost is part of the surrogate's rate), and
* the **MD engine** of the model's system, the way ``itomd simulate`` runs it here: one worker process
  per core (:data:`os.cpu_count`), each single-threaded —
  molecules with OpenMM on every platform this installation has (Reference, CPU, CUDA, OpenCL),
  one walker per process, the fastest platform's aggregate counting as MD's rate; toy systems with
  their batched Langevin integrator, the same number of walkers as the surrogate split across the
  processes.

Both rates are simulated time per wall-second (ps/s for molecules, the system's time units
otherwise), summed over walkers, measured after a warm-up (the first jump; the first MD segment,
which includes building contexts), each for at least ``seconds``. Their ratio is the speed-up a user
of this machine gets. The surrogate's rate grows with the lag (a jump covers ``lag × τ`` at the same
cost) and with walkers up to the batch size the hardware saturates at; MD's does neither, so the
default lag is the model's largest training lag.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from itomd.diffusion.samplers import network_evaluations
from itomd.errors import InvalidInputError, ItomdError
from itomd.models import TransitionModel
from itomd.rollout import DEFAULT_TOLERANCE, rollout
from itomd.systems.registry import SystemSpec
from itomd.validation import require_int

#: Seconds each rate is timed for, at least (after its warm-up).
DEFAULT_SECONDS = 10.0
#: Walkers of the surrogate by default (one batch of ``itomd sample``).
DEFAULT_WALKERS = 1024
#: OpenMM platforms tried for MD, in this order.
MD_PLATFORMS = ("Reference", "CPU", "CUDA", "OpenCL")


@dataclass
class SpeedComparison:
    """Surrogate and MD rates of one model, measured side by side.

    Attributes
    ----------
    surrogate_rate, md_rate : float
        Simulated time per wall-second, summed over walkers (``time_unit``).
    ratio : float
        ``surrogate_rate / md_rate``.
    time_unit : str
    lag : int
        Jump lag in frames of the training data; one jump covers ``lag × frame_interval``.
    frame_interval : float
        τ of the training data (``time_unit``).
    n_walkers : int
        Surrogate walkers (one batch).
    sampler : str
    n_steps : int
        Noise levels per jump.
    network_evaluations : int
        Network evaluations per jump.
    relax_steps : int
        Force-field relaxation steps after every jump (0: none; :mod:`itomd.simulate.relax`).
    precision : str
        Dtype of the molecular network's pair tensors (:meth:`TransitionModel.set_precision`).
    compiled : bool
        Whether the molecular network ran through ``torch.compile`` (:meth:`TransitionModel.set_compiled`;
        compilation happens in the untimed warm-up jump).
    surrogate : dict
        ``jumps``, ``wall_seconds``, ``device``, ``threads``.
    md : dict
        ``engine``, ``platform`` (molecules: the fastest), ``processes``, ``walkers``,
        ``wall_seconds`` and, for molecules, ``platforms`` (rate per platform tried; an error text for
        one that failed).
    """

    surrogate_rate: float
    md_rate: float
    ratio: float
    time_unit: str
    lag: int
    frame_interval: float
    n_walkers: int
    sampler: str
    n_steps: int
    network_evaluations: int
    relax_steps: int = 0
    precision: str = "float32"
    compiled: bool = False
    surrogate: dict[str, Any] = field(default_factory=dict)
    md: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """Two lines a person reads: both rates and the ratio, with the settings."""
        unit = f"{self.time_unit}/s"
        platform = f" {self.md['platform']}" if self.md.get("platform") else ""
        relaxed = f", then {self.relax_steps} relaxation steps" if self.relax_steps else ""
        if self.precision != "float32":
            relaxed += f", pair tensors in {self.precision}"
        if self.compiled:
            relaxed += ", compiled network"
        verdict = (f"{self.ratio:.3g}× faster than MD" if self.ratio >= 1
                   else f"{self.ratio:.3g}: the surrogate is slower than MD here")
        return (f"surrogate: {self.surrogate_rate:.4g} {unit} ({self.n_walkers} walkers, lag {self.lag} = "
                f"{self.lag * self.frame_interval:g} {self.time_unit}, {self.sampler} with {self.n_steps} noise levels = "
                f"{self.network_evaluations} network evaluations per jump{relaxed}, {self.surrogate['device']})\n"
                f"MD: {self.md_rate:.4g} {unit} ({self.md['engine']}{platform}, {self.md['processes']} processes, "
                f"{self.md['walkers']} walkers)\n"
                f"ratio: {verdict}")


def measure_speed(model: TransitionModel, x0: np.ndarray | None = None, lag: int | None = None,
                  n_walkers: int = DEFAULT_WALKERS, sampler: str | None = None, n_steps: int | None = None,
                  seconds: float = DEFAULT_SECONDS, processes: int | None = None, seed: int = 0,
                  tolerance: float = DEFAULT_TOLERANCE, relax_steps: int = 0,
                  progress: bool = False) -> SpeedComparison:
    """Time surrogate rollouts of ``model`` and its system's MD engine side by side.

    Parameters
    ----------
    model : TransitionModel
        A transition model that records its system (every model ``itomd train`` writes does).
    x0 : np.ndarray, shape [n_walkers, dim] or [dim], optional
        Surrogate start points (default: the system's own start, one per walker). MD starts from the
        molecule's structure, or from these points for toy systems.
    lag : int, optional
        Jump lag in frames (default: the model's largest training lag).
    n_walkers : int
    sampler, n_steps :
        As for ``itomd sample`` (default: the model's own).
    seconds : float
        Minimum timed duration of each rate (after warm-ups).
    processes : int, optional
        MD worker processes (default: ``os.cpu_count()``).
    seed : int
    tolerance : float
        Blow-up threshold of the rollout (as for ``itomd sample``): a surrogate that leaves its
        training range is an error, not a rate.
    relax_steps : int
        Molecules: follow every jump with this many steps of the force field's strongly damped
        Langevin dynamics (:class:`~itomd.simulate.relax.ThermalRelaxation`), timed with the jumps.
    progress : bool
        Print what is being timed.

    Returns
    -------
    SpeedComparison
    """
    if not model.conditional:
        raise InvalidInputError("speed compares rollouts with MD: give a transition model, not an equilibrium model")
    if model.system is None:
        raise InvalidInputError("the model records no system, so there is no MD to compare with")
    lag = model.max_lag if lag is None else lag
    require_int("lag", lag)
    require_int("n_walkers", n_walkers)
    if not seconds > 0:
        raise InvalidInputError(f"seconds must be positive, got {seconds}")
    processes = (os.cpu_count() or 1) if processes is None else processes
    require_int("processes", processes)
    require_int("relax_steps", relax_steps, 0)
    system = model.system.build()
    start = _start_points(system, x0, n_walkers, model.dim)
    relax = None
    if relax_steps:
        from itomd.simulate.relax import ThermalRelaxation

        relax = ThermalRelaxation(system, relax_steps, seed=seed)

    if progress:
        print(f"timing the surrogate ({n_walkers} walkers, lag {lag}) for {seconds:g} s ...", flush=True)
    generator = torch.Generator(device=model.device).manual_seed(seed)
    sampler = model.default_sampler if sampler is None else sampler
    n_steps = model.default_n_steps if n_steps is None else n_steps
    jumps, wall = time_surrogate(model, start, lag, sampler, n_steps, seconds, generator, tolerance, relax)
    surrogate_rate = n_walkers * jumps * lag * model.frame_interval / wall
    surrogate = {"jumps": jumps, "wall_seconds": wall, "device": str(model.device), "threads": torch.get_num_threads()}

    if progress:
        print(f"timing MD ({processes} processes) for {seconds:g} s per platform ...", flush=True)
    md = time_md(model.system, system, start, seconds, processes, seed)
    return SpeedComparison(surrogate_rate=surrogate_rate, md_rate=md["rate"], ratio=surrogate_rate / md["rate"],
                           time_unit=system.time_unit, lag=int(lag), frame_interval=float(model.frame_interval),
                           n_walkers=int(n_walkers), sampler=sampler, n_steps=int(n_steps),
                           network_evaluations=network_evaluations(sampler, n_steps),
                           relax_steps=int(relax_steps), precision=model.precision, compiled=model.compiled,
                           surrogate=surrogate,
                           md={k: v for k, v in md.items() if k != "rate"})


def _start_points(system: Any, x0: np.ndarray | None, n_walkers: int, dim: int) -> np.ndarray:
    if x0 is None:
        x0 = system.default_start()  # a molecule's structure; None: equilibrium samples (toy systems)
        if x0 is None:
            from itomd.data.starts import equilibrium_samples

            return equilibrium_samples(system, n_walkers, np.random.SeedSequence(0))
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.ndim == 1:
        x0 = np.broadcast_to(x0, (n_walkers, x0.shape[0]))
    if x0.shape != (n_walkers, dim):
        raise InvalidInputError(f"start points must have shape [{n_walkers}, {dim}], got {x0.shape}")
    return np.array(x0)


def time_surrogate(model: TransitionModel, x0: np.ndarray, lag: int, sampler: str, n_steps: int, seconds: float,
                    generator: torch.Generator, tolerance: float,
                    relax: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[int, float]:
    """Jumps made and wall seconds of ``len(x0)`` walkers in one batch, after one warm-up jump, until at
    least ``seconds`` and two jumps (the surrogate half of :func:`measure_speed`); ``relax`` follows
    every jump, as in :func:`~itomd.rollout.rollout`."""
    def jump(x):
        return rollout(model, x, lag, 1, generator=generator, sampler=sampler, n_steps=n_steps, tolerance=tolerance,
                       relax=relax)[:, -1]

    x = jump(x0)
    jumps, start = 0, time.perf_counter()
    while jumps < 2 or time.perf_counter() - start < seconds:
        x = jump(x)
        jumps += 1
    return jumps, time.perf_counter() - start


def time_md(spec: SystemSpec, system: Any, x0: np.ndarray, seconds: float, processes: int, seed: int,
            platforms: Sequence[str] = MD_PLATFORMS) -> dict[str, Any]:
    """MD's rate (the MD half of :func:`measure_speed`): the fastest of ``platforms`` that this OpenMM
    has (molecules; ``processes`` replicas at once, one per process), or the batched Langevin engine
    (toy systems; the walkers ``x0`` [W, dim] split over ``processes``). Returns a dict: ``rate``, the
    simulated time summed over replicas per wall-second, and for molecules ``platforms``, each platform
    tried mapped to its rate or to ``"failed: <one line>"`` (a failed platform does not stop the others)."""
    if system.topology() is not None:
        from itomd.simulate.molecular import available_platforms

        platforms = [p for p in platforms if p in available_platforms()]
        starts = [system.default_start()] * processes
        rates: dict[str, Any] = {}
        walls = {}
        for platform in platforms:
            try:
                results = _in_processes(_openmm_worker, [(spec, platform, s, seconds, seed + i)
                                                         for i, s in enumerate(starts)])
            except ItomdError as exc:
                rates[platform] = f"failed: {exc}"
                continue
            rates[platform] = sum(r[0] / r[1] for r in results)
            walls[platform] = max(r[1] for r in results)
        measured = {p: r for p, r in rates.items() if not isinstance(r, str)}
        if not measured:
            raise InvalidInputError(f"no OpenMM platform could run this molecule: {rates}")
        best = max(measured, key=measured.get)
        return {"rate": measured[best], "engine": "openmm", "platform": best, "platforms": rates,
                "processes": processes, "walkers": processes, "wall_seconds": walls[best]}
    groups = [g for g in np.array_split(x0, processes) if len(g)]
    results = _in_processes(_langevin_worker, [(spec, g, seconds, seed + i) for i, g in enumerate(groups)])
    return {"rate": sum(r[0] / r[1] for r in results), "engine": system.default_integrator, "platform": None,
            "processes": len(groups), "walkers": len(x0), "wall_seconds": max(r[1] for r in results)}


def _in_processes(worker, arguments: list[tuple]) -> list[tuple[float, float]]:
    """Run ``worker(*args)`` for each entry in its own spawned process, all at once."""
    if len(arguments) == 1:
        return [worker(*arguments[0])]
    with ProcessPoolExecutor(len(arguments), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(worker, *a) for a in arguments]
        return [f.result() for f in futures]


def _openmm_worker(spec: SystemSpec, platform: str, x0: np.ndarray, seconds: float, seed: int) -> tuple[float, float]:
    """(simulated ps, wall s) of one OpenMM walker on ``platform``, one thread, after a warm-up; a
    platform that OpenMM lists but cannot run here (an OpenCL library without a device, a GPU that
    refuses a context) raises :class:`~itomd.simulate.integrators.SimulationError`, which
    :func:`time_md` records as that platform's failure."""
    import openmm

    from itomd.simulate.integrators import SimulationError
    from itomd.simulate.molecular import make_context

    system = spec.build()
    try:
        context = make_context(system, x0, seed + 1, seed + 2, platform=platform)
        integrator = context.getIntegrator()
        steps = 50
        integrator.step(steps)  # warm-up (kernels, neighbour lists)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            integrator.step(steps)
            done += steps
            steps = min(2 * steps, 100_000)
        context.getState(getPositions=True)  # the last steps have finished (GPU platforms run asynchronously)
    except openmm.OpenMMException as exc:
        raise SimulationError(f"OpenMM's {platform} platform failed here ({' '.join(str(exc).split())})") from None
    return done * system.timestep, time.perf_counter() - start


def _langevin_worker(spec: SystemSpec, x0: np.ndarray, seconds: float, seed: int) -> tuple[float, float]:
    """(simulated time summed over walkers, wall s) of the batched Langevin engine, after a warm-up."""
    from itomd.simulate.engines import make_engine

    system = spec.build()
    engine = make_engine(system)
    frames = 2
    x = engine.run(x0, frames, seed)[:, -1]  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        x = engine.run(x, frames, seed + done + 1)[:, -1]
        done += frames - 1
        frames = min(2 * frames, 10_000)
    return len(x0) * done * system.frame_interval, time.perf_counter() - start


__all__ = ["SpeedComparison", "measure_speed", "time_md", "time_surrogate", "DEFAULT_SECONDS", "DEFAULT_WALKERS"]
