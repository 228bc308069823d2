r"""Log-densities of a diffusion model through its probability-flow ODE (Song et al. 2021, sec. 4.3),
and the ODE sampler whose density they are.

Samplers integrate :math:`dx/d\sigma = (x - D(x;\sigma))/\sigma` downwards from noise. Here the same
ODE is written in the preconditioned variables of :class:`~itomd.diffusion.Denoiser`: with centre
:math:`c` and data scale :math:`s` (:meth:`~itomd.diffusion.Denoiser.centre_and_scale`),

.. math::
    r = \frac{x - c}{\sqrt{\sigma^2 + s^2}}, \qquad t = \arctan(\sigma/s), \qquad
    \frac{dr}{dt} = -F_\mathrm{eff}(r, t), \quad
    F_\mathrm{eff} = \frac{D - c - c_\mathrm{skip}\,(x - c)}{c_\mathrm{out}},

an exact rewriting (for EDM's preconditioning :math:`F_\mathrm{eff}` is the inner network's output).
The linear-Gaussian part of every model — all of an Ornstein–Uhlenbeck transition — is then carried
exactly, whatever the step, and what is left to integrate is smooth and of unit scale. Along a
solution :math:`d\ln p(r(t))/dt = \nabla_r\!\cdot F_\mathrm{eff}`, so the density of a point y at the
smallest noise level is

.. math::
    \ln p_{\sigma_\min}(y) = \ln\mathcal N\big(r(t_\max); 0, I\big)
        - \int_{t_\min}^{t_\max} \nabla_r\!\cdot F_\mathrm{eff}\,dt - \tfrac d2 \ln(\sigma_\min^2 + s^2),
    \qquad \nabla_r\!\cdot F_\mathrm{eff} = \frac{\sigma^2 + s^2}{\sigma s}\big(\nabla_x\!\cdot D - d\,c_\mathrm{skip}\big),

integrating upwards from :math:`x(\sigma_\min) = y` with Heun's method (trapezoid rule for the
integral) on the given noise levels. :func:`sample_flow` integrates the same ODE downwards on the
same levels from :math:`r(t_\max) \sim \mathcal N(0, I)` and returns :math:`x(\sigma_\min)`: the
distribution whose density :func:`log_density` evaluates, up to the integrator's error (the
smoothing by :math:`\sigma_\min`, 2 % of the data scale, is part of that distribution).

Divergence
----------
:math:`\nabla_x\!\cdot D` is computed exactly — one vector–Jacobian product per coordinate — up to
:data:`EXACT_DIVERGENCE_MAX_DIM` coordinates (every toy system), and otherwise by Hutchinson's
estimator :math:`\mathbb E[\varepsilon^\top (\partial D/\partial x)\,\varepsilon]` with a fixed number
of Rademacher probes, the same probes on every level of one path (FFJORD's choice). The estimate of
ln p is unbiased; exp of it is not, and its variance (falling as 1/probes) is what a
Metropolis–Hastings test built on it sees — see :mod:`itomd.metropolis`.

Molecules (``n_atoms`` given): states are centred structures, so densities live on the
(3·n_atoms − 3)-dimensional subspace of zero centroid. D is centred and the ODE keeps a centred
``y`` centred; the divergence is the trace of the Jacobian projected on that subspace (or the
probes are projected onto it) and d = 3·n_atoms − 3.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from itomd.errors import InvalidInputError
from itomd.geometry import remove_centroid

#: Largest dimension whose divergence is computed exactly (one backward pass per coordinate).
EXACT_DIVERGENCE_MAX_DIM = 8
#: Hutchinson probes per path above that dimension.
DEFAULT_N_PROBES = 4


def log_density(denoiser: Callable[..., torch.Tensor], y: torch.Tensor, sigmas: torch.Tensor,
                extra_args: dict | None = None, n_atoms: int | None = None, n_probes: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    r"""ln p(y) at the smallest noise level of the model whose denoiser is ``denoiser``, per row.

    Parameters
    ----------
    denoiser : Denoiser
        D(x; σ, **extra_args) with x [B, dim] and σ [B], and its ``centre_and_scale``.
    y : torch.Tensor, shape [B, dim]
        Points whose log-density is wanted (centred structures for molecules).
    sigmas : torch.Tensor, shape [K]
        Noise levels of the path, any order, at least two, all positive (e.g. a sampler's schedule
        without its final 0).
    extra_args : dict, optional
        Conditioning (``cond=x_t, lag=N`` for transition models); rows match ``y``.
    n_atoms : int, optional
        Molecules: densities on the zero-centroid subspace (see module docs).
    n_probes : int, optional
        Hutchinson probes; None: the exact divergence up to :data:`EXACT_DIVERGENCE_MAX_DIM`
        coordinates, :data:`DEFAULT_N_PROBES` probes above.
    generator : torch.Generator, optional
        Source of the probes.

    Returns
    -------
    torch.Tensor, shape [B], float64
        Natural-log densities (per unit volume of the state space, or of its centred subspace).
    """
    extra_args = extra_args or {}
    levels = _levels(sigmas)
    y = _points(y)
    path = _Path(denoiser, y, extra_args, n_atoms)
    probes = _probes(y.shape[0], y.shape[1], n_probes, path.project, y, generator)
    r, integral = path.integrate(path.to_r(y, levels[0]), levels, probes, divergence=True)
    d = path.effective_dim
    r = path.project(r).to(torch.float64)
    terminal = -0.5 * (r**2).sum(-1) - 0.5 * d * math.log(2 * math.pi)
    scale = path.scale.to(torch.float64)
    return terminal + integral - 0.5 * d * torch.log(levels[0] ** 2 + scale**2)


@torch.no_grad()
def sample_flow(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor,
                extra_args: dict | None = None, callback: Callable | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """The probability-flow sampler whose density :func:`log_density` gives: Heun in the variables
    r, t on the positive levels of ``sigmas``, from ``x`` (noise at ``sigmas[0]``, drawn as
    :meth:`~itomd.models.TransitionModel.sample` draws it) down to x(σ_min), which it returns (it
    does not denoise to σ = 0). Deterministic; 2(n − 1) network evaluations for n positive levels.
    Has the samplers' signature (:mod:`itomd.diffusion.samplers`); the variables r, t use the
    model's ``centre_and_scale`` where it has one (a :class:`~itomd.diffusion.Denoiser`), else c = 0
    and s = 1.
    """
    extra_args = extra_args or {}
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    levels = torch.flip(_levels(sigmas[sigmas > 0]), [0])
    path = _Path(model, _points(x), extra_args, getattr(model, "n_atoms", None))

    def report(i: int, r: torch.Tensor) -> None:
        if callback:
            callback({"i": i, "x": path.to_x(r, levels[i + 1]), "sigma": levels[i]})

    r, _ = path.integrate(path.to_r(x, levels[0]), levels, None, divergence=False, step_callback=report)
    return path.to_x(r, levels[-1])


class _Path:
    """The variables r, t of one batch (its centre c [B, dim] and scale s [B] fixed by the conditioning)."""

    def __init__(self, denoiser: Callable, like: torch.Tensor, extra_args: dict, n_atoms: int | None):
        self.denoiser, self.extra_args = denoiser, extra_args
        self.n_atoms = n_atoms
        if hasattr(denoiser, "centre_and_scale"):
            centre, scale = denoiser.centre_and_scale(like, **extra_args)
        else:  # any other denoiser: c = 0, s = 1 (still an exact rewriting of the ODE)
            centre, scale = torch.zeros((), device=like.device), torch.ones(like.shape[0], device=like.device)
        self.centre = centre.to(like.dtype).expand_as(like)
        self.scale = scale.to(like.dtype)
        self.effective_dim = like.shape[1] - 3 if n_atoms is not None else like.shape[1]

    def project(self, v: torch.Tensor) -> torch.Tensor:
        return v if self.n_atoms is None else remove_centroid(v, self.n_atoms)

    def time(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.atan(float(sigma) / self.scale)

    def _root(self, sigma: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(float(sigma) ** 2 + self.scale**2)[:, None]

    def to_r(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.project(x.to(self.centre.dtype) - self.centre) / self._root(sigma)

    def to_x(self, r: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.centre + self._root(sigma) * r

    def integrate(self, r: torch.Tensor, levels: torch.Tensor, probes: list[torch.Tensor] | None,
                  divergence: bool, step_callback: Callable[[int, torch.Tensor], None] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Heun steps of dr/dt = −F_eff through ``levels`` (either direction) from ``r`` [B, dim] — the
        one integrator of both the sampler and the likelihood, so that they share their
        discretisation; with ``divergence`` also the trapezoid-rule integral of −∇_r·F_eff dt [B]
        (float64), else None. ``step_callback(i, r)`` after each step."""
        integral = torch.zeros(r.shape[0], dtype=torch.float64, device=r.device) if divergence else None
        velocity, div = self.velocity(r, levels[0], probes, divergence)
        for i in range(len(levels) - 1):
            h = self.time(levels[i + 1]) - self.time(levels[i])  # [B]
            predicted = r + h[:, None] * velocity
            velocity_2, div_2 = self.velocity(predicted, levels[i + 1], probes, divergence)
            r = r + 0.5 * h[:, None] * (velocity + velocity_2)
            if integral is not None:
                integral = integral + 0.5 * h.to(torch.float64) * (div + div_2)
            if step_callback:
                step_callback(i, r)
            if i + 2 < len(levels):
                velocity, div = self.velocity(r, levels[i + 1], probes, divergence)
        return r, integral

    def velocity(self, r: torch.Tensor, sigma: torch.Tensor, probes: list[torch.Tensor] | None,
                 divergence: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """dr/dt = −F_eff [B, dim] (detached) and its divergence −∇_r·F_eff [B] (float64) at one level."""
        s = self.scale
        sig = float(sigma)
        c_skip = (s**2 / (sig**2 + s**2))[:, None]
        c_out = (sig * s / torch.sqrt(sig**2 + s**2))[:, None]
        sigma_batch = torch.full((r.shape[0],), sig, dtype=r.dtype, device=r.device)
        x = self.to_x(r.detach(), sigma)
        with torch.enable_grad():
            x = x.requires_grad_(divergence)
            denoised = self.denoiser(x, sigma_batch, **self.extra_args)
            trace = self._trace(denoised, x, probes) if divergence else None
        f_eff = self.project(denoised.detach() - self.centre - c_skip * (x.detach() - self.centre)) / c_out
        if trace is None:
            return -f_eff, None
        factor = ((sig**2 + s**2) / (sig * s)).to(torch.float64)
        return -f_eff, -factor * (trace - self.effective_dim * c_skip[:, 0].to(torch.float64))

    def _trace(self, denoised: torch.Tensor, x: torch.Tensor, probes: list[torch.Tensor] | None) -> torch.Tensor:
        """∇_x·D [B] (float64), projected on the state space: exact, or Hutchinson with ``probes``."""
        trace = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        if probes is None:
            basis = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
            directions = [self.project(basis[i].expand_as(x)) for i in range(x.shape[1])]
        else:
            directions = probes
        for k, direction in enumerate(directions):
            (grad,) = torch.autograd.grad(denoised, x, grad_outputs=direction, retain_graph=k + 1 < len(directions))
            trace = trace + (grad * direction).sum(-1).to(torch.float64)
        return trace if probes is None else trace / len(probes)


def _levels(sigmas: torch.Tensor) -> torch.Tensor:
    levels = torch.sort(torch.as_tensor(sigmas, dtype=torch.float64).flatten()).values
    if len(levels) < 2 or not torch.all(levels > 0):
        raise InvalidInputError("a probability-flow path needs at least two positive noise levels")
    return levels


def _points(y: torch.Tensor) -> torch.Tensor:
    if y.ndim != 2:
        raise InvalidInputError(f"points must have shape [B, dim], got {tuple(y.shape)}")
    return y.detach() if y.is_floating_point() else y.detach().to(torch.float32)


def divergence_probes(dim: int, n_probes: int | None = None) -> int | None:
    """The Hutchinson probes a likelihood of ``dim`` coordinates uses: ``n_probes`` where given (one-line
    error unless a positive integer), else None — the exact divergence — up to
    :data:`EXACT_DIVERGENCE_MAX_DIM` coordinates and :data:`DEFAULT_N_PROBES` above."""
    if n_probes is None:
        return None if dim <= EXACT_DIVERGENCE_MAX_DIM else DEFAULT_N_PROBES
    if int(n_probes) != n_probes or n_probes < 1:
        raise InvalidInputError(f"the number of probes must be a positive integer, got {n_probes!r}")
    return int(n_probes)


def _probes(batch: int, dim: int, n_probes: int | None, project: Callable, like: torch.Tensor,
            generator: torch.Generator | None) -> list[torch.Tensor] | None:
    """Rademacher probes projected onto the state space, or None for the exact divergence."""
    n_probes = divergence_probes(dim, n_probes)
    if n_probes is None:
        return None
    signs = torch.randint(0, 2, (n_probes, batch, dim), generator=generator, device=like.device)
    return [project(2.0 * s.to(like.dtype) - 1.0) for s in signs]
