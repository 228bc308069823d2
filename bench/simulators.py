"""Benchmark: batched itomd integrators vs deeptime's C++ Prinz integrator, and timestep bias.

Prints a table and writes bench/results/simulators.json (``--out`` elsewhere). Run with

    .venv/bin/python bench/simulators.py

``--quick --out DIR``: a smoke run (few walkers and steps, one timestep per system).

Measured side by side in one process, one thread each, so the ratios are comparable; absolute
numbers vary with the machine.
"""

from __future__ import annotations

import platform
import time

import numpy as np
import torch
from _common import make_parser, parse_args, write_results

from itomd.analysis import js_divergence_of_distributions
from itomd.simulate import simulate
from itomd.systems import resolve_system
from itomd.systems.reference import exact_reference

#: Walkers, steps and timesteps measured; --quick: a smoke run's.
SIZES = dict(prinz_walkers=(1, 64, 1024, 8192), muller_brown_walkers=(1024, 8192), steps=2000,
             prinz_timesteps=(1e-5, 1e-4, 5e-4), muller_brown_timesteps=(2e-5, 5e-5, 1e-4, 2e-4),
             prinz_bias_walkers=1000, muller_brown_bias_walkers=20000)
QUICK = dict(prinz_walkers=(1, 64), muller_brown_walkers=(64,), steps=200, prinz_timesteps=(1e-4,),
             muller_brown_timesteps=(1e-4,), prinz_bias_walkers=50, muller_brown_bias_walkers=500)


def throughput(system_name: str, walkers: int, steps: int = 2000, integrator: str = "overdamped") -> float:
    """Walker-steps per wall-second of :func:`itomd.simulate.simulate`."""
    system = resolve_system(system_name)
    x0 = torch.as_tensor(exact_reference(system).sample(walkers, seed=0))
    n_frames = max(2, steps // system.steps_per_frame + 1)
    t0 = time.perf_counter()
    simulate(system, x0, n_frames, integrator=integrator, generator=torch.Generator().manual_seed(0))
    return walkers * (n_frames - 1) * system.steps_per_frame / (time.perf_counter() - t0)


def deeptime_prinz_throughput(walkers: int, steps: int = 2000) -> float:
    """Walker-steps per wall-second of deeptime's C++ Euler–Maruyama for Prinz at the same timestep."""
    from deeptime.data import prinz_potential

    model = prinz_potential(h=1e-4, n_steps=50)
    x0 = np.zeros((walkers, 1))
    t0 = time.perf_counter()
    n_calls = steps // 50
    x = x0
    for _ in range(n_calls):
        x = model(x, seed=-1, n_jobs=1)
    return walkers * n_calls * 50 / (time.perf_counter() - t0)


def msm_free_prinz_bias(timestep: float, walkers: int = 1000, n_frames: int = 400) -> dict:
    """Stationary-histogram JS divergence (nats, 48 bins on [-1.2, 1.2]) vs exact, after burn-in."""
    system = resolve_system("prinz", timestep=timestep)
    ref = exact_reference(system)
    x0 = torch.as_tensor(ref.sample(walkers, seed=1))
    traj = simulate(system, x0, n_frames, generator=torch.Generator().manual_seed(2))[:, 100:, 0].numpy().ravel()
    edges = np.linspace(-1.2, 1.2, 49)
    p, _ = np.histogram(traj, bins=edges)
    p = p / p.sum()
    q = ref.bin_probabilities([edges])
    q = q / q.sum()
    return {"timestep": timestep, "js_divergence_nats": js_divergence_of_distributions(p, q), "bins": 48}


def muller_brown_timestep_bias(timestep: float, walkers: int = 20000) -> dict:
    """⟨U⟩ and stationary JS (nats, 30×30 bins on the box) after 0.5–1.0 time units from exact samples."""
    system = resolve_system("muller-brown", timestep=timestep, frame_interval=0.02)
    ref = exact_reference(system, n_grid=200)
    x0 = torch.as_tensor(ref.sample(walkers, seed=5))
    traj = simulate(system, x0, 51, generator=torch.Generator().manual_seed(1))[:, 25:].reshape(-1, 2)
    edges = [np.linspace(-1.7, 1.3, 31), np.linspace(-0.4, 2.1, 31)]
    p, _ = np.histogramdd(traj.numpy(), bins=edges)
    p = p / p.sum()
    q = ref.bin_probabilities(edges)
    q = q / q.sum()
    return {"timestep": timestep, "mean_energy": float(system.potential.energy(traj).mean()),
            "exact_mean_energy": ref.expectation(ref.energy), "js_divergence_nats": js_divergence_of_distributions(p, q),
            "bins": "30x30"}


def main() -> None:
    args = parse_args(make_parser(__doc__, quick=True))
    torch.set_num_threads(1)
    n = QUICK if args.quick else SIZES
    rows = []
    for walkers in n["prinz_walkers"]:
        ours = throughput("prinz", walkers, n["steps"])
        theirs = deeptime_prinz_throughput(walkers, n["steps"])
        rows.append({"system": "prinz", "walkers": walkers, "itomd_walker_steps_per_s": ours,
                     "deeptime_walker_steps_per_s": theirs, "ratio_itomd_over_deeptime": ours / theirs})
    for walkers in n["muller_brown_walkers"]:
        rows.append({"system": "muller-brown", "walkers": walkers,
                     "itomd_walker_steps_per_s": throughput("muller-brown", walkers, n["steps"])})
        rows.append({"system": "muller-brown", "integrator": "baoab", "walkers": walkers,
                     "itomd_walker_steps_per_s": throughput("muller-brown", walkers, n["steps"], integrator="baoab")})
    bias = [msm_free_prinz_bias(dt, walkers=n["prinz_bias_walkers"]) for dt in n["prinz_timesteps"]]
    mb_bias = [muller_brown_timestep_bias(dt, walkers=n["muller_brown_bias_walkers"])
               for dt in n["muller_brown_timesteps"]]
    print(f"{'system':14s} {'walkers':>8s} {'itomd steps/s':>14s} {'deeptime steps/s':>17s} {'ratio':>7s}")
    for r in rows:
        name = r["system"] + ("/baoab" if r.get("integrator") else "")
        dt = r.get("deeptime_walker_steps_per_s")
        dt_text = f"{dt:.3g}" if dt else "-"
        ratio_text = f"{r['ratio_itomd_over_deeptime']:.2f}" if dt else "-"
        print(f"{name:14s} {r['walkers']:8d} {r['itomd_walker_steps_per_s']:14.3g} {dt_text:>17s} {ratio_text:>7s}")
    print("Prinz stationary JS divergence vs exact (nats, 48 bins) by timestep:")
    for b in bias:
        print(f"  dt = {b['timestep']:.0e}: {b['js_divergence_nats']:.2e}")
    print("Müller–Brown <U> (exact {:.2f}) and stationary JS (nats, 30x30 bins) by timestep:".format(
        mb_bias[0]["exact_mean_energy"]))
    for b in mb_bias:
        print(f"  dt = {b['timestep']:.0e}: <U> = {b['mean_energy']:.2f}, JS = {b['js_divergence_nats']:.2e}")
    out = write_results(args.out / "simulators.json",
                        {"machine": platform.processor() or platform.machine(), "torch_threads": 1,
                         "throughput": rows, "timestep_bias": bias, "muller_brown_timestep_bias": mb_bias}, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
