"""JS divergence (nats): properties with known answers."""

import json

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from itomd.analysis import js_divergence, js_divergence_of_distributions
from itomd.errors import InvalidInputError


def test_js_of_identical_samples_is_zero_and_of_disjoint_is_ln2():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 1))
    assert js_divergence(x, x.copy(), bins=40).value == pytest.approx(0.0, abs=1e-12)
    far = js_divergence(x, x + 100.0, bins=40)
    assert far.value == pytest.approx(np.log(2), rel=1e-12)
    assert js_divergence_of_distributions([1, 0], [0, 1]) == pytest.approx(np.log(2))


def test_js_is_the_divergence_not_scipys_distance():
    p, q = np.array([0.2, 0.5, 0.3]), np.array([0.4, 0.4, 0.2])
    assert js_divergence_of_distributions(p, q) == pytest.approx(jensenshannon(p, q) ** 2)


def test_js_is_symmetric_and_records_its_histogram():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4000, 2)), rng.normal(0.5, 1.0, size=(3000, 2))
    ab = js_divergence(a, b, bins=20, range=[(-5, 5), (-5, 5)])
    ba = js_divergence(b, a, bins=20, range=[(-5, 5), (-5, 5)])
    assert ab.value == pytest.approx(ba.value) and 0 < ab.value < np.log(2)
    d = ab.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["unit"] == "nats" and d["bins"] == [20, 20] and d["range"] == [[-5, 5], [-5, 5]]
    assert d["n_samples"] == 4000 and d["n_other_samples"] == 3000 and d["against"] == "samples"
    assert "nats" in ab.describe()


def test_js_of_reference_samples_is_small_and_shrinks_with_n(prinz_reference):
    values = [js_divergence(prinz_reference.sample(n, seed=n), reference=prinz_reference).value
              for n in (1_000, 10_000, 100_000)]
    assert values[0] < 0.03 and values[2] < 1e-3
    assert values[0] > values[1] > values[2]
    js = js_divergence(prinz_reference.sample(1000, seed=0), reference=prinz_reference)
    assert js.against == "exact" and js.range == [prinz_reference.box[0]] and js.bins == [100]


def test_js_counts_samples_outside_the_range(prinz_reference):
    samples = prinz_reference.sample(20_000, seed=4)
    inside = js_divergence(samples, reference=prinz_reference).value
    escaped = samples.copy()
    escaped[:2000] = 5.0  # 10 % of the samples leave the box
    js = js_divergence(escaped, reference=prinz_reference)
    assert js.fraction_outside == pytest.approx(0.1)
    assert js.value > inside + 0.02


def test_js_input_errors():
    x = np.zeros((10, 1))
    with pytest.raises(InvalidInputError, match="exactly one"):
        js_divergence(x)
    with pytest.raises(InvalidInputError, match="NaN"):
        js_divergence(np.array([[0.0], [np.nan]]), x)
    with pytest.raises(InvalidInputError, match="dimension"):
        js_divergence(x, np.zeros((10, 2)))
