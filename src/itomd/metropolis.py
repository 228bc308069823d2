r"""Metropolis–Hastings with the model as proposal: rollouts that sample μ exactly in the long run.

A surrogate's errors accumulate over a rollout: its stationary distribution is the model's, not
the Boltzmann distribution μ(x) ∝ exp(−U(x)/kT). Where the energy is known (every toy system, every
OpenMM molecule) each proposed jump x → y ~ q(· | x, N) can be accepted with

.. math::
    \alpha = \min\Big(1, \frac{\mu(y)\,q(x \mid y, N)}{\mu(x)\,q(y \mid x, N)}\Big),

and otherwise the walker stays at x. The chain then satisfies detailed balance with respect to μ
whatever the model's errors, so its frames sample μ exactly in the long run (Timewarp's and
TITO's correction; the ITO paper's outlook).

What it costs and what it does to kinetics
------------------------------------------
Each jump needs the proposal (the probability-flow sampler, 2(n − 1) network evaluations), the
log-density of the forward and of the reverse jump through the probability-flow ODE
(:mod:`itomd.diffusion.likelihood`; each 2(n − 1) evaluations plus one backward pass per coordinate
— toy systems — or per Hutchinson probe — molecules) and one energy: about 3× (toy) to 10×
(molecules, 4 probes) the cost of a plain jump. A rejected jump repeats the frame, so **kinetics are
slowed** by rejections: with acceptance rate a, relaxation takes roughly 1/a times as many jumps
where the model was right, and only where it was right. Implied timescales of MH rollouts are an
upper bound on the model's; use MH for equilibrium properties (free energies, populations,
structures) and judge kinetics on plain rollouts, with the acceptance rate as a measure of how far
the model's transition density is from one that is reversible with respect to μ.

How exact it is
---------------
* The proposal is drawn by the deterministic probability-flow sampler (``sampler="flow"``) on the
  same noise levels on which its density is evaluated; both carry the ODE integrator's error
  (second order in the step; a few 0.01 in ln q with 25 levels in the tails of a mismatched
  Gaussian), so "exact" holds up to that error.
* Toy systems: exact divergence. Molecules: Hutchinson's estimator with ``n_probes`` probes
  (default :data:`~itomd.diffusion.likelihood.DEFAULT_N_PROBES`). ln q is then unbiased but noisy;
  noise in the log acceptance ratio lowers acceptance and biases the chain slightly (it is not a
  pseudo-marginal scheme: exp of an unbiased log estimate is biased). More probes trade time for less
  bias; the choice is recorded with the rollout.
* Molecules are centred structures; μ is the Boltzmann distribution of the force field without
  constraints (bonds to hydrogen vibrate), the one the system's energy function evaluates.
* ITO models of molecules (and BoPITO's transition form) learn x_{t+N} superposed on x_t, so their
  density lives near the frame aligned on the start. The reverse density q(x | y) is evaluated with x
  superposed on y. The rotational volume factors of shape space then cancel between μ and q except for
  the ratio of the model's spreads across orientations in the two directions, which is taken as 1 — an
  approximation that models with isotropic or lab-frame densities (BoPITO's other forms, toy systems)
  do not need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from itomd.diffusion.likelihood import divergence_probes
from itomd.errors import InvalidInputError, ItomdError
from itomd.models import DEFAULT_N_STEPS, TransitionModel

#: The proposal sampler of every Metropolis–Hastings jump (its density is the one evaluated).
PROPOSAL_SAMPLER = "flow"


@dataclass(frozen=True)
class MetropolisHastings:
    """The Metropolis–Hastings test of jumps proposed by a transition model (see module docs).

    Parameters
    ----------
    log_boltzmann : callable
        ln μ(x) up to a constant: states [W, dim] → [W] (−U/kT).
    n_steps : int
        Noise levels of the proposal and of both density evaluations.
    n_probes : int, optional
        Hutchinson probes (None: the exact divergence; :meth:`for_model` sets the default number of
        probes for states of more than :data:`~itomd.diffusion.likelihood.EXACT_DIVERGENCE_MAX_DIM`
        coordinates).
    """

    log_boltzmann: Callable[[torch.Tensor], torch.Tensor]
    n_steps: int = DEFAULT_N_STEPS
    n_probes: int | None = None

    def __post_init__(self) -> None:
        if int(self.n_steps) != self.n_steps or self.n_steps < 2:
            raise InvalidInputError(f"Metropolis-Hastings needs at least 2 noise levels per jump, got {self.n_steps}")
        if self.n_probes is not None:
            divergence_probes(1, self.n_probes)  # the one check of a number of probes

    @classmethod
    def for_model(cls, model: TransitionModel, n_steps: int = DEFAULT_N_STEPS,
                  n_probes: int | None = None) -> "MetropolisHastings":
        """The test against the Boltzmann distribution of the system the model records.

        Raises
        ------
        InvalidInputError
            For an equilibrium model, or a model whose system (and so its energy) is unknown.
        """
        if not model.conditional:
            raise InvalidInputError("Metropolis-Hastings needs a transition model, not an equilibrium model")
        if model.system is None:
            raise InvalidInputError("Metropolis-Hastings needs the system's energy, and this model records no system")
        try:
            system = model.system.build()
        except ItomdError as exc:
            raise InvalidInputError(f"Metropolis-Hastings needs the model's system, which cannot be built: {exc}") from None
        potential, kT = system.potential, float(system.kT)
        n_probes = divergence_probes(model.dim, n_probes)  # recorded as used (None: the exact divergence)

        def log_boltzmann(x: torch.Tensor) -> torch.Tensor:
            return -potential.energy(x.to(torch.float64)).to(torch.float64) / kT

        return cls(log_boltzmann, n_steps=n_steps, n_probes=n_probes)

    def log_mu(self, x: torch.Tensor) -> torch.Tensor:
        """ln μ(x) [W] (float64), −inf where the energy is not finite."""
        value = torch.as_tensor(self.log_boltzmann(x), dtype=torch.float64, device=x.device)
        return torch.where(torch.isfinite(value), value, torch.full_like(value, -torch.inf))

    def jump(self, model: TransitionModel, x: torch.Tensor, lag: int, log_mu_x: torch.Tensor,
             generator: torch.Generator | None = None, tolerance: float | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One Metropolis–Hastings jump of lag N for every walker.

        Parameters
        ----------
        model : TransitionModel
        x : torch.Tensor, shape [W, dim]
            Current states, as the model sees them (centred structures for molecules).
        lag : int
        log_mu_x : torch.Tensor, shape [W]
            :meth:`log_mu` of ``x`` (carried along so that every state's energy is computed once).
        generator : torch.Generator, optional
        tolerance : float, optional
            Proposals beyond the training range by more than this (see
            :meth:`TransitionModel.outside_training_range`) are rejected without evaluation.

        Returns
        -------
        (x_new [W, dim], log_mu_new [W], accepted [W] bool)
        """
        proposal = model.sample(x, lag=lag, sampler=PROPOSAL_SAMPLER, n_steps=self.n_steps, generator=generator)
        valid = torch.isfinite(proposal).all(-1)
        if tolerance is not None:
            valid &= ~model.outside_training_range(proposal, tolerance)
        log_alpha = torch.full((len(x),), -torch.inf, dtype=torch.float64, device=x.device)
        log_mu_y = torch.full_like(log_alpha, -torch.inf)
        rows = valid.nonzero().flatten()
        if len(rows):
            y, start = proposal[rows], x[rows]
            log_mu_y[rows] = self.log_mu(y)
            forward = model.log_transition_density(y, start, lag, self.n_steps, self.n_probes, generator)
            reverse_end = model.spec.representation.align_targets(start, y)
            backward = model.log_transition_density(reverse_end, y, lag, self.n_steps, self.n_probes, generator)
            log_alpha[rows] = log_mu_y[rows] - log_mu_x[rows] + backward - forward
        log_alpha = torch.nan_to_num(log_alpha, nan=-torch.inf)
        uniform = torch.rand(len(x), generator=generator, device=x.device, dtype=torch.float64)
        accepted = torch.log(uniform) < log_alpha
        x_new = torch.where(accepted[:, None], proposal, x)
        return x_new, torch.where(accepted, log_mu_y, log_mu_x), accepted


__all__ = ["MetropolisHastings", "PROPOSAL_SAMPLER"]
