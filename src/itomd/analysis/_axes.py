"""Axis helpers shared by the analysis plots: the default time unit, logarithmic time axes whose
tick labels never overlap.

A leaf module (nothing else from :mod:`itomd.analysis`), like :mod:`itomd.analysis._html`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import matplotlib.axes

#: Unit of time axes and tables where the data's system does not name one (``System.time_unit``).
DEFAULT_TIME_UNIT = "time units"

#: Most labelled ticks on a logarithmic time axis.
MAX_LOG_TICKS = 6


def log_time_axis(ax: "matplotlib.axes.Axes") -> None:
    """Make the x axis of ``ax`` logarithmic with at most :data:`MAX_LOG_TICKS` labelled ticks and no minor labels.

    Over several decades the labels are powers of ten (every second or third decade where there
    are many); within about one decade they are 1-2-5 multiples written as plain numbers (matplotlib
    would otherwise label the minor ticks as well, and they overlap).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes whose data are plotted (and x limits set, if any).
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    axis = ax.xaxis
    low, high = sorted(ax.get_xlim())
    low, high = max(low, 1e-300), max(high, 1e-300)
    decades = np.log10(high) - np.log10(low)
    axis.set_minor_formatter(NullFormatter())
    if decades >= 1.5:
        axis.set_major_locator(LogLocator(base=10.0, numticks=MAX_LOG_TICKS))
        axis.set_minor_locator(LogLocator(base=10.0, subs=np.arange(2, 10) * 0.1, numticks=100))
        return
    ticks = [m * 10.0**e for e in range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
             for m in (1, 2, 5)]
    ticks = [t for t in ticks if low <= t <= high]
    step = max(1, int(np.ceil(len(ticks) / MAX_LOG_TICKS)))
    axis.set_major_locator(FixedLocator(ticks[::step]))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
