"""``itomd check``: does a model agree with itself across time scales (:mod:`itomd.check`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from itomd.cli._common import add_sampler_options, model_on_device, emit, lag_list, positive_float, positive_int, seed_int, write_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    from itomd.check import DEFAULT_SAMPLES, DEFAULT_SPLITS, DEFAULT_STARTS, FLAG_FACTOR
    from itomd.rollout import DEFAULT_TOLERANCE

    p = sub.add_parser("check", help="self-consistency: one jump of lag N vs k nested jumps of N/k")
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
    add_sampler_options(p)
    p.add_argument("--tolerance", type=positive_float, default=DEFAULT_TOLERANCE,
                   help="blow-up threshold, as for itomd sample")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", type=Path, help="also write the JSON here (it is always kept as RUN/check.json, "
                                            "which itomd report shows for rollouts of this model)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.epilog = (f"A (N, k) record is flagged when JS(direct, nested) exceeds {FLAG_FACTOR:g}x JS(direct, direct'), "
                "the sampling noise at the same sample size; exit status 0 either way.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from itomd.check import check_file, check_request, self_consistency
    from itomd.data.starts import sample_start_points
    from itomd.diffusion.samplers import sampler_named

    if args.sampler is not None:
        sampler_named(args.sampler)
    model = model_on_device(args.run, args.device, args.precision)
    check_request(model, args.lags, args.n_samples)  # before the start points are drawn
    starts = sample_start_points(model, args.n_starts, args.seed, from_store=args.from_store)
    result = self_consistency(model, starts, lags=args.lags, splits=args.splits, n_samples=args.n_samples,
                              sampler=args.sampler, n_steps=args.n_steps, seed=args.seed, tolerance=args.tolerance,
                              progress=not (args.quiet or args.json))
    out = {**result.to_dict(), "model": str(args.run)}
    write_json(check_file(args.run), out)
    if args.out is not None:
        write_json(args.out, out)
    emit(out, args.json, result.summary())
    return 0
