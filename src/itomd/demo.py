"""The demo pipeline on Müller–Brown: simulate → exact reference → analyze → HTML report.

``itomd demo --out DIR`` (and ``make demo``) runs it. It is resumable like every campaign: a second
run reuses the finished trajectories.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from itomd.data.store import write_text_atomically
from itomd.systems import SystemSpec
from itomd.systems.reference import exact_reference


def run_demo(out: Path, quick: bool = False, n_workers: int | None = None, seed: int = 2026) -> Path:
    """Run the Müller–Brown pipeline and return the path of the HTML report.

    Parameters
    ----------
    out : Path
        Output directory; holds ``trajectories/``, ``reference.json``, ``analysis.json`` and
        ``report.html``.
    quick : bool
        A much smaller campaign (seconds; for tests). The full demo simulates 4,000 equilibrium-started
        trajectories of 5 time units (20,000 time units, ≈ 4,000 slowest relaxation times) so the MSM's
        slowest implied timescale is well determined.
    n_workers : int, optional
        dask LocalCluster workers (0 = in-process).
    seed : int
        Campaign seed.
    """
    from itomd.analysis import analyze
    from itomd.analysis.report import write_report
    from itomd.simulate.campaign import run_campaign

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = SystemSpec("muller-brown")
    system = spec.build()
    n_traj, n_frames, chunk = (200, 101, 100) if quick else (4000, 501, 500)

    print(f"[1/4] simulating {n_traj} Müller–Brown trajectories of {n_frames} frames "
          f"(τ = {system.frame_interval:g}, kT = {system.kT:g}) ...", flush=True)
    t0 = time.perf_counter()
    store = run_campaign(spec, out / "trajectories", n_trajectories=n_traj, n_frames=n_frames, seed=seed,
                         chunk_size=chunk, n_workers=n_workers, progress=True)
    t_sim = time.perf_counter() - t0

    print("[2/4] exact reference by the square-root approximation ...", flush=True)
    reference = exact_reference(system)
    _write_json(out / "reference.json", {"system": system.metadata(), **reference.to_dict()})

    print("[3/4] MSM analysis (deeptime): implied timescales, CK test, FES, JS divergence ...", flush=True)
    t0 = time.perf_counter()
    result = analyze(store.trajectories(), system.frame_interval, system.kT, reference=reference,
                     seed=seed, progress=True)
    t_ana = time.perf_counter() - t0
    summary = result.to_dict()
    summary["timings_seconds"] = {"simulate": round(t_sim, 2), "analyze": round(t_ana, 2)}
    _write_json(out / "analysis.json", summary)

    print("[4/4] writing the HTML report ...", flush=True)
    report = write_report(result, out / "report.html", title="itomd demo: Müller–Brown at kT = 10")

    its = summary["implied_timescales"]
    exact = reference.implied_timescales(1)[0]
    print(f"slowest implied timescale: exact {exact:.3f}; MSM "
          + ", ".join(f"{t[0]:.3f} (lag {lt:g})" for t, lt in zip(its["timescales"], its["lag_times"])
                        if t[0] is not None))
    if summary.get("js_divergence") is not None:
        print(f"stationary JS divergence vs exact: {summary['js_divergence']:.4f} nats")
    return report


def _write_json(path: Path, payload: dict) -> None:
    write_text_atomically(path, json.dumps(payload, indent=2))
