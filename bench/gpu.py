"""The GPU path in one run: OpenMM replicas vs surrogate walkers, training and distillation steps/s, memory.

One prepared script for a machine with a CUDA GPU (under 10 minutes, no downloads):

1. a short alanine-dipeptide (OBC2) MD set, simulated here (training data for the timings);
2. training: the ``ala2-ito`` recipe's network on the device for ``--train-seconds`` → steps/s;
3. distillation of that model (:mod:`itomd.training.distillation`) for ``--distill-seconds`` → steps/s;
4. ``itomd speed``'s comparison (:func:`itomd.speed.measure_speed`): OpenMM on every platform present
   (CUDA among them), one replica per process with ``--processes`` processes at once, its best aggregate
   rate, against the surrogate — the teacher's default sampler (49 evaluations per jump; its network's
   pair tensors in float32 and in bfloat16; with ``--compile`` also compiled) and the distilled student
   (its default, 4) — with 10⁴ and 10⁵ walkers in one batch, jumps of ``--lag`` ps;
5. peak device memory per walker during a jump (CUDA only).

The models are trained for seconds, so their *accuracy* is not the point here (the CPU benchmarks
measure it for the same networks); rollouts run with a blow-up tolerance that never stops them.

    .venv/bin/python bench/gpu.py                          # on the GPU machine: writes bench/results/gpu.json
    .venv/bin/python bench/gpu.py --device cpu --smoke --out /tmp/gpu   # seconds, any machine (the test suite)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from _common import _remove, make_parser, parse_args, write_results

from itomd.diffusion.samplers import network_evaluations
from itomd.models import TransitionModel
from itomd.simulate.campaign import run_campaign
from itomd.speed import measure_speed, time_surrogate
from itomd.systems import SystemSpec
from itomd.training import ITOEstimator, TrainingConfig
from itomd.training.distillation import ConsistencyDistiller, distillation_config
from itomd.training.loop import select_device

#: Sizes of the full run and of ``--smoke``.
FULL = dict(n_traj=4, n_frames=201, walkers=[10_000, 100_000], train_seconds=90.0, distill_seconds=60.0,
            seconds=15.0, lag=50)
SMOKE = dict(n_traj=1, n_frames=21, walkers=[8, 16], train_seconds=2.0, distill_seconds=2.0, seconds=0.2, lag=5)
#: Rollouts here time the hardware, not the (seconds-trained) model: never stop them for leaving its range.
NO_BLOW_UP = 1e12


def main() -> None:
    parser = make_parser(__doc__, seed=0, threads=torch.get_num_threads(), work=Path("bench/work/gpu"))
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cuda or cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a few seconds on any machine")
    parser.add_argument("--processes", type=int, default=None, help="OpenMM replicas at once (default: cores)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the teacher with its network compiled (torch.compile; bfloat16 pair tensors)")
    args = parse_args(parser)
    sizes = SMOKE if args.smoke else FULL
    device = select_device(args.device)
    work = args.work / ("smoke" if args.smoke else "full")
    result: dict = {"device": _describe(device), "smoke": args.smoke, "torch": torch.__version__}

    spec = SystemSpec("ala2-implicit")
    t0 = time.perf_counter()
    store = run_campaign(spec, work / "md", n_trajectories=sizes["n_traj"], n_frames=sizes["n_frames"],
                         seed=args.seed, chunk_size=1, n_workers=0, progress=False)
    md = store.trajectories()
    result["md_data"] = {"trajectories": len(md), "frames": int(sum(len(t) for t in md)),
                         "seconds": time.perf_counter() - t0}
    frame_interval = store.metadata["frame_interval"]

    config = TrainingConfig.from_recipe("ala2-ito", device=str(device), seed=args.seed, max_steps=10**7,
                                        minutes=sizes["train_seconds"] / 60, checkpoint_every=10**6, log_every=10,
                                        **({"batch_size": 8, "hidden": 8, "n_blocks": 1, "max_lag": 10}
                                           if args.smoke else {}))
    run = work / f"train-{device.type}"
    _remove(run)
    estimator = ITOEstimator(config).fit(md, frame_interval, run_dir=run, system=spec, progress=False)
    teacher = estimator.fetch_model()
    result["training"] = {"steps": estimator.step, "steps_per_second": _steady_rate(run / "metrics.jsonl"),
                          "batch_size": config.batch_size, "recipe": "ala2-ito"}
    print(f"training: {result['training']['steps_per_second']:.3g} steps/s (batch {config.batch_size})", flush=True)

    student_run = work / f"distill-{device.type}"
    _remove(student_run)
    distill_config = distillation_config(teacher, max_steps=10**7, minutes=sizes["distill_seconds"] / 60,
                                         seed=args.seed, device=str(device))
    distill_config.checkpoint_every, distill_config.log_every = 10**6, 10
    distiller = ConsistencyDistiller(distill_config).distill(teacher, md, run_dir=student_run, progress=False)
    student = distiller.fetch_model()
    result["distillation"] = {"steps": distiller.step, "steps_per_second": _steady_rate(student_run / "metrics.jsonl")}
    print(f"distillation: {result['distillation']['steps_per_second']:.3g} steps/s", flush=True)

    teacher.to(device)
    student.to(device)
    lag = min(sizes["lag"], teacher.max_lag)
    start = spec.build().default_start()
    processes = args.processes or (1 if args.smoke else None)
    speed = measure_speed(teacher, lag=lag, n_walkers=min(sizes["walkers"]), seconds=sizes["seconds"],
                          processes=processes, seed=args.seed, tolerance=NO_BLOW_UP, progress=True)
    result["openmm"] = {"rate_ps_per_second": speed.md_rate, "ns_per_day": speed.md_rate * 86400 / 1000,
                        **speed.md}
    rows = []
    settings = [("teacher", teacher, "float32", False), ("teacher", teacher, "bfloat16", False),
                ("student", student, "float32", False)]
    if args.compile:  # on a GPU in pieces of max_pair_elements (EquivariantTransitionNet.compiled_piece)
        settings.append(("teacher", teacher, "bfloat16", True))
    for label, model, precision, compiled in settings:
        model.set_precision(precision).set_compiled(compiled)
        for walkers in sizes["walkers"]:
            rows.append(_surrogate_row(label, model, device, np.broadcast_to(start, (walkers, len(start))), lag,
                                       sizes["seconds"], speed.md_rate, args.seed))
            print(json.dumps(rows[-1]), flush=True)
        model.set_precision("float32").set_compiled(False)
    result["surrogate"] = rows
    result["lag_ps"] = lag * frame_interval
    to_take = [] if device.type == "cuda" else ["every number above on a CUDA GPU (this run used the CPU)"]
    result["still_to_take_on_a_gpu"] = to_take
    out = write_results(args.out / ("gpu_smoke.json" if args.smoke else "gpu.json"), result, provenance=True)
    print(f"wrote {out}")


def _surrogate_row(label: str, model: TransitionModel, device: torch.device, x0: np.ndarray, lag: int,
                   seconds: float, md_rate: float, seed: int) -> dict:
    """Rate and peak memory of ``len(x0)`` walkers jumping together (an out-of-memory is a result)."""
    row = {"model": label, "walkers": len(x0), "precision": model.precision, "compiled": model.compiled,
           "sampler": model.default_sampler,
           "network_evaluations": network_evaluations(model.default_sampler, model.default_n_steps)}
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        generator = torch.Generator(device=device).manual_seed(seed)
        jumps, wall = time_surrogate(model, x0, lag, model.default_sampler, model.default_n_steps, seconds, generator,
                                     NO_BLOW_UP)
    except torch.cuda.OutOfMemoryError as exc:  # (a RuntimeError subclass; CPU runs never raise it)
        return {**row, "out_of_memory": str(exc).splitlines()[0]}
    rate = len(x0) * jumps * lag * model.frame_interval / wall
    row.update(rate_ps_per_second=rate, ratio_to_openmm=rate / md_rate, jumps=jumps, wall_seconds=wall)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        row.update(peak_memory_bytes=peak, peak_memory_per_walker_bytes=peak / len(x0))
    return row


def _steady_rate(metrics: Path) -> float:
    """Median steps/s of a run's metric rows after the first (which holds the warm-up)."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rates = [r["steps_per_second"] for r in rows[1:]] or [r["steps_per_second"] for r in rows]
    return float(np.median(rates))


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    return f"cpu ({torch.get_num_threads()} threads, {os.cpu_count()} cores)"


if __name__ == "__main__":
    main()
