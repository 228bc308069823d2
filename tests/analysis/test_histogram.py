"""Histogram helpers of the free energy and the JS divergence: feature selection, bin edges, counts of
samples outside the range (the exact reference's bin mass is tested through test_fes.py and
test_divergence.py)."""

import numpy as np
import pytest

from itomd.analysis._histogram import DEFAULT_BINS, histogram, histogram_edges, select_features
from itomd.errors import InvalidInputError


def test_select_features_takes_all_columns_up_to_the_limit_or_the_chosen_ones():
    x = np.arange(12.0).reshape(4, 3)
    selected, features = select_features(x[:, :2], None, max_dim=2)
    assert features == (0, 1) and np.array_equal(selected, x[:, :2])
    selected, features = select_features(x, [2, 0], max_dim=2)
    assert features == (2, 0) and np.array_equal(selected, x[:, [2, 0]])
    assert select_features(x, 1, max_dim=2)[1] == (1,)


@pytest.mark.parametrize("features, fragment", [
    (None, "3-dimensional: choose at most 2"), ([], "between 1 and 2"), ([0, 1, 2], "between 1 and 2"),
    ([1, 1], "distinct"), ([3], "below 3"), ([-1], "below 3"),
])
def test_select_features_refuses_in_one_line(features, fragment):
    with pytest.raises(InvalidInputError, match=fragment) as error:
        select_features(np.zeros((4, 3)), features, max_dim=2)
    assert "\n" not in str(error.value)


def test_edges_default_bins_and_ranges():
    data = [np.array([[0.0, 1.0], [2.0, 5.0]]), np.array([[1.0, 3.0]])]
    edges = histogram_edges(data, None, None)
    assert [len(e) - 1 for e in edges] == [DEFAULT_BINS[2]] * 2
    assert (edges[0][0], edges[0][-1], edges[1][0], edges[1][-1]) == (0.0, 2.0, 1.0, 5.0)  # the data's range
    edges = histogram_edges(data, [4, 2], None, default_range=[(-1, 1), (0, 10)])
    assert np.array_equal(edges[0], [-1, -0.5, 0, 0.5, 1]) and np.array_equal(edges[1], [0, 5, 10])
    (one,) = histogram_edges([np.zeros((3, 1))], 2, (-2.0, 2.0))  # a single (low, high) pair in 1-D
    assert np.array_equal(one, [-2, 0, 2])
    (flat,) = histogram_edges([np.full((3, 1), 4.0)], 2, None)  # constant data: widened by ±0.5
    assert np.array_equal(flat, [3.5, 4.0, 4.5])


@pytest.mark.parametrize("bins, range_, fragment", [
    (0, None, "bins must be a positive integer"), (2.5, None, "bins must be a positive integer"),
    ([2, 2, 2], None, "one per axis"), (3, [(0, 1)], "range must give"), (3, [(0, 1), (0, np.inf)], "range must give"),
    (3, [(1, 0), (0, 1)], "low < high"),
])
def test_bad_bins_or_ranges_are_one_line_errors(bins, range_, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        histogram_edges([np.zeros((3, 2))], bins, range_)


def test_histogram_counts_and_the_samples_outside_the_edges():
    edges = (np.array([0.0, 1.0, 2.0]),)
    counts, outside = histogram(np.array([[0.5], [1.5], [1.7], [2.5], [-3.0]]), edges)
    assert counts.tolist() == [1, 2] and outside == 2
