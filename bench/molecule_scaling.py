"""Cost of one training step of the equivariant ITO model against the molecule's atom count (issue 15).

For capped alanine peptides built with :func:`itomd.systems.molecules.build_peptide` (ACE-A_k-NME:
22, 32, 52, 92 atoms by default) one ITO training step — a batch of multi-lag pairs drawn as in
training, the denoiser's loss, backward, gradient clipping, AdamW, EMA: the library's
:func:`~itomd.training.loop.train_step` — is timed on one CPU thread, and its memory measured:

* ``cpu_s`` / ``wall_s`` — process CPU time and wall time per step (median of ``--steps`` steps after
  one warm-up step; CPU time is the number to read on a shared machine, wall time includes waiting
  for the cores); ``system_s`` — the kernel's part of the CPU time (page faults of the large pair
  tensors that the allocator maps afresh every step);
* ``activations_mb`` — bytes of the tensors autograd saves for backward in one step (exact, counted
  with ``torch.autograd.graph.saved_tensors_hooks``): the part of the memory that grows as n²;
* ``rss_growth_mb`` — growth of the process's peak resident memory (``VmHWM``, ``_common.peak_resident_mb``)
  over the warm-up and timed steps, above what the process held after building the model (each molecule is measured
  in a fresh process, so peaks do not hide each other).

The data are the prepared structure plus 0.02 nm of Gaussian noise per frame (the cost of a step
does not depend on what the frames look like). Network size and batch: ``--hidden``, ``--layers``,
``--batch`` (default the ``ala2-ito`` recipe's 32, 3, 64); ``--variants`` also measures other
(hidden, layers, batch) on one molecule (``--variant-sequence``, default ACE-AAAA-NME, 52 atoms).

    OMP_NUM_THREADS=1 .venv/bin/python bench/molecule_scaling.py
    OMP_NUM_THREADS=1 .venv/bin/python bench/molecule_scaling.py --sequences A,AA --steps 2   # seconds

``--malloc-tuned`` runs the children with glibc's mmap off and no trimming: pair tensors beyond
glibc's 32 MB mmap limit are otherwise mapped afresh and page-faulted in every step (the kernel time
of the table), which at 92 atoms is most of the step.

Writes bench/results/molecule_scaling.json (``--out`` elsewhere) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import peak_resident_mb, write_results

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SEQUENCES = "A,AA,AAAA,AAAAAAAA"


def measure(sequence: str, hidden: int, layers: int, batch: int, steps: int, max_lag: int) -> dict:
    """One molecule, in this process: build, warm up, time ``steps`` training steps."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from itomd.data.pairs import LogUniformLag, PairSampler
    from itomd.models import fit_denoiser_spec
    from itomd.nn.equivariant import MoleculeGraph
    from itomd.representation import MolecularRepresentation, NetworkSize
    from itomd.systems.molecules import build_peptide
    from itomd.training import TrainingConfig
    from itomd.training.loop import BatchSource, Distributed, TrainingState, train_step

    topology, positions = build_peptide(sequence, termini="capped")
    graph = MoleculeGraph.from_topology(topology)
    n = graph.n_atoms
    rng = np.random.default_rng(0)
    frames = positions.reshape(1, 3 * n) + 0.02 * rng.standard_normal((4, 400, 3 * n))
    representation = MolecularRepresentation(graph, superpose_targets=True)
    trajectories = representation.prepare_trajectories(list(frames))
    pairs = PairSampler(trajectories, LogUniformLag(max_lag))
    spec = fit_denoiser_spec(trajectories, representation, NetworkSize(hidden, layers, 16), max_lag=max_lag,
                             pairs=pairs)
    config = TrainingConfig(max_lag=max_lag, batch_size=batch, hidden=hidden, n_blocks=layers, warmup_steps=10,
                            max_steps=1000, device="cpu", seed=0)
    torch.manual_seed(0)
    state = TrainingState.fresh(spec.build(), config, torch.device("cpu"))
    batches = BatchSource(torch.as_tensor(np.concatenate(trajectories), dtype=torch.float32), pairs, representation)
    dist = Distributed()
    parameters = sum(p.numel() for p in state.denoiser.parameters())

    base = peak_resident_mb()
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        train_step(state, batches, config, torch.device("cpu"), dist)  # warm-up (and optimizer state)
    activations = saved[0]
    cpu, system, wall = [], [], []
    for _ in range(steps):
        c0, s0, w0 = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_stime, time.perf_counter()
        train_step(state, batches, config, torch.device("cpu"), dist)
        cpu.append(time.process_time() - c0)
        system.append(resource.getrusage(resource.RUSAGE_SELF).ru_stime - s0)
        wall.append(time.perf_counter() - w0)
    return {"sequence": sequence, "n_atoms": n, "n_types": len(graph.type_names),
            "n_elements": len(graph.element_names), "parameters": parameters, "batch": batch, "hidden": hidden,
            "layers": layers, "cpu_s": statistics.median(cpu), "system_s": statistics.median(system),
            "wall_s": statistics.median(wall),
            "activations_mb": activations / 2**20, "rss_growth_mb": peak_resident_mb() - base, "steps": steps}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", default=DEFAULT_SEQUENCES, help="comma-separated one-letter sequences (capped)")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per molecule (after one warm-up)")
    parser.add_argument("--max-lag", type=int, default=100)
    parser.add_argument("--variants", default="32:3:32,64:3:32,32:4:32,32:3:16",
                        help="hidden:layers:batch settings also measured on --variant-sequence ('' for none)")
    parser.add_argument("--variant-sequence", default="AAAA")
    parser.add_argument("--malloc-tuned", action="store_true",
                        help="run the measurements with glibc's mmap off and no trimming (MALLOC_MMAP_MAX_=0, "
                             "MALLOC_TRIM_THRESHOLD_ huge): freed pair tensors are reused instead of mapped afresh")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "molecule_scaling.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one sequence, print JSON
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.hidden, args.layers, args.batch, args.steps, args.max_lag)))
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if args.malloc_tuned:
        env.update(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(2**40))

    def run(sequence: str, hidden: int, layers: int, batch: int) -> dict:
        command = [sys.executable, __file__, "--one", sequence, "--hidden", str(hidden), "--layers", str(layers),
                   "--batch", str(batch), "--steps", str(args.steps), "--max-lag", str(args.max_lag)]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        row = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"{sequence} hidden {hidden} layers {layers} batch {batch}: {row['n_atoms']} atoms, "
              f"{row['cpu_s']:.3f} s CPU/step", file=sys.stderr)
        return row

    rows = [run(sequence, args.hidden, args.layers, args.batch) for sequence in args.sequences.split(",")]
    first = rows[0]
    print(f"hidden {args.hidden}, {args.layers} layers, batch {args.batch}, one thread"
          f"{', glibc mmap off' if args.malloc_tuned else ''}\n")
    print("| molecule | atoms | types | CPU s/step (of it kernel) | wall s/step | CPU time / first's | (n/n₀)² "
          "| activations MB | peak RSS growth MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        ratio = (row["n_atoms"] / first["n_atoms"]) ** 2
        print(f"| ACE-{row['sequence']}-NME | {row['n_atoms']} | {row['n_types']} | "
              f"{row['cpu_s']:.3f} ({row['system_s']:.2f}) | "
              f"{row['wall_s']:.3f} | {row['cpu_s'] / first['cpu_s']:.1f} | {ratio:.1f} | "
              f"{row['activations_mb']:.0f} | {row['rss_growth_mb']:.0f} |")
    variants = []
    for text in filter(None, args.variants.split(",")):
        hidden, layers, batch = (int(v) for v in text.split(":"))
        variants.append(run(args.variant_sequence, hidden, layers, batch))
    if variants:
        print(f"\nACE-{args.variant_sequence}-NME, other sizes\n")
        print("| hidden | layers | batch | CPU s/step | activations MB | peak RSS growth MB |")
        print("|---|---|---|---|---|---|")
        for row in variants:
            print(f"| {row['hidden']} | {row['layers']} | {row['batch']} | {row['cpu_s']:.3f} | "
                  f"{row['activations_mb']:.0f} | {row['rss_growth_mb']:.0f} |")
    write_results(args.out, {"command": " ".join([Path(sys.executable).name, *sys.argv]), "rows": rows,
                             "variants": variants, "torch_threads": 1, "malloc_tuned": args.malloc_tuned}, indent=1)


if __name__ == "__main__":
    main()
