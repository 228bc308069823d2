"""Few-step sampling by consistency distillation against the exact spectrum: teacher vs student rollouts.

The teacher is the ITO model of ``bench/ito_accuracy.py`` (same MD data and run directory under
``--work``; trained there if missing). It is distilled (:mod:`itomd.training.distillation`) for
``--distill-steps`` (8,000) into ``<work>/<system>/distilled`` (cached; an unfinished run resumes). Then, per
rollout lag, W walkers start from exact equilibrium samples and jump with

* the teacher's default sampler (stochastic Heun, 49 network evaluations per jump),
* the teacher's deterministic probability-flow ODE (Heun, 49 evaluations): what distillation copies,
* the student with 1, 2 and 4 evaluations per jump,

timed side by side in this process. Reported per row: the slowest implied timescale of an MSM at lag
one jump (the discretisation fitted on the MD data) against the exact SqRA value, the stationary JS
divergence against the exact density, wall time and the speed-up over the teacher's default sampler.

    .venv/bin/python bench/distill.py --system prinz --work /tmp/prinzbench
    .venv/bin/python bench/distill.py --system muller-brown \
        --teacher /tmp/demo/run --data /tmp/demo/trajectories      # e.g. the make-demo model

Writes bench/results/distill_<system>.json. ``--quick``: a smoke run of seconds (results under the
work directory).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from _common import TrainingConfig, lag_list, make_parser, parse_args, rollout_timescale, train_or_load, write_results

from itomd.analysis.discretize import discretize
from itomd.analysis.divergence import js_divergence
from itomd.data.store import TrajectoryStore
from itomd.diffusion.samplers import network_evaluations
from itomd.models import TransitionModel
from itomd.rollout import RolloutBlowUpError
from itomd.simulate.campaign import run_campaign
from itomd.systems import SystemSpec
from itomd.systems.reference import exact_reference
from itomd.training.distillation import ConsistencyDistiller, distillation_config

#: As bench/ito_accuracy.py (the teacher is its model), with the rollout lags judged here.
DEFAULTS = {
    "prinz": dict(n_traj=1000, n_frames=1000, max_lag=100, lags=[5, 25, 100], rollout_time=1e4),
    "muller-brown": dict(n_traj=16000, n_frames=501, max_lag=100, lags=[10, 50, 100], rollout_time=5e4),
}
QUICK = dict(n_traj=32, n_frames=101, max_lag=10, lags=[5], rollout_time=1.0)
QUICK_ARGS = dict(max_steps=300, walkers=32, minutes=0.5, distill_steps=200)
QUICK_CONFIG = dict(batch_size=128, hidden=32)
#: (label, sampler, noise levels) of the rows; the student's rows use its own sampler.
SAMPLERS = [("teacher, stochastic Heun", "heun-churn", 25), ("teacher, probability-flow ODE (Heun)", "heun", 25)]
STUDENT_STEPS = (1, 2, 4)


def main() -> None:
    parser = make_parser(__doc__, system="prinz", systems=DEFAULTS, minutes=15.0, seed=0, threads=2,
                         work=Path("bench/work"), quick=True)
    parser.add_argument("--max-steps", type=int, default=200_000, help="teacher's steps (as bench/ito_accuracy.py)")
    parser.add_argument("--distill-steps", type=int, default=8000, help="distillation steps (cached run)")
    parser.add_argument("--distill-minutes", type=float, default=None, help="also stop distilling after this long")
    parser.add_argument("--walkers", type=int, default=1000)
    parser.add_argument("--lags", type=lag_list, default=None)
    parser.add_argument("--rollout-time", type=float, default=None)
    parser.add_argument("--teacher", type=Path, help="distil this run instead (with --data: its training store)")
    parser.add_argument("--data", type=Path, help="the teacher's training store (with --teacher)")
    args = parse_args(parser, quick=QUICK_ARGS)
    if (args.teacher is None) != (args.data is None):
        parser.error("--teacher and --data go together")
    d = {**DEFAULTS[args.system], **(QUICK if args.quick else {})}
    lags = args.lags or d["lags"]
    rollout_time = args.rollout_time or d["rollout_time"]

    spec = SystemSpec(args.system)
    system = spec.build()
    tau = system.frame_interval
    work = args.work / args.system
    if args.teacher is not None:
        md = TrajectoryStore(args.data).trajectories()
        teacher = TransitionModel.load(args.teacher)
        distilled = work / f"distilled_{args.teacher.resolve().name}"
    else:
        md = run_campaign(spec, work / "md", n_trajectories=d["n_traj"], n_frames=d["n_frames"], seed=args.seed,
                          chunk_size=1000, n_workers=0, progress=True).trajectories()
        config = TrainingConfig(max_lag=d["max_lag"], minutes=args.minutes, max_steps=args.max_steps, seed=args.seed,
                                **(QUICK_CONFIG if args.quick else {}))
        teacher = train_or_load(work / "run", config, md, tau, system=spec)
        distilled = work / "distilled"
    student = _distilled(teacher, md, distilled, args.distill_steps, args.distill_minutes, args.seed)
    print(f"teacher: {teacher.info.get('steps')} steps ({teacher.info.get('train_seconds')} s); student: "
          f"{student.info.get('steps')} distillation steps ({student.info.get('train_seconds')} s)", flush=True)

    reference = exact_reference(system)
    exact = float(reference.implied_timescales(1)[0])
    discretization = discretize(md, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    rows = []
    runs = [(label, teacher, sampler, n) for label, sampler, n in SAMPLERS]
    runs += [(f"student, {k} evaluation{'s' if k > 1 else ''}", student, "consistency", k) for k in STUDENT_STEPS]
    for lag in lags:
        n_jumps = max(20, int(round(rollout_time / (args.walkers * lag * tau))))
        x0 = reference.sample(args.walkers, rng)
        baseline = None
        for label, model, sampler, n_steps in runs:
            generator = torch.Generator().manual_seed(args.seed + lag)
            row = {"lag": lag, "lag_time": lag * tau, "sampler": label, "n_jumps": n_jumps, "walkers": args.walkers,
                   "network_evaluations": network_evaluations(sampler, n_steps), "its_exact": exact}
            try:
                rolled = rollout_timescale(model, x0, lag, n_jumps, tau, discretization, generator=generator,
                                           float64=True, sampler=sampler, n_steps=n_steps)
            except RolloutBlowUpError as exc:
                rows.append({**row, "blow_up": str(exc)})
                print(f"lag {lag:4d} {label}: {exc}", flush=True)
                continue
            baseline = rolled.seconds if baseline is None else baseline
            js = js_divergence(np.concatenate(rolled.trajectories), reference=reference).value
            rows.append({**row, "its_rollout": rolled.timescale, "its_resolved": rolled.resolved,
                         "its_relative_error": rolled.relative_error(exact), "js_divergence": js,
                         "rollout_seconds": rolled.seconds, "speedup_vs_teacher": baseline / rolled.seconds})
            error = rows[-1]["its_relative_error"]
            print(f"lag {lag:4d} {label:40s} ITS {rolled.timescale:.4g} (exact {exact:.4g}, "
                  f"{'unresolved' if error is None else f'{100 * error:+.1f} %'})  JS {js:.2e}  "
                  f"{rolled.seconds:.1f} s  ×{baseline / rolled.seconds:.1f}", flush=True)

    result = {"system": args.system, "exact_its": exact, "teacher": teacher.info, "student": student.info,
              "rows": rows}
    out = write_results(args.out / f"distill_{args.system}.json", result, provenance=True)
    print(f"wrote {out}")


def _distilled(teacher: TransitionModel, md: list[np.ndarray], run: Path, steps: int, minutes: float | None,
               seed: int) -> TransitionModel:
    """The cached student in ``run`` (finished when its ``finished`` marker exists), else distil (resuming)."""
    if (run / "finished").exists():
        return TransitionModel.load(run)
    config = distillation_config(teacher, minutes=minutes, max_steps=steps, seed=seed)
    resume = (run / "checkpoint.pt").exists()
    if resume:
        config = TrainingConfig.from_toml(run / "config.toml", minutes=minutes)
    student = ConsistencyDistiller(config).distill(teacher, md, run_dir=run, resume=resume).fetch_model()
    (run / "finished").write_text(str(student.info.get("steps")))
    return student


if __name__ == "__main__":
    main()
