"""Metropolis–Hastings rollouts against plain ones on a toy system with an exact reference (issue 14, item 2).

For one trained model (e.g. the demo's 4-minute Müller–Brown model, ``make demo``'s ``run``) and each
lag: the same start points rolled out three ways — the default sampler (stochastic Heun), the
probability-flow sampler alone (MH's proposal, to separate the sampler's own error) and
Metropolis–Hastings with that proposal — each scored by the stationary JS divergence of the frames
after a burn-in against the exact density (coarse 25 × 25 bins, so that the sampling floor is well
below the model's error), the normalised autocorrelation of the first coordinate at one jump against
the exact dynamics' (what rejections do to the kinetics), the acceptance rate and the wall time per
jump. The exact dynamics — the system's own overdamped integrator from the same starts, one frame per
jump — gives the floor of an ensemble of the same shape (its frames are as correlated as the true
dynamics makes them); the JS divergence of as many independent exact draws is the floor without
correlation.

    .venv/bin/python bench/metropolis.py --run /tmp/demo/run --from /tmp/demo/trajectories --lags 10,50,100
"""

from __future__ import annotations

import time

import numpy as np
import torch

from _common import RESULTS, TransitionModel, lag_list, make_parser, parse_args, write_results
import dataclasses

from itomd.analysis.divergence import js_divergence
from itomd.data.store import TrajectoryStore
from itomd.simulate.engines import LangevinEngine
from itomd.metropolis import MetropolisHastings
from itomd.rollout import rollout, rollout_metropolis
from itomd.systems.reference import exact_reference

BINS = 25


def main() -> None:
    parser = make_parser(__doc__, seed=0, threads=1)
    parser.add_argument("--run", required=True, help="a trained transition model (run directory or model.pt)")
    parser.add_argument("--from", dest="from_store", required=True, help="a store whose last frames start the walkers")
    parser.add_argument("--lags", type=lag_list, default=[10, 50, 100])
    parser.add_argument("--walkers", type=int, default=2000)
    parser.add_argument("--n-jumps", type=int, default=100)
    parser.add_argument("--burn-in", type=int, default=20)
    parser.add_argument("--n-steps", type=int, default=10, help="noise levels of the flow sampler and MH")
    args = parse_args(parser)
    model = TransitionModel.load(args.run)
    system = model.system.build()
    reference = exact_reference(system)
    trajectories = TrajectoryStore(args.from_store).trajectories()
    rng = np.random.default_rng(args.seed)
    starts = np.stack([trajectories[i % len(trajectories)][-1] for i in rng.permutation(args.walkers)])
    n_frames = args.walkers * (args.n_jumps - args.burn_in)
    floor = js_divergence(reference.sample(n_frames, seed=args.seed + 1), reference=reference, bins=BINS).value
    rows = []
    for lag in args.lags:
        row = {"lag": lag, "lag_time": lag * model.frame_interval}
        metropolis = MetropolisHastings.for_model(model, n_steps=args.n_steps)
        jumping = LangevinEngine(dataclasses.replace(system, frame_interval=lag * system.frame_interval))
        for label, run in (
            ("exact_dynamics", lambda g: (jumping.run(starts, args.n_jumps + 1, seed=args.seed), None)),
            ("default", lambda g: (rollout(model, starts, lag, args.n_jumps, generator=g, progress=True), None)),
            ("flow", lambda g: (rollout(model, starts, lag, args.n_jumps, generator=g, sampler="flow",
                                        n_steps=args.n_steps, progress=True), None)),
            ("metropolis", lambda g: rollout_metropolis(model, starts, lag, args.n_jumps, metropolis, generator=g,
                                                        progress=True)),
        ):
            start = time.perf_counter()
            frames, accepted = run(torch.Generator().manual_seed(args.seed))
            seconds = time.perf_counter() - start
            kept = frames[:, args.burn_in:]
            x = kept[..., 0] - kept[..., 0].mean()
            c1 = float((x[:, 1:] * x[:, :-1]).mean() / (x**2).mean())
            row[label] = {"js_divergence": js_divergence(kept.reshape(-1, frames.shape[-1]), reference=reference,
                                                         bins=BINS).value,
                          "autocorrelation": c1, "seconds_per_jump": seconds / args.n_jumps,
                          "acceptance_rate": None if accepted is None else float(accepted.mean() / args.n_jumps)}
            print(f"lag {lag} {label}: {row[label]}", flush=True)
        rows.append(row)
    result = {"model": str(args.run), "system": system.name, "walkers": args.walkers, "n_jumps": args.n_jumps,
              "burn_in": args.burn_in, "n_steps_flow": args.n_steps, "bins": [BINS, BINS],
              "js_floor_independent_draws": floor, "lags": rows}
    path = write_results((args.out or RESULTS) / "metropolis.json", result, provenance=True)
    print(f"floor {floor:.5f}; wrote {path}")


if __name__ == "__main__":
    main()
