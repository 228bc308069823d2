"""Every sampler reproduces a target with a known answer: a Gaussian, via its exact denoiser."""


import pytest
import torch
from torch import nn

from itomd.diffusion import SAMPLERS, Denoiser, karras_sigmas
from itomd.errors import InvalidInputError

MU = torch.tensor([1.5, -0.5], dtype=torch.float64)
STD = torch.tensor([0.4, 1.3], dtype=torch.float64)


def gaussian_denoiser(x, sigma, shift=None):
    """Exact E[x0 | x0 + σ n = x] for x0 ~ N(MU + shift, diag STD²)."""
    mu = MU if shift is None else MU + shift
    s2, v = sigma[:, None] ** 2, STD**2
    return (v * x + s2 * mu) / (v + s2)


# Steps per sampler for a 1 % accuracy on this target (σ from 20 to 0.002): Heun is second order.
STEPS = {"euler": 200, "heun": 32, "heun-churn": 64, "dpmpp-2m": 48, "euler-maruyama": 400, "ancestral": 1000,
         "flow": 64}


@pytest.mark.parametrize("name", [name for name in SAMPLERS if name != "consistency"])
def test_sampler_recovers_gaussian_mean_and_variance(name):
    gen = torch.Generator().manual_seed(0)
    sigmas = karras_sigmas(STEPS[name], 0.002, 20.0)
    x = sigmas[0] * torch.randn(40000, 2, generator=gen, dtype=torch.float64)
    out = SAMPLERS[name](gaussian_denoiser, x, sigmas, generator=gen)
    # deterministic samplers carry the start's mismatch (N(0, σ_max²) instead of N(MU, σ_max² + STD²)) into a
    # mean bias of |MU| STD / σ_max = 0.030 in the first coordinate; the flow sampler's own error adds < 0.001
    torch.testing.assert_close(out.mean(0), MU, atol=0.031 if name == "flow" else 0.03, rtol=0)
    torch.testing.assert_close(out.std(0), STD, atol=0.03, rtol=0)


def gaussian_consistency_function(x, sigma):
    """The exact probability-flow end point from x at σ for x0 ~ N(MU, diag STD²): MU + STD (x − MU)/√(STD² + σ²)."""
    return MU + STD / torch.sqrt(STD**2 + sigma[:, None] ** 2) * (x - MU)


@pytest.mark.parametrize("n_steps", [1, 2, 4])
def test_consistency_sampling_with_the_exact_consistency_function_samples_the_gaussian(n_steps):
    """Multistep consistency sampling (what a distilled model runs) on the exact consistency function of
    a Gaussian: mean and sd exact at 1, 2 and 4 evaluations (start N(MU, σ_max² + STD²), as the models
    start). Negative control: the posterior mean (a denoiser) in its place gives a far too narrow sample."""
    from itomd.diffusion.schedules import consistency_sigmas

    gen = torch.Generator().manual_seed(0)
    sigmas = consistency_sigmas(n_steps, 0.002, 20.0)
    assert len(sigmas) == n_steps + 1 and sigmas[-1] == 0
    x = MU + torch.sqrt(sigmas[0] ** 2 + STD**2) * torch.randn(40000, 2, generator=gen, dtype=torch.float64)
    out = SAMPLERS["consistency"](gaussian_consistency_function, x, sigmas, generator=gen)
    torch.testing.assert_close(out.mean(0), MU, atol=0.03, rtol=0)
    torch.testing.assert_close(out.std(0), STD, atol=0.03, rtol=0)
    wrong = SAMPLERS["consistency"](gaussian_denoiser, x, sigmas, generator=gen)
    assert torch.all(wrong.std(0) < 0.5 * STD)


def test_conditioning_flows_through_extra_args_and_callback_counts():
    sigmas = karras_sigmas(32, 0.002, 20.0)
    x = sigmas[0] * torch.randn(5000, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    seen = []
    out = SAMPLERS["heun"](gaussian_denoiser, x, sigmas, extra_args={"shift": torch.tensor([2.0, 0.0])},
                           callback=lambda d: seen.append(d["i"]))
    assert seen == list(range(32))
    # the exact probability-flow map of this Gaussian: x0 = μ' + STD/sqrt(STD² + σ_max²) (x − μ')
    mu = MU + torch.tensor([2.0, 0.0], dtype=torch.float64)
    exact = mu + STD / torch.sqrt(STD**2 + sigmas[0] ** 2) * (x - mu)
    torch.testing.assert_close(out, exact, atol=0.05, rtol=0)  # ~1 % of |x − μ|: 32 Heun steps
    torch.testing.assert_close(out.mean(0), exact.mean(0), atol=5e-3, rtol=0)


def test_deterministic_and_stochastic_reproducibility():
    sigmas = karras_sigmas(8, 0.01, 10.0)
    x = torch.randn(16, 2, dtype=torch.float64)
    a = SAMPLERS["heun"](gaussian_denoiser, x, sigmas)
    assert torch.equal(a, SAMPLERS["heun"](gaussian_denoiser, x, sigmas))
    s1 = SAMPLERS["euler-maruyama"](gaussian_denoiser, x, sigmas, generator=torch.Generator().manual_seed(3))
    s2 = SAMPLERS["euler-maruyama"](gaussian_denoiser, x, sigmas, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2)


def test_schedule():
    s = karras_sigmas(5, 0.002, 80.0)
    assert s.shape == (6,) and s[0] == pytest.approx(80.0) and s[-2] == pytest.approx(0.002) and s[-1] == 0
    assert torch.all(s[1:] < s[:-1])
    with pytest.raises(InvalidInputError):
        karras_sigmas(0, 0.002, 80.0)
    with pytest.raises(InvalidInputError):
        SAMPLERS["euler"](gaussian_denoiser, torch.zeros(2, 2, dtype=torch.float64), torch.tensor([1.0, 2.0, 0.0]))


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 1))

    def forward(self, x, c_noise, positions=None):
        return self.net(torch.cat([x, c_noise[:, None]], -1))


def test_edm_preconditioning_and_a_tiny_trained_model():
    # the exact denoiser of N(0, sd²) is c_skip·x (F ≡ 0): preconditioning puts the optimum at zero output
    zero = Denoiser(lambda x, c, positions=None: torch.zeros_like(x), sigma_data=0.7)
    sigma = torch.tensor([0.1, 1.0, 10.0])
    x = torch.randn(3, 1)
    torch.testing.assert_close(zero(x, sigma), (0.49 * x) / (0.49 + sigma[:, None] ** 2))
    # a tiny MLP trained for seconds learns N(2, 0.5²); Heun sampling recovers it
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    data = 2.0 + 0.5 * torch.randn(4096, 1, generator=gen)
    model = Denoiser(TinyNet(), sigma_data=float(data.std()))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(1500):
        batch = data[torch.randint(len(data), (256,), generator=gen)]
        loss = model.loss(batch, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    sigmas = karras_sigmas(32, 0.002, 20.0, dtype=torch.float32)
    out = SAMPLERS["heun"](model, sigmas[0] * torch.randn(8000, 1, generator=gen), sigmas)
    assert out.mean().item() == pytest.approx(2.0, abs=0.1)
    assert out.std().item() == pytest.approx(0.5, abs=0.1)
