"""Noise schedules (free functions)."""

from __future__ import annotations

import torch

from itomd.errors import InvalidInputError


def karras_sigmas(n_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""The ρ-schedule of Karras et al. (2022), with a final 0 appended.

    .. math::
        \sigma_i = \left(\sigma_{\max}^{1/\rho} + \tfrac{i}{n-1}\left(\sigma_{\min}^{1/\rho}
                   - \sigma_{\max}^{1/\rho}\right)\right)^\rho, \quad i = 0, \dots, n-1;\ \sigma_n = 0.

    Returns
    -------
    torch.Tensor, shape [n_steps + 1]
        Decreasing noise levels from sigma_max to sigma_min, then 0.
    """
    if int(n_steps) != n_steps or n_steps < 1:
        raise InvalidInputError(f"number of steps must be a positive integer, got {n_steps!r}")
    if not (0 < sigma_min < sigma_max):
        raise InvalidInputError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    ramp = torch.linspace(0, 1, int(n_steps), dtype=dtype) if n_steps > 1 else torch.zeros(1, dtype=dtype)
    inv_min, inv_max = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (inv_max + ramp * (inv_min - inv_max)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


#: Noise levels of the grid a consistency model is distilled on (:mod:`itomd.distillation`): the
#: levels of the teacher's default Karras schedule, so the student learns the map of the teacher's
#: own probability-flow discretisation.
CONSISTENCY_GRID_LEVELS = 25


def consistency_sigmas(n_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0,
                       grid_levels: int = CONSISTENCY_GRID_LEVELS, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""The ``n_steps`` levels of multistep consistency sampling, then 0.

    Levels of the distillation grid (:func:`karras_sigmas` with ``grid_levels`` levels from
    ``sigma_max`` to ``sigma_min``) at evenly spaced indices of its upper half, starting at σ_max:
    for 25 levels, one step uses σ_max; two, grid levels 0 and 6 (10 and 3.3 σ_d for the default
    range); three, 0, 4, 8; four, 0, 3, 6, 9 (down to 1.7 σ_d). Restarts at high noise act like a
    stochastic sampler's: measured against restarts spread over the whole grid (0, 6, 12, 18), they
    bring the slowest timescale of distilled Müller–Brown rollouts at lag 10 from 2.25 to 3.23 (exact
    5.0, the teacher's stochastic sampler 3.86) and keep Prinz within 5 % of exact at lags 5–100.

    Returns
    -------
    torch.Tensor, shape [n_steps + 1]
    """
    if int(n_steps) != n_steps or not 1 <= n_steps <= (grid_levels - 1) // 2:
        raise InvalidInputError(f"consistency sampling takes 1 to {(grid_levels - 1) // 2} steps, got {n_steps!r}")
    grid = karras_sigmas(grid_levels, sigma_min, sigma_max, rho, dtype)[:-1]
    index = [k * ((grid_levels - 1) // (2 * int(n_steps))) for k in range(int(n_steps))]
    return torch.cat([grid[index], grid.new_zeros(1)])
