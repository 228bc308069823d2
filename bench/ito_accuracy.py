"""ITO end to end against the exact spectrum: MD data → train (wall-clock budget) → rollouts → ITS, JS.

For each rollout lag N (in frames of the MD data) W walkers start from exact equilibrium samples and
jump N·τ at a time for enough jumps to cover ``--rollout-time`` time units in all. Reported per lag:
the slowest implied timescale of an MSM estimated on the rollout (lag = one jump, the discretisation
fitted on the MD data) against the exact SqRA value and against an MSM of the MD data at the same lag
time (the discretisation's own bias), and the stationary JS divergence (nats) of all rollout frames
against the exact density. Also the surrogate's throughput against the itomd Langevin integrator,
side by side in this process (simulated time per wall-second, ratio).

    .venv/bin/python bench/ito_accuracy.py --system prinz --minutes 15
    .venv/bin/python bench/ito_accuracy.py --system muller-brown --minutes 15

Writes bench/results/ito_accuracy_<system>.json (``--out`` elsewhere); caches MD data and the trained
run under bench/work/<system>/ (the run is reused while its training configuration matches — budget
and step limits aside; delete it, or pass --retrain, to train again). ``--quick``: a smoke run of a
few seconds under bench/work/quick/ (results there too).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from _common import (DEFAULT_N_STEPS, TrainingConfig, lag_list, make_parser, parse_args, rollout_timescale,
                     train_or_load, write_results)

from itomd.analysis.discretize import discretize
from itomd.analysis.divergence import js_divergence
from itomd.analysis.msm import implied_timescales
from itomd.simulate.campaign import run_campaign
from itomd.simulate.integrators import simulate
from itomd.systems import SystemSpec
from itomd.systems.reference import exact_reference

#: MD data and training ranges per system (frames of τ): Prinz τ = 5e-3, t₂ = 0.834 = 167 τ;
#: Müller–Brown (kT 10) τ = 0.01, t₂ = 5.0 = 500 τ.
DEFAULTS = {
    "prinz": dict(n_traj=1000, n_frames=1000, max_lag=100, lags=[5, 10, 25, 50, 100], rollout_time=2e4),
    "muller-brown": dict(n_traj=16000, n_frames=501, max_lag=100, lags=[10, 25, 50, 100], rollout_time=1e5),
}
#: --quick: sizes for a smoke run of seconds (any system), and argument defaults.
QUICK = dict(n_traj=32, n_frames=101, max_lag=10, lags=[5], rollout_time=1.0)
QUICK_ARGS = dict(max_steps=300, walkers=32, minutes=1.0)
QUICK_CONFIG = dict(batch_size=128, hidden=32)


def main() -> None:
    parser = make_parser(__doc__, system="prinz", systems=DEFAULTS, minutes=15.0, seed=0, threads=2,
                         work=Path("bench/work"), quick=True)
    parser.add_argument("--max-steps", type=int, default=200_000)
    parser.add_argument("--walkers", type=int, default=2000)
    parser.add_argument("--n-steps", type=int, default=None, help="sampler noise levels per jump (default: model's)")
    parser.add_argument("--sampler", default="heun-churn")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--lags", type=lag_list, default=None)
    parser.add_argument("--rollout-time", type=float, default=None)
    args = parse_args(parser, quick=QUICK_ARGS)
    d = {**DEFAULTS[args.system], **(QUICK if args.quick else {})}
    lags = args.lags or d["lags"]
    rollout_time = args.rollout_time or d["rollout_time"]
    n_steps = args.n_steps or DEFAULT_N_STEPS

    spec = SystemSpec(args.system)
    system = spec.build()
    tau = system.frame_interval
    work = args.work / args.system
    t0 = time.perf_counter()
    store = run_campaign(spec, work / "md", n_trajectories=d["n_traj"], n_frames=d["n_frames"], seed=args.seed,
                         chunk_size=1000, n_workers=0, progress=True)
    md = store.trajectories()
    t_md = time.perf_counter() - t0
    print(f"MD data: {len(md)} × {d['n_frames']} frames ({len(md) * (d['n_frames'] - 1) * tau:.4g} time units), "
          f"{t_md:.0f} s (cached after the first run)")

    config = TrainingConfig(max_lag=d["max_lag"], minutes=args.minutes, max_steps=args.max_steps, seed=args.seed,
                            **(QUICK_CONFIG if args.quick else {}))
    model = train_or_load(work / "run", config, md, tau, system=spec, retrain=args.retrain)
    train_seconds = model.info.get("train_seconds")
    print(f"model: {model.info.get('steps')} steps in {train_seconds} s")

    reference = exact_reference(system)
    t2_exact = float(reference.implied_timescales(1)[0])
    discretization = discretize(md, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    rows = []
    for lag in lags:
        n_jumps = max(20, int(round(rollout_time / (args.walkers * lag * tau))))
        x0 = reference.sample(args.walkers, rng)
        generator = torch.Generator().manual_seed(args.seed + lag)
        rolled = rollout_timescale(model, x0, lag, n_jumps, tau, discretization, generator=generator, float64=True,
                                   sampler=args.sampler, n_steps=n_steps, progress=True)
        wall, trajs, t2 = rolled.seconds, rolled.trajectories, rolled.timescale
        its_md = implied_timescales(md, tau, [lag], n_timescales=1, discretization=discretization, n_samples=0)
        t2_md = float(its_md.timescales[0, 0])
        js = js_divergence(np.concatenate(trajs), reference=reference).value
        rows.append({"lag": lag, "lag_time": lag * tau, "n_jumps": n_jumps, "walkers": args.walkers,
                     "its_rollout": t2, "its_md_msm": t2_md, "its_exact": t2_exact,
                     "its_resolved": rolled.resolved, "its_relative_error": rolled.relative_error(t2_exact),
                     "js_divergence": js,
                     "rollout_seconds": wall, "simulated_time_per_second": args.walkers * n_jumps * lag * tau / wall})
        print(f"lag {lag:4d}: ITS rollout {t2:.4g}  MD-MSM {t2_md:.4g}  exact {t2_exact:.4g}  "
              f"({_percent(rows[-1]['its_relative_error'])})  JS {js:.2e}  {wall:.0f} s", flush=True)

    # Langevin integrator throughput on the same walkers, same process
    x0 = torch.as_tensor(reference.sample(args.walkers, rng))
    n_md_frames = 200
    t0 = time.perf_counter()
    simulate(system, x0, n_md_frames, generator=torch.Generator().manual_seed(1))
    md_rate = args.walkers * (n_md_frames - 1) * tau / (time.perf_counter() - t0)
    for row in rows:
        row["speedup_vs_langevin"] = row["simulated_time_per_second"] / md_rate

    result = {"system": args.system, "exact_its": t2_exact, "training": model.info, "sampler": args.sampler,
              "n_steps": n_steps, "langevin_simulated_time_per_second": md_rate, "rows": rows,
              "targets": {"its_within_10_percent": all(abs(r["its_relative_error"]) < 0.1 for r in rows
                                                     if r["its_relative_error"] is not None),
                          "js_below_0.02": all(r["js_divergence"] < 0.02 for r in rows)}}
    out = write_results(args.out / f"ito_accuracy_{args.system}.json", result, indent=2)
    print("\n| lag (τ) | ITS rollout | ITS MD-MSM | exact | error | JS (nats) | speed-up vs Langevin |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['lag']} | {r['its_rollout']:.4g} | {r['its_md_msm']:.4g} | {t2_exact:.4g} | "
              f"{_percent(r['its_relative_error'])} | {r['js_divergence']:.2e} | {r['speedup_vs_langevin']:.1f}× |")
    print(f"wrote {out}")


def _percent(relative_error: float | None) -> str:
    """A relative error as a signed percentage; "unresolved" where the rollout MSM does not resolve it."""
    return "unresolved" if relative_error is None else f"{100 * relative_error:+.1f} %"


if __name__ == "__main__":
    main()
