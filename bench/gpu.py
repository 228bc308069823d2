"""The GPU path in one run: OpenMM replicas vs surrogate walkers, training and distillation steps/s, memory.

One prepared script for a machine with a CUDA GPU (under 10 minutes, no downloads). Stages, in order
of importance; each one's numbers (or its one-line error) are written to the results file as soon as
it ends, so a run stopped by a time limit keeps what it measured:

1. ``md``: a short alanine-dipeptide (OBC2) MD set, simulated here (training data for the timings);
2. ``training``: the ``ala2-ito`` recipe's network (batch 64) on the device for ``--train-seconds`` → steps/s;
3. ``distillation`` of that model (:mod:`itomd.training.distillation`) for ``--distill-seconds`` → steps/s;
4. ``openmm``: MD's rate (:func:`itomd.speed.time_md`): OpenMM's CUDA platform with one replica and
   with ``--processes`` replicas at once (one per process, all on the GPU), and the CPU platforms with
   one replica per core — the best aggregate rate is the reference every ratio below uses;
5. ``surrogate``: walkers in one batch, jumps of ``--lag`` ps, for 10⁴ and 10⁵ walkers — the teacher
   with its default sampler (49 evaluations per jump) and with DPM-Solver++(2M) at 10 evaluations
   (the setting the CPU benchmarks judge for accuracy; pair tensors in float32 and bfloat16), and the
   distilled student (4 evaluations); rate, ratio to OpenMM and peak device memory per walker;
6. with ``--compile``: the same rows with the network compiled (``torch.compile``, in pieces of
   ``max_pair_elements``), then compiled training steps/s.

A stage that would start after ``--budget-seconds`` is skipped (and listed as such). The models are
trained for seconds, so their *accuracy* is not the point here (the CPU benchmarks measure it for the
same networks and samplers); rollouts run with a blow-up tolerance that never stops them, and without
the CPU benchmarks' OpenMM relaxation after each jump (that is CPU work; here the network is timed).

    python3 bench/gpu.py --compile --out $OUT              # on the GPU machine (bench/results/gpu.json by default)
    .venv/bin/python bench/gpu.py --device cpu --smoke --out /tmp/gpu   # seconds, any machine (the test suite)
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from _common import _remove, make_parser, parse_args, write_results

from itomd.diffusion.samplers import network_evaluations
from itomd.models import TransitionModel
from itomd.simulate.campaign import run_campaign
from itomd.speed import time_md, time_surrogate
from itomd.systems import SystemSpec
from itomd.training import ITOEstimator, TrainingConfig
from itomd.training.distillation import ConsistencyDistiller, distillation_config
from itomd.training.loop import select_device

#: Sizes of the full run and of ``--smoke``.
FULL = dict(n_traj=4, n_frames=101, walkers=[10_000, 100_000], train_seconds=40.0, distill_seconds=30.0,
            seconds=8.0, md_seconds=8.0, lag=50, budget_seconds=420.0, compile_seconds=60.0)
SMOKE = dict(n_traj=1, n_frames=21, walkers=[8, 16], train_seconds=2.0, distill_seconds=2.0, seconds=0.2,
             md_seconds=0.2, lag=5, budget_seconds=600.0, compile_seconds=30.0)
#: The teacher's accuracy-judged fast sampler on the CPU benchmarks (BENCHMARKS.md, alanine dipeptide).
FAST_SAMPLER = ("dpmpp-2m", 10)
#: Rollouts here time the hardware, not the (seconds-trained) model: never stop them for leaving its range.
NO_BLOW_UP = 1e12


class Run:
    """The results of one run, written after every stage; stages past the time budget are skipped."""

    def __init__(self, path: Path, budget_seconds: float, result: dict[str, Any]):
        self.path, self.budget, self.result = path, budget_seconds, result
        self.start = time.perf_counter()
        result.update(stages={}, skipped=[])
        self.write()

    def write(self) -> None:
        self.result["elapsed_seconds"] = time.perf_counter() - self.start
        write_results(self.path, self.result, provenance=True)

    def stage(self, name: str, work: Callable[[], Any]) -> Any:
        """``work()``'s value (stored under ``name``), or None where it failed or the budget is spent."""
        if time.perf_counter() - self.start > self.budget:
            self.result["skipped"].append(name)
            self.write()
            print(f"{name}: skipped (past the {self.budget:g} s budget)", flush=True)
            return None
        t0 = time.perf_counter()
        try:
            value = work()
        except Exception as exc:  # a benchmark records a failed stage and goes on with the next
            value = None
            self.result[name] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            traceback.print_exc()
        else:
            if value is not None:
                self.result[name] = value
        self.result["stages"][name] = time.perf_counter() - t0
        self.write()
        print(f"{name}: {time.perf_counter() - t0:.1f} s", flush=True)
        return value


def main() -> None:
    parser = make_parser(__doc__, seed=0, threads=torch.get_num_threads(), work=Path("bench/work/gpu"))
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cuda or cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: a few seconds on any machine")
    parser.add_argument("--processes", type=int, default=None,
                        help="OpenMM replicas at once (default: cores; 1 with --smoke)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the network compiled (torch.compile) and compiled training")
    parser.add_argument("--budget-seconds", type=float, default=None,
                        help="skip stages that would start later than this (default 420; 600 with --smoke)")
    args = parse_args(parser)
    sizes = SMOKE if args.smoke else FULL
    device = select_device(args.device)
    work = args.work / ("smoke" if args.smoke else "full")
    processes = args.processes or (1 if args.smoke else os.cpu_count() or 1)
    run = Run(args.out / ("gpu_smoke.json" if args.smoke else "gpu.json"),
              args.budget_seconds or sizes["budget_seconds"],
              {"device": _describe(device), "smoke": args.smoke, "torch": torch.__version__,
               "cores": os.cpu_count()})
    spec = SystemSpec("ala2-implicit")

    data: dict[str, Any] = {}
    if run.stage("md_data", lambda: _md_data(spec, work, sizes, args.seed, data)) is None:
        raise SystemExit("no MD data: nothing to train on (see the error above)")
    md, frame_interval = data["trajectories"], data["frame_interval"]

    openmm_result = run.stage("openmm", lambda: _openmm(spec, sizes, processes, device, args.seed, run))
    md_rate = openmm_result["rate_ps_per_second"] if openmm_result else float("nan")
    models: dict[str, TransitionModel] = {}
    run.stage("training", lambda: _train(spec, md, frame_interval, work, device, sizes, args, models, compile=False))
    if "teacher" in models:  # (where training failed, the MD numbers above are this run's results)
        run.stage("distillation", lambda: _distil(models, md, work, device, sizes, args.seed))
        run.result["lag_ps"] = min(sizes["lag"], models["teacher"].max_lag) * frame_interval
    run.result["surrogate"] = []
    settings = [("teacher", None, "float32", sizes["walkers"][:1]),
                ("teacher", FAST_SAMPLER, "float32", sizes["walkers"]),
                ("teacher", FAST_SAMPLER, "bfloat16", sizes["walkers"]),
                ("student", None, "float32", sizes["walkers"]),
                ("student", None, "bfloat16", sizes["walkers"][-1:])]
    compiled = [(label, sampler, "bfloat16", sizes["walkers"][-1:]) for label, sampler in
                (("teacher", FAST_SAMPLER), ("student", None))] if args.compile else []
    for (label, sampler, precision, walkers), compile_ in [(s, False) for s in settings] + [(s, True) for s in compiled]:
        if label not in models:
            continue
        for n in walkers:
            name = f"surrogate {label} {sampler[0] if sampler else 'default'} {precision}" \
                   f"{' compiled' if compile_ else ''} {n}"
            row = run.stage(name, lambda: _surrogate_row(label, models[label], device, sampler, precision, compile_, n,
                                                         sizes, md_rate, args.seed))
            if row is not None:
                run.result["surrogate"].append(row)
                run.result.pop(name, None)
                print(json.dumps(row), flush=True)
    if args.compile and models:
        run.stage("training_compiled",
                  lambda: _train(spec, md, frame_interval, work, device, sizes, args, {}, compile=True))
    run.result["still_to_take_on_a_gpu"] = ([] if device.type == "cuda" else
                                            ["every number above on a CUDA GPU (this run used the CPU)"])
    run.write()
    print(f"wrote {run.path}")


def _md_data(spec: SystemSpec, work: Path, sizes: dict, seed: int, data: dict) -> dict:
    """Simulate the training MD (its trajectories and frame interval into ``data``); a summary."""
    t0 = time.perf_counter()
    store = run_campaign(spec, work / "md", n_trajectories=sizes["n_traj"], n_frames=sizes["n_frames"], seed=seed,
                         chunk_size=1, n_workers=0, progress=False)
    md = store.trajectories()
    data.update(trajectories=md, frame_interval=store.metadata["frame_interval"])
    return {"n_trajectories": len(md), "frames": int(sum(len(t) for t in md)), "seconds": time.perf_counter() - t0}


def _train(spec: SystemSpec, md: list[np.ndarray], frame_interval: float, work: Path, device: torch.device,
           sizes: dict, args: Any, models: dict, compile: bool) -> dict:
    """Train the recipe's network for the stage's seconds; the steady steps/s (the model into ``models``)."""
    seconds = sizes["train_seconds"] + (sizes["compile_seconds"] if compile else 0.0)  # compiling is in the budget
    config = TrainingConfig.from_recipe("ala2-ito", device=str(device), seed=args.seed, max_steps=10**7,
                                        minutes=seconds / 60, checkpoint_every=10**6, log_every=10,
                                        compile=compile,
                                        **({"batch_size": 8, "hidden": 8, "n_blocks": 1, "max_lag": 10}
                                           if args.smoke else {}))
    run_dir = work / f"train-{device.type}{'-compiled' if compile else ''}"
    _remove(run_dir)
    estimator = ITOEstimator(config).fit(md, frame_interval, run_dir=run_dir, system=spec, progress=False)
    models["teacher"] = estimator.fetch_model()
    result = {"steps": estimator.step, "steps_per_second": _steady_rate(run_dir / "metrics.jsonl"),
              "batch_size": config.batch_size, "recipe": "ala2-ito", "compiled": compile}
    print(f"training{' (compiled)' if compile else ''}: {result['steps_per_second']:.3g} steps/s "
          f"(batch {config.batch_size})", flush=True)
    return result


def _distil(models: dict, md: list[np.ndarray], work: Path, device: torch.device, sizes: dict, seed: int) -> dict:
    teacher = models["teacher"]
    run_dir = work / f"distill-{device.type}"
    _remove(run_dir)
    config = distillation_config(teacher, max_steps=10**7, minutes=sizes["distill_seconds"] / 60, seed=seed,
                                 device=str(device))
    config.checkpoint_every, config.log_every = 10**6, 10
    distiller = ConsistencyDistiller(config).distill(teacher, md, run_dir=run_dir, progress=False)
    models["student"] = distiller.fetch_model()
    result = {"steps": distiller.step, "steps_per_second": _steady_rate(run_dir / "metrics.jsonl"),
              "batch_size": config.batch_size}
    print(f"distillation: {result['steps_per_second']:.3g} steps/s", flush=True)
    return result


def _openmm(spec: SystemSpec, sizes: dict, processes: int, device: torch.device, seed: int, run: Run) -> dict:
    """Every (platform, replicas at once) timed; the best aggregate rate and where it came from."""
    import openmm

    from itomd.simulate.molecular import available_platforms

    run.result["openmm_installation"] = {"version": openmm.__version__, "platforms": available_platforms(),
                                         "plugin_load_failures": list(openmm.Platform.getPluginLoadFailures())}
    system = spec.build()
    start = system.default_start()
    trials = [("CUDA", 1), ("CUDA", processes)] if device.type == "cuda" else []
    trials += [("CPU", processes), ("Reference", processes)]
    rates: dict[str, Any] = {}
    for platform, replicas in trials:
        key = f"{platform} x{replicas}"
        if key in rates:
            continue
        try:
            md = time_md(spec, system, start, sizes["md_seconds"], replicas, seed, platforms=(platform,))
            rates[key] = {"rate_ps_per_second": md["rate"], "ns_per_day": md["rate"] * 86400 / 1000,
                          "per_replica_ns_per_day": md["rate"] * 86400 / 1000 / replicas, "replicas": replicas,
                          "wall_seconds": md["wall_seconds"]}
        except Exception as exc:  # a platform that cannot run here is a result
            rates[key] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        print(f"OpenMM {key}: {json.dumps(rates[key])}", flush=True)
    measured = {k: v for k, v in rates.items() if "rate_ps_per_second" in v}
    if not measured:
        raise RuntimeError(f"no OpenMM platform ran: {rates}")
    best = max(measured, key=lambda k: measured[k]["rate_ps_per_second"])
    return {"trials": rates, "best": best, **measured[best]}


def _surrogate_row(label: str, model: TransitionModel, device: torch.device, sampler: tuple[str, int] | None,
                   precision: str, compile: bool, walkers: int, sizes: dict, md_rate: float, seed: int) -> dict:
    """Rate and peak memory of ``walkers`` walkers jumping together (an out-of-memory is a result)."""
    model.to(device).set_precision(precision).set_compiled(compile)
    name, n_steps = sampler or (model.default_sampler, model.default_n_steps)
    lag = min(sizes["lag"], model.max_lag)
    x0 = np.broadcast_to(model.system.build().default_start(), (walkers, model.dim))
    row = {"model": label, "walkers": walkers, "precision": precision, "compiled": model.compiled, "sampler": name,
           "n_steps": n_steps, "network_evaluations": network_evaluations(name, n_steps), "lag": lag}
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        generator = torch.Generator(device=device).manual_seed(seed)
        jumps, wall = time_surrogate(model, x0, lag, name, n_steps, sizes["seconds"], generator, NO_BLOW_UP)
    except torch.cuda.OutOfMemoryError as exc:  # (a RuntimeError subclass; CPU runs never raise it)
        return {**row, "out_of_memory": str(exc).splitlines()[0]}
    finally:
        model.set_precision("float32").set_compiled(False)
    rate = walkers * jumps * lag * model.frame_interval / wall
    row.update(rate_ps_per_second=rate, ratio_to_openmm=rate / md_rate, jumps=jumps, wall_seconds=wall,
               walker_jumps_per_second=walkers * jumps / wall,
               network_evaluations_per_second=walkers * jumps * row["network_evaluations"] / wall)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        row.update(peak_memory_bytes=peak, peak_memory_per_walker_bytes=peak / walkers)
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
