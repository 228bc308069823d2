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

Writes bench/results/ito_accuracy_<system>.json; caches MD data and the trained run under
bench/work/<system>/ (delete it, or pass --retrain, to train again).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from itomd.analysis.discretize import discretize
from itomd.analysis.divergence import js_divergence
from itomd.analysis.msm import implied_timescales
from itomd.estimator import ITOEstimator, TrainingConfig
from itomd.model import TransitionModel
from itomd.rollout import rollout
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", default="prinz", choices=sorted(DEFAULTS))
    parser.add_argument("--minutes", type=float, default=15.0, help="training wall-clock budget")
    parser.add_argument("--max-steps", type=int, default=200_000)
    parser.add_argument("--walkers", type=int, default=2000)
    parser.add_argument("--n-steps", type=int, default=None, help="sampler noise levels per jump (default: model's)")
    parser.add_argument("--sampler", default="heun-churn")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("bench/work"))
    parser.add_argument("--lags", type=lambda s: [int(v) for v in s.split(",")], default=None)
    parser.add_argument("--rollout-time", type=float, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    d = DEFAULTS[args.system]
    lags = args.lags or d["lags"]
    rollout_time = args.rollout_time or d["rollout_time"]
    from itomd.model import DEFAULT_N_STEPS
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

    run = work / "run"
    if args.retrain or not (run / "model.pt").exists():
        if args.retrain and run.exists():
            import shutil
            shutil.rmtree(run)
        config = TrainingConfig(max_lag=d["max_lag"], minutes=args.minutes, max_steps=args.max_steps, seed=args.seed)
        estimator = ITOEstimator(config).fit(md, tau, run_dir=run, system=spec.to_dict())
        model = estimator.fetch_model()
    else:
        model = TransitionModel.load(run)
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
        t0 = time.perf_counter()
        traj = rollout(model, x0, lag, n_jumps, generator=generator, sampler=args.sampler, n_steps=n_steps, progress=True)
        wall = time.perf_counter() - t0
        trajs = [t.astype(np.float64) for t in traj]
        its = implied_timescales(trajs, lag * tau, [1], n_timescales=1, discretization=discretization, n_samples=0)
        its_md = implied_timescales(md, tau, [lag], n_timescales=1, discretization=discretization, n_samples=0)
        t2, t2_md = float(its.timescales[0, 0]), float(its_md.timescales[0, 0])
        js = js_divergence(np.concatenate(trajs), reference=reference).value
        rows.append({"lag": lag, "lag_time": lag * tau, "n_jumps": n_jumps, "walkers": args.walkers,
                     "its_rollout": t2, "its_md_msm": t2_md, "its_exact": t2_exact,
                     "its_relative_error": t2 / t2_exact - 1, "js_divergence": js,
                     "rollout_seconds": wall, "simulated_time_per_second": args.walkers * n_jumps * lag * tau / wall})
        print(f"lag {lag:4d}: ITS rollout {t2:.4g}  MD-MSM {t2_md:.4g}  exact {t2_exact:.4g}  "
              f"({100 * (t2 / t2_exact - 1):+.1f} %)  JS {js:.2e}  {wall:.0f} s", flush=True)

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
              "targets": {"its_within_10_percent": all(abs(r["its_relative_error"]) < 0.1 for r in rows),
                          "js_below_0.02": all(r["js_divergence"] < 0.02 for r in rows)}}
    out = Path("bench/results") / f"ito_accuracy_{args.system}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"\n| lag (τ) | ITS rollout | ITS MD-MSM | exact | error | JS (nats) | speed-up vs Langevin |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['lag']} | {r['its_rollout']:.4g} | {r['its_md_msm']:.4g} | {t2_exact:.4g} | "
              f"{100 * r['its_relative_error']:+.1f} % | {r['js_divergence']:.2e} | {r['speedup_vs_langevin']:.1f}× |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
