"""Benchmark: MD speed of a user's molecule in vacuum, implicit solvent (OBC2, GBn2) and explicit water.

One process, one molecule (default ``peptide:A``, capped alanine: 22 atoms), every solvent measured
side by side on the platform itomd picks for it (``MolecularSystem.default_platform``: Reference for
vacuum and OBC2, CPU for GBn2 and the TIP3P box), after the molecule is prepared. Prints ns/day per
solvent and its ratio to implicit (OBC2), and writes bench/results/molecular_md.json. Run with

    .venv/bin/python bench/molecular_md.py [--sequence A] [--picoseconds 20] [--cpu-threads 1]

Cost: preparation (the explicit box: minimisation and 20 ps NPT) plus ``--picoseconds`` of MD per
solvent; a few minutes on two cores.
"""

from __future__ import annotations

import platform
import time

from _common import make_parser, parse_args, write_results

import itomd.simulate.molecular as molecular
from itomd.systems import SystemSpec

SOLVENTS = {"vacuum": dict(implicit_solvent="none"), "obc2": dict(implicit_solvent="obc2"),
            "gbn2": dict(implicit_solvent="gbn2"), "explicit (TIP3P, PME)": dict(solvent="explicit")}


def measure(sequence: str, options: dict, picoseconds: float) -> dict:
    """Prepare the molecule, then time ``picoseconds`` of one walker's MD (ns/day)."""
    t0 = time.perf_counter()
    system = SystemSpec(f"peptide:{sequence}", **options).build()
    prepared = system.prepared()
    preparation = time.perf_counter() - t0
    n_frames = max(2, int(round(picoseconds / system.frame_interval)) + 1)
    platform_name = system.default_platform
    molecular.simulate_molecule(system, system.default_start(), n_frames=2, seed=0, platform=platform_name)  # warm
    t0 = time.perf_counter()
    molecular.simulate_molecule(system, system.default_start(), n_frames=n_frames, seed=1, platform=platform_name)
    wall = time.perf_counter() - t0
    simulated_ns = (n_frames - 1) * system.frame_interval / 1000.0
    return {"platform": platform_name, "atoms_simulated": int(prepared.topology.getNumAtoms()),
            "atoms_stored": int(prepared.n_atoms), "ns_per_day": simulated_ns / wall * 86400.0,
            "wall_seconds": wall, "preparation_seconds": preparation}


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--sequence", default="A", help="one-letter codes of the capped peptide (default A)")
    parser.add_argument("--picoseconds", type=float, default=20.0, help="MD per solvent (default 20 ps)")
    parser.add_argument("--cpu-threads", dest="cpu_threads", type=int, default=1,
                        help="threads of OpenMM's CPU platform (default 1, as campaign workers)")
    args = parse_args(parser)
    molecular.CPU_THREADS = args.cpu_threads
    rows = {name: measure(args.sequence, options, args.picoseconds) for name, options in SOLVENTS.items()}
    reference = rows["obc2"]["ns_per_day"]
    print(f"peptide:{args.sequence}, {args.picoseconds:g} ps per solvent, CPU platform threads {args.cpu_threads}")
    print("| solvent | platform | atoms simulated / stored | ns/day | ÷ OBC2 | preparation s |")
    print("|---|---|---|---:|---:|---:|")
    for name, row in rows.items():
        row["ratio_to_obc2"] = row["ns_per_day"] / reference
        print(f"| {name} | {row['platform']} | {row['atoms_simulated']} / {row['atoms_stored']} | "
              f"{row['ns_per_day']:,.0f} | {row['ratio_to_obc2']:.3g} | {row['preparation_seconds']:.1f} |")
    write_results(args.out / "molecular_md.json",
                  {"sequence": args.sequence, "picoseconds": args.picoseconds, "cpu_threads": args.cpu_threads,
                   "machine": platform.processor() or platform.machine(), "solvents": rows}, provenance=True)


if __name__ == "__main__":
    main()
