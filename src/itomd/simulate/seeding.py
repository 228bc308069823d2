"""Start points for BoPITO's data generation: samples of an equilibrium model (a Boltzmann generator).

Many short trajectories started from equilibrium samples cover every metastable state with little
simulation, which is what BoPITO's dynamic part needs (Viguera Díez et al. 2024). The samples are
drawn once per (model, seed, count) and cached next to the campaign's trajectories
(``equilibrium_starts.npz``, written atomically), so a resumed campaign starts from exactly the
same points whatever the threads or hardware of the resuming process.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from itomd.data.store import write_atomically
from itomd.errors import DataFileError, InvalidInputError

#: Cache of the drawn start points inside the campaign's output directory.
START_POINTS_FILE = "equilibrium_starts.npz"
#: Samples drawn per network batch.
SAMPLE_CHUNK = 4096


def equilibrium_model_start_points(model_path: str | os.PathLike, out_dir: str | os.PathLike, n: int, seed: int,
                                   dim: int, progress: bool = False) -> np.ndarray:
    """``n`` start points drawn from an equilibrium model (or a BoPITO model's prior), cached.

    Parameters
    ----------
    model_path : path
        Run directory or model file of ``itomd train --equilibrium`` (or a BoPITO model).
    out_dir : path
        The campaign's output directory (the cache lives there).
    n : int
        Number of trajectories.
    seed : int
        Seeds the draw.
    dim : int
        The system's dimension (checked against the model's).

    Returns
    -------
    np.ndarray, shape [n, dim], float64
    """
    from itomd.model import TransitionModel

    model_path = Path(model_path)
    model_file = model_path / "model.pt" if model_path.is_dir() else model_path
    model = TransitionModel.load(model_file)
    if model.conditional and not model.is_bopito:
        raise InvalidInputError(f"{model_path} is an ITO transition model; --from-equilibrium-model needs an "
                                "equilibrium model (itomd train --equilibrium) or a BoPITO model")
    if model.dim != dim:
        raise InvalidInputError(f"{model_path} models {model.dim}-dimensional states but the system is {dim}-dimensional")
    fingerprint = hashlib.sha256(model_file.read_bytes()).hexdigest()
    cache = Path(out_dir) / START_POINTS_FILE
    cached = _read_cache(cache)
    if cached is not None and cached["model_sha256"] == fingerprint and cached["seed"] == seed and len(cached["points"]) == n:
        return cached["points"]

    generator = torch.Generator().manual_seed(int(seed))
    parts = []
    with tqdm(total=n, disable=not progress, unit="sample", desc="equilibrium-model starts") as bar:
        for start in range(0, n, SAMPLE_CHUNK):
            count = min(SAMPLE_CHUNK, n - start)
            parts.append(model.sample_equilibrium(count, generator=generator).double().cpu().numpy())
            bar.update(count)
    points = np.concatenate(parts)
    if not np.all(np.isfinite(points)):
        raise InvalidInputError(f"{model_path} produced non-finite samples; retrain the equilibrium model")
    cache.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, points=points, model_sha256=np.array(fingerprint), seed=np.array(int(seed)))
    write_atomically(cache, lambda temporary: temporary.write_bytes(buffer.getvalue()))
    return points


def _read_cache(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            return {"points": np.asarray(data["points"], dtype=np.float64), "model_sha256": str(data["model_sha256"]),
                    "seed": int(data["seed"])}
    except (OSError, ValueError, KeyError) as exc:
        raise DataFileError(f"{path} is corrupt ({str(exc).splitlines()[0]}); delete it to draw new start points") from None
