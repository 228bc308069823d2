"""The demo pipeline on Müller–Brown: simulate → train ITO → roll out → analyze → HTML report.

``itomd demo --out DIR`` (and ``make demo``) runs it. Every stage is resumable: a second run reuses
the finished trajectories, continues an unfinished training run from its checkpoint, and skips
rollout chunks already written.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from itomd._files import write_text_atomically
from itomd.systems import SystemSpec
from itomd.systems.reference import exact_reference

if TYPE_CHECKING:
    from itomd.training import TrainingConfig


@dataclass(frozen=True)
class DemoPlan:
    """The demo's sizes: its MD campaign, training configuration, rollout and the rollout's MSM lags.

    Attributes
    ----------
    n_trajectories, n_frames, chunk_size : int
        The campaign: equilibrium-started trajectories of ``n_frames`` frames, stored in chunks.
    config : TrainingConfig
    lag, n_walkers, n_jumps : int
        The rollout: ``n_walkers`` exact-equilibrium walkers, ``n_jumps`` jumps of ``lag`` frames.
    analysis_lags : tuple of int
        MSM lags of the rollout's analysis, in jumps.
    """

    n_trajectories: int
    n_frames: int
    chunk_size: int
    config: "TrainingConfig"
    lag: int
    n_walkers: int
    n_jumps: int
    analysis_lags: tuple[int, ...]


def demo_plan(quick: bool = False, seed: int = 2026, train_minutes: float | None = 4.0) -> DemoPlan:
    """The sizes :func:`run_demo` uses (``bench/demo_seeds.py`` judges its training recipe over seeds);
    ``train_minutes`` None trains all steps whatever they take (the full demo only)."""
    from itomd.training import TrainingConfig
    if quick:
        config = TrainingConfig(max_lag=20, max_steps=150, hidden=64, n_blocks=2, batch_size=256, checkpoint_every=50,
                                lag_distribution="uniform", seed=seed)
        return DemoPlan(200, 101, 100, config, lag=10, n_walkers=200, n_jumps=20, analysis_lags=(1, 2))
    # lags uniform on 1..100 rather than log-uniform: the rollout jumps 50 τ, and log-uniform lags put 3 pairs in 4
    # below 32 τ, where the escapes that set the slowest timescale are rarest (BENCHMARKS.md, "make demo", "Uniform
    # training lags": over four training seeds the models' own slowest timescale 4.78–5.27 against 4.88–5.93, exact 5.00)
    config = TrainingConfig(max_lag=100, max_steps=16_000, minutes=train_minutes, lag_distribution="uniform", seed=seed)
    return DemoPlan(4000, 501, 500, config, lag=50, n_walkers=2000, n_jumps=100, analysis_lags=(1, 2, 4, 8))


def run_demo(out: Path, quick: bool = False, n_workers: int | None = None, seed: int = 2026,
             train_minutes: float = 4.0) -> Path:
    """Run the Müller–Brown pipeline and return the path of the HTML report.

    Parameters
    ----------
    out : Path
        Output directory; holds ``trajectories/`` (MD), ``run/`` (the ITO model), ``rollout/``
        (surrogate trajectories), ``reference.json``, ``analysis_md.json``, ``analysis.json`` and
        ``report.html``.
    quick : bool
        A much smaller run (seconds; for tests). The full demo simulates 4,000 equilibrium-started
        trajectories of 5 time units (20,000 time units), trains for ``train_minutes`` on the CPU and
        rolls out 2,000 walkers × 100 jumps of 0.5 time units (10⁵ time units).
    n_workers : int, optional
        dask LocalCluster workers for the MD campaign (0 = in-process).
    seed : int
        Seed of the campaign, the training and the rollout.
    train_minutes : float
        Training wall-clock budget (the full demo).
    """
    from itomd.analysis import analyze, compare
    from itomd.analysis.report import write_report
    from itomd.training import ITOEstimator
    from itomd.models import TransitionModel
    from itomd.rollout import run_rollout
    from itomd.simulate.campaign import run_campaign

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = SystemSpec("muller-brown")
    system = spec.build()
    tau = system.frame_interval
    plan = demo_plan(quick, seed, train_minutes)
    n_traj, n_frames, chunk, config = plan.n_trajectories, plan.n_frames, plan.chunk_size, plan.config
    lag, n_walkers, n_jumps = plan.lag, plan.n_walkers, plan.n_jumps
    timings = {}

    print(f"[1/5] simulating {n_traj} Müller–Brown trajectories of {n_frames} frames "
          f"(τ = {tau:g}, kT = {system.kT:g}) ...", flush=True)
    t0 = time.perf_counter()
    store = run_campaign(spec, out / "trajectories", n_trajectories=n_traj, n_frames=n_frames, seed=seed,
                         chunk_size=chunk, n_workers=n_workers, progress=True)
    md = store.trajectories()
    timings["simulate"] = time.perf_counter() - t0

    print("[2/5] exact reference by the square-root approximation ...", flush=True)
    reference = exact_reference(system)
    _write_json(out / "reference.json", {"system": system.metadata(), **reference.to_dict()})

    run = out / "run"
    print(f"[3/5] training the ITO model (lags 1–{config.max_lag} τ, "
          + (f"{config.max_steps} steps" if config.minutes is None else f"≤ {config.minutes:g} CPU minutes")
          + ") ...", flush=True)
    t0 = time.perf_counter()
    finished = run / "finished"  # written once training ended (all steps, or the time budget)
    if finished.exists():
        model = TransitionModel.load(run)
    else:
        resume = (run / "checkpoint.pt").exists()
        model = ITOEstimator(config).fit(md, tau, run_dir=run, resume=resume, system=spec).fetch_model()
        write_text_atomically(finished, json.dumps(model.info.get("steps")))
    timings["train"] = time.perf_counter() - t0

    print(f"[4/5] rolling out {n_walkers} walkers × {n_jumps} jumps of {lag} τ = {lag * tau:g} time units ...", flush=True)
    rng = np.random.default_rng(seed)
    x0 = reference.sample(n_walkers, rng)
    t0 = time.perf_counter()
    rollout_store = run_rollout(model, out / "rollout", lag=lag, n_jumps=n_jumps, x0=x0, seed=seed,
                                progress=True, model_source=str(run))
    timings["rollout"] = time.perf_counter() - t0

    print("[5/5] analysis (deeptime MSMs, FES, JS divergence, CK test) of the rollouts and of MD; report ...", flush=True)
    t0 = time.perf_counter()
    rollouts = rollout_store.trajectories()
    md_result = analyze(md, tau, system.kT, reference=reference, seed=seed)
    rollout_result = analyze(rollouts, lag * tau, system.kT, reference=reference, seed=seed,
                             lags=list(plan.analysis_lags))
    compare(rollout_result, md, tau, label="MD", seed=seed)
    timings["analyze"] = time.perf_counter() - t0
    md_summary = md_result.to_dict()
    summary = rollout_result.to_dict()
    summary["timings_seconds"] = {k: round(v, 2) for k, v in timings.items()}
    summary["model"] = model.info
    _write_json(out / "analysis_md.json", md_summary)
    _write_json(out / "analysis.json", summary)
    report = write_report(rollout_result, out / "report.html",
                          title="itomd demo: ITO surrogate of Müller–Brown (kT = 10) vs exact and MD",
                          extra_sections=[("MD data (the training set) analysed alone", _md_section(md_result))])

    exact = reference.implied_timescales(1)[0]
    its = summary["implied_timescales"]
    print(f"slowest implied timescale: exact {exact:.3f}; ITO rollout "
          + ", ".join(_timescale_text(t[0], lt, r[0], lo[0], up[0])
                      for t, lt, r, lo, up in zip(its["timescales"], its["lag_times"], its["resolved"], its["lower"],
                                                  its["upper"]) if t[0] is not None)
          + f" (brackets: {its['confidence']:.0%} Bayesian interval of the rollout's MSM; parentheses: not resolved at"
            " that lag, left out of summaries)")
    print(f"stationary JS divergence vs exact: rollout {summary['js_divergence']:.4f} nats, "
          f"MD {md_summary['js_divergence']:.4f} nats")
    return report


def _timescale_text(timescale: float, lag_time: float, resolved: bool, lower: float | None = None,
                    upper: float | None = None) -> str:
    """One implied timescale for the demo's summary line, with its interval where there is one; in
    parentheses where it is not resolved."""
    text = f"{timescale:.3f}" if resolved else f"({timescale:.3f})"
    if lower is not None and upper is not None:
        text += f" [{lower:.2f}, {upper:.2f}]"
    return f"{text} (lag {lag_time:g})"


def _md_section(result) -> str:
    its = result.implied_timescales
    rows = "".join(f"<tr><td>{lt:.4g}</td><td>{t:.4g}</td><td>{'yes' if r else 'no'}</td></tr>"
                   for lt, t, r in zip(its.lag_times, its.timescales[:, 0], its.resolved[:, 0]))
    js = "–" if result.js_divergence is None else f"{result.js_divergence.value:.4g}"
    return (f"<p>{result.n_trajectories} MD trajectories, {result.n_frames} frames; stationary JS divergence vs exact "
            f"{js} nats.</p><table><tr><th>lag time</th><th>MSM slowest timescale</th><th>resolved</th></tr>{rows}"
            f"</table>")


def _write_json(path: Path, payload: dict) -> None:
    write_text_atomically(path, json.dumps(payload, indent=2))
