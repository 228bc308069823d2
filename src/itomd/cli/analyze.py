"""``itomd analyze`` and ``itomd report``: MSM analysis of a trajectory store, as JSON/text or an HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path

from itomd.cli._common import (add_system_options, emit, lag_list, positive_int, recorded_frame_interval, seed_int,
                               system_spec, write_json)
from itomd.errors import InvalidInputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    for name, helptext in (("analyze", "MSM implied timescales, CK test, FES, JS divergence, autocorrelation"),
                           ("report", "write an HTML report with the analysis plots")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("path", type=Path, help="trajectory store (directory)")
        add_system_options(p, required=False)
        p.add_argument("--reference", action="store_true", help="compare with the exact reference (dim ≤ 2)")
        p.add_argument("--lags", type=lag_list, help="MSM lags in frames, comma-separated (default: automatic)")
        p.add_argument("--n-timescales", dest="n_timescales", type=positive_int, default=3)
        p.add_argument("--n-states", dest="n_states", type=positive_int, help="number of discrete states")
        p.add_argument("--mfpt-lag", dest="mfpt_lag", type=positive_int,
                       help="MSM lag (frames) of the mean first passage times between basins "
                            "(default: the shortest lag)")
        p.add_argument("--seed", type=seed_int, default=0)
        p.add_argument("--compare", type=Path, metavar="DIR",
                       help="a second trajectory store (e.g. MD) analysed on the same states and lag times")
        p.add_argument("--compare-label", dest="compare_label", default="MD", help="its name in the output")
        p.add_argument("--quiet", action="store_true")
        p.add_argument("--json", action="store_true")
        if name == "analyze":
            p.add_argument("--out", type=Path, help="also write the JSON here")
            p.set_defaults(func=run_analyze)
        else:
            p.add_argument("--out", type=Path, required=True, help="HTML file to write")
            p.add_argument("--title")
            p.set_defaults(func=run_report)


def _load_for_analysis(args: argparse.Namespace):
    """Trajectories, metadata, the system (if known) and the exact reference (if asked for)."""
    from itomd.data.store import TrajectoryStore
    from itomd.systems import SystemSpec
    from itomd.systems.reference import exact_reference

    store = TrajectoryStore(args.path)
    trajectories = store.trajectories()
    meta = store.metadata
    system = system_spec(args)[1] if args.system is not None else SystemSpec.from_store(meta, args.path)
    frame_interval = float(meta.get("frame_interval") or (system.frame_interval if system else 1.0))
    kT = float(meta.get("kT") or (system.kT if system else 1.0))
    reference = None
    if args.reference:
        if system is None:
            raise InvalidInputError("--reference needs a known system: pass --system SPEC")
        if system.dim > 2:
            raise InvalidInputError(f"exact references are available for dimension ≤ 2 here, system has {system.dim}")
        reference = exact_reference(system)
    return trajectories, frame_interval, kT, system, reference


def _run_analysis(args: argparse.Namespace):
    from itomd.analysis import analyze, compare
    from itomd.representation import CoordinateRepresentation, representation_for

    trajectories, frame_interval, kT, system, reference = _load_for_analysis(args)
    representation = (CoordinateRepresentation(trajectories[0].shape[1]) if system is None
                      else representation_for(system))
    result = analyze(trajectories, frame_interval, kT, reference=reference, lags=args.lags,
                     n_timescales=args.n_timescales, n_states=args.n_states, seed=args.seed,
                     progress=not args.quiet, mfpt_lag=args.mfpt_lag,
                     featurizer=representation.featurizer(None if system is None else system.analysis_energies),
                     **({} if system is None else {"time_unit": system.time_unit}))
    if args.compare is not None:
        from itomd.data.store import TrajectoryStore

        other = TrajectoryStore(args.compare)
        other_interval = recorded_frame_interval(other.metadata, args.compare)
        compare(result, other.trajectories(), other_interval, label=args.compare_label, seed=args.seed)
    return result, system


def run_analyze(args: argparse.Namespace) -> int:
    result, system = _run_analysis(args)
    out = result.to_dict()
    out["acceptance_rate"] = _acceptance_rate(args.path)
    out["redrawn_fraction"] = _redrawn_fraction(args.path)
    if args.out:
        write_json(Path(args.out), out)
    its = out["implied_timescales"]
    unit = its["time_unit"]
    lines = [f"{len(its['lags'])} lags; slowest implied timescale ({unit}) " + _slowest(its)
             + f" at lag times {', '.join(f'{v:g}' for v in its['lag_times'])}"
             + (f" (exact {its['reference'][0]:.4g})" if its.get("reference") else "")]
    error = its["relative_error_slowest"]
    if error is not None and any(e is not None for e in error):
        lines.append(f"slowest implied timescale: largest |relative error| at resolved lags "
                     f"{max(abs(e) for e in error if e is not None):.1%}")
    if out.get("js_divergence") is not None:
        lines.append(f"stationary JS divergence vs exact: {out['js_divergence']:.4g} nats")
    if out.get("mfpt") is not None:
        lines.append(_mfpt_line("mean first passage times", out["mfpt"]))
    lines.extend(line for section in result.sections if (line := section.summary()) is not None)
    if out["acceptance_rate"] is not None:
        lines.append(f"Metropolis-Hastings rollout: acceptance rate {out['acceptance_rate']:.3f} (a rejected jump "
                     "repeats its frame, so kinetics are slowed)")
    if out["redrawn_fraction"] is not None:
        lines.append(f"rollout with redraws: {out['redrawn_fraction']:.3%} of jumps were drawn again after a blow-up "
                     "(frames are conditioned on staying in range)")
    if out.get("comparison") is not None:
        c = out["comparison"]
        lines.append(f"{c['label']}: slowest implied timescale ({unit}) " + _slowest(c["implied_timescales"])
                     + f" at lag times {', '.join(f'{v:g}' for v in c['implied_timescales']['lag_times'])}; "
                     f"JS divergence vs {c['label']}: {c['js_divergence']:.4g} nats")
        if c.get("mfpt") is not None:
            lines.append(_mfpt_line(f"{c['label']}: mean first passage times", c["mfpt"]))
        if c.get("autocorrelation_max_abs_difference") is not None:
            lines.append(f"autocorrelation of {c['autocorrelation']['observable']} vs {c['label']}: max |ΔC| "
                         f"{c['autocorrelation_max_abs_difference']:.3g} over lag times "
                         + ", ".join(f"{t:g}" for t in c["autocorrelation"]["lag_times"]))
    if any(not row[0] for row in its["resolved"]):
        lines.append("(…): unresolved — the process decays within the lag or too few transitions were seen; "
                     "left out of errors and ratios")
    emit(out, args.json, "\n".join(lines))
    return 0


def _mfpt_line(what: str, mfpt: dict) -> str:
    """One line of the passage times of an ``mfpt`` JSON entry: each pair with its interval (and exact value)."""
    names, times = mfpt["basins"], mfpt["times"]
    parts = []
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i == j or times[i][j] is None:
                continue
            text = f"{a}→{b} {times[i][j]:.4g}"
            low, high = mfpt["lower"][i][j], mfpt["upper"][i][j]
            if low is not None and high is not None:
                text += f" [{low:.3g}, {high:.3g}]"
            if mfpt.get("reference") is not None and mfpt["reference"][i][j] is not None:
                text += f" (exact {mfpt['reference'][i][j]:.4g})"
            parts.append(text)
    return (f"{what} ({mfpt['time_unit']}, MSM at {mfpt['lag_time']:g}): " + ("; ".join(parts) or "none connected"))


def _slowest(its: dict) -> str:
    """The slowest timescale at each lag of an ``implied_timescales`` JSON entry, unresolved ones in parentheses."""
    return ", ".join("–" if t[0] is None else f"{t[0]:.4g}" if resolved[0] else f"({t[0]:.4g})"
                     for t, resolved in zip(its["timescales"], its["resolved"]))


def run_report(args: argparse.Namespace) -> int:
    from itomd.analysis.report import write_report
    from itomd.data.store import TrajectoryStore

    result, system = _run_analysis(args)
    title = args.title or f"itomd report: {system.name if system else Path(args.path).name}"
    store = TrajectoryStore(args.path)
    shared = store.metadata  # read once for both sections
    path = write_report(result, args.out, title=title,
                        extra_sections=(_metropolis_sections(store, shared) + _redraw_sections(store)
                                        + _model_check_sections(shared)))
    emit({"report": str(path)}, args.json, f"wrote {path}")
    return 0


def _acceptance_rate(store_path: Path) -> float | None:
    """The acceptance rate of a Metropolis–Hastings rollout; None for any other store."""
    from itomd.data.store import TrajectoryStore
    from itomd.rollout import acceptance_rate

    return acceptance_rate(TrajectoryStore(store_path))


def _redrawn_fraction(store_path: Path) -> float | None:
    """The fraction of redrawn jumps of a rollout made with ``--redraws``; None for any other store."""
    from itomd.data.store import TrajectoryStore
    from itomd.rollout import redrawn_fraction

    return redrawn_fraction(TrajectoryStore(store_path))


def _metropolis_sections(store, meta: dict) -> list:
    """The report's Metropolis–Hastings section, for a rollout made with ``itomd sample --metropolis``
    (``meta``: the store's shared metadata)."""
    from itomd.rollout import acceptance_rate

    rate = acceptance_rate(store)
    if rate is None:
        return []
    probes = meta.get("metropolis_probes")
    divergence = "exact divergence" if probes is None else f"Hutchinson divergence estimate, {probes} probes"
    text = (f"<p>Every jump was accepted or rejected against the Boltzmann distribution (Metropolis–Hastings with "
            f"the model as proposal, probability-flow likelihoods, {divergence}). <b>Acceptance rate: {rate:.3f}</b>"
            f" at lag {meta.get('lag', '?')}.</p><p class='note'>The frames sample the Boltzmann distribution "
            "exactly in the long run whatever the model's errors; a rejected jump repeats its frame, so the "
            "kinetics shown here are slowed by rejections (roughly by 1/acceptance where the model was right). "
            "Judge kinetics on a rollout without --metropolis; a low acceptance rate says the model's transition "
            "density is far from one in detailed balance with the Boltzmann distribution.</p>")
    return [("Metropolis–Hastings", text)]


def _redraw_sections(store) -> list:
    """The report's note on redrawn jumps, for a rollout made with ``itomd sample --redraws K``."""
    from itomd.rollout import redrawn_fraction

    fraction = redrawn_fraction(store)
    if fraction is None:
        return []
    text = (f"<p>This rollout redrew blown-up jumps (non-finite or beyond the training data's range) instead of "
            f"stopping: <b>{fraction:.3%} of its jumps were drawn again</b>.</p><p class='note'>Its frames are the "
            "model's transitions conditioned on staying in range, a bias of the order of that fraction; a model "
            "that needs many redraws needs more training or a smaller lag.</p>")
    return [("Redrawn jumps", text)]


def _model_check_sections(meta: dict) -> list:
    """The self-consistency section of the model a rollout came from (``meta``: the store's shared
    metadata, whose ``model`` names it), where ``itomd check`` ran on it."""
    import json

    from itomd.check import check_file, report_sections

    model = meta.get("model")
    if not model:
        return []
    path = check_file(model)
    if not path.is_file():
        return []
    try:
        return report_sections(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return []  # an unreadable check result does not stop the report
