r"""An MLP inner network for low-dimensional systems, conditioned on noise level, lag and state.

:class:`TransitionMLP` is the ``inner`` of a :class:`~itomd.diffusion.Denoiser`:
``inner(x_in, c_noise, cond=x_t, lag=N)``. The noise level enters as sinusoidal features of
``c_noise = ln(σ)/4``, the lag as sinusoidal features of ``ln N`` (so lags from 1 to thousands are
resolved evenly), both through a small embedding MLP whose output modulates every residual block
(scale and shift, "FiLM"). The condition x_t is standardised with buffers fitted to the data and
concatenated to the input. With ``conditional=False`` the same class is an unconditional
(equilibrium) model: no ``cond``/``lag`` inputs.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from itomd.errors import InvalidInputError


class SinusoidalEmbedding(nn.Module):
    r"""Fixed sinusoidal features of a scalar: :math:`[\cos(2\pi f_k t), \sin(2\pi f_k t)]_k`.

    Frequencies are geometric between ``min_frequency`` and ``max_frequency``, so a scalar that
    varies over a range ``1/min_frequency`` is resolved down to ``1/max_frequency``.

    Parameters
    ----------
    n_frequencies : int
    min_frequency, max_frequency : float
    """

    def __init__(self, n_frequencies: int = 16, min_frequency: float = 0.05, max_frequency: float = 5.0):
        super().__init__()
        if n_frequencies < 1 or not 0 < min_frequency <= max_frequency:
            raise InvalidInputError("SinusoidalEmbedding needs n_frequencies ≥ 1 and 0 < min_frequency ≤ max_frequency")
        self.n_frequencies = int(n_frequencies)
        self.min_frequency = float(min_frequency)
        self.max_frequency = float(max_frequency)
        freqs = torch.logspace(math.log10(min_frequency), math.log10(max_frequency), n_frequencies)
        self.register_buffer("frequencies", 2 * math.pi * freqs, persistent=False)

    @property
    def out_features(self) -> int:
        return 2 * self.n_frequencies + 1

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """[B] → [B, 2·n_frequencies + 1] (the raw value is kept as the last feature)."""
        angles = t[:, None] * self.frequencies.to(t.dtype)
        return torch.cat([angles.cos(), angles.sin(), t[:, None]], dim=-1)


class _Block(nn.Module):
    """Pre-norm residual MLP block modulated by an embedding (scale and shift)."""

    def __init__(self, hidden: int, embedding: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.modulation = nn.Linear(embedding, 2 * hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.modulation(emb).chunk(2, dim=-1)
        z = self.norm(h) * (1 + scale) + shift
        return h + self.fc2(nn.functional.silu(self.fc1(nn.functional.silu(z))))


class TransitionMLP(nn.Module):
    r"""Residual MLP F(x_in, c_noise; x_t, N) → [B, dim] for a Denoiser.

    Parameters
    ----------
    dim : int
        Dimension of the state.
    hidden : int
        Width of the residual blocks.
    n_blocks : int
        Number of residual blocks.
    n_frequencies : int
        Sinusoidal frequencies per scalar embedding (noise level, log lag).
    conditional : bool
        If True, ``forward`` needs ``cond`` [B, dim] and ``lag`` [B]; if False it takes neither.
    condition_shift, condition_scale : sequence of float, length dim, optional
        Standardisation of the condition, ``(x_t − shift)/scale`` (fit to the data: its mean and
        standard deviation). Stored in the state dict.
    max_log_lag : float
        Upper end of the ln N range the lag embedding resolves (ln of the largest training lag).
    """

    def __init__(self, dim: int, hidden: int = 256, n_blocks: int = 3, n_frequencies: int = 16,
                 conditional: bool = True, condition_shift: Sequence[float] | None = None,
                 condition_scale: Sequence[float] | None = None, max_log_lag: float = math.log(1000.0)):
        super().__init__()
        if dim < 1 or hidden < 1 or n_blocks < 1:
            raise InvalidInputError("TransitionMLP needs dim, hidden and n_blocks ≥ 1")
        self.dim = int(dim)
        self.hidden = int(hidden)
        self.n_blocks = int(n_blocks)
        self.n_frequencies = int(n_frequencies)
        self.conditional = bool(conditional)
        self.max_log_lag = float(max_log_lag)
        shift = torch.zeros(dim) if condition_shift is None else torch.as_tensor(condition_shift, dtype=torch.float32)
        scale = torch.ones(dim) if condition_scale is None else torch.as_tensor(condition_scale, dtype=torch.float32)
        if shift.shape != (dim,) or scale.shape != (dim,) or not torch.all(scale > 0):
            raise InvalidInputError(f"condition_shift/condition_scale must have {dim} entries, scales positive")
        self.register_buffer("condition_shift", shift)
        self.register_buffer("condition_scale", scale)

        self.noise_embedding = SinusoidalEmbedding(n_frequencies, 0.05, 5.0)
        emb_in = self.noise_embedding.out_features
        if self.conditional:
            # ln N ∈ [0, max_log_lag]: lowest frequency spans the whole range, highest resolves ~0.1
            self.lag_embedding = SinusoidalEmbedding(n_frequencies, 0.5 / max(self.max_log_lag, 1.0), 5.0)
            emb_in += self.lag_embedding.out_features
        embedding = hidden
        self.embed = nn.Sequential(nn.Linear(emb_in, embedding), nn.SiLU(), nn.Linear(embedding, embedding))
        self.input = nn.Linear(dim * (2 if self.conditional else 1), hidden)
        self.blocks = nn.ModuleList([_Block(hidden, embedding) for _ in range(n_blocks)])
        self.out_norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.output = nn.Linear(hidden, dim)

    def forward(self, x_in: torch.Tensor, c_noise: torch.Tensor, positions: torch.Tensor | None = None,
                cond: torch.Tensor | None = None, lag: torch.Tensor | None = None) -> torch.Tensor:
        """Network output.

        Parameters
        ----------
        x_in : torch.Tensor, shape [B, dim]
            Preconditioned noisy state.
        c_noise : torch.Tensor, shape [B]
        positions : torch.Tensor, shape [B, dim], optional
            The noisy state itself (part of every inner network's interface; an MLP sees the
            preconditioned ``x_in`` only).
        cond : torch.Tensor, shape [B, dim], optional
            The state x_t the transition starts from (conditional models only).
        lag : torch.Tensor, shape [B], optional
            The lag N in frames, ≥ 1 (conditional models only).

        Returns
        -------
        torch.Tensor, shape [B, dim]
        """
        if x_in.ndim != 2 or x_in.shape[1] != self.dim:
            raise InvalidInputError(f"expected states of shape [B, {self.dim}], got {tuple(x_in.shape)}")
        features = [self.noise_embedding(c_noise)]
        inputs = [x_in]
        if self.conditional:
            if cond is None or lag is None:
                raise InvalidInputError("a conditional TransitionMLP needs cond= (x_t) and lag= (N)")
            if cond.shape != x_in.shape:
                raise InvalidInputError(f"cond must have shape {tuple(x_in.shape)}, got {tuple(cond.shape)}")
            lag = torch.as_tensor(lag, dtype=x_in.dtype, device=x_in.device).expand(x_in.shape[0])
            features.append(self.lag_embedding(lag.log()))
            inputs.append((cond - self.condition_shift.to(cond.dtype)) / self.condition_scale.to(cond.dtype))
        elif cond is not None or lag is not None:
            raise InvalidInputError("an unconditional TransitionMLP takes no cond/lag")
        emb = self.embed(torch.cat(features, dim=-1))
        h = self.input(torch.cat(inputs, dim=-1))
        for block in self.blocks:
            h = block(h, emb)
        return self.output(nn.functional.silu(self.out_norm(h)))
