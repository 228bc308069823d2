"""``itomd distill``: a few-step sampler (1–4 network evaluations per jump) from a trained model
(:mod:`itomd.training.distillation`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from itomd.cli._common import (InterruptRequests, checkpoint_kept, emit, positive_float, positive_int,
                               recorded_frame_interval, report_stop, seed_int)
from itomd.errors import InvalidInputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from itomd.training.distillation import DEFAULT_DISTILLATION_STEPS, DEFAULT_SAMPLING_STEPS, MAX_SAMPLING_STEPS

    p = sub.add_parser("distill", help="distil a trained model into a few-step sampler (consistency distillation)")
    p.add_argument("run", type=Path, help="run directory (or model.pt) of the trained teacher (itomd train)")
    p.add_argument("--out", required=True, type=Path, help="run directory of the distilled model (checkpoints, model.pt)")
    p.add_argument("--steps", type=positive_int, default=DEFAULT_SAMPLING_STEPS,
                   help=f"network evaluations per jump the distilled model samples with (1-{MAX_SAMPLING_STEPS}; "
                        f"default {DEFAULT_SAMPLING_STEPS}; itomd sample --n-steps overrides it)")
    p.add_argument("--minutes", type=positive_float, help="wall-clock budget of this invocation")
    p.add_argument("--max-steps", dest="max_steps", type=positive_int,
                   help=f"optimiser steps in all (default {DEFAULT_DISTILLATION_STEPS})")
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="trajectory store of pairs to distil on (default: the store the teacher was trained on)")
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, help="batch size (default: the teacher's)")
    p.add_argument("--seed", type=seed_int)
    p.add_argument("--device", help="auto (default), cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue the distillation in --out exactly where it stopped")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from itomd.data.store import TrajectoryStore
    from itomd.models import TransitionModel
    from itomd.training import TrainingConfig
    from itomd.training.distillation import ConsistencyDistiller, distillation_config

    teacher = TransitionModel.load(args.run)
    data = args.data if args.data is not None else _recorded_store(teacher, args.run)
    if args.resume and not (args.out / "checkpoint.pt").is_file():
        raise InvalidInputError(f"nothing to resume: no checkpoint in {args.out}")
    if args.resume:
        config = TrainingConfig.from_toml(args.out / "config.toml", max_steps=args.max_steps, device=args.device)
        config.minutes = args.minutes  # a recorded budget belonged to the earlier invocation
    else:
        config = distillation_config(teacher, max_steps=args.max_steps, minutes=args.minutes, seed=args.seed,
                                     device=args.device, batch_size=args.batch_size)
    store = TrajectoryStore(data)
    frame_interval = recorded_frame_interval(store.metadata, data)
    if abs(frame_interval - teacher.frame_interval) > 1e-9 * max(abs(teacher.frame_interval), 1.0):
        raise InvalidInputError(f"{data} has frame interval {frame_interval:g}, the teacher was trained on "
                                f"{teacher.frame_interval:g}: distil on data of the same frame interval")
    distiller = ConsistencyDistiller(config, sampling_steps=args.steps)
    t0 = time.perf_counter()
    with InterruptRequests() as interrupts:  # Ctrl-C / SIGTERM: checkpoint at the current step, then stop
        distiller.distill(teacher, store.trajectories(), run_dir=args.out, resume=args.resume,
                          progress=not args.quiet, stop=lambda: interrupts.requested, teacher_source=str(args.run),
                          data_source=str(data.resolve()))
    elapsed = time.perf_counter() - t0
    if distiller.stopped_by_request:
        return report_stop(args, interrupts, distiller.step, config.max_steps)
    model = distiller.fetch_model()
    summary = {"run": str(args.out), "teacher": str(args.run), "steps": distiller.step, "max_steps": config.max_steps,
               "stopped_by_budget": distiller.stopped_by_budget, "wall_seconds": round(elapsed, 2),
               "model": str(args.out / "model.pt"), "sampler": model.default_sampler,
               "network_evaluations_per_jump": model.default_n_steps, "data": str(data)}
    more = " (wall-clock budget reached; --resume continues)" if distiller.stopped_by_budget else ""
    emit(summary, args.json, f"distilled {distiller.step} of {config.max_steps} steps in {elapsed:.1f} s{more}; "
                              f"model in {args.out / 'model.pt'} samples with {model.default_n_steps} network "
                              f"evaluation(s) per jump")
    return 0


def _recorded_store(teacher, run: Path) -> Path:
    """The trajectory store ``itomd train`` recorded for the teacher; one line saying what to do otherwise."""
    source = ((teacher.info.get("data") or {}).get("source"))
    if source is None:
        raise InvalidInputError(f"{run} does not record the store it was trained on: give it with --data DIR")
    path = Path(source)
    if not path.is_dir():
        raise InvalidInputError(f"the teacher's training store {path} is gone: give a store of the same system "
                                "with --data DIR")
    return path


#: What a distillation stopped by a failed write or a second Ctrl-C keeps (``main`` asks the module).
work_kept = checkpoint_kept
