"""Cost of one evaluation of the molecular network, and where its time goes (issue 12, item 3).

One forward pass of :class:`~itomd.nn.equivariant.EquivariantTransitionNet` — the unit of every
sampler's cost (a jump costs its number of network evaluations) — is timed on alanine dipeptide
(22 atoms) at several batch sizes, with the ``ala2-ito`` recipe's network (32 channels, 3 layers)
unless ``--model`` names a trained model file. Inputs are the molecule's prepared structure plus
0.02 nm noise as ``x_t`` and a further 0.05 nm as the noisy state (the cost does not depend on the
values). For each batch:

* ``evaluations_per_s`` — structures per wall-second (``--seconds`` of repeated evaluations after a
  warm-up, under ``torch.no_grad`` as the samplers run it), as the library runs it: in pieces whose
  pair tensors hold at most ``EquivariantTransitionNet.max_pair_elements`` numbers;
* ``whole_batch_evaluations_per_s`` — the same with the whole batch in one piece (the network before
  pieces), timed alternately with the first in ``--rounds`` rounds so both see the same machine;
* ``by_operator`` — self CPU time per evaluation of the PyTorch operators (``torch.profiler``, after
  two evaluations of warm-up under the profiler), the largest first, each with the tensor shapes it
  ran on: where the time goes. ``profiled_ms`` is their total; where it exceeds
  ``ms_per_evaluation``, the profiled evaluations paid page faults that the timed loop did not;
* ``compiled_*`` — the same network through ``torch.compile`` (``EquivariantTransitionNet.compiled``),
  float32 and bfloat16 pair tensors, timed in the same rounds; ``compile_seconds`` is its first two
  calls (compiling, or loading compiled code from the compiler's disk cache), untimed in the rates;
* ``memory`` — for ``--memory-walkers`` batch sizes (default 10³, 10⁴, 10⁵ walkers), the growth of
  the peak resident memory over one evaluation in a fresh process (``VmHWM``), in pieces
  and, up to 4096 walkers, whole: memory per walker of a rollout (the CUDA figure is
  ``bench/gpu.py``'s; the tensors are the same).

    .venv/bin/python bench/network.py                       # batches 256, 1024, 4096
    .venv/bin/python bench/network.py --batches 64 --seconds 1 --rounds 1   # seconds

Writes bench/results/network.json (``--out`` elsewhere) and prints one Markdown table per batch.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from _common import command_line, peak_resident_mb, write_results

from itomd._allocator import keep_freed_memory
from itomd.models.transition import TransitionModel
from itomd.nn.equivariant import EquivariantTransitionNet, MoleculeGraph
from itomd.systems.registry import resolve_system
from itomd.training.config import TrainingConfig

ROOT = Path(__file__).resolve().parent.parent
#: ``max_pair_elements`` that keeps any batch in one piece (the network before pieces).
WHOLE_BATCH = 2**62


def _network(model_path: str | None):
    """The network to time and the prepared structure [3·n_atoms] of its molecule."""
    system = resolve_system("ala2-implicit")
    start = torch.as_tensor(system.default_start(), dtype=torch.float32)
    if model_path is not None:
        return TransitionModel.load(model_path).denoiser.inner, start
    config = TrainingConfig.from_recipe("ala2-ito")
    graph = MoleculeGraph.from_topology(system.topology())
    net = EquivariantTransitionNet(graph, hidden=config.hidden, n_layers=config.n_blocks,
                                   n_frequencies=config.n_frequencies)
    return net.eval(), start


def _inputs(start: torch.Tensor, batch: int) -> dict:
    """The network's inputs for ``batch`` structures: x_t = ``start`` + 0.02 nm noise, the noisy state
    0.05 nm further, a mid-range noise level and lag 10."""
    generator = torch.Generator().manual_seed(0)
    x_t = start + 0.02 * torch.randn(batch, start.numel(), generator=generator)
    noisy = x_t + 0.05 * torch.randn(batch, start.numel(), generator=generator)
    return dict(x_in=(noisy - x_t) / 0.05, c_noise=torch.full((batch,), -1.0), positions=noisy, cond=x_t,
                lag=torch.full((batch,), 10.0))


def _rate(net, inputs: dict, seconds: float, max_pair_elements: int, pair_dtype: torch.dtype = torch.float32,
          compiled: bool = False) -> float:
    """Structures per second of repeated evaluations (at least two, after one untimed: a compiled
    network compiles there) with pieces of that size, pair tensors of that dtype, compiled or not."""
    net.max_pair_elements = max_pair_elements
    net.pair_dtype = pair_dtype
    net.compiled = compiled
    with torch.no_grad():
        net(**inputs)
        begin, calls = time.perf_counter(), 0
        while time.perf_counter() - begin < seconds or calls < 2:
            net(**inputs)
            calls += 1
    return inputs["x_in"].shape[0] * calls / (time.perf_counter() - begin)


def _profile(net, inputs: dict, calls: int, top: int) -> tuple[float, list[dict]]:
    """Self CPU time per evaluation of the largest operators (after two evaluations of warm-up: the
    profiler's first evaluations page-fault fresh memory that the timed loop reuses)."""
    with torch.no_grad():
        schedule = torch.profiler.schedule(wait=0, warmup=2, active=calls)
        with torch.profiler.profile(record_shapes=True, schedule=schedule, acc_events=True) as profile:
            for _ in range(2 + calls):
                net(**inputs)
                profile.step()
    rows = []
    for event in profile.key_averages(group_by_input_shape=True):
        rows.append({"operator": event.key, "shapes": str(event.input_shapes),
                     "ms": event.self_cpu_time_total / 1e3 / calls, "calls": event.count // calls})
    rows.sort(key=lambda r: -r["ms"])
    total = sum(r["ms"] for r in rows)
    for row in rows:
        row["share"] = row["ms"] / total
    return total, rows[:top]


def _relative_error(net, inputs: dict, pair_dtype: torch.dtype, compiled: bool = False) -> float:
    """‖out − out_eager,float32‖ / ‖out_eager,float32‖ of one evaluation with pair tensors in ``pair_dtype``,
    compiled or not (an untrained network's zero output layer is drawn at random for this, on a copy)."""
    if not net.output.weight.any():
        net = copy.deepcopy(net)
        torch.nn.init.normal_(net.output.weight, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.compiled, net.pair_dtype = False, torch.float32
        reference = net(**inputs)
        net.compiled, net.pair_dtype = compiled, pair_dtype
        out = net(**inputs)
    net.compiled, net.pair_dtype = False, torch.float32
    return float((out - reference).norm() / reference.norm())


def measure(net, start, batch: int, seconds: float, rounds: int, profile_calls: int = 2, top: int = 12) -> dict:
    """Evaluations per second (float32 in pieces, bfloat16 pair tensors in pieces, float32 whole, and
    compiled in float32 and in bfloat16, alternately) and the operator breakdown of one batch size in
    either precision."""
    inputs = _inputs(start, batch)
    default = EquivariantTransitionNet.max_pair_elements
    pieces_rates, bfloat16_rates, whole_rates, compiled_rates, compiled_bfloat16_rates = [], [], [], [], []
    began = time.perf_counter()
    _rate(net, inputs, 0.0, default, torch.float32, compiled=True)  # compiles (or loads the compiled code)
    _rate(net, inputs, 0.0, default, torch.bfloat16, compiled=True)
    compile_seconds = time.perf_counter() - began
    for _ in range(rounds):
        pieces_rates.append(_rate(net, inputs, seconds / rounds, default))
        bfloat16_rates.append(_rate(net, inputs, seconds / rounds, default, torch.bfloat16))
        whole_rates.append(_rate(net, inputs, seconds / rounds, WHOLE_BATCH))
        compiled_rates.append(_rate(net, inputs, seconds / rounds, default, compiled=True))
        compiled_bfloat16_rates.append(_rate(net, inputs, seconds / rounds, default, torch.bfloat16, compiled=True))
    net.compiled = False
    net.max_pair_elements = default
    net.pair_dtype = torch.float32
    total, rows = _profile(net, inputs, profile_calls, top)
    net.pair_dtype = torch.bfloat16
    bfloat16_total, bfloat16_rows = _profile(net, inputs, profile_calls, top)
    net.pair_dtype = torch.float32
    rate = max(pieces_rates)
    return {"batch": batch, "ms_per_evaluation": batch / rate * 1e3, "evaluations_per_s": rate,
            "bfloat16_evaluations_per_s": max(bfloat16_rates), "bfloat16_speedup": max(bfloat16_rates) / rate,
            "bfloat16_relative_error": _relative_error(net, _inputs(start, min(batch, 64)), torch.bfloat16),
            "whole_batch_evaluations_per_s": max(whole_rates), "rates_by_round": pieces_rates,
            "compiled_evaluations_per_s": max(compiled_rates), "compiled_speedup": max(compiled_rates) / rate,
            "compiled_bfloat16_evaluations_per_s": max(compiled_bfloat16_rates),
            "compiled_bfloat16_speedup": max(compiled_bfloat16_rates) / rate,
            "compiled_relative_error": _relative_error(net, _inputs(start, min(batch, 64)), torch.float32, compiled=True),
            "compiled_bfloat16_relative_error": _relative_error(net, _inputs(start, min(batch, 64)), torch.bfloat16,
                                                                compiled=True),
            "compile_seconds": compile_seconds, "compiled_rates_by_round": compiled_rates,
            "compiled_bfloat16_rates_by_round": compiled_bfloat16_rates,
            "bfloat16_rates_by_round": bfloat16_rates, "whole_batch_rates_by_round": whole_rates,
            "max_pair_elements": default, "profiled_ms": total, "by_operator": rows,
            "bfloat16_profiled_ms": bfloat16_total, "bfloat16_by_operator": bfloat16_rows}


def _peak_memory(walkers: int, whole: bool, model: str | None, compiled: bool = False) -> dict:
    """Peak resident memory growth of one evaluation of ``walkers`` structures, in this process (compiled:
    after untimed evaluations that compile both piece shapes, so the compiler's own memory and one
    piece's working set are not in the growth)."""
    net, start = _network(model)
    if whole:
        net.max_pair_elements = WHOLE_BATCH
    net.compiled = compiled
    if compiled:  # compile both shapes (a full piece, the padded last one) before measuring
        with torch.no_grad():
            for size in {min(walkers, net.compiled_piece()), walkers % net.compiled_piece()} - {0}:
                net(**_inputs(start, size))
    inputs = _inputs(start, walkers)
    before = peak_resident_mb()
    began = time.perf_counter()
    with torch.no_grad():
        net(**inputs)
    growth = peak_resident_mb() - before
    return {"walkers": walkers, "whole_batch": whole, "compiled": compiled, "peak_growth_mb": growth,
            "kb_per_walker": growth * 1024.0 / walkers, "seconds": time.perf_counter() - began,
            "max_pair_elements": None if whole else EquivariantTransitionNet.max_pair_elements}


def _memory_in_fresh_process(walkers: int, whole: bool, model: str | None, compiled: bool = False) -> dict:
    """:func:`_peak_memory` in a child process of its own (so earlier measurements' peaks do not hide it)."""
    command = [sys.executable, __file__, "--memory-child", str(walkers)] + (["--whole"] if whole else [])
    command += ["--compiled"] if compiled else []
    command += ["--model", model] if model else []
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="256,1024,4096",
                        help="comma-separated batch sizes ('': memory only, keeping the rates recorded in --out)")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per batch size and variant")
    parser.add_argument("--rounds", type=int, default=4, help="alternations of pieces and whole batch (best of each)")
    parser.add_argument("--model", default=None, help="a trained model file (default: an untrained ala2-ito network)")
    parser.add_argument("--memory-walkers", default="1000,10000,100000",
                        help="batch sizes of the peak-memory measurement ('' for none)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "network.json"))
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compiled", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    keep_freed_memory()
    if args.memory_child is not None:
        print(json.dumps(_peak_memory(args.memory_child, args.whole, args.model, args.compiled)))
        return
    net, start = _network(args.model)
    results = []
    for batch in (int(b) for b in args.batches.split(",") if b.strip()):
        result = measure(net, start, batch, args.seconds, args.rounds)
        results.append(result)
        print(f"\nbatch {batch}: {result['ms_per_evaluation']:.1f} ms per evaluation, "
              f"{result['evaluations_per_s']:.0f} structures/s (bfloat16 pair tensors: "
              f"{result['bfloat16_evaluations_per_s']:.0f}/s = {result['bfloat16_speedup']:.2f}×, relative output "
              f"error {result['bfloat16_relative_error']:.1e}; whole batch in one piece: "
              f"{result['whole_batch_evaluations_per_s']:.0f}/s)\ncompiled: float32 "
              f"{result['compiled_evaluations_per_s']:.0f}/s = {result['compiled_speedup']:.2f}× (relative output error "
              f"{result['compiled_relative_error']:.1e}), bfloat16 pair tensors {result['compiled_bfloat16_evaluations_per_s']:.0f}/s "
              f"= {result['compiled_bfloat16_speedup']:.2f}× ({result['compiled_bfloat16_relative_error']:.1e}); "
              f"first calls {result['compile_seconds']:.1f} s", flush=True)
        for label, key in (("float32", "by_operator"), ("bfloat16", "bfloat16_by_operator")):
            print(f"profile of one evaluation in pieces, {label}:\n| operator | shapes | ms | share |\n|---|---|---:|---:|")
            for row in result[key]:
                print(f"| {row['operator']} | {row['shapes'][:60]} | {row['ms']:.1f} | {row['share']:.0%} |")
    if not results and Path(args.out).exists():  # --batches '': memory only, the recorded rates kept
        results = json.loads(Path(args.out).read_text()).get("results", [])
    memory = []
    for walkers in (int(w) for w in args.memory_walkers.split(",") if w.strip()):
        for whole, compiled in ((False, False), (True, False), (False, True)):
            if whole and walkers > 4096:
                continue
            row = _memory_in_fresh_process(walkers, whole, args.model, compiled)
            memory.append(row)
            kind = " (whole batch)" if whole else " (compiled)" if compiled else ""
            print(f"{walkers} walkers{kind}: peak +{row['peak_growth_mb']:.0f} MB, "
                  f"{row['kb_per_walker']:.1f} kB per walker, {row['seconds']:.1f} s", flush=True)
    path = write_results(args.out, {"command": command_line(), "threads": torch.get_num_threads(),
                                    "hidden": net.hidden, "layers": net.n_layers, "n_atoms": net.n_atoms,
                                    "results": results, "memory": memory})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
