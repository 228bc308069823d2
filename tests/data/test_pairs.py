"""Multi-lag pair data: exact lag support, exact valid-start indexing, reproducible streams."""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from itomd.data.pairs import FixedLag, LogUniformLag, PairSampler, UniformLag, make_lag_sampler
from itomd.errors import InvalidInputError


@pytest.mark.parametrize("sampler", [UniformLag(7), LogUniformLag(7), FixedLag(3)], ids=repr)
def test_lag_support_is_exact_and_frequencies_match(sampler):
    p = sampler.probabilities()
    assert p.shape == (sampler.max_lag,) and p.sum() == pytest.approx(1.0)
    draws = sampler.sample(200000, torch.Generator().manual_seed(0)).numpy()
    support = set(np.flatnonzero(p > 0) + 1)
    assert set(draws) == support                     # max_lag is drawn, nothing outside {1..max}
    freq = np.bincount(draws, minlength=sampler.max_lag + 1)[1:] / len(draws)
    np.testing.assert_allclose(freq, p, atol=4e-3)


def test_log_uniform_pmf_is_floor_of_log_uniform():
    n_max = 50
    p = LogUniformLag(n_max).probabilities()
    assert p[0] == pytest.approx(math.log(2) / math.log(n_max + 1))
    assert p[-1] == pytest.approx(math.log((n_max + 1) / n_max) / math.log(n_max + 1))
    assert np.all(np.diff(p) < 0)


def test_bad_lags():
    for bad in (0, -2, 1.5):
        with pytest.raises(InvalidInputError):
            UniformLag(bad)
    with pytest.raises(InvalidInputError, match="unknown lag sampler"):
        make_lag_sampler("gaussian", 3)


@pytest.fixture
def tiny():
    # lengths 3, 5, 1, 4; frame values encode (trajectory, frame) so pairs can be decoded
    lengths = [3, 5, 1, 4]
    return [np.array([[10.0 * i + t] for t in range(n)]) for i, n in enumerate(lengths)], lengths


def test_pairs_cover_exactly_the_valid_starts_uniformly(tiny):
    trajs, lengths = tiny
    with pytest.warns(UserWarning, match="too short"):
        sampler = PairSampler(trajs, UniformLag(4))
    gen = torch.Generator().manual_seed(1)
    for lag in range(1, 5):
        valid = {(i, t) for i, n in enumerate(lengths) for t in range(n - lag)}
        assert sampler.n_valid_starts(lag) == len(valid)
        lags = torch.full((60000,), lag)
        i0, i1 = sampler.sample_indices(lags, gen)
        a, b = sampler.frames[i0, 0].numpy(), sampler.frames[i1, 0].numpy()
        pairs = Counter((int(v // 10), int(v % 10)) for v in a)
        assert set(pairs) == valid                       # every valid start, and only valid ones
        assert np.all(b - a == lag)                      # same trajectory, exactly `lag` frames later
        freq = np.array([pairs[k] for k in sorted(valid)]) / len(a)
        np.testing.assert_allclose(freq, 1 / len(valid), atol=0.01)


@pytest.mark.filterwarnings("ignore:.*too short")
def test_mixed_lags_in_one_draw_are_each_uniform_over_their_valid_starts(tiny):
    """One call with every lag mixed (rejection draws and, for lag 4 whose one valid start is 1 frame
    in 13, the exact fallback) gives each lag the same distribution as drawing it alone."""
    trajs, lengths = tiny
    sampler = PairSampler(trajs, UniformLag(4))
    lags = UniformLag(4).sample(200000, torch.Generator().manual_seed(3))
    i0, i1 = sampler.sample_indices(lags, torch.Generator().manual_seed(4))
    a = sampler.frames[i0, 0].numpy()
    assert np.all(sampler.frames[i1, 0].numpy() - a == lags.numpy())
    for lag in range(1, 5):
        valid = sorted((i, t) for i, n in enumerate(lengths) for t in range(n - lag))
        pairs = Counter((int(v // 10), int(v % 10)) for v in a[lags.numpy() == lag])
        assert sorted(pairs) == valid
        freq = np.array([pairs[k] for k in valid]) / sum(pairs.values())
        np.testing.assert_allclose(freq, 1 / len(valid), atol=0.01)


@pytest.mark.filterwarnings("ignore:.*too short")
def test_batches_and_lag_too_long(tiny):
    trajs, _ = tiny
    sampler = PairSampler(trajs, LogUniformLag(2))
    x0, x1, n = sampler.sample(256, torch.Generator().manual_seed(2))
    assert x0.shape == x1.shape == (256, 1) and n.shape == (256,)
    assert torch.all(x1 - x0 == n[:, None].double())
    with pytest.raises(InvalidInputError, match="need a trajectory longer than"):
        PairSampler(trajs, UniformLag(5))
    with pytest.raises(InvalidInputError, match="NaN"):
        PairSampler([np.array([[0.0], [np.nan]])], FixedLag(1))


