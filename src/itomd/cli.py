"""The ``itomd`` command line: ``simulate``, ``export``, ``reference``, ``train``, ``sample``, ``analyze``, ``report``, ``demo``.

Strings become objects here and nowhere below: options are parsed and validated, systems are
resolved from their specification, and library functions receive objects. Errors caused by the
user's input are printed as one line (``itomd: error: ...``) with exit status 2; no tracebacks
unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

from itomd.errors import InvalidInputError, ItomdError

EXIT_USAGE = 2


# -- argument types -------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got '{text}'") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got '{text}'") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite comma-separated numbers, got '{text}'")
    return values


def _lag_list(text: str) -> list[int]:
    out = []
    for item in text.split(","):
        try:
            lag = int(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"lags must be comma-separated integers (frames), got '{text}'") from None
        if lag < 1:
            raise argparse.ArgumentTypeError(f"lags must be positive (frames), got {lag}")
        out.append(lag)
    return sorted(set(out))


def _box(values: list[float] | None, dim: int) -> tuple[tuple[float, float], ...] | None:
    if values is None:
        return None
    if len(values) != 2 * dim:
        raise InvalidInputError(f"--box needs {2 * dim} numbers (min,max per dimension) for a {dim}-D system, got {len(values)}")
    return tuple((values[2 * i], values[2 * i + 1]) for i in range(dim))


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# -- shared option groups -------------------------------------------------------------------------
def _add_system_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("system")
    g.add_argument("--system", required=required, metavar="SPEC",
                   help="shipped system (prinz, muller-brown, double-well, harmonic), molecule (ala2, ala2-vacuum, "
                        "ala2-implicit) or path/to/file.py:NAME")
    g.add_argument("--dim", type=_positive_int, help="dimension (systems with a choice, user functions)")
    g.add_argument("--kT", type=_positive_float, dest="kT", help="thermal energy (default: the system's)")
    g.add_argument("--temperature", type=_positive_float, metavar="KELVIN",
                   help="temperature of a molecule in kelvin (default 300; molecules use kT as energy unit)")
    g.add_argument("--friction", type=_positive_float, help="friction coefficient gamma (default 1)")
    g.add_argument("--timestep", type=_positive_float, help="integration step (default: the system's)")
    g.add_argument("--frame-interval", type=_positive_float, dest="frame_interval",
                   help="physical time between stored frames (default: the system's)")
    g.add_argument("--box", type=_float_list, metavar="XMIN,XMAX[,YMIN,YMAX]",
                   help="region for the exact reference and plots")


def _system_spec(args: argparse.Namespace):
    from itomd.systems import SystemSpec

    spec = SystemSpec(spec=args.system, dim=args.dim, kT=args.kT, friction=args.friction,
                      timestep=args.timestep, frame_interval=args.frame_interval,
                      temperature=getattr(args, "temperature", None))
    system = spec.build()  # validates everything once, here, with one-line errors
    box = _box(args.box, system.dim)
    if box is not None:
        spec = SystemSpec(**{**spec.__dict__, "box": box})
        system = spec.build()
    return spec, system


# -- commands -------------------------------------------------------------------------------------
def cmd_simulate(args: argparse.Namespace) -> int:
    from itomd.simulate.campaign import run_campaign
    from itomd.simulate.engines import make_engine

    spec, system = _system_spec(args)
    x0 = None
    start = None  # the system's default: equilibrium samples, or a molecule's shipped structure
    engine = make_engine(system, args.integrator, args.platform)  # a wrong integrator or platform: one line, now
    if args.x0 is not None and args.from_equilibrium_model is not None:
        raise InvalidInputError("give --x0 or --from-equilibrium-model, not both")
    if args.x0 is not None:
        if len(args.x0) != system.dim:
            raise InvalidInputError(f"--x0 needs {system.dim} numbers for {system.name}, got {len(args.x0)}")
        x0, start = args.x0, "fixed"
    elif args.from_equilibrium_model is not None:
        from itomd.data.starts import equilibrium_model_start_points
        from itomd.models import TransitionModel

        source = args.from_equilibrium_model
        model_file = source / "model.pt" if source.is_dir() else source
        x0 = equilibrium_model_start_points(TransitionModel.load(model_file), model_file, args.out, args.n_traj,
                                            args.seed, system.dim, progress=not args.quiet, source=source)
        start = "fixed"
    # engines that simulate a chunk as one batch get larger chunks here than the library's default
    chunk_size = args.chunk_size or (256 if engine.batched else None)
    t0 = time.perf_counter()
    store = run_campaign(spec, args.out, n_trajectories=args.n_traj, n_frames=args.n_frames, seed=args.seed,
                         integrator=args.integrator, start=start, x0=x0, chunk_size=chunk_size,
                         platform=args.platform, scheduler=args.scheduler,
                         n_workers=args.workers, progress=not args.quiet)
    elapsed = time.perf_counter() - t0
    summary = {"out": str(args.out), "n_trajectories": len(store), "n_frames": args.n_frames,
               "frame_interval": system.frame_interval, "simulated_time": len(store) * (args.n_frames - 1) * system.frame_interval,
               "wall_seconds": round(elapsed, 3), "system": system.metadata()}
    _emit(summary, args.json, f"wrote {len(store)} trajectories of {args.n_frames} frames to {args.out} "
                              f"({summary['simulated_time']:.4g} {system.time_unit} in {elapsed:.1f} s)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from itomd.data.export import export_store

    written = export_store(args.store, args.out, fmt=args.format, join=args.join)
    payload = {"store": str(args.store), "out": str(args.out), "format": args.format,
               "files": [str(path) for path in written]}
    _emit(payload, args.json, f"wrote {len(written) - 1} {args.format} file(s) and {written[-1].name} to {args.out}")
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    from itomd.systems.reference import exact_reference

    spec, system = _system_spec(args)
    reference = exact_reference(system, n_grid=args.grid, n_eigen=max(args.n_timescales + 1, 2))
    out = {"system": system.metadata(), **reference.to_dict(args.n_timescales)}
    lag_time = args.lag_time if args.lag_time is not None else system.frame_interval
    out["transfer_eigenvalues"] = {"lag_time": lag_time,
                                   "values": reference.transfer_eigenvalues(lag_time)[: args.n_timescales + 1].tolist()}
    its = ", ".join(f"{t:.4g}" for t in out["implied_timescales"])
    _emit(out, args.json, f"{system.name} (kT={system.kT:g}, friction={system.friction:g}): exact implied timescales {its}")
    return 0


def _load_for_analysis(args: argparse.Namespace):
    """Trajectories, metadata, the system (if known) and the exact reference (if asked for)."""
    from itomd.data.store import TrajectoryStore
    from itomd.systems import SystemSpec
    from itomd.systems.reference import exact_reference

    store = TrajectoryStore(args.path)
    trajectories = store.trajectories()
    meta = store.metadata
    system = _system_spec(args)[1] if args.system is not None else SystemSpec.from_store(meta)
    frame_interval = float(meta.get("frame_interval") or (system.frame_interval if system else 1.0))
    kT = float(meta.get("kT") or (system.kT if system else 1.0))
    reference = None
    if args.reference:
        if system is None:
            raise InvalidInputError("--reference needs a known system: pass --system SPEC")
        if system.dim > 2:
            raise InvalidInputError(f"exact references are available for dimension ≤ 2 here, system has {system.dim}")
        reference = exact_reference(system)
    return trajectories, frame_interval, kT, system, reference


def _run_analysis(args: argparse.Namespace):
    from itomd.analysis import analyze, compare, featurizer_for

    trajectories, frame_interval, kT, system, reference = _load_for_analysis(args)
    topology = None if system is None else system.topology()  # None for systems without atoms
    result = analyze(trajectories, frame_interval, kT, reference=reference, lags=args.lags,
                     n_timescales=args.n_timescales, n_states=args.n_states, seed=args.seed,
                     progress=not args.quiet, featurizer=featurizer_for(topology))
    if args.compare is not None:
        from itomd.data.store import TrajectoryStore

        other = TrajectoryStore(args.compare)
        other_interval = _recorded_frame_interval(other.metadata, args.compare)
        compare(result, other.trajectories(), other_interval, label=args.compare_label, seed=args.seed)
    return result, system


def cmd_analyze(args: argparse.Namespace) -> int:
    result, system = _run_analysis(args)
    out = result.to_dict()
    if args.out:
        _write_json(Path(args.out), out)
    its = out["implied_timescales"]
    lines = [f"{len(its['lags'])} lags; slowest implied timescale "
             + ", ".join("–" if t[0] is None else f"{t[0]:.4g}" for t in its["timescales"])
             + (f" (exact {its['reference'][0]:.4g})" if its.get("reference") else "")]
    if out.get("js_divergence") is not None:
        lines.append(f"stationary JS divergence vs exact: {out['js_divergence']:.4g} nats")
    lines.extend(line for section in result.sections if (line := section.summary()) is not None)
    if out.get("comparison") is not None:
        c = out["comparison"]
        lines.append(f"{c['label']}: slowest implied timescale "
                     + ", ".join("–" if t[0] is None else f"{t[0]:.4g}" for t in c["implied_timescales"]["timescales"])
                     + f" at lag times {', '.join(f'{v:g}' for v in c['implied_timescales']['lag_times'])}; "
                     f"JS divergence vs {c['label']}: {c['js_divergence']:.4g} nats")
    _emit(out, args.json, "\n".join(lines))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from itomd.analysis.report import write_report

    result, system = _run_analysis(args)
    title = args.title or f"itomd report: {system.name if system else Path(args.path).name}"
    path = write_report(result, args.out, title=title)
    _emit({"report": str(path)}, args.json, f"wrote {path}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from itomd.data.store import TrajectoryStore
    from itomd.training import ITOEstimator, TrainingConfig
    from itomd.systems import SystemSpec

    overrides = dict(max_lag=args.max_lag, minutes=args.minutes, max_steps=args.max_steps, batch_size=args.batch_size,
                     seed=args.seed, device=args.device, equilibrium=True if args.equilibrium else None,
                     prior=args.prior, lambda_hat=args.lambda_hat)
    if args.config is not None:
        config = TrainingConfig.from_toml(args.config, **overrides)
    elif args.resume and (args.out / "config.toml").is_file():
        config = TrainingConfig.from_toml(args.out / "config.toml", **overrides)
        config.minutes = args.minutes  # a recorded budget belonged to the earlier invocation
    else:
        config = TrainingConfig.from_dict({}, **overrides)
    if args.resume and not (args.out / "checkpoint.pt").is_file():
        raise InvalidInputError(f"nothing to resume: no checkpoint in {args.out}")
    store = TrajectoryStore(args.data)
    trajectories = store.trajectories()
    meta = store.metadata
    frame_interval = _recorded_frame_interval(meta, args.data)
    spec = SystemSpec.from_metadata(meta)
    prior = None if config.prior is None or args.resume else _load_prior(config.prior, spec)
    t0 = time.perf_counter()
    estimator = ITOEstimator(config).fit(trajectories, frame_interval, run_dir=args.out, resume=args.resume,
                                         progress=not args.quiet, system=spec, prior=prior)
    elapsed = time.perf_counter() - t0
    summary = {"run": str(args.out), "steps": estimator.step, "max_steps": config.max_steps,
               "stopped_by_budget": estimator.stopped_by_budget, "wall_seconds": round(elapsed, 2),
               "model": str(args.out / "model.pt"),
               "kind": "equilibrium" if config.equilibrium else "bopito" if config.prior else "transition"}
    more = " (wall-clock budget reached; --resume continues)" if estimator.stopped_by_budget else ""
    if config.prior:
        summary["lambda_hat"] = estimator.fetch_model().lambda_hat
        more += f"; BoPITO with λ̂ = {summary['lambda_hat']:.6f} per frame"
    _emit(summary, args.json, f"trained {estimator.step} of {config.max_steps} steps in {elapsed:.1f} s{more}; "
                              f"model in {args.out / 'model.pt'}")
    return 0


def _load_prior(text: str, spec):
    """BoPITO's equilibrium part named on the command line: ``exact`` or an equilibrium run."""
    from itomd.models import ExactPrior, LearnedPrior, TransitionModel

    if text == "exact":
        if spec is None:
            raise InvalidInputError("the exact prior needs the data's system (record it in the trajectory metadata "
                                    "or pass system= to fit)")
        return ExactPrior.of_system(spec.build())
    return LearnedPrior.of_model(TransitionModel.load(text))


def cmd_sample(args: argparse.Namespace) -> int:
    from itomd.data.starts import sample_start_points
    from itomd.models import TransitionModel
    from itomd.rollout import run_rollout, simulated_time

    model = TransitionModel.load(args.run)
    if not model.conditional:
        raise InvalidInputError(f"{args.run} is an equilibrium model; rollouts need a transition model")
    if args.lambda_int is not None:
        model.set_interpolation(args.lambda_int)
    x0 = sample_start_points(model, args.n_walkers, args.seed, from_store=args.from_store, x0_file=args.x0)
    _note_untrained_starts(model, x0)
    if args.lag > model.max_lag:
        how = (f"the dynamic part decays with λ_int = {model.lambda_interpolation or model.lambda_hat:.6g} per frame"
               if model.is_bopito else "the model extrapolates")
        print(f"itomd sample: note: lag {args.lag} is beyond the largest training lag {model.max_lag}; {how}",
              file=sys.stderr)
    t0 = time.perf_counter()
    store = run_rollout(model, args.out, lag=args.lag, n_jumps=args.n_jumps, x0=x0, seed=args.seed,
                        chunk_size=args.chunk_size, sampler=args.sampler, n_steps=args.n_steps,
                        tolerance=args.tolerance, progress=not args.quiet, model_source=str(args.run))
    elapsed = time.perf_counter() - t0
    covered = simulated_time(len(store), args.n_jumps, args.lag, model.frame_interval)
    summary = {"out": str(args.out), "n_walkers": len(store), "n_jumps": args.n_jumps, "lag": args.lag,
               "frame_interval": args.lag * model.frame_interval, "simulated_time": covered,
               "wall_seconds": round(elapsed, 3)}
    _emit(summary, args.json, f"wrote {len(store)} surrogate trajectories of {args.n_jumps} jumps "
                              f"(lag {args.lag} = {args.lag * model.frame_interval:g} time units) to {args.out}: "
                              f"{covered:.4g} time units in {elapsed:.1f} s")
    return 0


def cmd_fit_interpolation(args: argparse.Namespace) -> int:
    from itomd.interpolation import fit_interpolation, read_correlation_file
    from itomd.models import TransitionModel

    model = TransitionModel.load(args.run)
    if not model.is_bopito:
        raise InvalidInputError(f"{args.run} is not a BoPITO model (train with --prior); only BoPITO has λ_int")
    lags, values = read_correlation_file(args.observable)
    beyond = lags > model.max_lag
    if not beyond.any():
        raise InvalidInputError(f"{args.observable} has no lag beyond the largest training lag {model.max_lag}: "
                                "λ_int has nothing to match")
    if not 0 <= args.coordinate < model.dim:
        raise InvalidInputError(f"--coordinate must be in [0, {model.dim}), got {args.coordinate}")
    t0 = time.perf_counter()
    fit = fit_interpolation(model, lags[beyond], values[beyond], n_walkers=args.n_walkers, coordinate=args.coordinate,
                            seed=args.seed, progress=not args.quiet)
    model.set_interpolation(fit.lambda_interpolation)
    out = args.out if args.out is not None else (args.run if args.run.is_dir() else args.run.parent) / "model_interpolated.pt"
    model.save(out)
    summary = {**fit.to_dict(), "model": str(out), "lambda_hat": model.lambda_hat, "max_lag": model.max_lag,
               "ignored_lags": [int(n) for n in lags[~beyond]], "wall_seconds": round(time.perf_counter() - t0, 2)}
    _emit(summary, args.json, f"λ_int = {fit.lambda_interpolation:.6g} per frame (effective timescale "
                              f"{fit.timescale:.4g}); C(N) rms error {fit.rms_error:.3g} over {len(fit.lags)} lags; "
                              f"tuned model in {out}")
    return 0


def _note_untrained_starts(model, x0) -> None:
    """A BoPITO model samples μ wherever its prior has mass, but its dynamic part only learned the
    dynamics where the training data went: say so when start states lie outside their range."""
    import numpy as np

    data = model.info.get("data") or {}
    if not model.is_bopito or "low" not in data:
        return
    outside = int(np.any((x0 < np.asarray(data["low"])) | (x0 > np.asarray(data["high"])), axis=1).sum())
    if outside:
        print(f"itomd sample: note: {outside} of {len(x0)} start states lie outside the training data's range; "
              "there the dynamic part is untrained and jumps relax towards the prior at once", file=sys.stderr)


def _recorded_frame_interval(metadata: dict, path: Path) -> float:
    """The frame interval a trajectory store records (one-line error if it records none)."""
    if metadata.get("frame_interval") is None:
        raise InvalidInputError(f"{path} does not record its frame interval")
    return float(metadata["frame_interval"])


def cmd_demo(args: argparse.Namespace) -> int:
    from itomd.demo import run_demo

    path = run_demo(Path(args.out), quick=args.quick, n_workers=args.workers)
    print(f"demo finished: open {path}")
    return 0


# -- plumbing -------------------------------------------------------------------------------------
def _emit(payload: dict, as_json: bool, text: str) -> None:
    if as_json:
        print(json.dumps(payload, indent=2, default=_json_default))
    else:
        print(text)


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def _write_json(path: Path, payload: dict) -> None:
    from itomd.data.store import write_text_atomically

    write_text_atomically(path, json.dumps(payload, indent=2, default=_json_default))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="itomd", description="Learned transition densities for molecular dynamics (ITO/BoPITO).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("simulate", help="run a resumable campaign of many trajectories")
    _add_system_options(p)
    p.add_argument("--out", required=True, type=Path, help="output trajectory store (directory)")
    p.add_argument("--n-traj", dest="n_traj", required=True, type=_positive_int, help="number of trajectories")
    p.add_argument("--n-frames", dest="n_frames", required=True, type=_positive_int, help="frames per trajectory (incl. start)")
    p.add_argument("--seed", type=_nonnegative_int, default=0)
    p.add_argument("--integrator", choices=["overdamped", "baoab", "langevin-middle"],
                   help="default: overdamped; langevin-middle (OpenMM) for molecules")
    p.add_argument("--platform", choices=["Reference", "CPU", "CUDA", "OpenCL"],
                   help="OpenMM platform for molecules (default Reference: fastest for small molecules on CPUs)")
    p.add_argument("--x0", type=_float_list, metavar="X[,Y]", help="start all walkers here (default: equilibrium samples; for a molecule its shipped structure, nm)")
    p.add_argument("--from-equilibrium-model", dest="from_equilibrium_model", type=Path, metavar="RUN",
                   help="start every trajectory from its own sample of this equilibrium model (or BoPITO model's "
                        "prior): BoPITO's data generation, many short trajectories covering all metastable states")
    p.add_argument("--chunk-size", dest="chunk_size", type=_positive_int,
                   help="walkers simulated together in one task (default 256, molecules 4; larger is faster per "
                        "walker for toy systems)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask scheduler address (default: a LocalCluster)")
    p.add_argument("--workers", type=_nonnegative_int, help="LocalCluster workers (0: run in this process)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("export", help="write a molecular trajectory store as DCD/XTC/HDF5/PDB files (mdtraj)")
    p.add_argument("store", type=Path, help="trajectory store of a molecule (directory)")
    p.add_argument("--format", required=True, choices=["dcd", "xtc", "h5", "pdb"])
    p.add_argument("--out", required=True, type=Path,
                   help="output directory: traj_NNNNNN.<format> per trajectory (or one file with --join) and topology.pdb")
    p.add_argument("--join", action="store_true", help="all trajectories, in index order, in one file trajectories.<format>")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("reference", help="exact implied timescales and stationary density (SqRA, dim ≤ 3)")
    _add_system_options(p)
    p.add_argument("--grid", type=_positive_int, help="cells per axis (default 1200 in 1-D, 240 in 2-D)")
    p.add_argument("--n-timescales", dest="n_timescales", type=_positive_int, default=4)
    p.add_argument("--lag-time", dest="lag_time", type=_positive_float, help="lag for transfer eigenvalues (default: frame interval)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_reference)

    p = sub.add_parser("train", help="train an ITO transition model (or an equilibrium model) on trajectories")
    p.add_argument("--data", required=True, type=Path, help="trajectory store to train on")
    p.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, model.pt, metrics.jsonl)")
    p.add_argument("--config", type=Path, help="TOML file of training options (see itomd.training.TrainingConfig)")
    p.add_argument("--max-lag", dest="max_lag", type=_positive_int, help="largest lag N in frames (default 100)")
    p.add_argument("--minutes", type=_positive_float, help="wall-clock budget of this invocation")
    p.add_argument("--max-steps", dest="max_steps", type=_positive_int, help="optimiser steps in all (default 20000)")
    p.add_argument("--batch-size", dest="batch_size", type=_positive_int, help="global batch size (default 512)")
    p.add_argument("--seed", type=_nonnegative_int)
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--equilibrium", action="store_true", help="train an unconditional model of the frames")
    p.add_argument("--prior", metavar="exact|RUN",
                   help="train BoPITO: a frozen equilibrium part, 'exact' (quadrature on the system's reference grid, "
                        "dim ≤ 3) or an equilibrium run (itomd train --equilibrium)")
    p.add_argument("--lambda-hat", dest="lambda_hat", type=_positive_float,
                   help="BoPITO's λ̂ per frame (default: slowest MSM eigenvalue of the data at lag 1)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="roll out surrogate trajectories from a trained model")
    p.add_argument("run", type=Path, help="run directory (or model.pt) from itomd train")
    p.add_argument("--lag", required=True, type=_positive_int, help="jump lag N in frames of the training data")
    p.add_argument("--n-jumps", dest="n_jumps", required=True, type=_positive_int)
    p.add_argument("--n-walkers", dest="n_walkers", required=True, type=_positive_int)
    p.add_argument("--out", required=True, type=Path, help="trajectory store to write (resumable)")
    p.add_argument("--from", dest="from_store", type=Path, metavar="DIR", help="start from frames of this store")
    p.add_argument("--x0", type=Path, metavar="FILE", help="start points (.npy or text, [W, dim] or [dim])")
    p.add_argument("--seed", type=_nonnegative_int, default=0)
    p.add_argument("--sampler", default="heun-churn",
                   help="heun-churn (default, stochastic), dpmpp-2m, heun, euler, euler-maruyama or ancestral "
                        "(the 1000-step baseline)")
    p.add_argument("--n-steps", dest="n_steps", type=_positive_int, default=25,
                   help="noise levels per jump (network evaluations: 2n-1 for heun/heun-churn, n for the others)")
    p.add_argument("--chunk-size", dest="chunk_size", type=_positive_int, default=1024, help="walkers per batch")
    p.add_argument("--lambda-int", dest="lambda_int", type=_positive_float,
                   help="BoPITO: per-frame decay of the dynamic part beyond the training lags (default: the model's, "
                        "as set by fit-interpolation, else λ̂)")
    p.add_argument("--tolerance", type=_positive_float, default=0.5,
                   help="blow-up threshold beyond the training range, in units of its extent")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sample)

    for name, helptext in (("analyze", "MSM implied timescales, CK test, FES, JS divergence, autocorrelation"),
                           ("report", "write an HTML report with the analysis plots")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("path", type=Path, help="trajectory store (directory)")
        _add_system_options(p, required=False)
        p.add_argument("--reference", action="store_true", help="compare with the exact reference (dim ≤ 2)")
        p.add_argument("--lags", type=_lag_list, help="MSM lags in frames, comma-separated (default: automatic)")
        p.add_argument("--n-timescales", dest="n_timescales", type=_positive_int, default=3)
        p.add_argument("--n-states", dest="n_states", type=_positive_int, help="number of discrete states")
        p.add_argument("--seed", type=_nonnegative_int, default=0)
        p.add_argument("--compare", type=Path, metavar="DIR",
                       help="a second trajectory store (e.g. MD) analysed on the same states and lag times")
        p.add_argument("--compare-label", dest="compare_label", default="MD", help="its name in the output")
        p.add_argument("--quiet", action="store_true")
        p.add_argument("--json", action="store_true")
        if name == "analyze":
            p.add_argument("--out", type=Path, help="also write the JSON here")
            p.set_defaults(func=cmd_analyze)
        else:
            p.add_argument("--out", type=Path, required=True, help="HTML file to write")
            p.add_argument("--title")
            p.set_defaults(func=cmd_report)

    p = sub.add_parser("fit-interpolation",
                       help="tune a BoPITO model's λ_int to an unbiased correlation function beyond its training lags")
    p.add_argument("run", type=Path, help="BoPITO run directory (or model.pt)")
    p.add_argument("--observable", required=True, type=Path, metavar="FILE",
                   help="rows 'lag C(lag)' (lag in frames of the training data; .txt, .csv or .npy): the unbiased "
                        "normalised autocorrelation of the chosen coordinate, e.g. from long MD")
    p.add_argument("--coordinate", type=_nonnegative_int, default=0, help="the observable's coordinate (default 0)")
    p.add_argument("--n-walkers", dest="n_walkers", type=_positive_int, default=2000,
                   help="equilibrium start states (samples of the model's prior)")
    p.add_argument("--seed", type=_nonnegative_int, default=0)
    p.add_argument("--out", type=Path, help="model file to write with the tuned λ_int (default RUN/model_interpolated.pt)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fit_interpolation)

    p = sub.add_parser("demo", help="Müller–Brown end to end: simulate, reference, analyze, report")
    p.add_argument("--out", type=Path, default=Path("demo-output"))
    p.add_argument("--quick", action="store_true", help="a smaller run (for tests)")
    p.add_argument("--workers", type=_nonnegative_int, help="LocalCluster workers (0: in-process)")
    p.set_defaults(func=cmd_demo)
    return parser


def _join_negative_values(argv: list[str]) -> list[str]:
    """Let ``--box -1.5,1.2`` and ``--x0 -0.5`` work (argparse reads a leading '-' as an option)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in ("--box", "--x0") and i + 1 < len(argv) and argv[i + 1].startswith("-") and argv[i + 1][1:2] not in ("-", ""):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
            continue
        out.append(token)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``itomd`` command."""
    argv = _join_negative_values(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:  # warnings as one line each, like errors
        warnings.formatwarning = lambda message, category, *_, **__: f"itomd {args.command}: warning: {message}\n"
    try:
        return int(args.func(args) or 0)
    except ItomdError as exc:
        if args.debug:
            raise
        print(f"itomd {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"itomd {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure: still one line, the traceback on request
        if args.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else ""
        print(f"itomd {args.command}: internal error: {type(exc).__name__}: {message} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
