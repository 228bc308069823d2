"""Tunable interpolation from off-equilibrium data (BoPITO's third contribution) on Prinz.

Training data never cross the slowest barrier (the zero of the exact slowest eigenfunction): short
trajectories start from exact equilibrium samples, so both sides are covered, and every trajectory
that crosses is discarded — the data hold the dynamics within each side but not a single transition.
(With data from one side only, a BoPITO model started on the other side relaxes to the prior at
once — its dynamic part was never trained there — so no λ_int can repair short-lag correlations.)
ITO and BoPITO (exact prior) are trained on them. Beyond the training lags BoPITO's dynamic part
decays with λ_int; ``fit_interpolation`` chooses λ_int so that the model's correlation function of x
matches the exact one at two tuning lags. Reported on lags *not* used for tuning: |ΔC(N)|, the
stationary JS divergence of the jumps, and the slowest implied timescale of an MSM on rollouts
whose jumps lie beyond the training lags — for the tuned model, BoPITO with λ_int = λ̂, and ITO.

BoPITO's λ̂ cannot come from an MSM here (the data hold no barrier crossing, so the MSM's slowest
eigenvalue is a fast within-side process): it is set so that λ̂^N_max = 1/2, which keeps the
network's target well scaled; within the training lags any λ̂ reproduces the data, and beyond them
λ_int, not λ̂, sets the decay.

    .venv/bin/python bench/interpolation.py

Writes bench/results/interpolation_prinz.json (``--out`` elsewhere); caches under
bench/work/prinz/interpolation/ (a cached model is reused while its training configuration matches).
``--quick``: a smoke run of seconds (short lags, few walkers and steps) under bench/work/quick/.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from _common import (OneJumpEvaluator, RolloutBlowUpError, TrainingConfig, TransitionModel, command_line, make_parser,
                     parse_args, rollout_timescale, train_or_load, write_results)

from itomd.analysis.discretize import discretize
from itomd.analysis.divergence import js_divergence
from itomd.interpolation import fit_interpolation
from itomd.simulate.campaign import run_campaign
from itomd.systems import SystemSpec
from itomd.systems.reference import exact_reference

MAX_LAG = 100
TUNING_LAGS = [150, 300]
EVALUATION_LAGS = [10, 50, 100, 200, 500, 1000, 2000]
ROLLOUT_LAG = 200
ROLLOUT_JUMPS = 20
#: --quick: lags, rollout length and λ_int search tolerance for a smoke run, and argument defaults.
QUICK = dict(max_lag=10, tuning_lags=[15, 30], evaluation_lags=[5, 20, 50], rollout_lag=20, rollout_jumps=5,
             tolerance=2.0)
QUICK_ARGS = dict(n_traj=40, steps=30, walkers=100)
QUICK_CONFIG = dict(batch_size=64, hidden=32)


def main() -> None:
    parser = make_parser(__doc__, seed=0, threads=2, work=Path("bench/work"), quick=True)
    parser.add_argument("--n-traj", type=int, default=600, help="trajectories simulated (crossers are dropped)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--walkers", type=int, default=4000)
    args = parse_args(parser, quick=QUICK_ARGS)
    settings = QUICK if args.quick else dict(max_lag=MAX_LAG, tuning_lags=TUNING_LAGS, evaluation_lags=EVALUATION_LAGS,
                                             rollout_lag=ROLLOUT_LAG, rollout_jumps=ROLLOUT_JUMPS)
    max_lag, tuning_lags, evaluation_lags, rollout_lag = (settings[k] for k in ("max_lag", "tuning_lags",
                                                                                "evaluation_lags", "rollout_lag"))
    fit_options = {"tolerance": settings["tolerance"]} if "tolerance" in settings else {}
    spec = SystemSpec("prinz")
    system = spec.build()
    tau = system.frame_interval
    work = args.work / "prinz" / "interpolation"
    reference = exact_reference(system, n_eigen=12)
    exact_t2 = float(reference.implied_timescales(1)[0])
    t0 = time.perf_counter()

    x = reference.points[:, 0]
    slowest = reference.eigenvectors[:, 1] / np.sqrt(reference.cell_probabilities.ravel())
    centre = np.argmax(reference.cell_probabilities.ravel())
    crossing = np.flatnonzero(np.diff(np.sign(slowest)))
    barrier = float(x[crossing[np.argmin(np.abs(crossing - centre))]])
    store = run_campaign(spec, work / "md", n_trajectories=args.n_traj, n_frames=2 * max_lag + 1, seed=args.seed,
                         chunk_size=600, n_workers=0, progress=True)
    confined = [t for t in store.trajectories() if np.all(t[:, 0] > barrier) or np.all(t[:, 0] < barrier)]
    left = sum(bool(np.all(t[:, 0] < barrier)) for t in confined)
    print(f"barrier at x = {barrier:.3f}; {len(confined)} of {args.n_traj} equilibrium-started trajectories never "
          f"cross it ({left} left, {len(confined) - left} right): the training data")
    lambda_hat = 0.5 ** (1.0 / max_lag)

    models = {}
    for name, prior in (("ito", None), ("bopito", "exact")):
        config = TrainingConfig(max_lag=max_lag, max_steps=args.steps, seed=args.seed, prior=prior,
                                lambda_hat=lambda_hat if prior else None, **(QUICK_CONFIG if args.quick else {}))
        models[name] = train_or_load(work / f"{name}.pt", config, confined, tau, system=spec)

    x0 = reference.sample(args.walkers, seed=12_345)
    exact_tuning = reference.autocorrelation(x, np.asarray(tuning_lags) * tau)
    t_fit = time.perf_counter()
    fit = fit_interpolation(models["bopito"], tuning_lags, exact_tuning, x0=x0[:2000], seed=args.seed, progress=True,
                            **fit_options)
    fit_seconds = time.perf_counter() - t_fit
    tuned = TransitionModel.load(work / "bopito.pt").set_interpolation(fit.lambda_interpolation)
    print(f"λ_int = {fit.lambda_interpolation:.6f} (timescale {fit.timescale:.4g}; exact t₂ {exact_t2:.4g}), "
          f"tuning rms {fit.rms_error:.4f}, {fit.evaluations} candidates, {fit_seconds:.0f} s")

    evaluator = OneJumpEvaluator(reference, tau, evaluation_lags)
    discretization = discretize([reference.sample(20_000, seed=7)], n_states=100, seed=0)
    rows = {}
    for label, model in (("bopito_tuned", tuned), ("bopito_untuned", models["bopito"]), ("ito", models["ito"])):
        jumps = evaluator(model, x0, seed=1)
        js = {str(n): v for n, v in jumps.js.items()}
        row = {"c_model": jumps.c_model.tolist(), "c_abs_error": jumps.c_abs_error.tolist(), "js": js}
        try:
            rolled = rollout_timescale(model, x0[:1000], rollout_lag, settings["rollout_jumps"], tau, discretization,
                                       generator=torch.Generator().manual_seed(2))
            row["slowest_timescale"] = rolled.timescale
            row["timescale_error"] = rolled.relative_error(exact_t2)  # None: unresolved
        except RolloutBlowUpError as exc:
            row["rollout_error"] = str(exc)
        rows[label] = row
        print(f"{label:>15}: |ΔC| at lags {evaluation_lags}: {np.round(row['c_abs_error'], 3).tolist()}; "
              f"JS at {evaluation_lags[-1]}: {js[str(evaluation_lags[-1])]:.4f}; "
              f"slowest ITS {row.get('slowest_timescale', float('nan')):.4g} (exact {exact_t2:.4g})")
    out = {"system": "prinz", "barrier": barrier, "n_training_trajectories": len(confined), "n_left": left,
           "n_frames": 2 * max_lag + 1, "max_lag": max_lag, "lambda_hat": lambda_hat, "steps": args.steps,
           "tuning_lags": tuning_lags, "tuning_target": exact_tuning.tolist(), "fit": fit.to_dict(),
           "fit_seconds": round(fit_seconds, 1), "evaluation_lags": evaluation_lags,
           "exact_c": evaluator.exact_c.tolist(),
           "exact_slowest_timescale": exact_t2, "rollout_lag": rollout_lag, "models": rows,
           "js_noise_floor": js_divergence(reference.sample(args.walkers, seed=99), reference=reference).value,
           "wall_seconds": round(time.perf_counter() - t0, 1), "command": command_line()}
    print(f"wrote {write_results(args.out / 'interpolation_prinz.json', out, indent=1)}")


if __name__ == "__main__":
    main()
