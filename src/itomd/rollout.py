r"""Surrogate trajectories: chain jumps x_{k+1} ~ p_θ(· | x_k, N) for many walkers in one batch.

:func:`rollout` returns the frames of one batch of walkers in memory; :func:`run_rollout` streams
many walkers into a :class:`~itomd.data.store.TrajectoryStore`, chunk by chunk, resumably — the
``itomd sample`` command. A rollout of lag N has frame interval N·τ; stores written here carry the
system's spec, kT and that frame interval, so ``itomd analyze`` reads them like MD data.

Blow-ups
--------
After every jump (and its relaxation, if any) the new states are checked: a non-finite value, or a
coordinate beyond the training data's range by more than ``tolerance`` × its extent, stops the
rollout with a :class:`RolloutBlowUpError` that says which jump and how many walkers — frames
already written stay valid, nothing after the blow-up is written.

With ``max_redraws = K > 0`` a walker whose jump blew up draws that jump again from the same state,
up to K times, before the rollout stops. One rare failed draw then costs one walker a redraw
instead of the whole batch its rollout. The frames are then samples of the model's transition
density *conditioned on* staying finite and in range — a bias of the order of the redrawn fraction,
which is why it is off by default and counted: per-chunk metadata ``redrawn_jumps``, pooled by
:func:`redrawn_fraction` (``itomd sample`` and ``itomd analyze`` print it). A model that needs
many redraws is a model to retrain, not to redraw.

Determinism
-----------
Chunk c of walkers draws all its noise from a generator seeded by
``SeedSequence(seed, spawn_key=(c,))``, so a resumed rollout writes the same frames as an
uninterrupted one. The resumable writing is :class:`~itomd.data.jobs.ChunkedJob` (shared with
simulation campaigns); start points come from :mod:`itomd.data.starts`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from itomd.data.jobs import ChunkedJob, chunk_items, chunk_seed, write_chunk
from itomd.data.store import TrajectoryStore
from itomd.diffusion.samplers import sampler_named
from itomd._files import json_normalised
from itomd.errors import DataFileError, InvalidInputError, ItomdError
from itomd.metropolis import PROPOSAL_SAMPLER, MetropolisHastings
from itomd.models import TransitionModel
from itomd.simulate.relax import ThermalRelaxation
from itomd.validation import require_int

#: Walkers per chunk (one batch through the network, one resumable unit on disk).
DEFAULT_WALKER_CHUNK = 1024
#: Allowed excursion beyond the training range, in units of the range's extent per coordinate.
DEFAULT_TOLERANCE = 0.5


class RolloutBlowUpError(ItomdError):
    """The surrogate produced non-finite states or left the training data's range."""


@torch.no_grad()
def rollout(model: TransitionModel, x0: np.ndarray | torch.Tensor, lag: int, n_jumps: int,
            generator: torch.Generator | None = None, sampler: str | None = None, n_steps: int | None = None,
            tolerance: float = DEFAULT_TOLERANCE, progress: bool = False,
            relax: Callable[[np.ndarray], np.ndarray] | None = None, max_redraws: int = 0,
            return_redraws: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Chain ``n_jumps`` jumps of lag N from each start point.

    Parameters
    ----------
    model : TransitionModel
        A conditional (transition) model.
    x0 : array_like, shape [W, dim]
        Start states.
    lag : int
        N in frames of the training data (a jump covers N·τ).
    n_jumps : int
        Jumps per walker.
    generator : torch.Generator, optional
    sampler, n_steps :
        Sampler name and noise levels per jump (see :meth:`TransitionModel.sample`; default: the
        model's own, :attr:`TransitionModel.default_sampler`).
    tolerance : float
        Blow-up threshold (see module docs).
    progress : bool
    relax : callable, optional
        Applied to the states [W, dim] after every jump that did not blow up, e.g. a
        :class:`~itomd.simulate.relax.ThermalRelaxation`; frames are its results, checked again.
    max_redraws : int
        Draw a blown-up walker's jump again, from the same state, up to this many times before the
        rollout stops (module docs: the bias this brings); 0 stops at the first blow-up.
    return_redraws : bool
        Also return how many jumps of each walker were redrawn.

    Returns
    -------
    frames : np.ndarray, shape [W, n_jumps + 1, dim], float32
        Frame 0 is the start point.
    redrawn : np.ndarray, shape [W], int
        Only with ``return_redraws``: how many of each walker's jumps were drawn more than once.

    Raises
    ------
    RolloutBlowUpError
    """
    _check_rollout_arguments(model, lag, n_jumps)
    require_int("max_redraws", max_redraws, 0)
    x = model.states(x0, "start points")
    frames = torch.empty((x.shape[0], n_jumps + 1, model.dim), dtype=torch.float32)
    frames[:, 0] = x.cpu()
    redrawn = torch.zeros(x.shape[0], dtype=torch.long)

    def jump(states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """New states and which of them blew up (relaxed where they did not)."""
        new = model.sample(states, lag=lag, sampler=sampler, n_steps=n_steps, generator=generator)
        bad = model.outside_training_range(new, tolerance)
        if relax is not None and not bool(bad.all()):
            new = new.clone()
            new[~bad] = model.states(relax(new[~bad].cpu().numpy()), "relaxed states").to(new.dtype)
            bad = model.outside_training_range(new, tolerance)
        return new, bad

    for k in tqdm(range(n_jumps), disable=not progress, unit="jump", desc=f"rollout lag {lag}", leave=False):
        new, bad = jump(x)
        if max_redraws:
            redrawn += bad.cpu().long()
        for _ in range(max_redraws):
            if not bool(bad.any()):
                break
            rows = torch.nonzero(bad).flatten()
            new[rows], bad[rows] = jump(x[rows])
        if bad.any():
            tried = f" (each drawn {max_redraws + 1} times)" if max_redraws else ""
            raise RolloutBlowUpError(
                f"rollout blew up at jump {k + 1}: {int(bad.sum())} of {len(bad)} walkers are non-finite or beyond "
                f"the training data's range{tried} (tolerance {tolerance:g} × range); try a smaller lag, more sampler "
                "steps, a better-trained model" + ("" if max_redraws else " or redrawing blown-up jumps (--redraws 3)"))
        x = new
        frames[:, k + 1] = x.cpu()
    return (frames.numpy(), redrawn.numpy()) if return_redraws else frames.numpy()


@torch.no_grad()
def rollout_metropolis(model: TransitionModel, x0: np.ndarray | torch.Tensor, lag: int, n_jumps: int,
                       metropolis: MetropolisHastings, generator: torch.Generator | None = None,
                       tolerance: float = DEFAULT_TOLERANCE, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Chain ``n_jumps`` Metropolis–Hastings jumps of lag N from each start point
    (:mod:`itomd.metropolis`): a rejected jump repeats the frame. Proposals beyond the training range
    (``tolerance``) or with non-finite coordinates are rejected, so such a rollout never blows up.

    Returns
    -------
    frames : np.ndarray, shape [W, n_jumps + 1, dim], float32
        Frame 0 is the start point (as the model sees it: centred for molecules).
    accepted : np.ndarray, shape [W], int
        Accepted jumps per walker.
    """
    _check_rollout_arguments(model, lag, n_jumps)
    x = model.spec.representation.prepare_states(model.states(x0, "start points"))
    log_mu = metropolis.log_mu(x)
    frames = torch.empty((x.shape[0], n_jumps + 1, model.dim), dtype=torch.float32)
    frames[:, 0] = x.cpu()
    accepted = torch.zeros(x.shape[0], dtype=torch.long)
    bar = tqdm(range(n_jumps), disable=not progress, unit="jump", desc=f"MH rollout lag {lag}", leave=False)
    for k in bar:
        x, log_mu, accepted_now = metropolis.jump(model, x, lag, log_mu, generator=generator, tolerance=tolerance)
        accepted += accepted_now.cpu().long()
        frames[:, k + 1] = x.cpu()
        bar.set_postfix(acceptance=f"{float(accepted.sum()) / (len(accepted) * (k + 1)):.2f}")
    return frames.numpy(), accepted.numpy()


def _check_rollout_arguments(model: TransitionModel, lag: int, n_jumps: int) -> None:
    if not isinstance(model, TransitionModel) or not model.conditional:
        raise InvalidInputError("rollouts need a transition (conditional) model, not an equilibrium model")
    require_int("lag", lag)
    require_int("n_jumps", n_jumps)


def run_rollout(model: TransitionModel, out_dir: str | os.PathLike, lag: int, n_jumps: int, x0: np.ndarray,
                seed: int = 0, chunk_size: int = DEFAULT_WALKER_CHUNK, sampler: str | None = None,
                n_steps: int | None = None, tolerance: float = DEFAULT_TOLERANCE, progress: bool = True,
                model_source: str | None = None, metropolis: MetropolisHastings | None = None,
                relax_steps: int = 0, max_redraws: int = 0) -> TrajectoryStore:
    """Roll out one trajectory per start point into ``out_dir``; resumable chunk by chunk.

    Parameters
    ----------
    model : TransitionModel
    out_dir : str or os.PathLike
        Trajectory store to write (a re-run with the same parameters resumes it).
    lag, n_jumps : int
    x0 : np.ndarray, shape [W, dim]
        One start point per walker.
    seed : int
    chunk_size : int
        Walkers per batch.
    sampler, n_steps, tolerance :
        As for :func:`rollout`.
    progress : bool
    model_source : str, optional
        Where the model came from (recorded in the manifest).
    metropolis : MetropolisHastings, optional
        Accept or reject every jump (:func:`rollout_metropolis`; ``sampler`` must then be
        :data:`~itomd.metropolis.PROPOSAL_SAMPLER`). Each trajectory's metadata records
        ``metropolis``, ``metropolis_probes`` and the ``acceptance_rate`` of its chunk;
        :func:`acceptance_rate` pools them.
    relax_steps : int
        Molecules: follow every jump with this many steps of strongly damped Langevin dynamics of the
        force field (:class:`~itomd.simulate.relax.ThermalRelaxation`, seeded per chunk); 0: none.
        The frame interval stays N·τ (the segment runs at a collision rate far above the physical
        one: a Boltzmann-preserving correction, not simulated time); metadata ``relax_steps``,
        ``relax_friction``.
    max_redraws : int
        As for :func:`rollout`; each trajectory's metadata records ``max_redraws`` and the
        ``redrawn_jumps`` of its chunk, :func:`redrawn_fraction` pools them.

    Returns
    -------
    TrajectoryStore
        W trajectories of shape [n_jumps + 1, dim] with frame interval ``lag × model.frame_interval``.
    """
    _check_rollout_arguments(model, lag, n_jumps)
    x0 = np.asarray(x0, dtype=np.float64)
    if x0.ndim != 2 or x0.shape[1] != model.dim:
        raise InvalidInputError(f"start points must have shape [W, {model.dim}], got {x0.shape}")
    require_int("chunk_size", chunk_size)
    sampler = model.default_sampler if sampler is None else sampler
    n_steps = model.default_n_steps if n_steps is None else n_steps
    sampler_named(sampler)  # checked before the job starts (and its progress bar)
    if metropolis is not None and sampler != PROPOSAL_SAMPLER:
        raise InvalidInputError(f"Metropolis-Hastings proposes with the probability-flow sampler "
                                f"('{PROPOSAL_SAMPLER}'), whose density it evaluates, not '{sampler}'")
    n_walkers = len(x0)
    require_int("relax_steps", relax_steps, 0)
    require_int("max_redraws", max_redraws, 0)
    if max_redraws and metropolis is not None:
        raise InvalidInputError("redraws and Metropolis-Hastings do not mix: MH already rejects proposals that blow up")
    system = _recorded_system(model)
    relaxation = None
    if relax_steps:
        if metropolis is not None:
            raise InvalidInputError("relaxation and Metropolis-Hastings do not mix: the relaxed jump has no density "
                                    "to accept with (MH already samples the Boltzmann distribution)")
        if system is None:
            raise InvalidInputError("relaxation runs the model's molecule, but the model records no system to build")
        relaxation = ThermalRelaxation(system, relax_steps, seed=0)  # checks the system before the job starts
    frame_interval = lag * model.frame_interval
    parameters = json_normalised({
        "lag": int(lag), "n_jumps": int(n_jumps), "n_walkers": n_walkers, "seed": int(seed), "chunk_size": chunk_size,
        "sampler": sampler, "n_steps": int(n_steps), "model": model_source, "model_steps": model.info.get("steps"),
        "x0_checksum": float(np.round(x0.sum(), 10)), "lambda_interpolation": model.lambda_interpolation,
        **({} if metropolis is None else {"metropolis": True, "metropolis_probes": metropolis.n_probes}),
        **({} if relaxation is None else {"relax_steps": int(relax_steps)}),
        **({} if not max_redraws else {"max_redraws": int(max_redraws)}),
        **({} if model.precision == "float32" else {"precision": model.precision}),
    })
    metadata = _trajectory_metadata(model, system, frame_interval, lag)
    if relaxation is not None:
        metadata.update(relax_steps=int(relax_steps), relax_friction=relaxation.friction)
    if model_source is not None:  # where later commands (itomd report) find the model and its check result
        metadata["model"] = os.path.abspath(model_source)

    def make_task(chunk: int, store_dir: Path) -> tuple[int, range, Path]:
        return chunk, chunk_items(chunk, chunk_size, n_walkers), store_dir

    def run_task(task: tuple[int, range, Path]) -> int:
        chunk, walkers, store_dir = task
        generator = torch.Generator(device=model.device).manual_seed(chunk_seed(seed, chunk) % (2**63))
        starts = x0[walkers.start:walkers.stop]
        if metropolis is None:
            relax = None if relaxation is None else ThermalRelaxation(system, relax_steps,
                                                                       seed=chunk_seed(seed, chunk) % (2**31))
            frames, redrawn = rollout(model, starts, lag, n_jumps, generator=generator, sampler=sampler,
                                      n_steps=n_steps, tolerance=tolerance, progress=progress, relax=relax,
                                      max_redraws=max_redraws, return_redraws=True)
            extra = {} if not max_redraws else {"max_redraws": int(max_redraws), "redrawn_jumps": int(redrawn.sum())}
            return write_chunk(store_dir, walkers.start, frames, {**metadata, "chunk": chunk, **extra})
        frames, accepted = rollout_metropolis(model, starts, lag, n_jumps, metropolis, generator=generator,
                                              tolerance=tolerance, progress=progress)
        rate = float(accepted.sum()) / (len(accepted) * n_jumps)
        return write_chunk(store_dir, walkers.start, frames,
                           {**metadata, "chunk": chunk, "metropolis": True, "acceptance_rate": rate,
                            "metropolis_probes": metropolis.n_probes})

    def chunk_complete(store: TrajectoryStore, chunk: int) -> bool:
        for index in chunk_items(chunk, chunk_size, n_walkers):
            try:
                if store.read(index).shape != (n_jumps + 1, model.dim):
                    return False
            except (DataFileError, InvalidInputError):
                return False
        return True

    job = ChunkedJob(section="rollout", parameters=parameters, n_items=n_walkers, chunk_size=chunk_size,
                     make_task=make_task, run_task=run_task, chunk_complete=chunk_complete, system=system,
                     description=f"sample lag {lag}", unit="walker")
    return job.run(out_dir, progress=progress)


def _recorded_system(model: TransitionModel) -> Any:
    """The system the model records (its store files and metadata go with the rollout), or None."""
    if model.system is None:
        return None
    try:
        return model.system.build()
    except ItomdError:
        return None


def _trajectory_metadata(model: TransitionModel, system: Any, frame_interval: float, lag: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    if model.system is not None:
        if system is not None:
            metadata.update(system.metadata())
        metadata["spec"] = json.dumps(model.system.to_dict())
    metadata.update({"frame_interval": frame_interval, "lag": int(lag), "source": "itomd rollout",
                     "data_frame_interval": model.frame_interval,
                     "model_kind": "bopito" if model.is_bopito else "ito"})
    if model.is_bopito:
        metadata.update({"lambda_hat": model.lambda_hat, "lambda_interpolation": model.lambda_interpolation})
    if model.precision != "float32":  # the molecular network's pair tensors (TransitionModel.set_precision)
        metadata["precision"] = model.precision
    if model.compiled:  # evaluated through torch.compile (TransitionModel.set_compiled)
        metadata["compiled"] = True
    return metadata


def acceptance_rate(store: TrajectoryStore) -> float | None:
    """The fraction of accepted jumps of a Metropolis–Hastings rollout (pooled over its
    trajectories, which all have the same number of jumps); None for any other store."""
    rates = []
    for index in store.indices:
        metadata = store.read_metadata(index)
        if not metadata.get("metropolis"):
            return None
        rates.append(float(metadata["acceptance_rate"]))
    return float(np.mean(rates)) if rates else None


def redrawn_fraction(store: TrajectoryStore) -> float | None:
    """The fraction of jumps drawn more than once in a rollout made with ``max_redraws > 0`` (every
    chunk's ``redrawn_jumps`` over all its walkers' jumps); None for a rollout without redraws."""
    chunks: dict[int, int] = {}
    for index in store.indices:
        metadata = store.read_metadata(index)
        if "redrawn_jumps" not in metadata:
            return None
        chunks[int(metadata["chunk"])] = int(metadata["redrawn_jumps"])
    if not chunks:
        return None
    n_jumps = len(store) * (store.read(store.indices[0]).shape[0] - 1)  # every walker makes the same jumps (≥ 1)
    return float(sum(chunks.values())) / n_jumps


def simulated_time(store: TrajectoryStore, n_jumps: int) -> float:
    """Physical time covered by a rollout's store of ``n_jumps`` jumps per walker, summed over walkers."""
    return float(len(store)) * n_jumps * float(store.metadata["frame_interval"])


__all__: Sequence[str] = ["RolloutBlowUpError", "acceptance_rate", "redrawn_fraction", "rollout",
                          "rollout_metropolis", "run_rollout", "simulated_time"]
