"""Property-based tests of the library's array inputs (issue 13): random shapes (0–3 dimensions, empty
sides), dtypes (floats, integers, booleans, complex numbers, strings) and NaN/inf at random positions.

Every public function that takes arrays either raises an :class:`~itomd.errors.ItomdError` with a
one-line message, or returns a correct result (checked per function: a store reads back what was
written, pairs lie lag frames apart within one trajectory, samples have the start states' shape and
are finite, a JS divergence lies in [0, ln 2]) — never a NumPy or torch exception from deep inside,
never silently discarded data (the imaginary part of complex input, NaN carried into results).

The functions span several packages, so this file sits at the top of ``tests/``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from itomd.errors import ItomdError

#: Element dtypes drawn (float64 most often): floats, integers, booleans, complex numbers, short strings.
DTYPES = (np.float64, np.float64, np.float64, np.float32, np.int64, np.int8, np.bool_, np.complex128, np.dtype("<U2"))
#: Shapes of valid coordinates, drawn half the time: [n_frames or walkers, dim].
COORDINATE_SHAPES = st.tuples(st.integers(1, 6), st.integers(1, 3))
#: ... for the 1-D test model: [walkers, 1].
MODEL_SHAPES = st.tuples(st.integers(1, 5), st.just(1))

FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SLOW_FUNCTIONS = settings(FAST, max_examples=12)  # each example trains or samples a model


@st.composite
def arrays(draw, valid_shapes: st.SearchStrategy = COORDINATE_SHAPES, max_dims: int = 3, max_side: int = 5,
           moderate: bool = False) -> np.ndarray:
    """An array of a drawn dtype; half the time of a valid shape, else of any shape with 0–``max_dims``
    dimensions (empty sides included). Float entries are finite (``moderate``: |x| ≤ 10, else up to
    ±1.8e308), and half the float arrays get NaN or ±inf at one random position."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    any_shape = hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side)
    shape = draw(st.one_of(valid_shapes, any_shape))
    elements = None
    if dtype.kind == "f":
        width = 32 if dtype == np.float32 else 64
        elements = st.floats(-10, 10, width=width) if moderate else st.floats(allow_nan=False, allow_infinity=False,
                                                                              width=width)
    elif dtype.kind == "c":
        elements = st.complex_numbers(max_magnitude=10 if moderate else None, allow_nan=False, allow_infinity=False)
    array = draw(hnp.arrays(dtype, shape, elements=elements))
    if dtype.kind in "fc" and array.size and draw(st.booleans()):
        array.flat[draw(st.integers(0, array.size - 1))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    return array


def outcome(call: Callable[[], Any]) -> Any:
    """``call()``; an ItomdError (one line) gives None, any other exception fails the property."""
    try:
        result = call()
    except ItomdError as exc:
        message = str(exc)
        assert message and "\n" not in message, repr(message)
        event("refused")
        return None
    event("accepted")
    return result


def is_clean_real(array: np.ndarray) -> bool:
    """What a valid array of coordinates is: real numbers (not strings or complex), all finite."""
    return array.dtype.kind in "biuf" and bool(np.all(np.isfinite(array.astype(np.float64))))


# -- data --------------------------------------------------------------------------------------------
@FAST
@given(array=arrays())
def test_store_writes_what_it_reads_or_refuses(tmp_path_factory, array):
    from itomd.data.store import TrajectoryStore

    store = TrajectoryStore(tmp_path_factory.mktemp("store"))
    written = outcome(lambda: store.write(0, array, {"note": "x"}))
    valid = array.ndim == 2 and min(array.shape) > 0 and is_clean_real(array)
    assert (written is not None) == valid, (array.dtype, array.shape)
    if valid:
        assert np.array_equal(store.read(0), array.astype(np.float64))


@FAST
@given(array=arrays())
def test_saved_trajectories_read_back_or_are_refused(tmp_path_factory, array):
    from itomd.data.store import save_trajectories

    store = outcome(lambda: save_trajectories(tmp_path_factory.mktemp("saved"), [array], {"frame_interval": 1.0}))
    if store is not None:
        assert array.ndim == 2 and min(array.shape) > 0 and is_clean_real(array)
        assert np.array_equal(store.trajectories()[0], array.astype(np.float64))


@FAST
@given(array=arrays(st.tuples(st.integers(2, 8), st.integers(1, 2))), lag=st.integers(-1, 3))
def test_pair_sampler_pairs_lie_lag_frames_apart(array, lag):
    from itomd.data.pairs import FixedLag, PairSampler

    sampler = outcome(lambda: PairSampler([array], FixedLag(lag)))
    if sampler is None:
        return
    assert is_clean_real(array) and lag >= 1
    x_t, x_lag, lags = sampler.sample(16, torch.Generator().manual_seed(0))
    frames = np.asarray(array, dtype=np.float64)
    assert torch.equal(lags, torch.full_like(lags, lag))
    for a, b in zip(x_t.numpy(), x_lag.numpy()):  # some frame s holds x_t and frame s + lag holds x_{t+lag}
        assert any(np.array_equal(frames[s], a) and np.array_equal(frames[s + lag], b)
                   for s in range(len(frames) - lag))


@FAST
@given(trajectories=st.lists(arrays(max_dims=2), min_size=0, max_size=3))
def test_check_trajectories_returns_finite_2d_float_arrays_or_refuses(trajectories):
    from itomd.validation import check_trajectories

    checked = outcome(lambda: check_trajectories(trajectories))
    if checked is not None:
        assert all(t.ndim == 2 and t.dtype == np.float64 and np.all(np.isfinite(t)) for t in checked)
        assert all(is_clean_real(np.asarray(t)) for t in trajectories)


# -- analysis ------------------------------------------------------------------------------------------
@FAST
@given(p=arrays(max_dims=2), q=arrays(max_dims=2))
def test_js_divergence_is_in_0_ln2_or_refused(p, q):
    from itomd.analysis import js_divergence

    result = outcome(lambda: js_divergence(p, q, bins=4))
    if result is not None:
        assert is_clean_real(p) and is_clean_real(q)
        assert 0 <= result.value <= math.log(2) + 1e-12


# -- models and rollouts -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(ou_data):
    """A 1-D transition model after two training steps (behaviour, not accuracy, is tested here)."""
    from itomd.training import ITOEstimator, TrainingConfig

    config = TrainingConfig.from_dict({"max_lag": 3, "hidden": 8, "n_blocks": 1, "n_frequencies": 2, "batch_size": 8,
                                       "max_steps": 2, "warmup_steps": 1, "device": "cpu"})
    return ITOEstimator(config).fit(ou_data[:4], 1.0, progress=False).fetch_model()


@SLOW_FUNCTIONS
@given(array=arrays(st.tuples(st.integers(1, 8), st.integers(1, 2)), moderate=True))
def test_fit_refuses_bad_trajectories_or_trains(array):
    from itomd.training import ITOEstimator, TrainingConfig

    config = TrainingConfig.from_dict({"max_lag": 2, "hidden": 4, "n_blocks": 1, "n_frequencies": 2,
                                       "batch_size": 4, "max_steps": 1, "warmup_steps": 1, "device": "cpu"})
    estimator = outcome(lambda: ITOEstimator(config).fit([array], 1.0, progress=False))
    if estimator is not None:
        assert is_clean_real(array) and estimator.step == 1


@SLOW_FUNCTIONS
@given(x0=arrays(MODEL_SHAPES, moderate=True), lag=st.one_of(st.integers(-1, 5), st.sampled_from([math.nan, math.inf, 0.5])))
def test_sample_gives_one_finite_state_per_start_or_refuses(tiny_model, x0, lag):
    samples = outcome(lambda: tiny_model.sample(x0, lag=lag, n_steps=2, generator=torch.Generator().manual_seed(0)))
    if samples is not None:
        assert is_clean_real(x0) and math.isfinite(lag) and lag >= 1
        assert samples.shape == (len(np.atleast_2d(x0)), 1) and torch.all(torch.isfinite(samples))


@SLOW_FUNCTIONS
@given(x0=arrays(MODEL_SHAPES, moderate=True), n_jumps=st.integers(0, 2))
def test_rollout_gives_finite_paths_or_refuses(tiny_model, x0, n_jumps):
    from itomd.rollout import rollout

    paths = outcome(lambda: rollout(tiny_model, x0, lag=1, n_jumps=n_jumps, n_steps=2, tolerance=1e6,
                                    generator=torch.Generator().manual_seed(0)))
    if paths is not None:
        assert is_clean_real(x0) and n_jumps >= 1
        assert paths.shape[1:] == (n_jumps + 1, 1) and np.all(np.isfinite(paths))


def test_outcome_fails_on_a_deep_exception():
    """Negative control: an exception other than ItomdError (here NumPy's own) breaks the property."""
    with pytest.raises(ValueError):
        outcome(lambda: np.asarray(["a"], dtype=np.float64))
