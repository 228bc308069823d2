r"""Data scales of a denoiser estimated from trajectories: :func:`fit_denoiser_spec` and the per-lag
linear prediction :func:`lag_statistics`."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from itomd.data.pairs import PairSampler
from itomd.models.spec import DenoiserSpec, Prior
from itomd.representation import NetworkSize, Representation

#: Start frames drawn per lag for the lag tables.
LAG_STATISTICS_PAIRS = 200_000


def lag_statistics(pairs: PairSampler, representation: Representation, max_lag: int,
                   max_pairs: int = LAG_STATISTICS_PAIRS, seed: int = 0,
                   progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-lag linear (AR) prediction of x_{t+N} from x_t, for N = 1..max_lag.

    With m the representation's data centre (:meth:`~itomd.representation.Representation.data_mean`):
    A(N)_d = Cov(x_{t+N,d}, x_{t,d}) / Var(x_{t,d}) and
    σ(N) = sqrt(mean over pairs and coordinates of (x_{t+N} − m − A(N)(x_t − m))²).
    An isotropic representation (molecules) has one slope for all coordinates,
    A(N) = Σ x_t·x_{t+N} / Σ x_t·x_t — the only linear prediction that commutes with rotations —
    and its targets are in the frame the prediction is compared with them
    (:meth:`~itomd.representation.Representation.prediction_frame`: superposed on x_t for ITO and
    orientation-marginal BoPITO models of molecules).

    Estimated from at most ``max_pairs`` start frames per lag, drawn uniformly (with replacement)
    from NumPy's generator seeded by ``seed`` and located by ``pairs``. Lags no trajectory is long
    enough for repeat the previous lag's values.

    Parameters
    ----------
    pairs : PairSampler
        The prepared training trajectories.
    representation : Representation
    max_lag : int
    max_pairs : int
    seed : int
    progress : bool
        A progress bar over the lags (minutes for molecules at lags to 1000: every pair is superposed).

    Returns
    -------
    coefficients : np.ndarray, shape [max_lag, dim]
    scales : np.ndarray, shape [max_lag], positive
    """
    rng = np.random.default_rng(seed)
    frames = pairs.frames
    mean = torch.as_tensor(representation.data_mean(frames.numpy()), dtype=frames.dtype)
    dim = frames.shape[1]
    coefficients = np.ones((max_lag, dim))
    scales = np.zeros(max_lag)
    for lag in tqdm(range(1, max_lag + 1), desc="lag statistics", unit="lag", leave=False, disable=not progress):
        total = pairs.n_valid_starts(lag)
        if total == 0:
            coefficients[lag - 1], scales[lag - 1] = coefficients[lag - 2], scales[lag - 2]
            continue
        i0, i1 = pairs.pair_indices(lag, torch.as_tensor(rng.integers(total, size=min(total, max_pairs))))
        a = frames[i0]
        b = representation.prediction_frame(frames[i1], a)
        a, b = (a - mean).numpy(), (b - mean).numpy()
        if representation.isotropic:
            slope = np.full(dim, (a * b).sum() / max((a * a).sum(), 1e-300))
        else:
            variance = (a * a).mean(0)
            slope = np.where(variance > 0, (a * b).mean(0) / np.where(variance > 0, variance, 1.0), 1.0)
        coefficients[lag - 1] = slope
        scales[lag - 1] = np.sqrt(np.mean((b - slope * a) ** 2))
    positive = scales[scales > 0]
    floor = positive.min() if positive.size else 1.0
    return coefficients, np.where(scales > 0, scales, floor)


def fit_denoiser_spec(trajectories: Sequence[np.ndarray], representation: Representation, network: NetworkSize,
                      max_lag: int, pairs: PairSampler | None = None, p_mean: float | None = None,
                      p_std: float = 1.2, prior: Prior | None = None, lambda_hat: float | None = None,
                      progress: bool = False, dynamic_part: str = "residual") -> DenoiserSpec:
    """A :class:`DenoiserSpec` with the data scales estimated from prepared ``trajectories``.

    Parameters
    ----------
    trajectories : sequence of np.ndarray, each [n_i, dim]
        Frames as the model sees them (:meth:`~itomd.representation.Representation.prepare_trajectories`).
    representation : Representation
    network : NetworkSize
    max_lag : int
        Largest training lag.
    pairs : PairSampler, optional
        The training pairs of a transition model (None: an equilibrium model of the frames).
    p_mean : float, optional
        Mean of the training ln σ; default EDM's −1.2 (tuned for σ_data = 0.5) in units of the
        data scale: −1.2 + ln 2 relative to σ_d(N) (transition), −1.2 + ln(σ_data/0.5) (equilibrium).
    p_std : float
    prior, lambda_hat : optional
        BoPITO's frozen equilibrium part and λ̂.
    progress : bool
        Show the lag statistics' progress.
    dynamic_part : {"residual", "linear", "transition"}
        BoPITO only: how its dynamic part is formed (:class:`~itomd.diffusion.BoPITODenoiser`).

    σ_data is the pooled standard deviation of the centred frames; transition models also get the
    RMS displacement per lag (:func:`lag_statistics`).
    """
    frames = np.concatenate([np.asarray(t, dtype=np.float64) for t in trajectories])
    representation.check_dimension(frames.shape[1])
    mean = representation.data_mean(frames)
    std = frames.std(0)
    std = np.where(std > 0, std, 1.0)
    sigma_data = float(np.sqrt(np.mean((frames - mean) ** 2))) or 1.0
    lag_scales = lag_coefficients = None
    if pairs is not None:
        coefficients, scales = lag_statistics(pairs, representation, max_lag, progress=progress)
        lag_coefficients = tuple(tuple(float(v) for v in row) for row in coefficients)
        lag_scales = tuple(float(v) for v in scales)
        if p_mean is None:
            p_mean = -1.2 + math.log(2.0)
    elif p_mean is None:
        p_mean = -1.2 + math.log(sigma_data / 0.5)
    return DenoiserSpec(dim=int(frames.shape[1]), conditional=pairs is not None, network=network,
                        sigma_data=sigma_data, shift=tuple(mean.tolist()), condition_shift=tuple(mean.tolist()),
                        condition_scale=tuple(std.tolist()), max_log_lag=math.log(max(int(max_lag), 2)),
                        p_mean=float(p_mean), p_std=float(p_std), representation=representation,
                        lag_coefficients=lag_coefficients, lag_scales=lag_scales, prior=prior,
                        lambda_hat=None if lambda_hat is None else float(lambda_hat),
                        dynamic_part=dynamic_part if prior is not None and pairs is not None else "residual")


__all__ = ["fit_denoiser_spec", "lag_statistics", "LAG_STATISTICS_PAIRS"]
