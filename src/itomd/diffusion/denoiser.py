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
serves unconditional (equilibrium) and conditional (transition) models. An optional ``shift``
(the data mean) centres the data: the preconditioning acts on :math:`x - \text{shift}` and the
shift is added back, so noise stays isotropic in physical coordinates.

Molecules (``n_atoms`` given): states are flattened positions [B, 3·n_atoms]; D is projected onto
structures with zero centroid (the exact posterior mean for centred data, whatever the noise does
to the centroid).

Every inner network has the interface ``inner(x_in, c_noise, positions=x, **cond)``: besides the
preconditioned input it receives the noisy state itself (an equivariant network needs its geometry,
not only the preconditioned displacement; an MLP ignores it).
"""

from __future__ import annotations

import torch
from torch import nn

from itomd.errors import InvalidInputError
from itomd.geometry import remove_centroid, superpose


def append_dims(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dimensions to a [batch] tensor until it has ``ndim`` dims."""
    return t.reshape(t.shape + (1,) * (ndim - t.ndim))


class Denoiser(nn.Module):
    """EDM-preconditioned denoiser wrapping an inner network ``inner(x_in, c_noise, positions=x, **cond)``.

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
    shift : sequence of float, optional
        Centre of the data (its mean), one entry per coordinate of the event; default 0.
    n_atoms : int, optional
        States are molecules of this many atoms ([B, 3·n_atoms], centred): D gets zero centroid.
    """

    def __init__(self, inner: nn.Module, sigma_data: float, p_mean: float = -1.2, p_std: float = 1.2,
                 shift: "torch.Tensor | list[float] | None" = None, n_atoms: int | None = None):
        super().__init__()
        if not sigma_data > 0:
            raise InvalidInputError(f"sigma_data must be positive, got {sigma_data}")
        if not p_std > 0:
            raise InvalidInputError(f"p_std must be positive, got {p_std}")
        self.inner = inner
        self.sigma_data = float(sigma_data)
        self.p_mean = float(p_mean)
        self.p_std = float(p_std)
        self.register_buffer("shift", torch.zeros(()) if shift is None else torch.as_tensor(shift, dtype=torch.float32))
        if n_atoms is not None and (int(n_atoms) != n_atoms or n_atoms < 1):
            raise InvalidInputError(f"n_atoms must be a positive integer, got {n_atoms!r}")
        self.n_atoms = None if n_atoms is None else int(n_atoms)

    def network(self, x_in: torch.Tensor, c_noise: torch.Tensor, x: torch.Tensor, **cond) -> torch.Tensor:
        """The inner network's output F for preconditioned input ``x_in`` (noisy state ``x``)."""
        return self.inner(x_in, c_noise, positions=x, **cond)

    def project(self, d: torch.Tensor) -> torch.Tensor:
        """Remove what the data cannot have: for molecules, each structure's centroid."""
        return d if self.n_atoms is None else remove_centroid(d, self.n_atoms)

    def centre_and_scale(self, x: torch.Tensor, **cond) -> tuple[torch.Tensor, torch.Tensor]:
        """Centre (broadcastable to ``x``) and data scale σ_d [B] the preconditioning uses.

        The data mean and σ_data here; subclasses may make both depend on the conditioning.
        """
        return self.shift.to(x.dtype), torch.full((x.shape[0],), self.sigma_data, dtype=x.dtype, device=x.device)

    def scalings(self, sigma: torch.Tensor, sigma_data: torch.Tensor | float | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in, c_noise), each shaped like ``sigma`` [B] (σ_d default: ``sigma_data``)."""
        sd = self.sigma_data if sigma_data is None else sigma_data
        sd2 = sd**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * sd / (sigma**2 + sd2).sqrt()
        c_in = 1.0 / (sigma**2 + sd2).sqrt()
        return c_skip, c_out, c_in, sigma.log() / 4

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        """Denoised estimate D(x; σ), shape of ``x`` [B, *event]; ``sigma`` has shape [B]."""
        shift, sd = self.centre_and_scale(x, **cond)
        return self._denoise(x, sigma, shift, sd, **cond)

    def _denoise(self, x: torch.Tensor, sigma: torch.Tensor, shift: torch.Tensor, sd: torch.Tensor,
                 **cond) -> torch.Tensor:
        """:meth:`forward` around a given centre and data scale."""
        c_skip, c_out, c_in, c_noise = (append_dims(c, x.ndim) if i < 3 else c
                                        for i, c in enumerate(self.scalings(sigma.to(x.dtype), sd)))
        centred = x - shift
        return self.project(shift + c_skip * centred + c_out * self.network(c_in * centred, c_noise, x, **cond))

    def sample_training_sigmas(self, n: int, generator: torch.Generator | None = None,
                               device: torch.device | str | None = None, **cond) -> torch.Tensor:
        """Draw ``n`` training noise levels, ln σ ~ N(p_mean, p_std²); shape [n]."""
        return (self.p_mean + self.p_std * torch.randn(n, generator=generator, device=device)).exp()

    def loss(self, x0: torch.Tensor, generator: torch.Generator | None = None, **cond) -> torch.Tensor:
        """Denoising score-matching loss of a batch of clean samples ``x0`` [B, *event] (a scalar)."""
        sigma = self.sample_training_sigmas(x0.shape[0], generator, x0.device, **cond).to(x0.dtype)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
        return self.loss_at(x0, sigma, noise, **cond)

    def loss_weight(self, sigma: torch.Tensor, sigma_data: torch.Tensor, **cond) -> torch.Tensor:
        """EDM's λ(σ) = (σ² + σ_d²)/(σσ_d)² [B] (unit effective weight on the network output)."""
        return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2

    def loss_at(self, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, *, through: nn.Module | None = None,
                **cond) -> torch.Tensor:
        """The loss for given noise levels ``sigma`` [B] and unit noise ``noise`` (shape of ``x0``).

        Lets a caller draw the random numbers itself (e.g. one global batch split across
        data-parallel ranks). ``through`` is a wrapper of this denoiser to call instead of it
        (a ``DistributedDataParallel`` module, whose forward synchronises gradients).
        """
        b = x0.shape[0]
        weight = self.loss_weight(sigma, self.centre_and_scale(x0, **cond)[1], **cond)
        model = self if through is None else through
        err = (model(x0 + append_dims(sigma, x0.ndim) * noise, sigma, **cond) - x0) ** 2
        return (weight * err.reshape(b, -1).sum(-1)).mean()


class TransitionDenoiser(Denoiser):
    r"""A Denoiser of x_{t+Nτ} | x_t preconditioned around the linear (AR) prediction at lag N.

    For transition densities the natural scale of the "data" depends on the lag: at short lags
    x_{t+Nτ} stays within far less than σ_data of x_t, at long lags it forgets x_t. The
    preconditioning therefore centres on the linear prediction
    :math:`m + A(N)\,(x_t - m)` (m the data mean, A(N) the per-coordinate lag-N regression slope,
    i.e. the normalised autocorrelation) and scales by σ_d(N), the RMS residual of that prediction;
    the training noise levels are drawn relative to it: ln(σ/σ_d(N)) ~ N(p_mean, p_std²). Every lag's
    network target is then of unit scale, and for linear (Ornstein–Uhlenbeck) dynamics the
    preconditioning alone is already exact. All three tables are estimated from the data and stored
    with the model; lags beyond the tables use their last entry. Conditioning keywords: ``cond``
    (x_t, [B, dim]) and ``lag`` (N, [B]).

    Parameters
    ----------
    inner : nn.Module
    sigma_data : float
        Pooled standard deviation of the frames (kept for reference and schedules).
    mean : sequence of float, length dim
        Data mean m.
    lag_coefficients : array_like, shape [max_lag, dim]
        A(N) for N = 1..max_lag.
    lag_scales : sequence of float, length max_lag
        σ_d(N) for N = 1..max_lag.
    p_mean, p_std : float
        Training distribution of ln(σ/σ_d(N)).
    n_atoms : int, optional
        Molecules (see :class:`Denoiser`); with isotropic tables (one slope per lag for every
        coordinate, zero mean) the preconditioning is rotation-equivariant.
    superpose_condition : bool
        Molecules only: x_t enters (the centre and the network) superposed on the noisy state x^σ
        (:meth:`condition_in_frame`). D then depends on x_t's internal coordinates alone, not on its
        orientation; with the equivariance in x^σ and x_t together this makes the modelled density
        of x_{t+N} isotropic — the transition density marginalised over the target's orientation,
        whose long-lag limit is an isotropic μ (BoPITO's prior) and whose internal-coordinate
        dynamics are the molecule's own. Without it x_t is taken as given (ITO models, which learn
        targets superposed on x_t).
    """

    def __init__(self, inner: nn.Module, sigma_data: float, mean: "torch.Tensor | list[float]",
                 lag_coefficients: "torch.Tensor | list[list[float]]", lag_scales: "torch.Tensor | list[float]",
                 p_mean: float = -1.2 + 0.6931471805599453, p_std: float = 1.2, n_atoms: int | None = None,
                 superpose_condition: bool = False):
        super().__init__(inner, sigma_data, p_mean=p_mean, p_std=p_std, shift=mean, n_atoms=n_atoms)
        if superpose_condition and self.n_atoms is None:
            raise InvalidInputError("superpose_condition needs n_atoms (only molecules have an orientation)")
        self.superpose_condition = bool(superpose_condition)
        scales = torch.as_tensor(lag_scales, dtype=torch.float32)
        coefficients = torch.as_tensor(lag_coefficients, dtype=torch.float32)
        if scales.ndim != 1 or len(scales) < 1 or not torch.all(scales > 0):
            raise InvalidInputError("lag_scales must be a non-empty list of positive numbers")
        if coefficients.ndim != 2 or coefficients.shape[0] != len(scales) or coefficients.shape[1] != self.shift.numel():
            raise InvalidInputError(f"lag_coefficients must have shape [{len(scales)}, {self.shift.numel()}], "
                                    f"got {tuple(coefficients.shape)}")
        self.register_buffer("lag_scales", scales)
        self.register_buffer("lag_coefficients", coefficients)

    def _index(self, lag: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.round(lag).long(), 1, len(self.lag_scales)) - 1

    def condition_in_frame(self, x: torch.Tensor, cond: torch.Tensor | None,
                           lag: torch.Tensor | None = None) -> torch.Tensor | None:
        """x_t [B, dim] as the denoiser uses it (centre and network) for the states ``x`` [B, dim] and lags
        ``lag`` [B]: superposed on each x (Kabsch, differentiable) with ``superpose_condition``, else as given."""
        if not self.superpose_condition or cond is None:
            return cond
        return superpose(cond.to(x.dtype).expand_as(x), x, self.n_atoms)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None,
                lag: torch.Tensor | None = None, **rest) -> torch.Tensor:
        """D(x; σ, x_t, N), shape of ``x`` [B, dim]: x_t brought into its frame once
        (:meth:`condition_in_frame`), for the centre and the network alike."""
        cond = self.condition_in_frame(x, cond, lag)
        shift, sd = self.linear_prediction(x, cond, lag)
        return self._denoise(x, sigma, shift, sd, cond=cond, lag=lag, **rest)

    def centre_and_scale(self, x: torch.Tensor, cond: torch.Tensor | None = None, lag: torch.Tensor | None = None,
                         **_) -> tuple[torch.Tensor, torch.Tensor]:
        # x_t in the frame of x: a sampler's first draw around the centre is then isotropic too
        return self.linear_prediction(x, self.condition_in_frame(x, cond, lag), lag)

    def linear_prediction(self, x: torch.Tensor, cond: torch.Tensor | None, lag: torch.Tensor | None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """The centre m + A(N)(x_t − m) (broadcastable to ``x``) and σ_d(N) [B], for x_t already in
        its frame (:meth:`condition_in_frame`)."""
        if cond is None or lag is None:
            raise InvalidInputError("a transition denoiser needs cond= (x_t) and lag= (N)")
        index = self._index(torch.as_tensor(lag, device=x.device).expand(x.shape[0]))
        mean = self.shift.to(x.dtype)
        centre = mean + self.lag_coefficients[index].to(x.dtype) * (cond.to(x.dtype) - mean)
        return centre, self.lag_scales[index].to(x.dtype)

    def sample_training_sigmas(self, n: int, generator: torch.Generator | None = None,
                               device: torch.device | str | None = None, **cond) -> torch.Tensor:
        lag = cond.get("lag")
        if lag is None:
            raise InvalidInputError("a transition denoiser draws training noise levels per lag: pass lag=")
        z = torch.randn(n, generator=generator, device=device)  # on the generator's device (batches: the CPU)
        scales = self.lag_scales.to(z.device)
        return scales[self._index(torch.as_tensor(lag, device=z.device))] * (self.p_mean + self.p_std * z).exp()
