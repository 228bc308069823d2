"""``itomd check``: does a model agree with itself across time scales (:mod:`itomd.check`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from itomd.cli._common import (add_sampler_options, model_on_device, emit, lag_list, nonnegative_int, positive_float,
                               positive_int, recorded_frame_interval, seed_int, write_json)
from itomd.errors import InvalidInputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from itomd.check import (DEFAULT_KINETICS_JUMPS, DEFAULT_KINETICS_WALKERS, DEFAULT_SAMPLES, DEFAULT_SPLITS,
                             DEFAULT_STARTS, FLAG_FACTOR, KINETICS_LAG_JUMPS, KINETICS_TOLERANCE)
    from itomd.rollout import DEFAULT_TOLERANCE

    p = sub.add_parser("check", help="self-consistency: one jump of lag N vs k nested jumps of N/k; "
                                      "with --kinetics, timescales against MD")
    p.add_argument("run", type=Path, help="run directory (or model.pt) from itomd train")
    p.add_argument("--lags", type=lag_list, help="lags N in frames, comma-separated (default: the largest "
                                                 "multiple of 4 up to the model's largest training lag)")
    p.add_argument("--splits", type=lag_list, default=list(DEFAULT_SPLITS),
                   help=f"nested jumps k, comma-separated; used where k divides N (default "
                        f"{','.join(map(str, DEFAULT_SPLITS))})")
    p.add_argument("--from", dest="from_store", type=Path, metavar="DIR",
                   help="start states drawn from this store's frames (default: the model's equilibrium start points)")
    p.add_argument("--n-starts", dest="n_starts", type=positive_int, default=DEFAULT_STARTS,
                   help=f"start states (default {DEFAULT_STARTS})")
    p.add_argument("--n-samples", dest="n_samples", type=positive_int, default=DEFAULT_SAMPLES,
                   help=f"end points per start and set (default {DEFAULT_SAMPLES})")
    p.add_argument("--kinetics", type=lag_list, metavar="LAGS",
                   help="also judge the kinetics against the MD of --from (e.g. the training data): roll out jumps "
                        "of each lag N from its frames and compare the slowest implied timescale with the MD's at "
                        f"{', '.join(f'{k}N' if k > 1 else 'N' for k in KINETICS_LAG_JUMPS)}")
    p.add_argument("--kinetics-walkers", dest="kinetics_walkers", type=positive_int, default=DEFAULT_KINETICS_WALKERS,
                   help=f"walkers of each kinetics rollout (default {DEFAULT_KINETICS_WALKERS})")
    p.add_argument("--kinetics-jumps", dest="kinetics_jumps", type=positive_int, default=DEFAULT_KINETICS_JUMPS,
                   help=f"jumps per walker of each kinetics rollout (default {DEFAULT_KINETICS_JUMPS})")
    p.add_argument("--redraws", type=nonnegative_int, default=0, metavar="K",
                   help="kinetics rollouts: draw a walker's jump again, up to K times, when it blows up, as itomd "
                        "sample --redraws (default 0: stop)")
    add_sampler_options(p)
    p.add_argument("--tolerance", type=positive_float, default=DEFAULT_TOLERANCE,
                   help="blow-up threshold, as for itomd sample")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", type=Path, help="also write the JSON here (it is always kept as RUN/check.json, "
                                            "which itomd report shows for rollouts of this model)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.epilog = (f"A (N, k) record is flagged when JS(direct, nested) exceeds {FLAG_FACTOR:g}x JS(direct, direct'), "
                "the sampling noise at the same sample size; a kinetics lag time when the slowest implied timescale is off "
                f"MD's by more than {KINETICS_TOLERANCE:.0%}; exit status 0 either way.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from itomd.check import check_file, check_request, kinetics_against_data, kinetics_request, self_consistency
    from itomd.data.starts import sample_start_points
    from itomd.diffusion.samplers import sampler_named

    if args.sampler is not None:
        sampler_named(args.sampler)
    model = model_on_device(args.run, args.device, args.precision, args.compile)
    check_request(model, args.lags, args.n_samples)  # before the start points are drawn
    if args.kinetics is not None:
        if args.from_store is None:
            raise InvalidInputError("--kinetics compares with MD: give its trajectory store with --from DIR")
        kinetics_request(model, args.kinetics, args.kinetics_walkers, args.kinetics_jumps)
    starts = sample_start_points(model, args.n_starts, args.seed, from_store=args.from_store)
    result = self_consistency(model, starts, lags=args.lags, splits=args.splits, n_samples=args.n_samples,
                              sampler=args.sampler, n_steps=args.n_steps, seed=args.seed, tolerance=args.tolerance,
                              progress=not (args.quiet or args.json))
    if args.kinetics is not None:
        from itomd.data.store import TrajectoryStore

        store = TrajectoryStore(args.from_store)
        data, interval = store.trajectories(), recorded_frame_interval(store.metadata, args.from_store)
        result.kinetics = [kinetics_against_data(model, data, interval, lag, n_walkers=args.kinetics_walkers,
                                                 n_jumps=args.kinetics_jumps, sampler=args.sampler,
                                                 n_steps=args.n_steps, seed=args.seed, tolerance=args.tolerance,
                                                 max_redraws=args.redraws, progress=not (args.quiet or args.json))
                           for lag in args.kinetics]
    out = {**result.to_dict(), "model": str(args.run)}
    write_json(check_file(args.run), out)
    if args.out is not None:
        write_json(args.out, out)
    emit(out, args.json, result.summary())
    return 0
