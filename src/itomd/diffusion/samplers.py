r"""Samplers: free functions with one signature,

``sample_*(model, x, sigmas, extra_args=None, callback=None, generator=None) -> x_0``

``model(x, sigma, **extra_args)`` returns the denoised estimate D(x; σ) (a :class:`Denoiser`, an
exact denoiser, or a BoPITO composition — conditioning such as ``cond=x_t, lag=N`` travels in
``extra_args``). ``x`` starts as pure noise at ``sigmas[0]`` (``sigma_max · N(0, I)``); ``sigmas`` is
decreasing and ends with 0 (e.g. :func:`~itomd.diffusion.schedules.karras_sigmas`). The
probability-flow ODE is :math:`dx/d\sigma = (x - D(x;\sigma))/\sigma`; the score is
:math:`(D - x)/\sigma^2`. ``callback(dict(i=, x=, sigma=, denoised=))`` is called after each step.
Network evaluations per call: Euler n, Heun and Heun with churn 2n − 1, DPM-Solver++(2M) n, Euler–Maruyama n, ancestral n,
multistep consistency sampling n (n = len(sigmas) − 1); the probability-flow sampler ``flow``
(:func:`~itomd.diffusion.likelihood.sample_flow`, the proposal of Metropolis–Hastings rollouts) 2(n − 1).
"""

from __future__ import annotations

from typing import Callable

import torch

from itomd.diffusion.likelihood import sample_flow
from itomd.errors import InvalidInputError

Model = Callable[..., torch.Tensor]


def _sigma_batch(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return sigma.to(x.dtype).expand(x.shape[0])


def _check(x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    sigmas = torch.as_tensor(sigmas, dtype=x.dtype)
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise InvalidInputError("sigmas must be a 1-D schedule of at least two levels (ending with 0)")
    if torch.any(sigmas[1:] > sigmas[:-1]) or sigmas[-1] < 0:
        raise InvalidInputError("sigmas must be non-increasing and non-negative")
    return sigmas


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


@torch.no_grad()
def sample_euler(model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                 callback: Callable | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """First-order (Euler) integration of the probability-flow ODE; deterministic."""
    sigmas, extra_args = _check(x, sigmas), extra_args or {}
    for i in range(len(sigmas) - 1):
        denoised = model(x, _sigma_batch(x, sigmas[i]), **extra_args)
        x = x + (sigmas[i + 1] - sigmas[i]) * (x - denoised) / sigmas[i]
        if callback:
            callback({"i": i, "x": x, "sigma": sigmas[i], "denoised": denoised})
    return x


@torch.no_grad()
def sample_heun(model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                callback: Callable | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Second-order Heun integration of the probability-flow ODE (Karras et al. 2022, Alg. 1):
    :func:`sample_heun_churn` without churn."""
    return sample_heun_churn(model, x, sigmas, extra_args, callback, generator, churn=0.0)


@torch.no_grad()
def sample_heun_churn(model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                      callback: Callable | None = None, generator: torch.Generator | None = None,
                      churn: float = 10.0, noise_scale: float = 1.0) -> torch.Tensor:
    r"""EDM's stochastic sampler (Karras et al. 2022, Alg. 2): before each Heun step, raise the noise
    from σ_i to :math:`\hat\sigma_i = (1 + \gamma)\sigma_i` by adding fresh noise
    :math:`\sqrt{\hat\sigma_i^2 - \sigma_i^2}\,z`, with :math:`\gamma = \min(\text{churn}/n, \sqrt2 - 1)`;
    the added noise lets the sampler correct errors of the learned score that a deterministic ODE
    carries along. ``churn = 0`` is :func:`sample_heun`. Network evaluations: 2n − 1.
    """
    sigmas, extra_args = _check(x, sigmas), extra_args or {}
    n = len(sigmas) - 1
    gamma = min(churn / n, 2**0.5 - 1)
    for i in range(n):
        sigma_hat = sigmas[i] * (1 + gamma)
        if gamma > 0 and sigmas[i + 1] > 0:
            x = x + noise_scale * (sigma_hat**2 - sigmas[i] ** 2).sqrt() * _noise(x, generator)
        else:
            sigma_hat = sigmas[i]
        denoised = model(x, _sigma_batch(x, sigma_hat), **extra_args)
        d = (x - denoised) / sigma_hat
        dt = sigmas[i + 1] - sigma_hat
        x_next = x + dt * d
        if sigmas[i + 1] > 0:
            denoised_2 = model(x_next, _sigma_batch(x, sigmas[i + 1]), **extra_args)
            d_2 = (x_next - denoised_2) / sigmas[i + 1]
            x_next = x + dt * 0.5 * (d + d_2)
        x = x_next
        if callback:
            callback({"i": i, "x": x, "sigma": sigmas[i], "denoised": denoised})
    return x


@torch.no_grad()
def sample_euler_maruyama(model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                          callback: Callable | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Euler–Maruyama on the reverse variance-exploding SDE: from σ_i to σ_{i+1},
    :math:`x \leftarrow x + (\sigma_i^2 - \sigma_{i+1}^2)\,s + \sqrt{\sigma_i^2 - \sigma_{i+1}^2}\,z`."""
    sigmas, extra_args = _check(x, sigmas), extra_args or {}
    for i in range(len(sigmas) - 1):
        denoised = model(x, _sigma_batch(x, sigmas[i]), **extra_args)
        score = (denoised - x) / sigmas[i] ** 2
        step = sigmas[i] ** 2 - sigmas[i + 1] ** 2
        x = x + step * score
        if sigmas[i + 1] > 0:
            x = x + step.sqrt() * _noise(x, generator)
        if callback:
            callback({"i": i, "x": x, "sigma": sigmas[i], "denoised": denoised})
    return x


@torch.no_grad()
def sample_ancestral(model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                     callback: Callable | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Ancestral sampling — the DDPM-equivalent baseline (use ~1000 levels): each step draws from the
    exact Gaussian posterior q(x_{σ_{i+1}} | x_{σ_i}, x_0 = D) of the variance-exploding process."""
    sigmas, extra_args = _check(x, sigmas), extra_args or {}
    for i in range(len(sigmas) - 1):
        denoised = model(x, _sigma_batch(x, sigmas[i]), **extra_args)
        s0, s1 = sigmas[i], sigmas[i + 1]
        ratio = (s1 / s0) ** 2
        x = ratio * x + (1 - ratio) * denoised
        if s1 > 0:
            x = x + (s1 * (1 - ratio).sqrt()) * _noise(x, generator)
        if callback:
            callback({"i": i, "x": x, "sigma": s0, "denoised": denoised})
    return x


@torch.no_grad()
def sample_dpmpp_2m(model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                    callback: Callable | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""DPM-Solver++(2M) (Lu et al. 2022): a second-order multistep exponential integrator of the
    probability-flow ODE in data-prediction form, one network evaluation per step; deterministic.

    In log-noise time :math:`t = -\ln\sigma` with step :math:`h_i = t_{i+1} - t_i`:
    :math:`x_{i+1} = (\sigma_{i+1}/\sigma_i)\,x_i + (1 - e^{-h_i})\,\hat D_i`, where
    :math:`\hat D_i = D_i` on the first step and otherwise the extrapolation
    :math:`(1 + \frac{1}{2r_i}) D_i - \frac{1}{2r_i} D_{i-1}`, :math:`r_i = h_{i-1}/h_i`. A step to
    σ = 0 returns the denoised estimate.
    """
    sigmas, extra_args = _check(x, sigmas), extra_args or {}
    previous, h_previous = None, None
    for i in range(len(sigmas) - 1):
        denoised = model(x, _sigma_batch(x, sigmas[i]), **extra_args)
        s0, s1 = sigmas[i], sigmas[i + 1]
        if s1 == 0:
            x = denoised
        else:
            h = torch.log(s0 / s1)
            estimate = denoised
            if previous is not None:
                r = h_previous / h
                estimate = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
            x = (s1 / s0) * x + (1 - torch.exp(-h)) * estimate
            previous, h_previous = denoised, h
        if callback:
            callback({"i": i, "x": x, "sigma": s0, "denoised": denoised})
    return x


@torch.no_grad()
def sample_consistency(model: Model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                       callback: Callable | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Multistep consistency sampling (Song et al. 2023, Alg. 1) for a *consistency model*
    f(x; σ) ≈ the end point of the probability-flow ODE through x at σ (:mod:`itomd.distillation`):
    :math:`\hat x_0 = f(x; \sigma_0)`, then for each further level
    :math:`\hat x_0 \leftarrow f(\hat x_0 + \sigma_i z;\ \sigma_i)` with fresh noise z. One network
    evaluation per positive level; the re-noising makes every step after the first stochastic, so
    a k-step sample corrects part of the one-step map's error (like a restart sampler). Used with a
    denoiser that was not distilled it returns its posterior mean after the last step (not a sample).
    """
    sigmas, extra_args = _check(x, sigmas), extra_args or {}
    denoised = x
    for i in range(len(sigmas) - 1):
        if sigmas[i] <= 0:
            break
        if i > 0:
            x = denoised + sigmas[i] * _noise(x, generator)
        denoised = model(x, _sigma_batch(x, sigmas[i]), **extra_args)
        if callback:
            callback({"i": i, "x": denoised, "sigma": sigmas[i], "denoised": denoised})
    return denoised


SAMPLERS = {"euler": sample_euler, "heun": sample_heun, "heun-churn": sample_heun_churn, "dpmpp-2m": sample_dpmpp_2m,
            "euler-maruyama": sample_euler_maruyama, "ancestral": sample_ancestral, "flow": sample_flow,
            "consistency": sample_consistency}
#: The sampler a model uses unless told otherwise: EDM's stochastic Heun (see
#: :data:`itomd.models.DEFAULT_N_STEPS` for the number of noise levels and why).
DEFAULT_SAMPLER = "heun-churn"


def sampler_named(name: str) -> Callable:
    """The sampler function called ``name`` (a key of :data:`SAMPLERS`); one line naming the choices
    for any other name — the one check of a sampler's name."""
    if name not in SAMPLERS:
        raise InvalidInputError(f"unknown sampler '{name}': choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


def network_evaluations(sampler: str, n_steps: int) -> int:
    """Network evaluations of one call of ``sampler`` with ``n_steps`` noise levels: 2n − 1 for Heun
    (with or without churn, whose last step is an Euler step), 2(n − 1) for the probability-flow
    sampler (which stops at σ_min), n for the others (the consistency sampler's n levels are
    :func:`~itomd.diffusion.schedules.consistency_sigmas`)."""
    sampler_named(sampler)
    if sampler == "flow":
        return 2 * (n_steps - 1)
    if sampler == "consistency":
        return n_steps
    return 2 * n_steps - 1 if sampler in ("heun", "heun-churn") else n_steps
