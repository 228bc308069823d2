r"""The EDM denoiser (Karras et al. 2022): preconditioning and loss around any inner network.

.. math::
    D(x;\sigma) = c_\mathrm{skip}(\sigma)\,x + c_\mathrm{out}(\sigma)\,
                  F\big(c_\mathrm{in}(\sigma)\,x,\ c_\mathrm{noise}(\sigma),\ \text{cond}\big),

with :math:`c_\mathrm{skip} = \sigma_d^2/(\sigma^2+\sigma_d^2)`,
:math:`c_\mathrm{out} = \sigma\sigma_d/\sqrt{\sigma^2+\sigma_d^2}`,
:math:`c_\mathrm{in} = 1/\sqrt{\sigma^2+\sigma_d^2}`, :math:`c_\mathrm{noise} = \ln(\sigma)/4`.
Training draws :math:`\ln\sigma \sim \mathcal N(P_\mathrm{mean}, P_\mathrm{std}^2)` (−1.2, 1.2) and
minimises :math:`\lambda(\sigma)\lVert D(x_0 + \sigma n;\sigma) - x_0\rVert^2` with
:math:`\lambda = (\sigma^2+\sigma_d^2)/(\sigma\sigma_d)^2` (unit effective weight). Conditioning
(e.g. ``cond=x_t, lag=N``) is passed to the inner network as keyword arguments, so the same class
serves unconditional (equilibrium) and conditional (transition) models.
"""

from __future__ import annotations

import torch
from torch import nn

from itomd.errors import InvalidInputError


def append_dims(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dimensions to a [batch] tensor until it has ``ndim`` dims."""
    return t.reshape(t.shape + (1,) * (ndim - t.ndim))


class Denoiser(nn.Module):
    """EDM-preconditioned denoiser wrapping an inner network ``inner(x_in, c_noise, **cond)``.

    Parameters
    ----------
    inner : nn.Module
        Maps scaled noisy samples [B, *event] and c_noise [B] (plus conditioning keywords) to
        [B, *event].
    sigma_data : float
        Standard deviation of the data (estimate it from the training set; it is saved with the
        model).
    p_mean, p_std : float
        Log-normal training distribution of σ.
    """

    def __init__(self, inner: nn.Module, sigma_data: float, p_mean: float = -1.2, p_std: float = 1.2):
        super().__init__()
        if not sigma_data > 0:
            raise InvalidInputError(f"sigma_data must be positive, got {sigma_data}")
        self.inner = inner
        self.sigma_data = float(sigma_data)
        self.p_mean = float(p_mean)
        self.p_std = float(p_std)

    def scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in, c_noise), each shaped like ``sigma`` [B]."""
        sd2 = self.sigma_data ** 2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / (sigma**2 + sd2).sqrt()
        c_in = 1.0 / (sigma**2 + sd2).sqrt()
        return c_skip, c_out, c_in, sigma.log() / 4

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        """Denoised estimate D(x; σ), shape of ``x`` [B, *event]; ``sigma`` has shape [B]."""
        c_skip, c_out, c_in, c_noise = (append_dims(c, x.ndim) if i < 3 else c
                                        for i, c in enumerate(self.scalings(sigma.to(x.dtype))))
        return c_skip * x + c_out * self.inner(c_in * x, c_noise, **cond)

    def loss(self, x0: torch.Tensor, generator: torch.Generator | None = None, **cond) -> torch.Tensor:
        """Denoising score-matching loss of a batch of clean samples ``x0`` [B, *event] (a scalar)."""
        b = x0.shape[0]
        log_sigma = self.p_mean + self.p_std * torch.randn(b, generator=generator, dtype=x0.dtype, device=x0.device)
        sigma = log_sigma.exp()
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        weight = (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2
        err = (self(x0 + append_dims(sigma, x0.ndim) * noise, sigma, **cond) - x0) ** 2
        return (weight * err.reshape(b, -1).sum(-1)).mean()
