"""Alanine dipeptide end to end: ITO (and BoPITO) surrogates against OpenMM MD — accuracy and speed.

The system is alanine dipeptide in OBC2 implicit solvent (``ala2-implicit``: AMBER ff96,
GBSAOBCForce, 300 K, Langevin 1/ps, 2 fs, bonds to H constrained), frames every τ = 1 ps. Stages,
each cached under ``--work`` (default bench/work/ala2) so a re-run continues where it stopped:

1. ``data``       — training MD: 8 × 5 ns from the shipped structure (``itomd simulate``, seed 1);
2. ``reference``  — independent MD reference: 8 × 5 ns (seed 2);
3. ``ito``        — ITO model, the recipe ``ala2-ito`` (equivariant net, lags 1..100 ps);
   ``ito_long``   — the same recipe with lags 1..1000 ps (``--long-max-lag``; the ITO paper's range) on
                    the same 8 × 5 ns, under ``--long-minutes``: the long-jump model (evaluate it with
                    ``--label ito_long --lag 1000``, time it with ``--stage long_jumps --label ito_long``);
4. ``evaluate``   — W walkers × J jumps of lag N from reference frames; φ/ψ free energy (JS vs the
                    reference MD), implied timescales of a 20 × 20 φ/ψ-grid MSM at the same lag
                    times (ratio to MD), mean first passage times between the αR, β/PII and αL cores
                    at one jump (ratio to MD, Bayesian intervals, observed switches), chemical
                    validity of every surrogate frame; ``--lag 1`` / ``--lag 5`` judge the ~10 ps
                    process at lags that resolve it;
   ``md_floor``   — the same comparison for the training MD against the reference (the floor, at
                    lag times of 1, 2, 3 and 5 × ``--lag``);
   ``markov_md``  — MD made Markov in positions (velocities redrawn every ``--lag`` ps): the chain of
                    the exact p(x_{t+lag} | x_t), what a perfect model's rollout would be, judged
                    like ``evaluate`` (``--walkers`` × ``--jumps``);
5. ``throughput`` — OpenMM ns per wall-second (Reference and CPU platforms, one walker per core on
                    both cores) vs surrogate ns per wall-second (W walkers, lags 10 and 100), same run;
   ``long_jumps`` — 256 walkers × 40 jumps of N_max for several sampler settings, with and without
                    thermal relaxation (``--relax-steps``'s Langevin steps after each jump, timed with
                    the jumps), the network's pair tensors in float32 and in bfloat16 (``--precision``):
                    ns/s next to OpenMM in the same run, and the accuracy reached (JS vs MD, validity);
6. ``equilibrium`` — an equilibrium model (the Boltzmann generator) of the training frames;
7. ``bg_data``    — 100 × 100 ps trajectories started from its samples (BoPITO's data);
8. ``bopito``, ``ito_short`` — BoPITO (that prior; a molecule's default dynamic part, the transition
                    form) and ITO trained on those same short trajectories (equal data, equal steps), each
                    evaluated as in 4;
   ``bopito_residual`` — BoPITO with the residual dynamic part (``dynamic_part = "residual"``: D = D_eq +
                    λ̂^N σ F, the orientation-marginal density), same data and steps, evaluated as in 4;
   ``bopito_forcefield`` — BoPITO with the force-field prior (OpenMM's forces blended with that
                    equilibrium model across noise levels), same data and steps, evaluated as in 4;
   ``bopito_linear`` — BoPITO with the linear part of its dynamic term (``dynamic_part = "linear"``:
                    D = D_eq + v(N)[D_lin − D_lin^∞] + λ̂^N σ F), same data and steps, evaluated as in 4.

    .venv/bin/python bench/ala2.py --stage all            # every stage
    .venv/bin/python bench/ala2.py --stage evaluate       # one stage (its inputs must exist)

Writes bench/results/ala2.json (merged across stages), an HTML report per evaluated model
(bench/results/ala2_<model>.html: Ramachandran plots next to MD's, implied timescales, CK test,
validity) and prints a summary; ``--out`` writes them elsewhere. A trained run is reused while its
training configuration matches (budgets and step limits aside) and resumed while it has fewer steps
than asked for.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm
from _common import ROOT, TrainingConfig, TransitionModel, make_parser, merge_results, parse_args, train_or_load

from itomd.analysis import analyze, compare
from itomd.analysis.molecular import (MolecularSection, backbone_dihedrals, chemical_validity,
                                      ramachandran_js_divergence)
from itomd.analysis.energy import EnergySection
from itomd.analysis.report import write_report
from itomd._files import write_text_atomically
from itomd.data.store import TrajectoryStore
from itomd.representation import representation_for
from itomd.diffusion.samplers import network_evaluations
from itomd.rollout import RolloutBlowUpError, rollout
from itomd.simulate.relax import ThermalRelaxation
from itomd.simulate.campaign import run_campaign
from itomd.systems import SystemSpec

SYSTEM = "ala2-implicit"


def main() -> None:
    parser = make_parser(__doc__, threads=2, work=ROOT / "bench" / "work" / "ala2")
    parser.add_argument("--stage", default="all", choices=(*STAGES, "all"))
    parser.add_argument("--label", default="ito", help="evaluate: which run directory under --work")
    parser.add_argument("--ito-minutes", type=float, default=None, help="wall-clock budget of ITO training")
    parser.add_argument("--long-max-lag", type=int, default=1000, help="ito_long: largest training lag (frames of 1 ps)")
    parser.add_argument("--long-minutes", type=float, default=45.0, help="ito_long: wall-clock budget of training")
    parser.add_argument("--walkers", type=int, default=32, help="rollout walkers of the evaluation")
    parser.add_argument("--jumps", type=int, default=1000, help="jumps per walker of the evaluation")
    parser.add_argument("--lag", type=int, default=10, help="jump lag of the evaluation (frames of 1 ps)")
    parser.add_argument("--n-steps", type=int, default=10, help="noise levels per jump")
    parser.add_argument("--sampler", default=None,
                        help="evaluate: the rollout's sampler (default: the model's own, stochastic Heun); results "
                             "with another get the suffix _<sampler><levels>")
    parser.add_argument("--relax-steps", type=int, default=0,
                        help="evaluate: steps of damped force-field Langevin dynamics after every jump (itomd sample "
                             "--relax-steps); results get the suffix _relax<K>")
    parser.add_argument("--redraws", type=int, default=0,
                        help="evaluate: redraw a walker's blown-up jump up to this many times (itomd sample --redraws); "
                             "results get the suffix _redraws<K>")
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                        help="evaluate: the equivariant network's pair tensors while sampling (itomd sample "
                             "--precision); results with bfloat16 get the suffix _bf16")
    parser.add_argument("--compile", action="store_true",
                        help="evaluate: the equivariant network through torch.compile (itomd sample --compile); "
                             "results get the suffix _compiled")
    parser.add_argument("--posterior-samples", type=int, default=20,
                        help="Bayesian MSM samples of the intervals (implied timescales, passage times)")
    parser.add_argument("--bopito-minutes", type=float, default=20.0, help="budget of each BoPITO-stage model")
    parser.add_argument("--bopito-steps", type=int, default=8000, help="steps of each BoPITO-stage model")
    parser.add_argument("--workers", type=int, default=2, help="OpenMM processes of the BG-seeded campaign")
    parser.add_argument("--lambda-hat", type=float, default=None,
                        help="BoPITO stages: λ̂ per frame (default: estimated from the BG-seeded data)")
    args = parse_args(parser)
    args.work.mkdir(parents=True, exist_ok=True)
    stages = list(STAGES) if args.stage == "all" else [args.stage]
    for stage in stages:
        print(f"== {stage}", flush=True)
        STAGES[stage](args)


# -- stages ------------------------------------------------------------------------------------
def stage_data(args) -> None:
    run_campaign(SystemSpec(SYSTEM), args.work / "md_train", n_trajectories=8, n_frames=5001, seed=1, chunk_size=1,
                 n_workers=2)


def stage_reference(args) -> None:
    run_campaign(SystemSpec(SYSTEM), args.work / "md_reference", n_trajectories=8, n_frames=5001, seed=2,
                 chunk_size=1, n_workers=2)


def stage_ito(args) -> None:
    config = TrainingConfig.from_recipe("ala2-ito", minutes=args.ito_minutes)
    _train(config, args.work / "md_train", args.work / "ito")


def stage_ito_long(args) -> None:
    config = TrainingConfig.from_recipe("ala2-ito", minutes=args.long_minutes, max_lag=args.long_max_lag)
    _train(config, args.work / "md_train", args.work / "ito_long")


def stage_evaluate(args, run: str = "ito", label: str = "ito") -> None:
    model = TransitionModel.load(args.work / run).set_precision(args.precision).set_compiled(args.compile)
    reference = _trajectories(args.work / "md_reference")
    rng = np.random.default_rng(0)
    frames = np.concatenate(reference)
    x0 = frames[rng.choice(len(frames), args.walkers, replace=False)]
    start = time.perf_counter()
    system = SystemSpec(SYSTEM).build()
    relax = ThermalRelaxation(system, args.relax_steps, seed=2) if args.relax_steps else None
    relaxed = f"_relax{args.relax_steps}" if relax is not None else ""
    relaxed += "_bf16" if args.precision == "bfloat16" else ""
    relaxed += f"_redraws{args.redraws}" if args.redraws else ""
    relaxed += "_compiled" if args.compile else ""
    sampled = f"_{args.sampler}" if args.sampler is not None else ""
    # the cache's name carries the levels anyway; the results' names carry them beside the sampler
    cache = args.work / f"rollout_{label}_lag{args.lag}_{args.walkers}x{args.jumps}_{args.n_steps}{sampled}{relaxed}.npy"
    timing = cache.with_suffix(".json")
    if cache.exists():
        paths = np.load(cache)
        cached = json.loads(timing.read_text()) if timing.exists() else {}
        seconds, redrawn = cached.get("seconds"), cached.get("redrawn_jumps", 0)
    else:
        generator = torch.Generator().manual_seed(1)
        paths, redrawn = rollout(model, x0, args.lag, args.jumps, generator=generator, sampler=args.sampler,
                                 n_steps=args.n_steps, progress=True, relax=relax, max_redraws=args.redraws,
                                 return_redraws=True)
        redrawn = int(redrawn.sum())
        seconds = time.perf_counter() - start
        np.save(cache, paths)
        write_text_atomically(timing, json.dumps({"seconds": seconds, "threads": torch.get_num_threads(),
                                                  "redrawn_jumps": redrawn}))
    surrogate = [p.astype(np.float64) for p in paths]
    tau = model.frame_interval * args.lag
    featurizer = representation_for(system).featurizer(system.analysis_energies)
    lags = [1, 2, 3, 5]  # in jumps of `lag` frames: lag times 10..50 ps at lag 10
    result = analyze(surrogate, tau, 1.0, lags=lags, n_samples=args.posterior_samples, featurizer=featurizer,
                     time_unit="ps")
    comparison = compare(result, reference, model.frame_interval, n_samples=args.posterior_samples)
    molecular = result.section(MolecularSection)
    ratio = comparison.slowest_timescale_ratio()
    validity = molecular.validity
    if args.lag != 10:  # results at another jump lag sit beside those at the default
        label = f"{label}_lag{args.lag}"
    label += (f"{sampled}{args.n_steps}" if sampled else "") + relaxed
    energy = result.section(EnergySection).to_dict()
    write_report(result, args.out / f"ala2_{label}.html",
                 title=f"alanine dipeptide: {label} rollouts ({args.walkers} × {args.jumps} jumps of {tau:g} ps) vs MD")
    md_its = comparison.implied_timescales
    summary = {
        "model": str(args.work / run), "model_steps": model.info.get("steps"),
        "train_seconds": model.info.get("train_seconds"),
        "walkers": args.walkers, "jumps": args.jumps, "lag_frames": args.lag, "n_steps": args.n_steps,
        "relax_steps": args.relax_steps, "redraws": args.redraws, "redrawn_jumps": redrawn,
        "sampler": args.sampler or model.default_sampler, "jump_ps": tau,
        "precision": args.precision, "compiled": args.compile,
        "rollout_seconds": seconds, "surrogate_ns": args.walkers * args.jumps * tau / 1000.0,
        "js_phi_psi_vs_md": comparison.js_divergence.value,
        "lag_times_ps": [float(v) for v in np.asarray(result.implied_timescales.lag_times)],
        "slowest_its_model_ps": [float(v) for v in np.asarray(result.implied_timescales.timescales)[:, 0]],
        "slowest_its_md_ps": [float(v) for v in np.asarray(md_its.timescales)[:, 0]],
        "md_lag_times_ps": [float(v) for v in np.asarray(md_its.lag_times)],
        "slowest_its_model_resolved": [bool(r) for r in np.asarray(result.implied_timescales.resolved)[:, 0]],
        "slowest_its_md_resolved": [bool(r) for r in np.asarray(md_its.resolved)[:, 0]],
        "slowest_its_ratio": _resolved_ratios(ratio),
        "validity": _fractions(validity),
        "md_validity": _fractions(molecular.comparison_validity),
        "md_ns": float(sum(len(t) - 1 for t in reference)) * model.frame_interval / 1000.0,
        "energy_mean_minus_md_kT": energy["mean_difference"], "energy_wasserstein_kT": energy["wasserstein"],
        **_mfpt_summary(result, comparison, "model", "md"),
    }
    _record(args, f"evaluate_{label}", summary)


def stage_md_floor(args) -> None:
    """The same comparison for the training MD against the reference MD: the floor of the metrics."""
    train, reference = _trajectories(args.work / "md_train"), _trajectories(args.work / "md_reference")
    featurizer = representation_for(SystemSpec(SYSTEM).build()).featurizer()
    lags = [args.lag * k for k in (1, 2, 3, 5)]
    result = analyze(train, 1.0, 1.0, lags=lags, n_samples=args.posterior_samples, featurizer=featurizer,
                     time_unit="ps")
    comparison = compare(result, reference, 1.0, n_samples=args.posterior_samples)
    ratio = comparison.slowest_timescale_ratio()
    _record(args, "md_floor", {
        "js_phi_psi_train_vs_reference": comparison.js_divergence.value,
        "lag_times_ps": [float(v) for v in np.asarray(result.implied_timescales.lag_times)],
        "slowest_its_train_ps": [float(v) for v in np.asarray(result.implied_timescales.timescales)[:, 0]],
        "slowest_its_reference_ps": [float(v) for v in np.asarray(comparison.implied_timescales.timescales)[:, 0]],
        "slowest_its_ratio": _resolved_ratios(ratio), **_mfpt_summary(result, comparison, "train", "reference")})


def stage_markov_md(args) -> None:
    """MD made Markov in positions — what a perfect ITO model rolled out with jumps of ``--lag`` frames
    would produce: from ``--walkers`` reference-MD frames, every jump redraws the velocities from
    Maxwell–Boltzmann and runs ``--lag`` ps of the same Langevin dynamics (friction, timestep,
    constraints), i.e. a draw from the exact p(x_{t+lag} | x_t), chained ``--jumps`` times. Judged
    like ``evaluate`` against the reference MD: where it matches MD, the positions are Markov at that
    lag and a surrogate can match MD's kinetics there; where it does not, no surrogate of x alone can."""
    system = SystemSpec(SYSTEM).build()
    reference = _trajectories(args.work / "md_reference")
    frames = np.concatenate(reference)
    x = frames[np.random.default_rng(0).choice(len(frames), args.walkers, replace=False)]
    steps = int(round(args.lag * system.frame_interval / system.timestep))
    cache = args.work / f"markov_md_lag{args.lag}_{args.walkers}x{args.jumps}.npy"
    if cache.exists():
        paths = np.load(cache)
    else:
        exact_kernel = ThermalRelaxation(system, steps, seed=7, friction=system.friction)
        paths = np.empty((args.walkers, args.jumps + 1, system.dim))
        paths[:, 0] = x
        for k in tqdm(range(args.jumps), unit="jump", desc=f"Markov MD, jumps of {args.lag} ps"):
            x = exact_kernel(x)
            paths[:, k + 1] = x
        np.save(cache, paths)
    tau = system.frame_interval * args.lag
    featurizer = representation_for(system).featurizer()
    result = analyze(list(paths), tau, 1.0, lags=[1, 2, 3, 5], n_samples=args.posterior_samples,
                     featurizer=featurizer, time_unit="ps")
    comparison = compare(result, reference, system.frame_interval, n_samples=args.posterior_samples)
    _record(args, f"markov_md_lag{args.lag}", {
        "walkers": args.walkers, "jumps": args.jumps, "jump_ps": tau, "steps_per_jump": steps,
        "friction_per_ps": system.friction, "js_phi_psi_vs_md": comparison.js_divergence.value,
        "lag_times_ps": [float(v) for v in np.asarray(result.implied_timescales.lag_times)],
        "slowest_its_markov_md_ps": [float(v) for v in np.asarray(result.implied_timescales.timescales)[:, 0]],
        "slowest_its_md_ps": [float(v) for v in np.asarray(comparison.implied_timescales.timescales)[:, 0]],
        "slowest_its_ratio": _resolved_ratios(comparison.slowest_timescale_ratio()),
        **_mfpt_summary(result, comparison, "markov_md", "md")})


def _mfpt_summary(result, comparison, mine: str, theirs: str) -> dict:
    """Mean first passage times between the Ramachandran cores of both data sets (with intervals and
    observed switches) and their ratio, per "from→to" pair."""
    if result.mfpt is None or comparison.mfpt is None:
        return {"mfpt_skipped": [n for n in result.notes if "MFPT" in n]}
    names, ratio = result.mfpt.names, comparison.mfpt_ratio()
    out: dict = {"mfpt_lag_time_ps": result.mfpt.lag_time, "mfpt_basins": list(names)}
    for label, mfpt in ((mine, result.mfpt), (theirs, comparison.mfpt)):
        out[f"mfpt_{label}_ps"] = {f"{names[i]}→{names[j]}": [_finite(mfpt.times[i, j]), _finite(mfpt.lower[i, j]),
                                                              _finite(mfpt.upper[i, j]), int(mfpt.transitions[i, j])]
                                   for i, j in mfpt.pairs()}
    out["mfpt_ratio"] = {f"{names[i]}→{names[j]}": _finite(ratio[i, j]) for i, j in result.mfpt.pairs()}
    return out


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def stage_throughput(args, run: str = "ito") -> None:
    model = TransitionModel.load(args.work / run)
    rows = {}
    for platform in ("Reference", "CPU"):
        steps = 10_000 if platform == "Reference" else 1000
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            start = time.perf_counter()
            per_core = pool.starmap(_openmm_rate, [(platform, steps, seed) for seed in (1, 2)])
            wall = time.perf_counter() - start
        rows[f"openmm_{platform}"] = {"ns_per_s_all_cores": float(sum(per_core)), "ns_per_s_per_core": per_core,
                                      "wall_s": wall}
    best = max(v["ns_per_s_all_cores"] for k, v in rows.items() if k.startswith("openmm"))
    frames = np.concatenate(_trajectories(args.work / "md_reference"))
    rng = np.random.default_rng(0)
    for walkers in (256, 1024):
        for lag in (10, 100):
            start_states = frames[rng.choice(len(frames), walkers, replace=False)]
            generator = torch.Generator().manual_seed(0)
            rollout(model, start_states[:8], lag, 1, generator=generator, n_steps=args.n_steps)  # warm-up
            start = time.perf_counter()
            n_jumps = 2
            rollout(model, start_states, lag, n_jumps, generator=generator, n_steps=args.n_steps)
            wall = time.perf_counter() - start
            ns = walkers * n_jumps * lag * model.frame_interval / 1000.0
            rows[f"surrogate_W{walkers}_lag{lag}"] = {"ns_per_s": ns / wall, "wall_s": wall,
                                                       "speedup_vs_best_openmm": ns / wall / best}
            print(f"W={walkers} lag={lag}: {ns / wall:.3g} ns/s = {ns / wall / best:.3g}× OpenMM", flush=True)
    rows["threads"] = torch.get_num_threads()
    rows["n_steps"] = args.n_steps
    _record(args, "throughput", rows)


#: ``long_jumps``: (sampler, noise levels, relaxation steps after each jump, precision of the network's
#: pair tensors) per row of the curve.
LONG_JUMP_SETTINGS = (("heun-churn", 10, 0, "float32"), ("heun-churn", 5, 0, "float32"),
                      *(("dpmpp-2m", n, relax, precision) for precision in ("float32", "bfloat16")
                        for relax in (0, 25) for n in (10, 8, 6, 4)))
#: ``long_jumps`` of a distilled model (``itomd distill``): its few-step sampler at 1, 2 and 4 evaluations.
DISTILLED_LONG_JUMP_SETTINGS = tuple(("consistency", n, relax, "float32") for relax in (0, 25) for n in (1, 2, 4))
#: ``long_jumps``: walkers (one batch) and jumps of each row (10,240 frames).
LONG_JUMP_WALKERS, LONG_JUMP_JUMPS = 256, 40


def stage_long_jumps(args, run: str = "ito") -> None:
    """Throughput at the accuracy reached: 256 walkers × 40 jumps of N_max per sampler setting (with
    and without thermal relaxation after each jump, whose OpenMM cost is timed with the jumps), next
    to OpenMM (Reference, both cores) in the same run, with JS(φ/ψ) against the reference MD and the
    validity of every frame."""
    model = TransitionModel.load(args.work / run)
    reference = _trajectories(args.work / "md_reference")
    system = SystemSpec(SYSTEM).build()
    topology = system.topology()
    frames = np.concatenate(reference)
    walkers, jumps = LONG_JUMP_WALKERS, LONG_JUMP_JUMPS
    x0 = frames[np.random.default_rng(1).choice(len(frames), walkers, replace=False)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        md_ns_per_s = float(sum(pool.starmap(_openmm_rate, [("Reference", 10_000, seed) for seed in (1, 2)])))
    rows = {"openmm_reference_ns_per_s_all_cores": md_ns_per_s, "walkers": walkers, "jumps": jumps,
            "lag_ps": model.max_lag * model.frame_interval}
    settings = DISTILLED_LONG_JUMP_SETTINGS if model.is_distilled else LONG_JUMP_SETTINGS
    ns = walkers * jumps * model.max_lag * model.frame_interval / 1000.0  # simulated per row
    reference_angles = backbone_dihedrals(reference, topology)
    for sampler, n_steps, relax_steps, precision in settings:
        relax = ThermalRelaxation(system, relax_steps, seed=3) if relax_steps else None
        model.set_precision(precision)
        key = (f"{sampler}_{n_steps}" + (f"_relax{relax_steps}" if relax_steps else "")
               + ("_bf16" if precision == "bfloat16" else ""))
        row = {"network_evaluations": network_evaluations(sampler, n_steps), "relax_steps": relax_steps,
               "precision": precision}
        start = time.perf_counter()
        try:
            paths = rollout(model, x0, model.max_lag, jumps, generator=torch.Generator().manual_seed(2),
                            sampler=sampler, n_steps=n_steps, relax=relax)
        except RolloutBlowUpError as exc:  # a setting that loses walkers is a result, not the end of the curve
            row["blew_up"] = str(exc)
            print(f"{key}: {exc}", flush=True)
        else:
            wall = time.perf_counter() - start
            jumped = [p[1:].astype(np.float64) for p in paths]
            js = ramachandran_js_divergence(backbone_dihedrals(jumped, topology), reference_angles)
            row.update(ns_per_s=ns / wall, speedup_vs_openmm_reference=ns / wall / md_ns_per_s, js_phi_psi_vs_md=js.value,
                       validity=_fractions(chemical_validity(jumped, topology)), wall_s=wall,
                       threads=torch.get_num_threads())
            print(f"{key}: {ns / wall:.3g} ns/s, {ns / wall / md_ns_per_s:.3g}× OpenMM, JS {js.value:.4f}, "
                  f"valid {row['validity']['fraction_valid']:.4f}", flush=True)
        rows[key] = row
        _record(args, f"long_jumps_{run}", rows)  # row by row: a long run keeps what it measured


def stage_equilibrium(args) -> None:
    """The Boltzmann generator: an equilibrium model of the training frames, judged against MD.

    The recipe's network and schedule at the default noise levels of an equilibrium model
    (ln σ ~ N(−1.2 + ln(σ_data/0.5), 1.2²), as the generators of BENCHMARKS.md were trained): the
    recipe's own p_mean and p_std are the transition model's, ln(σ/σ_d(N)), and read as ln σ by an
    equilibrium model (0.0 / 1.5 gave 47 % valid samples at 10 noise levels, 80 % at 25; −0.5 / 1.2
    gave 3.8 % / 16.5 %; the defaults 99.9 % at 10)."""
    base = TrainingConfig.from_recipe("ala2-ito", minutes=args.bopito_minutes)
    config = TrainingConfig.from_dict({**base.to_dict(), "equilibrium": True, "max_lag": 1,
                                       "max_steps": args.bopito_steps, "p_mean": None, "p_std": 1.2})
    _train(config, args.work / "md_train", args.work / "equilibrium")
    model = TransitionModel.load(args.work / "equilibrium")
    topology = SystemSpec(SYSTEM).build().topology()
    samples = model.sample_equilibrium(1000, generator=torch.Generator().manual_seed(0), n_steps=args.n_steps)
    samples = samples.numpy().astype(np.float64)
    validity = chemical_validity([samples], topology)
    js = ramachandran_js_divergence(backbone_dihedrals([samples], topology),
                                    backbone_dihedrals(_trajectories(args.work / "md_reference"), topology))
    _record(args, "equilibrium_model", {"steps": model.info.get("steps"), "train_seconds": model.info.get("train_seconds"),
                                  "js_phi_psi_vs_md": float(getattr(js, "value", js)), "n_samples": len(samples),
                                  "validity": _fractions(validity)})


def stage_bg_data(args) -> None:
    """BoPITO's data: short trajectories started from equilibrium-model samples (BG-seeded).

    Samples are drawn until 100 pass the chemical-validity check (a Boltzmann generator's broken
    structures would be filtered or reweighted away in practice; here they are dropped and counted).
    """
    out = args.work / "md_bg_short"
    starts_file = args.work / "bg_starts.npy"
    if starts_file.exists():
        starts = np.load(starts_file)
    else:
        model = TransitionModel.load(args.work / "equilibrium")
        topology = SystemSpec(SYSTEM).build().topology()
        generator = torch.Generator().manual_seed(3)
        kept, drawn = [], 0
        while sum(len(k) for k in kept) < 100 and drawn < 2000:
            draws = model.sample_equilibrium(200, generator=generator, n_steps=args.n_steps).numpy().astype(np.float64)
            drawn += len(draws)
            kept.append(draws[chemical_validity([draws], topology).valid])
        starts = np.concatenate(kept)[:100]
        if len(starts) < 100:
            raise SystemExit(f"only {len(starts)} of {drawn} equilibrium-model samples are chemically valid")
        np.save(starts_file, starts)
        _record(args, "bg_seeding", {"drawn": drawn, "valid_fraction": sum(len(k) for k in kept) / drawn})
    run_campaign(SystemSpec(SYSTEM), out, n_trajectories=len(starts), n_frames=101, seed=3, start="fixed", x0=starts,
                 chunk_size=10, n_workers=args.workers)


def stage_bopito(args) -> None:
    """BoPITO (learned prior; the molecule's default dynamic part) on the BG-seeded short trajectories, then its
    evaluation."""
    _equal_data_stage(args, "bopito", prior=str(args.work / "equilibrium"))


def stage_bopito_residual(args) -> None:
    """BoPITO as ``bopito`` but with the residual dynamic part (``dynamic_part = "residual"``), then its evaluation."""
    _equal_data_stage(args, "bopito_residual", prior=str(args.work / "equilibrium"), dynamic_part="residual")


def stage_bopito_forcefield(args) -> None:
    """BoPITO with the force-field prior (OpenMM's forces, blended across noise levels with the equilibrium
    model as the base) on the same BG-seeded short trajectories, then its evaluation."""
    _equal_data_stage(args, "bopito_forcefield", prior=f"forcefield:{args.work / 'equilibrium'}")


def stage_bopito_linear(args) -> None:
    """BoPITO as ``bopito`` but with the linear part (``dynamic_part = "linear"``), then its evaluation."""
    _equal_data_stage(args, "bopito_linear", prior=str(args.work / "equilibrium"), dynamic_part="linear")


def stage_ito_short(args) -> None:
    """ITO on the same BG-seeded short trajectories (equal data), then its evaluation."""
    _equal_data_stage(args, "ito_short")


def _equal_data_stage(args, run: str, prior: str | None = None, dynamic_part: str | None = None) -> None:
    """Train the ``ala2-ito`` recipe (lags to 50 ps, ``--bopito-steps``, ``--bopito-minutes``; with
    ``prior``: BoPITO) on the BG-seeded short trajectories into ``run``, then evaluate it as in 4."""
    base = TrainingConfig.from_recipe("ala2-ito", minutes=args.bopito_minutes)
    changes = {"max_lag": 50, "max_steps": args.bopito_steps, "dynamic_part": dynamic_part,
               **({} if prior is None else {"prior": prior})}
    if prior is not None and args.lambda_hat is not None:
        changes["lambda_hat"] = args.lambda_hat
    config = TrainingConfig.from_dict({**base.to_dict(), **changes})
    _train(config, args.work / "md_bg_short", args.work / run)
    stage_evaluate(args, run=run, label=run)


def _fractions(validity) -> dict:
    return {k: v for k, v in validity.to_dict().items() if k.startswith("fraction") or k == "n_frames"}


# -- helpers -----------------------------------------------------------------------------------
def _train(config: TrainingConfig, data: Path, out: Path) -> None:
    """Train (or resume, or skip a finished run of the same configuration) ``config`` on the store
    ``data`` into ``out``."""
    store = TrajectoryStore(data)
    spec = SystemSpec.from_metadata(store.metadata)
    train_or_load(out, config, store.trajectories, store.metadata["frame_interval"],
                  system=spec, resume=True)


def _resolved_ratios(ratio: np.ndarray | None) -> list[float | None] | None:
    """Timescale ratios for the JSON: None where either estimate is unresolved (NaN in the comparison)."""
    return None if ratio is None else [float(v) if np.isfinite(v) else None for v in ratio]


def _trajectories(path: Path) -> list[np.ndarray]:
    return TrajectoryStore(path).trajectories()


def _openmm_rate(platform: str, steps: int, seed: int) -> float:
    """ns per wall-second of one walker of OpenMM on ``platform`` (one thread)."""
    from itomd.simulate.molecular import make_context

    system = SystemSpec(SYSTEM).build()
    context = make_context(system, system.initial_coordinates(), seed, seed + 10, platform=platform)
    integrator = context.getIntegrator()
    integrator.step(100)
    start = time.perf_counter()
    integrator.step(steps)
    wall = time.perf_counter() - start
    return steps * system.timestep / 1000.0 / wall


def _record(args, key: str, value) -> None:
    """Set ``key`` of ala2.json in the results directory (merged across stages)."""
    merge_results(args.out / "ala2.json", key, value, indent=1)


#: Stage name → function of the parsed arguments, in the order ``--stage all`` runs them.
STAGES: dict[str, Callable[[argparse.Namespace], None]] = {
    "data": stage_data,
    "reference": stage_reference,
    "ito": stage_ito,
    "ito_long": stage_ito_long,
    "evaluate": lambda args: stage_evaluate(args, run=args.label, label=args.label),
    "md_floor": stage_md_floor,
    "markov_md": stage_markov_md,
    "throughput": stage_throughput,
    "long_jumps": lambda args: stage_long_jumps(args, run=args.label),
    "equilibrium": stage_equilibrium,
    "bg_data": stage_bg_data,
    "bopito": stage_bopito,
    "bopito_residual": stage_bopito_residual,
    "bopito_forcefield": stage_bopito_forcefield,
    "bopito_linear": stage_bopito_linear,
    "ito_short": stage_ito_short,
}


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
