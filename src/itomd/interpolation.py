r"""Correlation functions of a transition model, and tuning BoPITO's λ_int to a given one.

A transition model jumps any lag N directly, so its normalised time-correlation function of an
observable f (here a coordinate) from equilibrium starts is

.. math::
    C(N) = \frac{\langle (f(x_0) - \bar f_0)(f(x_N) - \bar f_N) \rangle}{\mathrm{Var}\, f(x_0)},
    \qquad x_0 \sim \mu,\ x_N \sim p_\theta(\cdot \mid x_0, N),

the metric of the BoPITO paper. Beyond its largest training lag a BoPITO model relaxes to μ at the
rate set by λ_int (see :mod:`itomd.diffusion.bopito`). :func:`fit_interpolation` chooses λ_int so
that the model's C(N) matches an unbiased correlation function given by the user (from long MD,
experiment, or an exact reference) at lags beyond the training lags: the paper's interpolation
between dynamics learned from off-equilibrium data and the equilibrium model. The search is a
golden-section search over ln t_int, t_int = −1/ln λ_int (frames), with common random numbers
(the same seed for every candidate) so the loss is a smooth function of λ_int.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from itomd.errors import DataFileError, InvalidInputError
from itomd.models import TransitionModel

#: Search range of the interpolation timescale t_int = −1/ln λ_int, in frames.
TIMESCALE_RANGE = (1.0, 1e7)


def jump_samples(model: TransitionModel, x0: np.ndarray | torch.Tensor, lags: Sequence[int], seed: int = 0,
                 sampler: str | None = None, n_steps: int | None = None) -> list[np.ndarray]:
    """One direct jump of each lag from every start state.

    Parameters
    ----------
    model : TransitionModel
        A conditional model.
    x0 : array_like, shape [W, dim]
        Start states (for correlation functions: equilibrium samples not used in training).
    lags : sequence of int
        Lags N in frames of the training data.
    seed : int
        Lag i is drawn with seed + i, so repeated calls give identical noise.

    Returns
    -------
    list of np.ndarray, each [W, dim] (float64)
    """
    x0 = torch.as_tensor(x0, dtype=torch.float32)
    if x0.ndim != 2 or x0.shape[1] != model.dim or len(x0) < 2:
        raise InvalidInputError(f"start states must have shape [W ≥ 2, {model.dim}], got {tuple(x0.shape)}")
    out = []
    for i, lag in enumerate(lags):
        generator = torch.Generator(device=model.device).manual_seed(int(seed) + i)
        out.append(model.sample(x0.to(model.device), lag=int(lag), sampler=sampler, n_steps=n_steps,
                                generator=generator).double().cpu().numpy())
    return out


def correlation_of_jumps(x0: np.ndarray, samples: Sequence[np.ndarray], coordinate: int = 0) -> np.ndarray:
    """Normalised C(N) of one coordinate from start states ``x0`` [W, dim] and their jumps (one [W, dim]
    array per lag, as :func:`jump_samples` returns); shape [len(samples)]."""
    f0 = np.asarray(x0, dtype=np.float64)[:, coordinate]
    f0 = f0 - f0.mean()
    variance = float((f0**2).mean())
    if not variance > 0:
        raise InvalidInputError("the observable is constant over the start states")
    return np.asarray([float((f0 * (x[:, coordinate] - x[:, coordinate].mean())).mean()) / variance for x in samples])


def jump_correlation(model: TransitionModel, x0: np.ndarray | torch.Tensor, lags: Sequence[int], coordinate: int = 0,
                     seed: int = 0, sampler: str | None = None, n_steps: int | None = None) -> np.ndarray:
    """The model's normalised correlation function C(N) of one coordinate from start states ``x0``
    ([W, dim]), each lag one direct jump (:func:`jump_samples`); shape [len(lags)]."""
    if not 0 <= coordinate < model.dim:
        raise InvalidInputError(f"coordinate must be in [0, {model.dim}), got {coordinate}")
    samples = jump_samples(model, x0, lags, seed=seed, sampler=sampler, n_steps=n_steps)
    return correlation_of_jumps(torch.as_tensor(x0).double().cpu().numpy(), samples, coordinate)


@dataclass
class InterpolationFit:
    """λ_int tuned so a BoPITO model's C(N) matches a target beyond the training lags.

    Attributes
    ----------
    lambda_interpolation : float
        The tuned λ_int per frame.
    timescale : float
        The equivalent effective timescale −τ/ln λ_int in physical time.
    lags : np.ndarray, shape [L]
        Lags (frames) the fit used.
    target, fitted : np.ndarray, shape [L]
        The given and the tuned model's C(N) there.
    rms_error : float
        Root-mean-square difference of ``fitted`` and ``target``.
    evaluations : int
        Candidates tried.
    """

    lambda_interpolation: float
    timescale: float
    lags: np.ndarray
    target: np.ndarray
    fitted: np.ndarray
    rms_error: float
    evaluations: int
    history: list[tuple[float, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"lambda_interpolation": self.lambda_interpolation, "timescale": self.timescale,
                "lags": [int(n) for n in self.lags], "target": self.target.tolist(), "fitted": self.fitted.tolist(),
                "rms_error": self.rms_error, "evaluations": self.evaluations}


def fit_interpolation(model: TransitionModel, lags: Sequence[int], target: Sequence[float],
                      x0: np.ndarray | None = None, n_walkers: int = 2000, coordinate: int = 0, seed: int = 0,
                      sampler: str | None = None, n_steps: int | None = None, tolerance: float = 0.01,
                      progress: bool = False) -> InterpolationFit:
    """Choose λ_int so the model's C(N) matches ``target`` at ``lags`` beyond the training lags.

    Parameters
    ----------
    model : TransitionModel
        A BoPITO model. Its λ_int is left as it was; set the result with ``set_interpolation``.
    lags : sequence of int
        Lags in frames, each beyond ``model.max_lag`` (within the training lags λ_int has no effect).
    target : sequence of float
        The unbiased C(N) at those lags.
    x0 : array_like, shape [W, dim], optional
        Equilibrium start states; default ``n_walkers`` samples of the model's equilibrium part.
    coordinate, seed, sampler, n_steps
        As for :func:`jump_correlation`.
    tolerance : float
        Stop when the bracket of ln t_int is narrower than this.

    Returns
    -------
    InterpolationFit
    """
    if not model.is_bopito:
        raise InvalidInputError("fit-interpolation tunes BoPITO's λ_int: the model has no equilibrium prior")
    lags = np.asarray([int(n) for n in lags])
    target = np.asarray(target, dtype=float)
    if lags.size == 0 or lags.shape != target.shape:
        raise InvalidInputError("need one target value per lag, and at least one lag")
    if np.any(lags <= model.max_lag):
        raise InvalidInputError(f"λ_int only acts beyond the largest training lag {model.max_lag}; "
                                f"tuning lags must exceed it, got {lags[lags <= model.max_lag].tolist()}")
    if not np.all(np.isfinite(target)) or np.any(np.abs(target) > 1.0 + 1e-9):
        raise InvalidInputError("target correlations must be finite numbers in [-1, 1]")
    if x0 is None:
        x0 = model.sample_equilibrium(n_walkers, generator=torch.Generator(device=model.device).manual_seed(seed))
    previous = model.lambda_interpolation
    history: list[tuple[float, float]] = []
    curves: dict[float, np.ndarray] = {}  # C(N) of every candidate, so the best is not sampled again

    def loss(log_timescale: float) -> float:
        model.set_interpolation(math.exp(-1.0 / math.exp(log_timescale)))
        fitted = jump_correlation(model, x0, lags, coordinate=coordinate, seed=seed + 1, sampler=sampler,
                                  n_steps=n_steps)
        value = float(np.mean((fitted - target) ** 2))
        history.append((log_timescale, value))
        curves[log_timescale] = fitted
        bar.update(1)
        return value

    low, high = (math.log(t) for t in TIMESCALE_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    bar = tqdm(disable=not progress, unit="candidate", desc="fit λ_int")
    try:
        a, b = low, high
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        fc, fd = loss(c), loss(d)
        while b - a > tolerance:
            if fc <= fd:
                b, d, fd = d, c, fc
                c = b - ratio * (b - a)
                fc = loss(c)
            else:
                a, c, fc = c, d, fd
                d = a + ratio * (b - a)
                fd = loss(d)
        best = min(history, key=lambda item: item[1])[0]
        lambda_int = math.exp(-1.0 / math.exp(best))
        fitted = curves[best]
    finally:
        bar.close()
        model.set_interpolation(previous)
    return InterpolationFit(lambda_interpolation=lambda_int, timescale=math.exp(best) * model.frame_interval,
                            lags=lags, target=target, fitted=fitted,
                            rms_error=float(np.sqrt(np.mean((fitted - target) ** 2))), evaluations=len(history),
                            history=history)


def read_correlation_file(path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``lag C`` rows (lag in frames of the training data) from a text/CSV or .npy file.

    Returns
    -------
    lags : np.ndarray of int, shape [L]
    values : np.ndarray of float, shape [L]
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"no correlation file at {path}")
    try:
        data = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None,
                                                                      ndmin=2)
    except (ValueError, OSError) as exc:
        raise DataFileError(f"cannot read {path} as rows of 'lag C': {str(exc).splitlines()[0]}") from None
    data = np.atleast_2d(np.asarray(data, dtype=float))
    if data.ndim != 2 or data.shape[1] != 2 or len(data) == 0:
        raise DataFileError(f"{path} must hold rows of two numbers, 'lag C', got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise InvalidInputError(f"{path} contains NaN or inf")
    lags = data[:, 0]
    if np.any(lags < 1) or np.any(lags != np.round(lags)):
        raise InvalidInputError(f"{path}: lags must be positive whole numbers of frames")
    return lags.astype(int), data[:, 1]
