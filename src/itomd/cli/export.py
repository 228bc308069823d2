"""``itomd export``: a molecule's trajectory store as DCD/XTC/HDF5/PDB files."""

from __future__ import annotations

import argparse
from pathlib import Path

from itomd.cli._common import emit


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a molecular trajectory store as DCD/XTC/HDF5/PDB files (mdtraj)")
    p.add_argument("store", type=Path, help="trajectory store of a molecule (directory)")
    p.add_argument("--format", required=True, choices=["dcd", "xtc", "h5", "pdb"])
    p.add_argument("--out", required=True, type=Path,
                   help="output directory: traj_NNNNNN.<format> per trajectory (or one file with --join) and topology.pdb")
    p.add_argument("--join", action="store_true", help="all trajectories, in index order, in one file trajectories.<format>")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from itomd.data.export import export_store

    written = export_store(args.store, args.out, fmt=args.format, join=args.join)
    payload = {"store": str(args.store), "out": str(args.out), "format": args.format,
               "files": [str(path) for path in written]}
    trajectories = [path for path in written if path.suffix == f".{args.format}"]
    others = ", ".join(path.name for path in written if path not in trajectories)
    emit(payload, args.json, f"wrote {len(trajectories)} {args.format} file(s) and {others} to {args.out}")
    return 0
