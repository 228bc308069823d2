"""Logarithmic time axes: tick labels never overlap, however few decades the lag times span."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from itomd.analysis._axes import MAX_LOG_TICKS, log_time_axis


def _label_boxes(ax):
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    low, high = ax.get_xlim()
    return [t.get_window_extent(renderer) for t in ax.get_xticklabels(which="both")
            if t.get_text() and t.get_visible() and low <= t.get_position()[0] <= high]


@pytest.mark.parametrize("lag_times", [[63, 145, 333], [0.005, 3.0], [1e-3, 1e3], [10, 12]])
def test_log_time_axis_labels_do_not_overlap(lag_times):
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    ax.plot(lag_times, np.ones(len(lag_times)), "o")
    ax.set_xlim(min(lag_times) / 1.5, max(lag_times) * 1.5)
    log_time_axis(ax)
    boxes = sorted(_label_boxes(ax), key=lambda b: b.x0)
    assert 1 <= len(boxes) <= MAX_LOG_TICKS
    assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:])), [(b.x0, b.x1) for b in boxes]
    plt.close(fig)


def test_matplotlib_default_overlaps_where_log_time_axis_does_not():
    """Negative control: the default log axis labels minor ticks over one decade (63…333), crowding them."""
    fig, ax = plt.subplots(figsize=(2.5, 2.0))
    ax.plot([63, 145, 333], [1, 1, 1], "o")
    ax.set_xscale("log")
    ax.set_xlim(42, 500)
    default = _label_boxes(ax)
    log_time_axis(ax)
    fixed = sorted(_label_boxes(ax), key=lambda b: b.x0)
    assert len(default) > len(fixed)
    assert all(a.x1 <= b.x0 for a, b in zip(fixed, fixed[1:]))
    plt.close(fig)
