"""``itomd reference``: exact implied timescales and stationary density (SqRA)."""

from __future__ import annotations

import argparse

from itomd.cli._common import add_system_options, emit, positive_float, positive_int, system_spec


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reference", help="exact implied timescales and stationary density (SqRA, dim ≤ 3)")
    add_system_options(p)
    p.add_argument("--grid", type=positive_int, help="cells per axis (default 1200 in 1-D, 240 in 2-D)")
    p.add_argument("--n-timescales", dest="n_timescales", type=positive_int, default=4)
    p.add_argument("--lag-time", dest="lag_time", type=positive_float, help="lag for transfer eigenvalues (default: frame interval)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from itomd.systems.reference import exact_reference

    spec, system = system_spec(args)
    reference = exact_reference(system, n_grid=args.grid, n_eigen=max(args.n_timescales + 1, 2))
    out = {"system": system.metadata(), **reference.to_dict(args.n_timescales)}
    lag_time = args.lag_time if args.lag_time is not None else system.frame_interval
    out["transfer_eigenvalues"] = {"lag_time": lag_time,
                                   "values": reference.transfer_eigenvalues(lag_time)[: args.n_timescales + 1].tolist()}
    its = ", ".join(f"{t:.4g}" for t in out["implied_timescales"])
    emit(out, args.json, f"{system.name} (kT={system.kT:g}, friction={system.friction:g}): exact implied timescales {its}")
    return 0
