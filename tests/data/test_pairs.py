"""Multi-lag pair data: exact lag support, exact valid-start indexing, reproducible streams."""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from itomd.data.pairs import (FixedLag, LogUniformLag, PairSampler, UniformLag, balanced_start_weights,
                              make_lag_sampler)
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
    _assert_each_lag_follows(PairSampler(trajs, UniformLag(4)), lengths, lambda t: 1.0, seeds=(3, 4))


def _assert_each_lag_follows(sampler: PairSampler, lengths: list[int], weight_of, seeds: tuple[int, int]) -> None:
    """Draw 200,000 pairs of lags 1–4 in one call: every pair is ``lag`` frames of one trajectory, and
    each lag's starts cover exactly its valid starts, frame t drawn in proportion to ``weight_of(t)``."""
    lags = UniformLag(4).sample(200000, torch.Generator().manual_seed(seeds[0]))
    i0, i1 = sampler.sample_indices(lags, torch.Generator().manual_seed(seeds[1]))
    a = sampler.frames[i0, 0].numpy()
    assert np.all(sampler.frames[i1, 0].numpy() - a == lags.numpy())
    for lag in range(1, 5):
        valid = sorted((i, t) for i, n in enumerate(lengths) for t in range(n - lag))
        pairs = Counter((int(v // 10), int(v % 10)) for v in a[lags.numpy() == lag])
        assert sorted(pairs) == valid
        expected = np.array([weight_of(t) for _, t in valid])
        freq = np.array([pairs[k] for k in valid]) / sum(pairs.values())
        np.testing.assert_allclose(freq, expected / expected.sum(), atol=0.01)


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




@pytest.mark.filterwarnings("ignore:.*too short")
def test_weighted_starts_follow_their_weights_at_every_lag(tiny):
    """With start weights, each lag's starts are drawn in proportion to the weights of its valid starts
    — through the rejection draws and through the exact fallback (lag 4: one valid start in 13)."""
    trajs, lengths = tiny
    frames = np.concatenate(trajs)[:, 0]
    weights = 1.0 + (frames % 10)                    # frame t of every trajectory weighs 1 + t
    _assert_each_lag_follows(PairSampler(trajs, UniformLag(4), start_weights=weights), lengths, lambda t: 1.0 + t,
                             seeds=(5, 6))
    uniform = Counter(int(v % 10) for v in PairSampler(trajs, UniformLag(4)).sample_indices(
        torch.full((20000,), 1), torch.Generator().manual_seed(6))[0].numpy())
    assert abs(uniform[0] - uniform[3]) / 20000 > 0.1  # control: without weights frame 0 starts far more pairs


@pytest.mark.filterwarnings("ignore:.*too short")
def test_bad_start_weights(tiny):
    trajs, _ = tiny
    n = sum(len(t) for t in trajs)
    for bad, match in [(np.ones(n - 1), "one entry per frame"), (-np.ones(n), "non-negative"),
                       (np.full(n, np.nan), "finite"), (np.zeros(n), "not all zero")]:
        with pytest.raises(InvalidInputError, match=match):
            PairSampler(trajs, UniformLag(2), start_weights=bad)
    only_last_frames = np.array([0.0 if t % 10 < 2 else 1.0 for t in np.concatenate(trajs)[:, 0]])
    with pytest.raises(InvalidInputError, match="zero on every valid start"):
        PairSampler(trajs, UniformLag(3), start_weights=only_last_frames)


def test_balanced_weights_give_every_visited_cell_equal_mass():
    """A basin holding 5 % of the frames: at exponent 1 its starts are a third of the draws (every cell
    denser than an even filling of the box is drawn alike, and the rare basin has fewer such cells),
    at 0.5 fewer, at 0 its 5 %. The cap: a single far-out frame is drawn no more often than an
    evenly filled cell, not as often as a whole basin."""
    rng = np.random.default_rng(0)
    common, rare = rng.normal(0.0, 0.05, (19000, 2)), rng.normal(1.0, 0.05, (1000, 2))
    points = [np.concatenate([common[:9500], rare[:500]]), np.concatenate([common[9500:], rare[500:]])]
    is_rare = np.concatenate(points)[:, 0] > 0.5
    for exponent, share in [(1.0, None), (0.5, None), (0.0, 0.05)]:
        w = balanced_start_weights(points, exponent)
        assert w.shape == (20000,) and w.mean() == pytest.approx(1.0)
        if share is not None:
            assert w[is_rare].sum() / w.sum() == pytest.approx(share)
    w1 = balanced_start_weights(points, 1.0)
    w05 = balanced_start_weights(points, 0.5)
    assert 0.25 < w1[is_rare].sum() / w1.sum() < 0.45            # measured 0.33
    assert 0.05 * 2 < w05[is_rare].sum() / w05.sum() < w1[is_rare].sum() / w1.sum()  # measured 0.16
    outlier = [np.concatenate([points[0], [[5.0, 5.0]]]), points[1]]
    w = balanced_start_weights(outlier, 1.0)
    assert w[10000] / w.sum() < 1e-3                         # without the cap: the weight of a cell of 1 frame
    # 1-D works too, and the weights depend only on the cell
    w = balanced_start_weights([np.array([[0.0], [0.0], [0.0], [1.0]])], 1.0)
    np.testing.assert_allclose(w, [2 / 3, 2 / 3, 2 / 3, 2.0])
    for bad, match in [([np.zeros((5, 3))], "one or two coordinates"), ([np.full((5, 1), np.nan)], "NaN"),
                       ([np.zeros((5, 1))], None)]:
        if match is None:
            np.testing.assert_allclose(balanced_start_weights(bad, 1.0), 1.0)  # one cell: uniform
        else:
            with pytest.raises(InvalidInputError, match=match):
                balanced_start_weights(bad, 1.0)
    with pytest.raises(InvalidInputError, match="non-negative"):
        balanced_start_weights(points, -1.0)

