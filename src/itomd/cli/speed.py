"""``itomd speed``: how much faster than MD is this model on this machine (:mod:`itomd.speed`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from itomd.cli._common import (add_sampler_options, model_on_device, emit, nonnegative_int, positive_float, positive_int,
                               seed_int)
from itomd.errors import InvalidInputError

#: Longest timing asked for (s): beyond it a typo (``--seconds 1e9``) would run for ever.
MAX_SECONDS = 3600.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from itomd.rollout import DEFAULT_TOLERANCE
    from itomd.speed import DEFAULT_SECONDS, DEFAULT_WALKERS

    p = sub.add_parser("speed", help="time surrogate rollouts against the system's own MD, side by side")
    p.add_argument("run", type=Path, help="run directory (or model.pt) from itomd train")
    p.add_argument("--lag", type=positive_int, help="jump lag N in frames of the training data "
                                                   "(default: the model's largest training lag)")
    p.add_argument("--n-walkers", dest="n_walkers", type=positive_int, default=DEFAULT_WALKERS,
                   help=f"surrogate walkers, one batch (default {DEFAULT_WALKERS})")
    add_sampler_options(p)
    p.add_argument("--from", dest="from_store", type=Path, metavar="DIR",
                   help="surrogate start points from frames of this store (default: the system's start)")
    p.add_argument("--seconds", type=positive_float, default=DEFAULT_SECONDS,
                   help=f"time each rate for at least this long (default {DEFAULT_SECONDS:g})")
    p.add_argument("--processes", type=positive_int, help="MD worker processes (default: one per core)")
    p.add_argument("--tolerance", type=positive_float, default=DEFAULT_TOLERANCE,
                   help="blow-up threshold beyond the training range, in units of its extent (as for itomd sample)")
    p.add_argument("--relax-steps", dest="relax_steps", type=nonnegative_int, default=0,
                   help="molecules: time each jump followed by this many relaxation steps of the force field "
                        "(as itomd sample --relax-steps)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from itomd.diffusion.samplers import sampler_named
    from itomd.speed import measure_speed

    if args.seconds > MAX_SECONDS:
        raise InvalidInputError(f"--seconds {args.seconds:g} is more than an hour: at most {MAX_SECONDS:g} per rate")
    if args.sampler is not None:
        sampler_named(args.sampler)
    model = model_on_device(args.run, args.device, args.precision, args.compile)
    x0 = None
    if args.from_store is not None:
        from itomd.data.starts import start_points_from_store

        x0 = start_points_from_store(args.from_store, args.n_walkers, args.seed, model.dim)
    result = measure_speed(model, x0=x0, lag=args.lag, n_walkers=args.n_walkers, sampler=args.sampler,
                           n_steps=args.n_steps, seconds=args.seconds, processes=args.processes, seed=args.seed,
                           tolerance=args.tolerance, relax_steps=args.relax_steps,
                           progress=not (args.quiet or args.json))
    emit(result.to_dict(), args.json, result.summary())
    return 0
