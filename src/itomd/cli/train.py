"""``itomd train``: ITO, BoPITO and equilibrium models from a trajectory store."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from itomd.cli._common import (InterruptRequests, checkpoint_kept, emit, fraction, positive_float, positive_int,
                               recorded_frame_interval, report_stop, seed_int)
from itomd.errors import InvalidInputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train an ITO transition model (or an equilibrium model) on trajectories")
    p.add_argument("--data", required=True, type=Path, help="trajectory store to train on")
    p.add_argument("--out", required=True, type=Path, help="run directory (checkpoints, model.pt, metrics.jsonl)")
    p.add_argument("--config", metavar="RECIPE|FILE",
                   help="training options: a recipe shipped with itomd by name (e.g. ala2-ito; an unknown name lists "
                        "them) or a TOML file (keys of itomd.training.TrainingConfig)")
    p.add_argument("--max-lag", dest="max_lag", type=positive_int, help="largest lag N in frames (default 100)")
    p.add_argument("--minutes", type=positive_float, help="wall-clock budget of this invocation")
    p.add_argument("--max-steps", dest="max_steps", type=positive_int, help="optimiser steps in all (default 20000)")
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, help="global batch size (default: 512 for points; for molecules "
                        "64 at 22 atoms, scaled with 1/atoms², at least 16)")
    p.add_argument("--start-balance", dest="start_balance", type=fraction, metavar="A",
                   help="draw training starts x_t with weight max(n, n_even)^-A, n the frames in x_t's cell of a "
                        "histogram of the slow coordinates: rare metastable states are drawn more often, the learned "
                        "p(x_t+N | x_t) is the same; 0 = uniform, 1 = the data's density capped at an even one "
                        "(default: 1 for points, 0 for molecules)")
    p.add_argument("--lag-distribution", dest="lag_distribution", metavar="log-uniform|uniform|fixed",
                   help="how training lags are drawn from 1..max-lag (default log-uniform: every scale alike); "
                        "uniform suits a model whose rollouts jump near the largest lag (itomd demo)")
    p.add_argument("--seed", type=seed_int)
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--equilibrium", action="store_true", help="train an unconditional model of the frames")
    p.add_argument("--prior", metavar="exact|forcefield|forcefield:RUN|RUN",
                   help="train BoPITO: a frozen equilibrium part, 'exact' (quadrature on the system's reference grid, "
                        "dim ≤ 3), 'forcefield' (the system's own forces -∇U/kT, blended across noise levels with the "
                        "data's Gaussian; 'forcefield:RUN' with an equilibrium run) or an equilibrium run "
                        "(itomd train --equilibrium)")
    p.add_argument("--lambda-hat", dest="lambda_hat", type=positive_float,
                   help="BoPITO's λ̂ per frame (default: slowest MSM eigenvalue of the data at lag 1)")
    p.add_argument("--dynamic-part", dest="dynamic_part", metavar="residual|linear|transition",
                   help="BoPITO's dynamic part: 'transition' (λ̂^N times an ITO transition denoiser's departure from "
                        "D_eq; molecules learn targets superposed on x_t, as ITO; the default for molecules), "
                        "'residual' (D_eq + λ̂^N σ F; the default for toy systems) or 'linear' (the residual started "
                        "from the linear-Gaussian transition)")
    p.add_argument("--compile", action="store_true",
                   help="molecules: train the equivariant network through torch.compile (the same function, about "
                        "1.6-1.8x the steps per second on a CPU; the first step compiles; needs a C++ compiler, else it "
                        "warns and trains eagerly)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from itomd.data.store import TrajectoryStore
    from itomd.models import prior_named
    from itomd.training import ITOEstimator, TrainingConfig
    from itomd.systems import SystemSpec

    overrides = dict(max_lag=args.max_lag, minutes=args.minutes, max_steps=args.max_steps, batch_size=args.batch_size,
                     seed=args.seed, device=args.device, equilibrium=True if args.equilibrium else None,
                     prior=args.prior, lambda_hat=args.lambda_hat, dynamic_part=args.dynamic_part,
                     compile=True if args.compile else None, start_balance=args.start_balance,
                     lag_distribution=args.lag_distribution)
    if args.config is not None:
        config = TrainingConfig.from_recipe(args.config, **overrides)
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
    frame_interval = recorded_frame_interval(meta, args.data)
    spec = SystemSpec.from_metadata(meta, args.data)  # a user's molecule: the store's prepared structure
    prior = None if config.prior is None or args.resume else prior_named(config.prior, spec, trajectories, config.seed)
    t0 = time.perf_counter()
    with InterruptRequests() as interrupts:  # Ctrl-C / SIGTERM: checkpoint at the current step, then stop
        estimator = ITOEstimator(config).fit(trajectories, frame_interval, run_dir=args.out, resume=args.resume,
                                             progress=not args.quiet, system=spec, prior=prior,
                                             stop=lambda: interrupts.requested,
                                             data_source=str(args.data.resolve()))
    elapsed = time.perf_counter() - t0
    if estimator.stopped_by_request:
        return report_stop(args, interrupts, estimator.step, config.max_steps)
    summary = {"run": str(args.out), "steps": estimator.step, "max_steps": config.max_steps,
               "stopped_by_budget": estimator.stopped_by_budget, "wall_seconds": round(elapsed, 2),
               "model": str(args.out / "model.pt"),
               "kind": "equilibrium" if config.equilibrium else "bopito" if config.prior else "transition"}
    more = " (wall-clock budget reached; --resume continues)" if estimator.stopped_by_budget else ""
    if config.prior:
        summary["lambda_hat"] = estimator.fetch_model().lambda_hat
        more += f"; BoPITO with λ̂ = {summary['lambda_hat']:.6f} per frame"
    emit(summary, args.json, f"trained {estimator.step} of {config.max_steps} steps in {elapsed:.1f} s{more}; "
                              f"model in {args.out / 'model.pt'}")
    return 0


#: What a training run stopped by a failed write or a second Ctrl-C keeps (``main`` asks the module).
work_kept = checkpoint_kept

