"""``itomd simulate``: a resumable campaign of many trajectories."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from itomd.cli._common import (add_system_options, emit, float_list, nonnegative_int, positive_int, seed_int,
                               system_spec, trajectories_kept)
from itomd.errors import InvalidInputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="run a resumable campaign of many trajectories")
    add_system_options(p)
    p.add_argument("--out", required=True, type=Path, help="output trajectory store (directory)")
    p.add_argument("--n-traj", dest="n_traj", required=True, type=positive_int, help="number of trajectories")
    p.add_argument("--n-frames", dest="n_frames", required=True, type=positive_int, help="frames per trajectory (incl. start)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--integrator", choices=["overdamped", "baoab", "langevin-middle"],
                   help="default: overdamped; langevin-middle (OpenMM) for molecules")
    p.add_argument("--platform", choices=["Reference", "CPU", "CUDA", "OpenCL"],
                   help="OpenMM platform for molecules (default Reference: fastest for small molecules on CPUs)")
    p.add_argument("--x0", type=float_list, metavar="X[,Y]", help="start all walkers here (default: equilibrium samples; for a molecule its shipped structure, nm)")
    p.add_argument("--from-equilibrium-model", dest="from_equilibrium_model", type=Path, metavar="RUN",
                   help="start every trajectory from its own sample of this equilibrium model (or BoPITO model's "
                        "prior): BoPITO's data generation, many short trajectories covering all metastable states")
    p.add_argument("--chunk-size", dest="chunk_size", type=positive_int,
                   help="walkers simulated together in one task (default 256, molecules 4; larger is faster per "
                        "walker for toy systems)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask scheduler address (default: a LocalCluster)")
    p.add_argument("--workers", type=nonnegative_int, help="LocalCluster workers (0: run in this process)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from itomd.simulate.campaign import run_campaign
    from itomd.simulate.engines import make_engine

    spec, system = system_spec(args)
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
    emit(summary, args.json, f"wrote {len(store)} trajectories of {args.n_frames} frames to {args.out} "
                              f"({summary['simulated_time']:.4g} {system.time_unit} in {elapsed:.1f} s)")
    return 0


def work_kept(args: argparse.Namespace) -> str:
    """What an interrupted or failed campaign keeps (complete trajectory files; chunks resume)."""
    return trajectories_kept(args.out, args.n_traj)

