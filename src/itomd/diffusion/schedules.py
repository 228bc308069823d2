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
