"""Karras et al.'s ρ-schedule: from sigma_max down to sigma_min, strictly decreasing, then a final 0; the
closed form in between; one-line errors for bad arguments."""

import pytest
import torch

from itomd.diffusion.schedules import karras_sigmas
from itomd.errors import InvalidInputError


@pytest.mark.parametrize("n_steps", [2, 3, 25, 200])
def test_endpoints_monotone_and_a_final_zero(n_steps):
    sigmas = karras_sigmas(n_steps, 0.01, 30.0)
    assert sigmas.shape == (n_steps + 1,) and sigmas.dtype == torch.float64
    assert sigmas[0].item() == pytest.approx(30.0, rel=1e-12) and sigmas[-2].item() == pytest.approx(0.01, rel=1e-12)
    assert sigmas[-1].item() == 0.0 and torch.all(sigmas[1:] < sigmas[:-1])


def test_interior_levels_follow_the_rho_formula():
    n, low, high = 6, 0.002, 80.0
    for rho in (1.0, 3.0, 7.0):
        sigmas = karras_sigmas(n, low, high, rho=rho)
        expected = [(high ** (1 / rho) + i / (n - 1) * (low ** (1 / rho) - high ** (1 / rho))) ** rho for i in range(n)]
        torch.testing.assert_close(sigmas[:-1], torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
    linear = karras_sigmas(5, 1.0, 5.0, rho=1.0)
    assert linear.tolist() == pytest.approx([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])


def test_one_step_is_sigma_max_then_zero_and_the_dtype_is_honoured():
    assert karras_sigmas(1, 0.1, 2.0).tolist() == pytest.approx([2.0, 0.0], rel=1e-12, abs=0)
    assert karras_sigmas(4, 0.1, 2.0, dtype=torch.float32).dtype == torch.float32


@pytest.mark.parametrize("args, fragment", [
    ((0, 0.1, 1.0), "number of steps must be a positive integer, got 0"),
    ((-3, 0.1, 1.0), "positive integer"), ((2.5, 0.1, 1.0), "positive integer, got 2.5"),
    ((5, 0.0, 1.0), "need 0 < sigma_min < sigma_max"), ((5, 1.0, 1.0), "need 0 < sigma_min < sigma_max"),
    ((5, 2.0, 1.0), "need 0 < sigma_min < sigma_max"),
])
def test_bad_arguments_are_one_line_errors(args, fragment):
    with pytest.raises(InvalidInputError, match=fragment) as error:
        karras_sigmas(*args)
    assert "\n" not in str(error.value)
