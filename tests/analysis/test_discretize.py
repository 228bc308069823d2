"""State decompositions: automatic choice, sizes, determinism, assignment of new data."""

import numpy as np
import pytest

from itomd.analysis import discretize
from itomd.analysis.discretize import MAX_N_STATES, check_n_states
from itomd.errors import InvalidInputError


@pytest.fixture(scope="module")
def two_d():
    rng = np.random.default_rng(0)
    return [rng.normal(size=(500, 2)) for _ in range(4)]


def test_one_dimensional_data_get_uniform_states_spanning_the_data():
    rng = np.random.default_rng(1)
    trajs = [rng.uniform(-1, 2, size=(1000, 1)) for _ in range(3)]
    states = discretize(trajs)
    assert states.method == "uniform" and states.n_states == 100
    centers = states.centers[:, 0]
    np.testing.assert_allclose(np.diff(centers), 3.0 / 100, rtol=1e-2)
    assert centers.min() > -1 and centers.max() < 2
    assert [len(d) for d in states.dtrajs] == [1000] * 3
    assert all(d.dtype == np.int32 and 0 <= d.min() and d.max() < 100 for d in states.dtrajs)


def test_two_dimensional_data_get_seeded_kmeans(two_d):
    a = discretize(two_d, n_states=20, seed=3)
    b = discretize(two_d, n_states=20, seed=3)
    assert a.method == "kmeans" and a.n_states == 20 and a.centers.shape == (20, 2)
    np.testing.assert_array_equal(a.centers, b.centers)
    for d, t in zip(a.transform(two_d), two_d):  # nearest centre
        nearest = np.argmin(((t[:, None] - a.centers[None]) ** 2).sum(-1), axis=1)
        np.testing.assert_array_equal(d, nearest)


def test_regspace_is_available(two_d):
    states = discretize(two_d, method="regspace", n_states=15)
    assert states.method == "regspace" and 2 <= states.n_states <= 15**2


def test_bad_choices(two_d):
    with pytest.raises(InvalidInputError, match="unknown discretisation"):
        discretize(two_d, method="grid")
    with pytest.raises(InvalidInputError, match="1-D"):
        discretize(two_d, method="uniform")
    with pytest.raises(InvalidInputError, match="states"):
        discretize(two_d, n_states=1)
    with pytest.raises(InvalidInputError, match="dimensional"):
        discretize(two_d, n_states=5).transform([np.zeros((10, 3))])


def test_the_number_of_states_is_checked_against_the_dense_msm_limit(two_d):
    assert check_n_states(None) == 100 and check_n_states(np.int64(7)) == 7 and check_n_states(MAX_N_STATES) == MAX_N_STATES
    with pytest.raises(InvalidInputError, match="too many"):  # a dense 100,000-state MSM would need 75 GiB
        discretize(two_d, n_states=100_000)
    few = [two_d[0][:30]]  # more states than frames: one state per distinct frame, no error
    assert discretize(few, n_states=50, seed=0).n_states == 30
    for bad in (1.5, True, "7"):
        with pytest.raises(InvalidInputError, match="integer number of states"):
            check_n_states(bad)
