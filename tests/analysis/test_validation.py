"""Bad input gives one-line InvalidInputError messages."""

import numpy as np
import pytest

from itomd.analysis import analyze, autocorrelation, ck_test, implied_timescales
from itomd.errors import InvalidInputError

GOOD = [np.random.default_rng(0).normal(size=(60, 1)) for _ in range(4)]


def with_nan(index: int) -> list[np.ndarray]:
    trajs = [t.copy() for t in GOOD]
    trajs[index][5, 0] = np.nan
    return trajs


@pytest.mark.parametrize("trajs, lags, message", [
    ([], [1], "no trajectories"),
    (with_nan(3), [1], "trajectory 3 contains NaN or inf values"),
    ([np.zeros((10, 1)), np.zeros((10, 2))], [1], "different dimensions"),
    ([np.zeros((0, 1))], [1], "shape"),
    (GOOD, [0], "positive"),
    (GOOD, [-3], "positive"),
    (GOOD, [1.5], "positive integers"),
    (GOOD, [], "non-empty"),
    (GOOD, [60], "not shorter than the longest trajectory"),
])
@pytest.mark.parametrize("function", ["implied_timescales", "autocorrelation", "analyze"])
def test_bad_trajectories_and_lags(function, trajs, lags, message):
    with pytest.raises(InvalidInputError, match=message) as error:
        if function == "implied_timescales":
            implied_timescales(trajs, 0.1, lags, n_samples=0)
        elif function == "autocorrelation":
            autocorrelation(trajs, 0.1, lags)
        else:
            analyze(trajs, 0.1, 1.0, lags=lags, n_samples=0)
    assert "\n" not in str(error.value)


def test_inf_is_rejected_like_nan():
    trajs = [t.copy() for t in GOOD]
    trajs[1][0, 0] = np.inf
    with pytest.raises(InvalidInputError, match="trajectory 1 contains NaN or inf values"):
        ck_test(trajs, 0.1, 2)


@pytest.mark.parametrize("frame_interval", [0.0, -1.0, np.nan])
def test_bad_frame_interval(frame_interval):
    with pytest.raises(InvalidInputError, match="frame interval"):
        implied_timescales(GOOD, frame_interval, [1])


def test_bad_kT_and_reference_dimension(prinz_reference):
    with pytest.raises(InvalidInputError, match="kT"):
        analyze(GOOD, 0.1, -1.0)
    with pytest.raises(InvalidInputError, match="dimensional"):
        analyze([np.zeros((50, 2))], 0.1, 1.0, reference=prinz_reference)
