"""Mean first passage times between basins: MSM estimates against exact ones (a known Markov chain,
the Prinz potential's SqRA generator), Ramachandran cores, and the report."""

from __future__ import annotations

import numpy as np
import pytest

from itomd.analysis.mfpt import (Basins, basin_transitions, exact_mean_first_passage_times,
                                 mean_first_passage_times, ramachandran_basins)
from itomd.analysis.report import write_report
from itomd.errors import InvalidInputError


def _reversible_chain(scale: float) -> np.ndarray:
    """A reversible 3-state chain: π = (0.5, 0.3, 0.2), symmetric flows scaled by ``scale``."""
    pi = np.array([0.5, 0.3, 0.2])
    flow = scale * np.array([[0, 0.006, 0.002], [0.006, 0, 0.003], [0.002, 0.003, 0]])
    transition = flow / pi[:, None]
    transition[np.diag_indices(3)] = 1 - transition.sum(1)
    return transition


def _exact_chain_mfpt(transition: np.ndarray) -> np.ndarray:
    """MFPT i → j of a chain in steps: (I − P) m = 1 off j."""
    out = np.full((3, 3), np.nan)
    for j in range(3):
        rest = [i for i in range(3) if i != j]
        m = np.linalg.solve(np.eye(2) - transition[np.ix_(rest, rest)], np.ones(2))
        out[rest, j] = m
    return out


def _simulate_chain(transition: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(transition, axis=1)
    u = rng.random(n)
    states = np.zeros(n, dtype=int)
    for t in range(1, n):
        states[t] = min(np.searchsorted(cumulative[states[t - 1]], u[t]), 2)
    return states


def test_msm_first_passage_times_of_a_known_chain_match_the_exact_ones():
    """2·10⁵ steps give ~1,000 switches per pair: the estimates lie within 3 % (measured ≤ 2 %) and the
    intervals contain the exact values; the chain with doubled rates (the negative control) is off by 2×."""
    transition = _reversible_chain(1.0)
    states = _simulate_chain(transition, 200_000, seed=0)
    basins = Basins(("a", "b", "c"), np.arange(3), "one state each")
    result = mean_first_passage_times([states], 0.5, 1, basins, n_samples=50, time_unit="ps")
    exact = 0.5 * _exact_chain_mfpt(transition)
    off = ~np.eye(3, dtype=bool)
    error = np.abs(result.times[off] / exact[off] - 1)
    assert error.max() < 0.06, error
    inside = (result.lower[off] <= exact[off]) & (exact[off] <= result.upper[off])
    assert inside.all(), (result.lower, exact, result.upper)
    assert np.isnan(np.diag(result.times)).all() and result.transitions[off].min() > 300
    assert result.populations == pytest.approx([0.5, 0.3, 0.2], abs=0.03)
    faster = 0.5 * _exact_chain_mfpt(_reversible_chain(2.0))
    assert np.all(np.abs(result.times[off] / faster[off] - 1) > 0.8)
    d = result.to_dict()
    assert d["basins"] == ["a", "b", "c"] and d["time_unit"] == "ps" and d["times"][0][0] is None


def test_prinz_first_passage_times_between_pcca_cores_match_the_exact_generator(prinz_result, prinz_system):
    """The MSM at the shortest lag (1 frame) on 100 states against Q m = −1 on the reference grid:
    measured +8 % (S1 → S2) and +1 % (S2 → S1); the same data read with the wrong frame interval
    (negative control) is off by 2×."""
    mfpt = prinz_result.mfpt
    assert mfpt.names == ("S1", "S2") and mfpt.lag == 1 and mfpt.populations[0] > mfpt.populations[1]
    error = mfpt.relative_error_vs_reference()
    assert abs(error[0, 1]) < 0.15 and abs(error[1, 0]) < 0.15, error
    assert mfpt.transitions[0, 1] > 200 and mfpt.transitions[1, 0] > 200
    wrong = mean_first_passage_times(prinz_result.discretization.dtrajs, 2 * prinz_system.frame_interval, 1,
                                     mfpt.basins, n_samples=0)
    assert np.all(wrong.times[[0, 1], [1, 0]] / mfpt.reference[[0, 1], [1, 0]] > 1.8)
    d = prinz_result.to_dict()["mfpt"]
    assert d["relative_error"][0][1] == pytest.approx(error[0, 1]) and d["definition"].startswith("cores")


def test_exact_passage_times_follow_the_basins(prinz_result, prinz_reference):
    """Swapping the basins' names swaps the exact matrix; a target covering the grid leaves no passage."""
    basins = prinz_result.mfpt.basins
    swapped = Basins(basins.names[::-1], np.where(basins.labels >= 0, 1 - basins.labels, -1), "swapped")
    exact = exact_mean_first_passage_times(prinz_reference, prinz_result.discretization, basins)
    assert exact_mean_first_passage_times(prinz_reference, prinz_result.discretization, swapped) == \
        pytest.approx(exact[::-1, ::-1], nan_ok=True)


def test_ramachandran_cores_and_basin_transitions():
    centres = np.radians([[-60, -45], [-120, 130], [-75, 150], [-150, -170], [60, 45], [70, -70], [-60, 70],
                          [0, 0]])
    labels = ramachandran_basins(centres).labels
    assert labels.tolist() == [0, 1, 1, 1, 2, 2, -1, -1]
    # switches between cores, skipping frames in no core
    assert basin_transitions([np.array([0, 0, -1, 1, 1, -1, 0, 2])], 3).tolist() == [[0, 1, 1], [1, 0, 0], [0, 0, 0]]
    with pytest.raises(InvalidInputError, match="at least two basins"):
        Basins(("a",), np.zeros(3, int), "one")
    with pytest.raises(InvalidInputError, match="basin labels"):
        Basins(("a", "b"), np.array([0, 2]), "bad")
    with pytest.raises(InvalidInputError, match=r"\(φ, ψ\)"):
        ramachandran_basins(np.zeros((3, 3)))


def test_report_shows_first_passage_times(prinz_result, tmp_path):
    page = write_report(prinz_result, tmp_path / "r.html").read_text()
    assert "Mean first passage times between basins" in page and "S1 → S2" in page
    assert "relative error" in page


def test_basins_without_estimates_are_named_and_left_out_of_the_pairs():
    times = np.full((3, 3), np.nan)
    times[0, 1], times[1, 0] = 1.0, 2.0
    result = mean_first_passage_times([np.array([0, 0, 1, 1, 0, 1, 0, 0, 1, 1] * 20)], 1.0, 1,
                                      Basins(("a", "b", "c"), np.array([0, 1, 2]), "three"), n_samples=0)
    assert np.isfinite(result.times[[0, 1], [1, 0]]).all() and result.missing_basins() == ["c"]
    assert result.estimated_pairs() == [(0, 1), (1, 0)] and len(result.pairs()) == 6
