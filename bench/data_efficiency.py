"""BoPITO vs ITO data efficiency against exact references (the BoPITO paper's experiment).

Data: a reference budget of short trajectories (``n_frames`` = 2·N_max + 1) started from
equilibrium samples — the exact reference's sampler plays the Boltzmann generator — and, for the
BG-seeding comparison, the same budget started from one structure (the global minimum). ITO and
BoPITO (exact equilibrium prior) are trained with the same steps on subsets of 1 %, 10 % and 100 %
of the budget, several seeds (each seed: its own subset and initialisation). Every model is judged
from held-out exact equilibrium start states (never in the training data):

* the paper's metric, |C_model(N) − C_exact(N)| of the normalised time-correlation function of the
  first coordinate, C(N) = <(x_0 − m_0)(x_N − m_N)>/Var(x_0), one direct jump per lag, grouped into
  short (N ≤ 10), medium (10 < N ≤ N_max) and long (N > N_max: beyond the training lags) lags;
* the stationary JS divergence (nats) of the jumps at N_max and at 10·N_max against the exact density;
* the slowest implied timescale of an MSM on rollouts (lag = one jump) against the exact one, and the
  largest deviation of a Chapman–Kolmogorov test (2 PCCA+ sets, 5 multiples of the jump) on them.

Each (method, data, budget) cell reports the mean over seeds and a 95 % Student-t interval. Also: an
equilibrium model (the Boltzmann generator of the method, trained on the full budget's frames)
judged by JS against the exact density, and BoPITO with that learned prior at the 10 % budget; and
BoPITO with the force-field prior (the system's forces blended with the data's Gaussian, and with the
learned model) at the same budget and seed.

    .venv/bin/python bench/data_efficiency.py --system prinz --seeds 3
    .venv/bin/python bench/data_efficiency.py --system muller-brown --seeds 1

Writes bench/results/data_efficiency_<system>.json and .html (error vs data budget, one line per
method; ``--out`` elsewhere); caches data, models and per-model metrics under
bench/work/<system>/efficiency/ so an interrupted run continues where it stopped (delete that
directory to start over; a cached model of another training configuration is trained again).
``--quick``: a smoke run (tiny budget, lags and models) under bench/work/quick/.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from _common import (OneJumpEvaluator, RolloutBlowUpError, TrainingConfig, TransitionModel, command_line, make_parser,
                     parse_args, rollout_timescale, train_or_load, write_results)
from scipy import stats

from itomd.analysis.discretize import discretize
from itomd.analysis.divergence import js_divergence
from itomd.analysis.msm import ck_test
from itomd.analysis.report import html_table, write_page
from itomd._files import write_text_atomically
from itomd.simulate.campaign import run_campaign
from itomd.systems import SystemSpec
from itomd.systems.reference import exact_reference

#: Per system: reference budget (trajectories of n_frames), lags (frames of τ), rollout settings.
#: Prinz τ = 5e-3, t₂ = 0.834 (167 τ); Müller–Brown (kT 10) τ = 0.01, t₂ = 5.0 (500 τ).
DEFAULTS = {
    "prinz": dict(reference_traj=1000, n_frames=201, max_lag=100, short=[1, 2, 5, 10], medium=[20, 50, 100],
                  long=[200, 500, 1000], rollout_lag=50, rollout_jumps=20, n_states=100),
    "muller-brown": dict(reference_traj=2000, n_frames=201, max_lag=100, short=[1, 2, 5, 10], medium=[20, 50, 100],
                         long=[200, 500, 1000], rollout_lag=100, rollout_jumps=20, n_states=100),
}
METHODS = ("ito", "bopito")
#: --quick: sizes for a smoke run (any system; training options in "training"), and argument defaults.
QUICK = dict(reference_traj=16, n_frames=21, max_lag=10, short=[1, 2], medium=[5, 10], long=[20, 100],
             rollout_lag=5, rollout_jumps=5, n_states=10, equilibrium_samples=2000,
             training=dict(batch_size=64, hidden=32))
QUICK_ARGS = dict(budgets=[0.5, 1.0], seeds=1, steps=30, walkers=200, rollout_walkers=50, long_lag_walkers=200)


def main() -> None:
    parser = make_parser(__doc__, system="prinz", systems=DEFAULTS, threads=2, work=Path("bench/work"), quick=True)
    parser.add_argument("--budgets", type=lambda s: [float(v) for v in s.split(",")], default=[0.01, 0.1, 1.0],
                        help="fractions of the reference budget")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4000, help="optimiser steps per model (all budgets)")
    parser.add_argument("--walkers", type=int, default=4000, help="held-out start states for C(N) and JS")
    parser.add_argument("--rollout-walkers", type=int, default=1000)
    parser.add_argument("--long-lag-walkers", type=int, default=20_000,
                        help="samples of the JS check at 10·N_max (10 %% budget, seed 0), where 4000 samples' noise "
                             "floor is too high to resolve JS < 0.01 in 2-D")
    parser.add_argument("--no-single", action="store_true", help="skip the single-structure comparison")
    parser.add_argument("--no-learned-prior", action="store_true", help="skip the equilibrium model and its BoPITO")
    parser.add_argument("--no-forcefield-prior", action="store_true",
                        help="skip BoPITO with the force-field prior (Gaussian base, and the learned base)")
    args = parse_args(parser, quick=QUICK_ARGS)
    d = {**DEFAULTS[args.system], **(QUICK if args.quick else {})}
    spec = SystemSpec(args.system)
    system = spec.build()
    tau = system.frame_interval
    work = args.work / args.system / "efficiency"
    reference = exact_reference(system, n_eigen=12)
    exact_t2 = float(reference.implied_timescales(1)[0])
    t0 = time.perf_counter()

    n_ref = d["reference_traj"]
    seeded = run_campaign(spec, work / "bg-seeded", n_trajectories=n_ref, n_frames=d["n_frames"], seed=0,
                          chunk_size=500, n_workers=0, progress=True).trajectories()
    mode = reference.points[int(np.argmax(reference.cell_probabilities.ravel()))]
    budgets = sorted({max(1, round(f * n_ref)) for f in args.budgets})
    single_budget = budgets[len(budgets) // 2]
    single = None
    if not args.no_single:
        single = run_campaign(spec, work / "single-structure", n_trajectories=single_budget * args.seeds,
                              n_frames=d["n_frames"], seed=1, start="fixed", x0=mode, chunk_size=500, n_workers=0,
                              progress=True).trajectories()
    print(f"data: {n_ref} BG-seeded trajectories of {d['n_frames']} frames ({time.perf_counter() - t0:.0f} s, cached); "
          f"budgets {budgets} trajectories; single structure at x = {np.round(mode, 3).tolist()}")

    evaluator = Evaluator(reference, tau, d, args.walkers, args.rollout_walkers)
    runs = []
    plan = [(method, "bg-seeded", k, s) for k in budgets for s in range(args.seeds) for method in METHODS]
    if single is not None:
        plan += [(method, "single-structure", single_budget, s) for s in range(args.seeds) for method in METHODS]
    for method, data_kind, k, s in plan:
        if data_kind == "bg-seeded":
            subset = [seeded[i] for i in np.random.default_rng(s).permutation(n_ref)[:k]]
        else:
            subset = single[s * k:(s + 1) * k]
        name = f"{method}_{data_kind}_{k}_{s}"
        prior = "exact" if method == "bopito" else None
        runs.append(train_and_evaluate(name, work, subset, tau, spec, d, prior, args.steps, s, evaluator,
                                       dict(method=method, data=data_kind, n_trajectories=k, seed=s)))

    # the other priors at the middle budget, seed 0 (the same subset as that cell's ITO and BoPITO)
    k = budgets[len(budgets) // 2]
    subset = [seeded[i] for i in np.random.default_rng(0).permutation(n_ref)[:k]]
    equilibrium_run = str(work / "models" / "equilibrium.pt")
    priors_plan = []  # (prior, method, model name)
    equilibrium = None
    if not args.no_learned_prior:
        equilibrium = equilibrium_model_check(work, seeded, tau, spec, reference, args.steps, d)
        priors_plan.append((equilibrium_run, "bopito (learned prior)", "bopito-learned"))
    if not args.no_forcefield_prior:  # the system's forces, blended with the data's Gaussian (and the learned model)
        priors_plan.append(("forcefield", "bopito (force-field prior)", "bopito-forcefield"))
        if equilibrium is not None:
            priors_plan.append((f"forcefield:{equilibrium_run}", "bopito (force field + learned)",
                                "bopito-forcefield-learned"))
    for prior, method, name in priors_plan:
        runs.append(train_and_evaluate(f"{name}_bg-seeded_{k}_0", work, subset, tau, spec, d, prior, args.steps, 0,
                                       evaluator, dict(method=method, data="bg-seeded", n_trajectories=k, seed=0)))

    long_lag = long_lag_check(work, reference, tau, d, k, args.long_lag_walkers)
    priors = prior_check(work, reference, k, args.long_lag_walkers)
    summary = summarise(runs)
    js_floor = js_divergence(reference.sample(args.walkers, seed=99), reference=reference).value
    out = {"system": args.system, "exact_slowest_timescale": exact_t2, "frame_interval": tau, "js_noise_floor": js_floor,
           "reference_budget": {"n_trajectories": n_ref, "n_frames": d["n_frames"]}, "steps": args.steps,
           "seeds": args.seeds, "lags": {g: d[g] for g in ("short", "medium", "long")}, "max_lag": d["max_lag"],
           "rollout": {"lag": d["rollout_lag"], "n_jumps": d["rollout_jumps"], "walkers": args.rollout_walkers},
           "walkers": args.walkers, "runs": runs, "summary": summary, "equilibrium_model": equilibrium,
           "long_lag_check": long_lag, "prior_samples": priors,
           "wall_seconds": round(time.perf_counter() - t0, 1),
           "command": command_line()}
    write_results(args.out / f"data_efficiency_{args.system}.json", out, indent=1)
    write_html(out, args.out / f"data_efficiency_{args.system}.html")
    print_table(summary)
    print(f"JS noise floor ({args.walkers} exact samples): {js_floor:.4f}")


class Evaluator:
    """The metrics of one model from held-out exact equilibrium start states."""

    def __init__(self, reference, tau: float, d: dict, walkers: int, rollout_walkers: int):
        self.reference, self.tau, self.d = reference, tau, d
        self.jumps = OneJumpEvaluator(reference, tau, d["short"] + d["medium"] + d["long"])
        self.lags, self.exact_c = self.jumps.lags, self.jumps.exact_c
        self.walkers, self.rollout_walkers = walkers, rollout_walkers
        self.discretization = discretize([reference.sample(20_000, seed=7)], n_states=d["n_states"], seed=0)

    def __call__(self, model: TransitionModel, seed: int) -> dict:
        d = self.d
        x0 = self.reference.sample(self.walkers, seed=10_000 + seed)
        jumps = self.jumps(model, x0, seed=seed, js_lags=(d["max_lag"], 10 * d["max_lag"]))
        error = jumps.c_abs_error
        groups = {}
        for group in ("short", "medium", "long"):
            index = [self.lags.index(n) for n in d[group]]
            groups[group] = float(error[index].mean())
        result = {"c_model": jumps.c_model.tolist(), "c_exact": self.exact_c.tolist(), "c_abs_error": error.tolist(),
                  "c_error": groups, "js": {str(k): v for k, v in jumps.js.items()}}
        lag = d["rollout_lag"]
        try:
            rolled = rollout_timescale(model, x0[: self.rollout_walkers], lag, d["rollout_jumps"], self.tau,
                                       self.discretization, generator=torch.Generator().manual_seed(seed))
        except RolloutBlowUpError as exc:
            result.update(slowest_timescale=None, timescale_error=None, ck_max_deviation=None, rollout_error=str(exc))
            return result
        paths, trajectories, t2 = rolled.paths, rolled.trajectories, rolled.timescale
        ck = ck_test(trajectories, lag * self.tau, lag=1, n_metastable=2, mlags=5, discretization=self.discretization)
        exact_t2 = float(self.reference.implied_timescales(1)[0])
        result.update(slowest_timescale=t2, timescale_error=rolled.relative_error(exact_t2), ck_max_deviation=float(ck.max_deviation),
                      js_rollout_end=js_divergence(paths[:, -1], reference=self.reference).value)
        return result


def train_and_evaluate(name: str, work: Path, trajectories: list[np.ndarray], tau: float, spec: SystemSpec, d: dict,
                       prior: str | None, steps: int, seed: int, evaluate: Evaluator, labels: dict) -> dict:
    """Train (or load the cached model), evaluate (or load cached metrics); one row of results."""
    metrics_file = work / "metrics" / f"{name}.json"
    if metrics_file.is_file():
        return json.loads(metrics_file.read_text())
    config = TrainingConfig(max_lag=d["max_lag"], max_steps=steps, seed=seed, prior=prior,
                            warmup_steps=min(200, steps // 10), **d.get("training", {}))
    model = train_or_load(work / "models" / f"{name}.pt", config, trajectories, tau, system=spec,
                          message=f"train {name} ({len(trajectories)} trajectories)")
    t0 = time.perf_counter()
    row = {**labels, "name": name, "lambda_hat": model.lambda_hat, "train_seconds": model.info.get("train_seconds"),
           **evaluate(model, seed), "evaluate_seconds": None}
    row["evaluate_seconds"] = round(time.perf_counter() - t0, 1)
    write_text_atomically(metrics_file, json.dumps(row) + "\n")
    print(f"  {name}: C(N) error short/medium/long {row['c_error']['short']:.3f}/{row['c_error']['medium']:.3f}/"
          f"{row['c_error']['long']:.3f}, JS {row['js']}, ITS error {row['timescale_error']}")
    return row


def equilibrium_model_check(work: Path, trajectories: list[np.ndarray], tau: float, spec: SystemSpec, reference,
                            steps: int, d: dict) -> dict:
    """Train the Boltzmann generator on the full budget's frames; JS of its samples vs exact."""
    config = TrainingConfig(equilibrium=True, max_steps=steps, seed=0, warmup_steps=min(200, steps // 10),
                            **d.get("training", {}))
    model = train_or_load(work / "models" / "equilibrium.pt", config, trajectories, tau, system=spec,
                          message="train the equilibrium model")
    samples = model.sample(None, n_samples=d.get("equilibrium_samples", 20_000),
                           generator=torch.Generator().manual_seed(3)).numpy()
    js = js_divergence(samples, reference=reference)
    return {"js": js.value, "n_samples": len(samples), "bins": js.bins, "train_seconds": model.info.get("train_seconds")}


def prior_check(work: Path, reference, k: int, walkers: int) -> dict:
    """JS against the exact density of ``walkers`` samples of each seed-0 BoPITO model's prior alone (its
    equilibrium part: what the model samples as N → ∞), with the noise floor of as many exact samples."""
    cache = work / "metrics" / f"prior_samples_{k}_{walkers}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    out = {"n_trajectories": k, "walkers": walkers,
           "noise_floor": js_divergence(reference.sample(walkers, seed=20_002), reference=reference).value}
    for name, label in (("bopito", "exact"), ("bopito-learned", "learned"), ("bopito-forcefield", "forcefield"),
                        ("bopito-forcefield-learned", "forcefield+learned")):
        path = work / "models" / f"{name}_bg-seeded_{k}_0.pt"
        if path.is_file():
            samples = TransitionModel.load(path).sample_equilibrium(walkers, generator=torch.Generator().manual_seed(0))
            out[label] = js_divergence(samples.numpy(), reference=reference).value
    write_text_atomically(cache, json.dumps(out) + "\n")
    print("JS of the priors' own samples: " + ", ".join(f"{key} {value:.4f}" for key, value in out.items()
                                                         if key not in ("n_trajectories", "walkers")))
    return out


def long_lag_check(work: Path, reference, tau: float, d: dict, k: int, walkers: int) -> dict:
    """JS at 10·N_max of the seed-0 ITO and BoPITO models at budget ``k`` with many samples, and
    the noise floor of as many exact samples."""
    cache = work / "metrics" / f"long_lag_{k}_{walkers}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    lag = 10 * d["max_lag"]
    x0 = reference.sample(walkers, seed=20_000)
    out = {"lag": lag, "n_trajectories": k, "walkers": walkers,
           "noise_floor": js_divergence(reference.sample(walkers, seed=20_001), reference=reference).value}
    evaluator = OneJumpEvaluator(reference, tau, [lag])
    for method in METHODS:
        model = TransitionModel.load(work / "models" / f"{method}_bg-seeded_{k}_0.pt")
        out[method] = evaluator(model, x0, seed=5).js[lag]
    write_text_atomically(cache, json.dumps(out) + "\n")
    print(f"JS at N = {lag} with {walkers} samples: ITO {out['ito']:.4f}, BoPITO {out['bopito']:.4f} "
          f"(floor {out['noise_floor']:.4f})")
    return out


def summarise(runs: list[dict]) -> list[dict]:
    """Mean and 95 % Student-t interval over seeds per (method, data, budget)."""
    cells: dict[tuple, list[dict]] = {}
    for row in runs:
        cells.setdefault((row["method"], row["data"], row["n_trajectories"]), []).append(row)
    out = []
    for (method, data, k), rows in sorted(cells.items(), key=lambda item: (item[0][1], item[0][0], item[0][2])):
        entry = {"method": method, "data": data, "n_trajectories": k, "n_seeds": len(rows)}
        quantities = {f"c_error_{g}": [r["c_error"][g] for r in rows] for g in ("short", "medium", "long")}
        for key in rows[0]["js"]:
            quantities[f"js_{key}"] = [r["js"][key] for r in rows]
        quantities["abs_timescale_error"] = [abs(r["timescale_error"]) if r["timescale_error"] is not None else np.nan
                                             for r in rows]
        quantities["ck_max_deviation"] = [r["ck_max_deviation"] if r["ck_max_deviation"] is not None else np.nan
                                          for r in rows]
        for key, values in quantities.items():
            entry[key] = interval(values)
        out.append(entry)
    return out


def interval(values: list[float]) -> dict:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": None, "low": None, "high": None, "values": []}
    mean = float(v.mean())
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")
    return {"mean": mean, "low": mean - half if v.size > 1 else None, "high": mean + half if v.size > 1 else None,
            "values": v.tolist()}


def print_table(summary: list[dict]) -> None:
    print(f"{'method':>22} {'data':>17} {'traj':>5} {'C short':>8} {'C med':>8} {'C long':>8} "
          f"{'JS Nmax':>8} {'JS 10Nmax':>9} {'|ITS err|':>9} {'CK dev':>7}")
    for e in summary:
        js_keys = sorted((k for k in e if k.startswith("js_")), key=lambda k: int(k[3:]))
        print(f"{e['method']:>22} {e['data']:>17} {e['n_trajectories']:>5} "
              + " ".join(f"{_mean(e[k]):>8}" for k in ("c_error_short", "c_error_medium", "c_error_long"))
              + " " + " ".join(f"{_mean(e[k]):>8}" for k in js_keys)
              + f" {_mean(e['abs_timescale_error']):>9} {_mean(e['ck_max_deviation']):>7}")


def _mean(cell: dict) -> str:
    return "–" if cell["mean"] is None else f"{cell['mean']:.4f}"


def _cell(cell: dict) -> str:
    if cell["mean"] is None:
        return "–"
    if cell["low"] is None:
        return f"{cell['mean']:.4f}"
    return f"{cell['mean']:.4f} [{cell['low']:.4f}, {cell['high']:.4f}]"


def write_html(out: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    summary = out["summary"]
    js_keys = sorted({k for e in summary for k in e if k.startswith("js_")}, key=lambda k: int(k[3:]))
    panels = [("c_error_short", "|ΔC(N)|, N ≤ 10"), ("c_error_medium", f"|ΔC(N)|, 10 < N ≤ {out['max_lag']}"),
              ("c_error_long", f"|ΔC(N)|, N > {out['max_lag']} (beyond training)")]
    panels += [(k, f"stationary JS at N = {k[3:]}") for k in js_keys]
    panels += [("abs_timescale_error", "|slowest ITS error| (rollout MSM)"), ("ck_max_deviation", "CK test max deviation")]
    fig = Figure(figsize=(15, 7.5), layout="constrained")
    axes = fig.subplots(2, 4).ravel()
    styles = {"ito": ("tab:blue", "o"), "bopito": ("tab:red", "s"), "bopito (learned prior)": ("tab:purple", "^"),
              "bopito (force-field prior)": ("tab:green", "D"), "bopito (force field + learned)": ("tab:olive", "v")}
    total = out["reference_budget"]["n_trajectories"]
    for ax, (key, title) in zip(axes, panels):
        for method in ("ito", "bopito"):
            cells = [e for e in summary if e["method"] == method and e["data"] == "bg-seeded" and e[key]["mean"] is not None]
            if not cells:
                continue
            x = np.array([e["n_trajectories"] / total for e in cells])
            y = np.array([e[key]["mean"] for e in cells])
            low = np.array([e[key]["low"] if e[key]["low"] is not None else e[key]["mean"] for e in cells])
            high = np.array([e[key]["high"] if e[key]["high"] is not None else e[key]["mean"] for e in cells])
            color, marker = styles[method]
            ax.errorbar(x, y, yerr=[np.maximum(y - low, 0), np.maximum(high - y, 0)], color=color, marker=marker,
                        capsize=3, label=f"{method.upper() if method == 'ito' else 'BoPITO'} (BG-seeded)")
        for e in summary:
            if e["data"] == "single-structure" and e[key]["mean"] is not None:
                color, marker = styles[e["method"]]
                ax.plot(e["n_trajectories"] / total, e[key]["mean"], marker=marker, mfc="none", color=color, ms=10,
                        ls="none", label=f"{'ITO' if e['method'] == 'ito' else 'BoPITO'} (single structure)")
            if e["method"].startswith("bopito (") and e[key]["mean"] is not None:  # single cells of other priors
                color, marker = styles[e["method"]]
                ax.plot(e["n_trajectories"] / total, e[key]["mean"], marker=marker, color=color, ls="none",
                        label="BoPITO " + e["method"][len("bopito "):])
        if key.startswith("js_"):
            ax.axhline(out["js_noise_floor"], ls="--", color="gray", lw=1, label="JS noise floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("fraction of the reference data budget")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    axes[4].legend(fontsize=8)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    rows = [(e["method"], e["data"], str(e["n_trajectories"]), *(_cell(e[k]) for k, _ in panels)) for e in summary]
    header = ["method", "data", "trajectories", *(t for _, t in panels)]
    eq = out.get("equilibrium_model")
    intro = (f"<p>{out['system']}: exact slowest implied timescale {out['exact_slowest_timescale']:.4g}; reference budget "
             f"{total} trajectories × {out['reference_budget']['n_frames']} frames (τ = {out['frame_interval']:g}); "
             f"{out['steps']} training steps per model; {out['seeds']} seed(s) per cell (each its own data subset); "
             f"means with 95 % Student-t intervals over seeds. C(N) from {out['walkers']} held-out exact equilibrium "
             f"starts, one direct jump per lag; ITS and CK test from rollouts of {out['rollout']['walkers']} walkers × "
             f"{out['rollout']['n_jumps']} jumps of {out['rollout']['lag']} frames. JS noise floor (the same "
             f"number of exact samples against the exact density): {out['js_noise_floor']:.4f} nats.</p>")
    sections = [("Setup", intro), ("Error against the data budget", fig), ("Numbers", html_table(header, rows))]
    if eq is not None:
        sections.append(("Equilibrium model (the Boltzmann generator)",
                         f"<p>Trained on the full budget's frames: JS of {eq['n_samples']} samples against the exact "
                         f"density = {eq['js']:.4g} nats (bins {eq['bins']}).</p>"))
    check = out.get("long_lag_check")
    if check is not None:
        sections.append((f"Stationary JS at N = {check['lag']} with {check['walkers']} samples",
                         f"<p>Models trained on {check['n_trajectories']} trajectories (seed 0): ITO {check['ito']:.4f}, "
                         f"BoPITO {check['bopito']:.4f} nats; noise floor of as many exact samples "
                         f"{check['noise_floor']:.4f}.</p>"))
    priors = out.get("prior_samples")
    if priors is not None:
        found = ", ".join(f"{key} {value:.4f}" for key, value in priors.items()
                          if key not in ("n_trajectories", "walkers", "noise_floor"))
        sections.append((f"The priors alone ({priors['walkers']} samples of each BoPITO model's equilibrium part)",
                         f"<p>JS against the exact density (nats): {found}; noise floor of as many exact samples "
                         f"{priors['noise_floor']:.4f}. The force-field prior's base decides the populations: "
                         "the data's Gaussian cannot, a learned equilibrium model can.</p>"))
    sections.append(("Command", f"<pre>.venv/bin/python {out['command']}</pre>"))
    write_page(path, f"BoPITO vs ITO data efficiency — {out['system']}", sections)


if __name__ == "__main__":
    main()
