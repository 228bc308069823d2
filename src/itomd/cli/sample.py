"""``itomd sample``: surrogate rollouts of a trained model."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from itomd.cli._common import (add_sampler_options, emit, model_on_device, nonnegative_int, positive_float, positive_int,
                               seed_int, trajectories_kept)
from itomd.errors import InvalidInputError, ItomdError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="roll out surrogate trajectories from a trained model")
    p.add_argument("run", type=Path, help="run directory (or model.pt) from itomd train")
    p.add_argument("--lag", required=True, type=positive_int, help="jump lag N in frames of the training data")
    p.add_argument("--n-jumps", dest="n_jumps", required=True, type=positive_int)
    p.add_argument("--n-walkers", dest="n_walkers", required=True, type=positive_int)
    p.add_argument("--out", required=True, type=Path, help="trajectory store to write (resumable)")
    p.add_argument("--from", dest="from_store", type=Path, metavar="DIR", help="start from frames of this store")
    p.add_argument("--x0", type=Path, metavar="FILE", help="start points (.npy or text, [W, dim] or [dim])")
    p.add_argument("--seed", type=seed_int, default=0)
    add_sampler_options(p, sampler_help="heun-churn (stochastic; the default of a trained model), consistency (the default "
                        "of a distilled model: itomd distill), dpmpp-2m, heun, euler, euler-maruyama, ancestral (the "
                        "1000-step baseline) or flow (the probability-flow sampler; the only one with --metropolis)")
    p.add_argument("--chunk-size", dest="chunk_size", type=positive_int, default=1024, help="walkers per batch")
    p.add_argument("--lambda-int", dest="lambda_int", type=positive_float,
                   help="BoPITO: per-frame decay of the dynamic part beyond the training lags (default: the model's, "
                        "as set by fit-interpolation, else λ̂)")
    p.add_argument("--tolerance", type=positive_float, default=0.5,
                   help="blow-up threshold beyond the training range, in units of its extent")
    p.add_argument("--metropolis", action="store_true",
                   help="accept or reject every jump against the system's Boltzmann distribution (Metropolis-Hastings "
                        "with the model as proposal): samples it exactly in the long run; rejections slow the kinetics")
    p.add_argument("--probes", type=positive_int, default=None,
                   help="--metropolis: Hutchinson probes per likelihood (default: exact divergence for toy systems, "
                        "4 for molecules)")
    p.add_argument("--relax-steps", dest="relax_steps", type=nonnegative_int, default=0,
                   help="molecules: after every jump, this many steps of the force field's Langevin dynamics at a "
                        "collision rate of 100/ps (Boltzmann-preserving; relaxes strained bonds and angles; e.g. 50)")
    p.add_argument("--redraws", type=nonnegative_int, default=0, metavar="K",
                   help="draw a walker's jump again, up to K times, when it blows up (non-finite or out of the "
                        "training range) instead of stopping the rollout; the count is recorded (default 0: stop)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from itomd.data.starts import sample_start_points
    from itomd.metropolis import PROPOSAL_SAMPLER, MetropolisHastings
    from itomd.rollout import acceptance_rate, redrawn_fraction, run_rollout, simulated_time

    model = model_on_device(args.run, args.device, args.precision, args.compile)
    if not model.conditional:
        raise InvalidInputError(f"{args.run} is an equilibrium model; rollouts need a transition model")
    if args.lambda_int is not None:
        model.set_interpolation(args.lambda_int)
    metropolis = None
    if args.metropolis and model.is_distilled:
        raise InvalidInputError(f"{args.run} is a distilled model, whose few-step sampler has no density to accept "
                                "or reject with; use --metropolis with the model it was distilled from")
    if args.metropolis:
        if args.sampler not in (None, PROPOSAL_SAMPLER):
            raise InvalidInputError(f"--metropolis proposes with the probability-flow sampler, whose density it "
                                    f"evaluates: leave out --sampler or give --sampler {PROPOSAL_SAMPLER}")
        metropolis = MetropolisHastings.for_model(model, n_steps=args.n_steps or model.default_n_steps,
                                                  n_probes=args.probes)
    elif args.probes is not None:
        raise InvalidInputError("--probes is an option of --metropolis")
    sampler = args.sampler or (PROPOSAL_SAMPLER if args.metropolis else model.default_sampler)
    x0 = sample_start_points(model, args.n_walkers, args.seed, from_store=args.from_store, x0_file=args.x0)
    outside = model.untrained_starts(x0)
    if outside:  # a BoPITO model samples μ wherever its prior has mass; its dynamic part learned less
        print(f"itomd sample: note: {outside} of {len(x0)} start states lie outside the training data's range; "
              "there the dynamic part is untrained and jumps relax towards the prior at once", file=sys.stderr)
    if args.lag > model.max_lag:
        how = (f"the dynamic part decays with λ_int = {model.lambda_interpolation or model.lambda_hat:.6g} per frame"
               if model.is_bopito else "the model extrapolates")
        print(f"itomd sample: note: lag {args.lag} is beyond the largest training lag {model.max_lag}; {how}",
              file=sys.stderr)
    t0 = time.perf_counter()
    store = run_rollout(model, args.out, lag=args.lag, n_jumps=args.n_jumps, x0=x0, seed=args.seed,
                        chunk_size=args.chunk_size, sampler=sampler, n_steps=args.n_steps,
                        tolerance=args.tolerance, progress=not args.quiet, model_source=str(args.run),
                        metropolis=metropolis, relax_steps=args.relax_steps, max_redraws=args.redraws)
    elapsed = time.perf_counter() - t0
    covered = simulated_time(store, args.n_jumps)
    unit = _time_unit(model)
    summary = {"out": str(args.out), "n_walkers": len(store), "n_jumps": args.n_jumps, "lag": args.lag,
               "frame_interval": float(store.metadata["frame_interval"]), "simulated_time": covered,
               "time_unit": unit, "wall_seconds": round(elapsed, 3)}
    if args.relax_steps:
        summary["relax_steps"] = args.relax_steps
    how = ""  # redraws and Metropolis-Hastings exclude each other (run_rollout refuses both)
    if args.redraws:
        summary["max_redraws"] = args.redraws
        summary["redrawn_fraction"] = redrawn_fraction(store)
        how = f"; {summary['redrawn_fraction']:.3%} of the jumps were drawn again after a blow-up"
    if metropolis is not None:
        summary["acceptance_rate"] = acceptance_rate(store)
        how = f"; Metropolis-Hastings acceptance rate {summary['acceptance_rate']:.3f}"
    emit(summary, args.json, f"wrote {len(store)} surrogate trajectories of {args.n_jumps} jumps "
                              f"(lag {args.lag} = {args.lag * model.frame_interval:g} {unit}) to {args.out}: "
                              f"{covered:.4g} {unit} in {elapsed:.1f} s{how}")
    return 0


def _time_unit(model) -> str:
    """The unit of the model's time ("ps" for molecules), "time units" where its system cannot be built."""
    try:
        return model.system.build().time_unit if model.system is not None else "time units"
    except ItomdError:
        return "time units"


def work_kept(args: argparse.Namespace) -> str:
    """What an interrupted or failed rollout keeps (complete trajectory files; chunks resume)."""
    return trajectories_kept(args.out, args.n_walkers)

