"""Sampler accuracy vs network evaluations per jump, against the 1000-step ancestral baseline.

One jump of lag N from W exact equilibrium start points, with every sampler at several step counts.
Scored per setting: (a) the slowest implied timescale of the one-jump transition matrix — a
reversible maximum-likelihood MSM (deeptime) on the counts of (x_t, x_{t+N}) pairs, on 100 states
(regular in 1-D, k-means in 2-D) — against the exact SqRA value and against the same estimator on
exact Langevin jumps from the same starts (the estimator's own bias); (b) the stationary JS divergence (nats) of the
x_{t+N} samples against the exact density (equilibrium must be preserved by one jump); (c) the JS
divergence of the joint (x_t, x_{t+N}) histogram (20 × 20) against the baseline's, next to its noise
floor (the baseline against itself with other random numbers).

    .venv/bin/python bench/samplers.py --system prinz --run bench/work/prinz/run --lag 10 --walkers 10000
    .venv/bin/python bench/samplers.py --system muller-brown --run bench/work/muller-brown/run --lag 25 --walkers 50000

Needs a trained run (bench/ito_accuracy.py makes one). Writes bench/results/samplers_<system>.json
(``--out`` elsewhere). ``--quick``: a smoke run of seconds (few walkers, a short baseline, the first step
count of each sampler) on the run of ``bench/ito_accuracy.py --quick``; needs ``--out``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from _common import OneJumpEvaluator, TransitionModel, make_parser, parse_args, write_results
from deeptime.markov import TransitionCountModel
from deeptime.markov.msm import MaximumLikelihoodMSM

from itomd.analysis.discretize import discretize
from itomd.analysis.divergence import js_divergence_of_distributions
from itomd.systems import SystemSpec
from itomd.systems.reference import exact_reference

SETTINGS = {"dpmpp-2m": [6, 12, 24, 48], "heun": [7, 13, 25], "heun-churn": [7, 13, 25], "euler": [12, 24, 48],
            "euler-maruyama": [24, 48, 100], "ancestral": [24, 48, 100]}
#: Network evaluations per jump for n noise levels.
NFE = {"heun": lambda n: 2 * n - 1, "heun-churn": lambda n: 2 * n - 1, "dpmpp-2m": lambda n: n, "euler": lambda n: n, "euler-maruyama": lambda n: n,
       "ancestral": lambda n: n}
#: --quick: argument defaults (and only the first step count of each sampler).
QUICK_ARGS = dict(walkers=500, baseline_steps=50, lag=5, run=Path("bench/work/quick/prinz/run"))


def one_jump_timescale(x0: np.ndarray, x1: np.ndarray, discretization, lag_time: float) -> float:
    """Slowest implied timescale of the reversible MLE MSM of one-jump pair counts (x0, x1: [W, dim])."""
    n = discretization.n_states
    s0, s1 = discretization.transform([x0, x1])
    counts = np.zeros((n, n))
    np.add.at(counts, (s0, s1), 1.0)
    msm = MaximumLikelihoodMSM(reversible=True).fit(TransitionCountModel(counts).submodel_largest()).fetch_model()
    return float(msm.timescales(1)[0] * lag_time)


def main() -> None:
    parser = make_parser(__doc__, system="prinz", threads=2, quick=True)
    parser.add_argument("--run", type=Path, default=Path("bench/work/prinz/run"))
    parser.add_argument("--lag", type=int, default=10)
    parser.add_argument("--walkers", type=int, default=20_000)
    parser.add_argument("--baseline-steps", type=int, default=1000)
    parser.add_argument("--samplers", type=lambda t: t.split(","), default=list(SETTINGS),
                        help="comma-separated subset of " + ",".join(SETTINGS))
    parser.add_argument("--no-repeat", action="store_true", help="skip the baseline's second seed (noise floor)")
    args = parse_args(parser, quick=QUICK_ARGS)
    settings = {k: v[:1] for k, v in SETTINGS.items()} if args.quick else SETTINGS
    system = SystemSpec(args.system).build()
    model = TransitionModel.load(args.run)
    reference = exact_reference(system)
    t2_exact = float(reference.implied_timescales(1)[0])
    lag_time = args.lag * system.frame_interval
    x0 = reference.sample(args.walkers, np.random.default_rng(0))
    evaluator = OneJumpEvaluator(reference, system.frame_interval, [args.lag])
    # 100 states: regular in 1-D, k-means on exact samples in 2-D (as the analysis does)
    states = discretize([reference.sample(20_000, np.random.default_rng(5))], seed=0)
    low, high = reference.axes[0][0], reference.axes[0][-1]
    joint_edges = [np.linspace(low, high, 21)] * 2

    def run(sampler: str, n_steps: int, seed: int = 1) -> dict:
        t0 = time.perf_counter()
        x1 = evaluator.jumps(model, x0, seed, sampler=sampler, n_steps=n_steps)[0]
        seconds = time.perf_counter() - t0
        ok = np.isfinite(x1).all(1)
        t2 = one_jump_timescale(x0[ok], x1[ok], states, lag_time)
        # joint (x_t, x_{t+N}) histogram of the first coordinate
        joint = np.histogram2d(x0[ok, 0], x1[ok, 0], bins=joint_edges)[0]
        return {"sampler": sampler, "n_steps": n_steps, "nfe": NFE[sampler](n_steps), "seconds": seconds,
                "its": t2, "its_error": t2 / t2_exact - 1, "js_stationary": evaluator.stationary_js(x1[ok]),
                "joint": joint}

    from itomd.simulate.integrators import simulate

    exact_jump = simulate(system, torch.as_tensor(x0), args.lag + 1, generator=torch.Generator().manual_seed(3))[:, -1]
    t2_langevin = one_jump_timescale(x0, exact_jump.numpy(), states, lag_time)
    print(f"exact Langevin jumps on the same states: ITS {t2_langevin:.4f} (exact {t2_exact:.4f})", flush=True)
    print(f"baseline: ancestral, {args.baseline_steps} steps, {args.walkers} walkers ...", flush=True)
    baseline = run("ancestral", args.baseline_steps)
    repeat = baseline if args.no_repeat else run("ancestral", args.baseline_steps, seed=2)
    noise_floor = js_divergence_of_distributions(repeat["joint"], baseline["joint"])
    print(f"baseline ITS {baseline['its']:.4f} / {repeat['its']:.4f} (two seeds); joint JS noise floor {noise_floor:.1e}")
    rows = []
    for sampler, steps in ((k, settings[k]) for k in args.samplers):
        for n in steps:
            row = run(sampler, n)
            row["js_joint_vs_baseline"] = js_divergence_of_distributions(row.pop("joint"), baseline["joint"])
            rows.append(row)
            print(f"{sampler:15s} {n:4d} steps {row['nfe']:4d} NFE: ITS {row['its']:.4f} ({100 * row['its_error']:+.1f} %) "
                  f"JS stat {row['js_stationary']:.1e} JS joint vs baseline {row['js_joint_vs_baseline']:.1e} "
                  f"{row['seconds']:.1f} s", flush=True)
    baseline = {k: v for k, v in baseline.items() if k != "joint"}
    repeat = {k: v for k, v in repeat.items() if k != "joint"}
    result = {"system": args.system, "lag": args.lag, "walkers": args.walkers, "its_exact": t2_exact,
              "its_langevin_one_jump": t2_langevin, "model_steps": model.info.get("steps"), "baseline": baseline, "baseline_other_seed": repeat,
              "js_joint_noise_floor": noise_floor, "rows": rows}
    out = write_results(args.out / f"samplers_{args.system}.json", result, indent=2)
    print(f"\nexact ITS {t2_exact:.4f}; exact Langevin one-jump MSM {t2_langevin:.4f}; baseline ancestral {args.baseline_steps}: ITS {baseline['its']:.4f} "
          f"({100 * baseline['its_error']:+.1f} %; other seed {100 * repeat['its_error']:+.1f} %), "
          f"JS stationary {baseline['js_stationary']:.1e}, joint-JS noise floor {noise_floor:.1e}")
    print("| sampler | steps | NFE/jump | ITS error vs exact | JS stationary | JS joint vs baseline | s/jump |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['sampler']} | {r['n_steps']} | {r['nfe']} | {100 * r['its_error']:+.1f} % | {r['js_stationary']:.1e} | "
              f"{r['js_joint_vs_baseline']:.1e} | {r['seconds']:.2f} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
