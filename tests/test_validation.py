"""Input checks: bad input gives one-line InvalidInputError messages that name the argument (through the
analysis functions that use the checks, and the checks themselves); good input comes back normalised."""

import numpy as np
import pytest

from itomd.analysis import analyze, autocorrelation, ck_test, implied_timescales
from itomd.errors import InvalidInputError
from itomd.validation import (check_lags, check_positive, check_samples, check_trajectories, is_finite_number,
                              is_number, require_int)

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


# -- the checks themselves -------------------------------------------------------------------------
def test_trajectories_come_back_as_float_arrays_of_frames():
    one = check_trajectories(np.arange(5))  # one 1-D trajectory
    assert len(one) == 1 and one[0].shape == (5, 1) and one[0].dtype == np.float64
    many = check_trajectories(np.zeros((3, 4, 2), dtype=np.float32))  # [n_trajectories, n_frames, dim]
    assert len(many) == 3 and all(t.shape == (4, 2) and t.dtype == np.float64 for t in many)
    assert check_trajectories([[1, 2, 3]])[0].shape == (3, 1)
    with pytest.raises(InvalidInputError, match="trajectory 0 must hold real numbers"):
        check_trajectories([np.array(["a", "b"])])
    with pytest.raises(InvalidInputError, match="got complex numbers"):  # NumPy would drop the imaginary part
        check_trajectories([np.array([1 + 1j, 2])])


def test_samples_and_lags_and_positive_numbers():
    assert check_samples([1.0, 2.0]).shape == (2, 1)
    with pytest.raises(InvalidInputError, match=r"reference must have shape \[n, dim\]"):
        check_samples(np.zeros((0, 2)), name="reference")
    assert check_lags([5, 1, np.int64(5), 2.0], GOOD) == [1, 2, 5] and check_lags(3, GOOD) == [3]
    assert check_positive(np.float32(2.5), "kT") == 2.5 and isinstance(check_positive(2, "kT"), float)
    for bad in (0, -1.0, np.inf, True, "1"):
        with pytest.raises(InvalidInputError, match="kT must be a positive number"):
            check_positive(bad, "kT")


def test_numbers_are_real_and_not_bool():
    assert is_number(3) and is_number(np.float32(0.5)) and is_number(np.int8(1)) and is_number(np.nan)
    assert not is_number(True) and not is_number(np.bool_(True)) and not is_number("3") and not is_number(None)
    assert is_finite_number(1e300) and not is_finite_number(np.nan) and not is_finite_number(-np.inf)


def test_require_int_names_the_argument_and_the_bound():
    assert require_int("n", 3) == 3 and require_int("n", np.int64(0), minimum=0) == 0
    assert type(require_int("n", np.int32(4))) is int
    for value, minimum, fragment in ((0, 1, "n must be a positive integer, got 0"),
                                     (-1, 0, "n must be a non-negative integer, got -1"),
                                     (2.0, 1, "got 2.0"), (True, 0, "got True"), ("3", 1, "got '3'")):
        with pytest.raises(InvalidInputError, match=fragment) as error:
            require_int("n", value, minimum)
        assert "\n" not in str(error.value)

