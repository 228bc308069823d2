r"""BoPITO: a transition denoiser whose score is a frozen equilibrium score plus a decaying dynamic part.

Boltzmann priors for ITO (Viguera Díez, Schreiner, Engkvist & Olsson 2024) follow the spectral
expansion :math:`p(x_{t+N\tau}|x_t) = \mu(x_{t+N\tau}) + \sum_{i\ge2}\lambda_i^N \phi_i(x_{t+N\tau})\psi_i(x_t)`
and write the conditional score as

.. math::
    s(x^\sigma; x_t, N, \sigma) = s_\mathrm{eq}(x^\sigma, \sigma) + \hat\lambda^N\, s_\mathrm{dyn}(x^\sigma; x_t, N, \sigma).

With :math:`s = (D - x)/\sigma^2` the same split in denoiser space is

.. math::
    D(x; \sigma, x_t, N) = D_\mathrm{eq}(x; \sigma) + w(N)\,\sigma\,F\big(c_\mathrm{in}(x - c_N),\ \ln\sigma/4;\ x_t, N\big),

:math:`\sigma^2 s_\mathrm{dyn} = \sigma F` (the ε-parametrisation: F is of unit scale for every σ
— it tends to 0 at large σ, where the transition and equilibrium denoisers differ only by the
bounded shift of the conditional mean), :math:`c_N = m + A(N)(x_t - m)` and
:math:`c_\mathrm{in} = 1/\sqrt{\sigma^2 + \sigma_d(N)^2}` from
:class:`~itomd.diffusion.TransitionDenoiser`, so the network sees the same unit-scale inputs as
an ITO model. ``D_eq`` is frozen: a trained unconditional :class:`~itomd.diffusion.Denoiser` (a
Boltzmann generator) or the :class:`~itomd.diffusion.equilibrium.ExactEquilibriumDenoiser`.

The weight of the dynamic part is :math:`w(N) = \hat\lambda^N` for lags up to the largest
training lag :math:`N_\mathrm{max}`, and beyond it

.. math::
    w(N) = \hat\lambda^{N_\mathrm{max}}\,\lambda_\mathrm{int}^{\,N - N_\mathrm{max}}, \qquad
    F \text{ evaluated at } N_\mathrm{max},

continuous at :math:`N_\mathrm{max}`, with the network never asked about lags it was not
trained on. :math:`\lambda_\mathrm{int}` (default :math:`\hat\lambda`) sets how fast the model
relaxes to μ beyond the training lags; tuning it against an unbiased correlation function
interpolates between the dynamics learned from (possibly off-equilibrium) data and equilibrium
(``itomd fit-interpolation``). As :math:`N \to \infty`, :math:`w(N) \to 0` and the model samples
μ whatever x_t.

Training minimises the usual denoising loss of the composed D with the weight
:math:`1/(w(N)\sigma)^2`, i.e. unit weight on the network output F (the transition form below weights
D as ITO does).

**The dynamic part** (``dynamic_part``): ``"residual"`` (the form above: this class's default and toy
systems'), ``"linear"`` or ``"transition"`` (below; a molecule's default). docs/architecture.md says what
each measured.

**The linear part** (``dynamic_part = "linear"``). An ITO
denoiser returns the linear prediction :math:`c_N` at large σ for free, through its preconditioning;
in the form above F would have to learn that whole shift from μ's mean towards x_t, at every σ, and
a BoPITO model that has not learned it lets the prior pull every jump towards μ (its kinetics come out
too fast). With the linear part the dynamic term starts from the linear-Gaussian model of the
transition instead:

.. math::
    D = D_\mathrm{eq}(x;\sigma) + v(N)\,\big[D_\mathrm{lin}(x;\sigma,x_t,N) - D_\mathrm{lin}^\infty(x;\sigma)\big]
        + w(N)\,\sigma\,F,

with :math:`D_\mathrm{lin} = c_N + k_N (x - c_N)`, :math:`k_N = \sigma_d(N)^2/(\sigma^2+\sigma_d(N)^2)`
(the posterior mean if :math:`x_{t+N} \sim \mathcal N(c_N, \sigma_d(N)^2)`), and its equilibrium limit
:math:`D_\mathrm{lin}^\infty = m + k_\infty (x - m)`, :math:`k_\infty = \sigma_\mathrm{data}^2/(\sigma^2+\sigma_\mathrm{data}^2)`
(A → 0, σ_d → σ_data). The bracket is :math:`(1-k_N)\,A(N)(x_t-m) + (k_N-k_\infty)(x-m)`: it vanishes as
σ → 0 (where the prior and F decide) and as the lag forgets x_t (A(N) → 0, σ_d(N) → σ_data), so it decays
with the data's own autocorrelation; :math:`v(N) = 1` up to N_max and :math:`\lambda_\mathrm{int}^{N-N_\mathrm{max}}`
beyond, so the model still tends to D_eq — to μ — as N → ∞. For Ornstein–Uhlenbeck dynamics with the exact
(Gaussian) prior, D is exact with F = 0, as an ITO model's is. The loss weight stays :math:`1/(w\sigma)^2`.

**The transition part** (``dynamic_part = "transition"``). The dynamic score is written as the
difference of a whole ITO transition score and the prior's, :math:`s_\mathrm{dyn} = s_\mathrm{tr} - s_\mathrm{eq}`:

.. math::
    D = D_\mathrm{eq}(x;\sigma) + w(N)\,\big[D_\mathrm{tr}(x;\sigma,x_t,N) - D_\mathrm{eq}(x;\sigma)\big],
    \qquad D_\mathrm{tr} = c_\mathrm{skip}\,x + c_\mathrm{out}\,F + (1 - c_\mathrm{skip})\,c_N,

with ITO's preconditioning around c_N and σ_d(N) (:class:`~itomd.diffusion.TransitionDenoiser`). It is
still BoPITO's split, s = s_eq + w(N) s_dyn, and still tends to D_eq as N → ∞; but where w ≈ 1 the model
is an ITO model, whose errors keep a jump near the linear prediction from x_t, instead of a residual
on μ's denoiser, whose errors pull it towards μ (too-fast kinetics). F's output enters D with
:math:`w\,c_\mathrm{out}`, bounded by w σ_d(N) at large σ (the residual form's w σ grows with σ). The loss
weight is ITO's on the composed D, :math:`1/c_\mathrm{out}^2`, i.e. :math:`w(N)^2` on F: the sampler uses D,
and F's errors reach D scaled by w, so the long lags — where the prior carries the density — are not
weighted up (with unit weight on F, 1/w² up-weights them, and alanine dipeptide's 1-ps kinetics came out
0.61–0.65 of MD's instead of 0.80–0.96; BENCHMARKS.md, "BoPITO's transition part"). Molecules learn the targets superposed on
x_t, as ITO does (the prior is isotropic, and D_eq's orientation follows x^σ's, so the two agree at
small σ; the rotational part the prior lacks is F's to learn, and beyond the training lags the model
samples μ in any orientation).
"""

from __future__ import annotations

import torch
from torch import nn

from itomd.diffusion.denoiser import TransitionDenoiser, append_dims
from itomd.errors import InvalidInputError
from itomd.geometry import superpose


class BoPITODenoiser(TransitionDenoiser):
    """Transition denoiser D = D_eq + w(N)·σ·F with a frozen equilibrium part.

    Parameters
    ----------
    inner : nn.Module
        Conditional network F(x_in, c_noise, cond=x_t, lag=N) → [B, dim].
    equilibrium : nn.Module
        Equilibrium denoiser ``equilibrium(x, sigma)`` → [B, dim]; frozen here.
    lambda_hat : float
        λ̂ in (0, 1], the per-frame decay of the dynamic part (slowest non-unit eigenvalue).
    sigma_data, mean, lag_coefficients, lag_scales, p_mean, p_std, n_atoms, superpose_condition
        As for :class:`~itomd.diffusion.TransitionDenoiser`; ``len(lag_scales)`` is N_max. Molecules
        use ``superpose_condition``: the prior's μ is isotropic, and so is the long-lag limit of
        the orientation-marginal density it makes the model learn.
    dynamic_part : {"residual", "linear", "transition"}
        How the dynamic part is formed (module docstring): ``"residual"``, the original D_eq + w σ F
        (model files written before the choice existed); ``"linear"``, with the linear-Gaussian
        transition denoiser's departure from its equilibrium limit added; ``"transition"``, w times
        an ITO-preconditioned transition denoiser's departure from D_eq.
    """

    def __init__(self, inner: nn.Module, equilibrium: nn.Module, lambda_hat: float, sigma_data: float,
                 mean: "torch.Tensor | list[float]", lag_coefficients: "torch.Tensor | list[list[float]]",
                 lag_scales: "torch.Tensor | list[float]", p_mean: float = -1.2 + 0.6931471805599453,
                 p_std: float = 1.2, n_atoms: int | None = None, superpose_condition: bool = False,
                 dynamic_part: str = "residual"):
        super().__init__(inner, sigma_data, mean, lag_coefficients, lag_scales, p_mean=p_mean, p_std=p_std,
                         n_atoms=n_atoms, superpose_condition=superpose_condition)
        self.lambda_hat = check_eigenvalue(lambda_hat, "lambda_hat")
        self.dynamic_part = check_dynamic_part(dynamic_part)
        self.equilibrium = equilibrium.eval().requires_grad_(False)
        self.lambda_interpolation: float | None = None

    @property
    def max_lag(self) -> int:
        """N_max: the largest lag of the training tables."""
        return len(self.lag_scales)

    def train(self, mode: bool = True) -> "BoPITODenoiser":
        super().train(mode)
        self.equilibrium.eval()  # frozen, whatever the mode of the dynamic part
        return self

    def set_interpolation(self, lambda_interpolation: float | None) -> None:
        """Set λ_int, the per-frame decay of the dynamic part beyond N_max (None: λ̂)."""
        self.lambda_interpolation = (None if lambda_interpolation is None
                                     else check_eigenvalue(lambda_interpolation, "lambda_int"))

    def condition_in_frame(self, x: torch.Tensor, cond: torch.Tensor | None,
                           lag: torch.Tensor | None = None) -> torch.Tensor | None:
        """As :meth:`TransitionDenoiser.condition_in_frame`; the transition form of a molecule also takes
        x_t superposed on x in the rows whose lag is beyond the training lags: D_eq takes over there and a
        sample's orientation drifts from x_t's, while the network only saw noisy states in x_t's frame."""
        if self.dynamic_part != "transition" or self.n_atoms is None or cond is None or lag is None:
            return super().condition_in_frame(x, cond, lag)
        beyond = torch.as_tensor(lag, device=x.device).expand(x.shape[0]) > self.max_lag
        if not bool(beyond.any()):
            return cond
        superposed = superpose(cond.to(x.dtype).expand_as(x), x, self.n_atoms)
        return torch.where(append_dims(beyond, x.ndim), superposed, cond)

    def dynamic_weight(self, lag: torch.Tensor) -> torch.Tensor:
        """w(N) for lags [B] (float tensor of frames); shape [B]."""
        lag = lag.to(torch.float64)
        within = torch.minimum(lag, torch.full_like(lag, float(self.max_lag)))
        log_w = within * torch.log(torch.tensor(self.lambda_hat, dtype=torch.float64))
        return (log_w + self._log_decay_beyond_tables(lag)).exp()

    def linear_weight(self, lag: torch.Tensor) -> torch.Tensor:
        """v(N) for lags [B]: 1 up to N_max, λ_int^(N − N_max) beyond (the tables stop at N_max); shape [B]."""
        return self._log_decay_beyond_tables(lag.to(torch.float64)).exp()

    def _log_decay_beyond_tables(self, lag: torch.Tensor) -> torch.Tensor:
        """(N − N_max)⁺ · ln λ_int for float64 lags [B] (zero where λ_int = 1); shape [B]."""
        lam_int = self.lambda_hat if self.lambda_interpolation is None else self.lambda_interpolation
        beyond = (lag - float(self.max_lag)).clamp(min=0.0)
        if lam_int < 1.0:
            return beyond * torch.log(torch.tensor(lam_int, dtype=torch.float64))
        return torch.zeros_like(beyond)

    def linear_departure(self, x: torch.Tensor, sigma: torch.Tensor, centre: torch.Tensor,
                         scale: torch.Tensor) -> torch.Tensor:
        """D_lin(x; σ, x_t, N) − D_lin^∞(x; σ) [B, dim] for the centre c_N (broadcastable to ``x``) and
        σ_d(N) [B] of :meth:`linear_prediction`; ``sigma`` [B]."""
        variance, lag_variance = append_dims(sigma**2, x.ndim), append_dims(scale**2, x.ndim)
        k_lag = lag_variance / (variance + lag_variance)
        k_eq = self.sigma_data**2 / (variance + self.sigma_data**2)
        mean = self.shift.to(x.dtype)
        return (1.0 - k_lag) * (centre - mean) + (k_lag - k_eq) * (x - mean)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor | None = None,
                lag: torch.Tensor | None = None, **_) -> torch.Tensor:
        """D(x; σ, x_t, N), shape of ``x`` [B, dim]; ``sigma`` and ``lag`` have shape [B]."""
        cond = self.condition_in_frame(x, cond, lag)  # once: the centre and the network see the same frame
        centre, sd = self.linear_prediction(x, cond, lag)
        sigma = sigma.to(x.dtype)
        lag = torch.as_tensor(lag, device=x.device).to(x.dtype).expand(x.shape[0])
        network_lag = lag.clamp(max=float(self.max_lag))
        weight = append_dims(self.dynamic_weight(lag).to(x.dtype), x.ndim)
        equilibrium = self.equilibrium(x, sigma)
        if self.dynamic_part == "transition":
            transition = self._denoise(x, sigma, centre, sd, cond=cond, lag=network_lag)
            return self.project(equilibrium + weight * (transition - equilibrium))
        c_in = append_dims(1.0 / (sigma**2 + sd**2).sqrt(), x.ndim)
        dynamic = self.network(c_in * (x - centre), sigma.log() / 4, x, cond=cond, lag=network_lag)
        d = equilibrium + weight * append_dims(sigma, x.ndim) * dynamic
        if self.dynamic_part == "linear":
            d = d + append_dims(self.linear_weight(lag).to(x.dtype), x.ndim) * self.linear_departure(x, sigma, centre, sd)
        return self.project(d)

    def loss_weight(self, sigma: torch.Tensor, sigma_data: torch.Tensor, lag: torch.Tensor | None = None,
                    **_) -> torch.Tensor:
        """1/(w(N)σ)² [B], unit weight on the network output; for the transition part ITO's weight on the
        composed D, 1/c_out² (``sigma_data``: σ_d(N) [B]), which weights F by w(N)² (module docstring)."""
        if lag is None:
            raise InvalidInputError("a BoPITO denoiser needs lag= to weight its loss")
        if self.dynamic_part == "transition":
            return super().loss_weight(sigma, sigma_data)
        w = self.dynamic_weight(torch.as_tensor(lag, device=sigma.device).expand(sigma.shape[0])).to(sigma.dtype)
        return 1.0 / (w * sigma) ** 2


#: BoPITO's forms of the dynamic part (:class:`BoPITODenoiser`).
DYNAMIC_PARTS = ("residual", "linear", "transition")


def check_dynamic_part(value: str) -> str:
    """``value`` if it names one of :data:`DYNAMIC_PARTS`, else a one-line :class:`InvalidInputError`."""
    if value not in DYNAMIC_PARTS:
        raise InvalidInputError(f"dynamic_part must be one of {', '.join(DYNAMIC_PARTS)}, got {value!r}")
    return value


def check_eigenvalue(value: float, name: str) -> float:
    """``value`` as a float in (0, 1], else a one-line :class:`InvalidInputError`."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be a number in (0, 1], got {value!r}") from None
    if not 0.0 < value <= 1.0:
        raise InvalidInputError(f"{name} must be in (0, 1] (a per-frame eigenvalue), got {value}")
    return value
