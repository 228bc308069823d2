"""``itomd demo``: Müller–Brown end to end."""

from __future__ import annotations

import argparse
from pathlib import Path

from itomd.cli._common import nonnegative_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="Müller–Brown end to end: simulate, reference, analyze, report")
    p.add_argument("--out", type=Path, default=Path("demo-output"))
    p.add_argument("--quick", action="store_true", help="a smaller run (for tests)")
    p.add_argument("--workers", type=nonnegative_int, help="LocalCluster workers (0: in-process)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from itomd.demo import run_demo

    path = run_demo(Path(args.out), quick=args.quick, n_workers=args.workers)
    print(f"demo finished: open {path}")
    return 0
