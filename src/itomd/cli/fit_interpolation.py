"""``itomd fit-interpolation``: tune a BoPITO model's λ_int to a correlation function."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from itomd.cli._common import emit, nonnegative_int, positive_int, seed_int
from itomd.errors import InvalidInputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit-interpolation",
                       help="tune a BoPITO model's λ_int to an unbiased correlation function beyond its training lags")
    p.add_argument("run", type=Path, help="BoPITO run directory (or model.pt)")
    p.add_argument("--observable", required=True, type=Path, metavar="FILE",
                   help="rows 'lag C(lag)' (lag in frames of the training data; .txt, .csv or .npy): the unbiased "
                        "normalised autocorrelation of the chosen coordinate, e.g. from long MD")
    p.add_argument("--coordinate", type=nonnegative_int, default=0, help="the observable's coordinate (default 0)")
    p.add_argument("--n-walkers", dest="n_walkers", type=positive_int, default=2000,
                   help="equilibrium start states (samples of the model's prior)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", type=Path, help="model file to write with the tuned λ_int (default RUN/model_interpolated.pt)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
    emit(summary, args.json, f"λ_int = {fit.lambda_interpolation:.6g} per frame (effective timescale "
                              f"{fit.timescale:.4g}); C(N) rms error {fit.rms_error:.3g} over {len(fit.lags)} lags; "
                              f"tuned model in {out}")
    return 0
