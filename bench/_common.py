"""What the bench scripts share: arguments, cached training, the one-jump evaluator, results files.

* **Arguments** — :func:`make_parser` adds the flags several scripts take (``--system``, ``--seed``,
  ``--threads``, ``--minutes``, ``--work``, ``--out``, ``--quick``) with each script's own defaults;
  :func:`parse_args` applies ``--quick`` (tiny sizes for a smoke run, written under the work
  directory, never into bench/results), sets torch's thread count and resolves ``--out``.
* **Training** — :func:`train_or_load`: a model file or run directory is reused when the model in it
  was trained with the same configuration (fields that do not change what a step computes, such as
  ``max_steps`` and ``minutes``, are ignored), otherwise it is trained (again).
* **Evaluation** — :class:`OneJumpEvaluator`: one direct jump of each lag N from many start points
  (held-out exact equilibrium samples), scored against the exact reference: the normalised
  correlation function C(N) of the first coordinate and the stationary JS divergence of the jumps;
  :func:`rollout_timescale`: the slowest implied timescale of an MSM on rollouts (lag = one jump),
  marked resolved or not (:meth:`RolloutTimescale.relative_error` is None where it is not).
* **Results** — :func:`write_results` (atomic JSON), :func:`merge_results` (one key of a JSON file
  that several stages fill, stamped ``updated``), :func:`command_line`.

This module is the one place the bench scripts import the model and training modules of itomd from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from itomd.analysis.divergence import js_divergence
from itomd.analysis.msm import implied_timescales
from itomd._files import write_text_atomically
from itomd.training import ITOEstimator, TrainingConfig
from itomd.training.config import RESUMABLE_CHANGES
from itomd.interpolation import correlation_of_jumps, jump_samples
from itomd.models import DEFAULT_N_STEPS, DEFAULT_SAMPLER, TransitionModel, prior_named
from itomd.rollout import RolloutBlowUpError, rollout
from itomd.systems import SystemSpec

__all__ = ["ROOT", "RESULTS", "DEFAULT_N_STEPS", "DEFAULT_SAMPLER", "ITOEstimator", "TrainingConfig", "TransitionModel",
           "RolloutBlowUpError", "make_parser", "parse_args", "lag_list", "config_differences", "cached_model", "train",
           "train_or_load", "OneJumpEvaluator", "Jumps", "RolloutTimescale", "rollout_timescale", "command_line",
           "write_results", "merge_results"]

ROOT = Path(__file__).resolve().parent.parent
#: Where results go unless ``--out`` says otherwise.
RESULTS = ROOT / "bench" / "results"


# -- arguments -------------------------------------------------------------------------------------
def lag_list(text: str) -> list[int]:
    """``"5,10,25"`` → ``[5, 10, 25]`` (argparse ``type=``)."""
    return [int(v) for v in text.split(",")]


def make_parser(doc: str, *, system: str | None = None, systems: Sequence[str] | None = None, seed: int | None = None,
                threads: int | None = None, minutes: float | None = None, work: Path | None = None, out: bool = True,
                quick: bool = False) -> argparse.ArgumentParser:
    """An argument parser described by the first line of ``doc`` with the shared flags a script asks for.

    A flag is added when its default is given (``system``, ``seed``, ``threads``, ``minutes``,
    ``work``); ``systems`` restricts ``--system`` to those names; ``out`` adds ``--out`` (the results
    directory, default bench/results); ``quick`` adds ``--quick`` (see :func:`parse_args`).
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if system is not None:
        parser.add_argument("--system", default=system, choices=sorted(systems) if systems else None)
    if minutes is not None:
        parser.add_argument("--minutes", type=float, default=minutes, help="training wall-clock budget")
    if seed is not None:
        parser.add_argument("--seed", type=int, default=seed)
    if threads is not None:
        parser.add_argument("--threads", type=int, default=threads)
    if work is not None:
        parser.add_argument("--work", type=Path, default=work)
    if out:
        parser.add_argument("--out", type=Path, default=None,
                            help=f"results directory (default {RESULTS.relative_to(ROOT)}; "
                                 "with --quick: <work>/quick/results)" if quick else
                                 f"results directory (default {RESULTS.relative_to(ROOT)})")
    if quick:
        parser.add_argument("--quick", action="store_true",
                            help="smoke run: tiny sizes, caches under <work>/quick, results not in bench/results")
    return parser


def parse_args(parser: argparse.ArgumentParser, quick: dict[str, Any] | None = None,
               argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse; then, with ``--quick``, replace every argument in ``quick`` that was left at its default,
    move ``--work`` to ``<work>/quick`` and send results there; set torch's threads (``--threads``);
    resolve ``--out`` (a directory; default :data:`RESULTS`)."""
    args = parser.parse_args(argv)
    if getattr(args, "quick", False):
        for name, value in (quick or {}).items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
        if getattr(args, "work", None) is not None:
            args.work = args.work / "quick"
            if args.out is None:
                args.out = args.work / "results"
        elif args.out is None:
            parser.error("--quick needs --out (it never writes into bench/results)")
    if hasattr(args, "out") and args.out is None:
        args.out = RESULTS
    if getattr(args, "threads", None) is not None:
        torch.set_num_threads(args.threads)
    return args


# -- training --------------------------------------------------------------------------------------
def peak_resident_mb() -> float:
    """This process's peak resident memory in MB (``VmHWM``: ``ru_maxrss`` would carry a parent's peak
    across ``exec``, hiding a child's own; ``ru_maxrss`` where /proc is absent)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kB


def _model_file(path: Path) -> Path:
    return path if path.suffix == ".pt" else path / "model.pt"


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _prior_kind(prior: str | None) -> str | None:
    if prior is None or prior in ("exact", "forcefield"):
        return prior
    return "forcefield+learned" if prior.startswith("forcefield:") else "learned"


def config_differences(recorded: dict[str, Any] | None, config: TrainingConfig) -> list[str]:
    """How ``config`` differs from the configuration a model was trained with (``model.info["config"]``),
    as ``"name old → new"`` lines. Ignored: fields that may change on resumption (budgets, step limits,
    device) and where a learned prior lives (any two paths match, so a moved work directory keeps its
    BoPITO models); a field one side lacks counts as its default; a model without a recorded
    configuration matches."""
    if recorded is None:
        return []
    defaults = {f.name: f.default for f in dataclasses.fields(TrainingConfig)}
    current = config.to_dict()
    changed = []
    for name in sorted(set(recorded) | set(current)):
        if name in RESUMABLE_CHANGES:
            continue
        old, new = recorded.get(name, defaults.get(name)), current.get(name, defaults.get(name))
        if (_prior_kind(old) != _prior_kind(new)) if name == "prior" else old != new:
            changed.append(f"{name} {old!r} → {new!r}")
    return changed


def cached_model(path: str | Path, config: TrainingConfig, *, resume: bool = False) -> TransitionModel | None:
    """The model at ``path`` (a ``.pt`` file, or a run directory holding ``model.pt``) when it was
    trained with ``config``; None when there is none or it must be trained (further).

    A cached model of another configuration is deleted (the file, or the whole run directory), with
    a message. With ``resume`` a run directory whose model has fewer than ``config.max_steps`` steps
    is kept for :func:`train` to resume; without it any model of a matching configuration is reused
    (a run stopped by its ``minutes`` budget is finished).
    """
    path = Path(path)
    model_file = _model_file(path)
    if not model_file.is_file():
        return None
    model = TransitionModel.load(model_file)
    changed = config_differences(model.info.get("config"), config)
    if changed:
        print(f"{path}: the cached model was trained with another configuration ({'; '.join(changed)}); "
              "training anew", flush=True)
        _remove(path)
        return None
    if resume and model_file != path and model.info.get("steps", 0) < config.max_steps:
        return None
    return model


def train(path: str | Path, config: TrainingConfig, trajectories: Sequence[np.ndarray], frame_interval: float, *,
          system: SystemSpec | None = None, resume: bool = False, progress: bool = True) -> TransitionModel:
    """Train ``config`` on ``trajectories`` (of ``system``) into ``path``: a run directory (checkpoints,
    metrics and ``model.pt`` there; with ``resume`` an existing checkpoint is continued, otherwise the
    directory is started afresh) or a ``.pt`` file (trained in memory, then saved).

    The one place the bench scripts call :meth:`ITOEstimator.fit`."""
    path = Path(path)
    in_memory = path.suffix == ".pt"
    resuming = not in_memory and resume and (path / "checkpoint.pt").exists()
    if not in_memory and not resuming and path.exists():
        _remove(path)
    # BoPITO's equilibrium part, named in the config as on the command line
    prior = None if config.prior is None or resuming else prior_named(config.prior, system, trajectories, config.seed)
    estimator = ITOEstimator(config).fit(trajectories, frame_interval, run_dir=None if in_memory else path,
                                         resume=resuming, progress=progress, system=system, prior=prior)
    model = estimator.fetch_model()
    if in_memory:
        model.save(path)
    return model


def train_or_load(path: str | Path, config: TrainingConfig,
                  trajectories: Sequence[np.ndarray] | Callable[[], Sequence[np.ndarray]], frame_interval: float, *,
                  system: SystemSpec | None = None, retrain: bool = False, resume: bool = False, progress: bool = True,
                  message: str | None = None) -> TransitionModel:
    """The cached model at ``path`` when it matches ``config`` (:func:`cached_model`), else
    :func:`train`. ``trajectories`` may be a function returning them, called only when training;
    ``retrain`` deletes the cache first; ``message`` is printed before training."""
    path = Path(path)
    if retrain:
        _remove(path)
    model = cached_model(path, config, resume=resume)
    if model is not None:
        return model
    if message:
        print(message, flush=True)
    data = trajectories() if callable(trajectories) else trajectories
    return train(path, config, data, frame_interval, system=system, resume=resume, progress=progress)


# -- evaluation ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Jumps:
    """One direct jump of each lag from every start point, and its metrics."""

    lags: list[int]
    x0: np.ndarray
    samples: list[np.ndarray]  #: one [W, dim] float64 array per lag
    c_model: np.ndarray  #: the model's normalised C(N) of the first coordinate, [L]
    c_exact: np.ndarray  #: the exact C(N), [L]
    js: dict[int, float]  #: stationary JS divergence (nats) of the jumps against the exact density, per lag scored

    @property
    def c_abs_error(self) -> np.ndarray:
        return np.abs(self.c_model - self.c_exact)

    def of(self, lag: int) -> np.ndarray:
        """The jumps of lag ``lag``, [W, dim]."""
        return self.samples[self.lags.index(lag)]


class OneJumpEvaluator:
    """Metrics of one jump of lag N from many start points against an exact reference.

    Parameters
    ----------
    reference : ExactReference
        The system's exact stationary density and spectrum.
    frame_interval : float
        τ; lags are in frames of τ.
    lags : sequence of int
        The lags N, each one direct jump (:func:`itomd.interpolation.jump_samples`: lag i drawn with
        seed + i).
    """

    def __init__(self, reference, frame_interval: float, lags: Sequence[int]):
        self.reference, self.frame_interval, self.lags = reference, frame_interval, [int(n) for n in lags]
        self.exact_c = reference.autocorrelation(reference.points[:, 0], np.asarray(self.lags) * frame_interval)

    def jumps(self, model: TransitionModel, x0: np.ndarray, seed: int, sampler: str = DEFAULT_SAMPLER,
              n_steps: int = DEFAULT_N_STEPS) -> list[np.ndarray]:
        """One jump of each lag from every row of ``x0`` (no metrics)."""
        return jump_samples(model, x0, self.lags, seed=seed, sampler=sampler, n_steps=n_steps)

    def stationary_js(self, samples: np.ndarray) -> float:
        """JS divergence (nats) of ``samples`` [W, dim] against the exact density."""
        return js_divergence(samples, reference=self.reference).value

    def __call__(self, model: TransitionModel, x0: np.ndarray, seed: int, js_lags: Sequence[int] | None = None,
                 sampler: str = DEFAULT_SAMPLER, n_steps: int = DEFAULT_N_STEPS) -> Jumps:
        """Jump every lag from ``x0``; C(N) at every lag, the stationary JS at ``js_lags`` (default all)."""
        samples = self.jumps(model, x0, seed, sampler=sampler, n_steps=n_steps)
        c = correlation_of_jumps(x0, samples)
        js = {int(n): self.stationary_js(samples[self.lags.index(n)])
              for n in (self.lags if js_lags is None else js_lags)}
        return Jumps(self.lags, x0, samples, c, self.exact_c, js)


@dataclasses.dataclass
class RolloutTimescale:
    paths: np.ndarray  #: the rollout, [W, n_jumps + 1, dim]
    trajectories: list[np.ndarray]  #: its walkers as the MSM saw them
    timescale: float  #: slowest implied timescale (physical time) of the MSM at lag one jump
    seconds: float  #: wall time of the rollout alone
    resolved: bool  #: whether the MSM resolves it (ImpliedTimescalesResult.resolved); if not, it is noise

    def relative_error(self, exact: float) -> float | None:
        """timescale / exact − 1, or None where the estimate is unresolved (left out of summaries)."""
        return self.timescale / exact - 1.0 if self.resolved else None


def rollout_timescale(model: TransitionModel, x0: np.ndarray, lag: int, n_jumps: int, frame_interval: float,
                      discretization, generator: torch.Generator | None = None, float64: bool = False,
                      **rollout_kwargs: Any) -> RolloutTimescale:
    """Roll ``n_jumps`` jumps of lag ``lag`` out from ``x0`` (:func:`itomd.rollout.rollout`, which may
    raise :class:`RolloutBlowUpError`) and estimate an MSM on ``discretization`` at lag one jump;
    ``float64`` converts the walkers first."""
    start = time.perf_counter()
    paths = rollout(model, x0, lag, n_jumps, generator=generator, **rollout_kwargs)
    seconds = time.perf_counter() - start
    trajectories = [p.astype(np.float64) for p in paths] if float64 else list(paths)
    its = implied_timescales(trajectories, lag * frame_interval, lags=[1], n_timescales=1,
                             discretization=discretization, n_samples=0)
    return RolloutTimescale(paths, trajectories, float(its.timescales[0, 0]), seconds, bool(its.resolved[0, 0]))


# -- results ---------------------------------------------------------------------------------------
def command_line() -> str:
    """This process's command: the script relative to the repository root, then its arguments."""
    script = Path(sys.argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    return shlex.join([str(script), *sys.argv[1:]])


def _timestamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def write_results(path: str | Path, result: dict[str, Any], *, indent: int = 2, provenance: bool = False) -> Path:
    """Write ``result`` as JSON atomically (parent created; numpy scalars as floats). ``provenance``
    adds ``command`` (:func:`command_line`) and ``written`` (UTC time) unless ``result`` has them."""
    if provenance:
        result = {**result, "command": result.get("command", command_line()),
                  "written": result.get("written", _timestamp())}
    return write_text_atomically(Path(path), json.dumps(result, indent=indent, default=float) + "\n")


def merge_results(path: str | Path, key: str, value: Any, *, indent: int = 1) -> Path:
    """Set ``key`` of the JSON object in ``path`` (created if missing), stamp ``updated`` (UTC time),
    write atomically and print the new entry."""
    path = Path(path)
    results = json.loads(path.read_text()) if path.exists() else {}
    results[key] = value
    results["updated"] = _timestamp()
    written = write_text_atomically(path, json.dumps(results, indent=indent, default=float) + "\n")
    print(json.dumps({key: value}, indent=indent, default=float), flush=True)
    return written
