"""One self-contained HTML page with the analysis plots (PNG, embedded as base64) and key numbers.

The page shows what every analysis has, then loops over the result's sections
(:class:`~itomd.analysis.sections.Section`): each adds its HTML after the key-number tables and its
figures to the plots (in place of the standard plots it replaces). Figures are rendered with
matplotlib's Agg canvas directly, so writing a report neither needs a display nor changes the
caller's pyplot backend or state.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence, Union

import numpy as np
from matplotlib.figure import Figure

from itomd.analysis._axes import log_time_axis
from itomd.analysis._html import figure_html, format_number, html_table
from itomd.analysis.msm import RESOLUTION_Z, ImpliedTimescalesResult
from itomd.analysis.pipeline import AnalysisResult
from itomd.analysis.sections import (AUTOCORRELATION_FIGURE, CK_TEST_FIGURE, FREE_ENERGY_FIGURE,
                                     IMPLIED_TIMESCALES_FIGURE)
from itomd._files import create_directory, write_text_atomically

#: An extra section's body: an HTML fragment (inserted as is) or a matplotlib figure.
SectionBody = Union[str, Figure]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; }
td, th { border: 1px solid #ccc; padding: 3px 10px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.figs { display: flex; flex-wrap: wrap; gap: 16px; } figure { margin: 0; }
figcaption { font-size: 0.9em; color: #555; } img { max-width: 550px; border: 1px solid #eee; }
.note { color: #555; font-size: 0.9em; }
"""


def write_report(
    result: AnalysisResult,
    path: str | os.PathLike,
    title: str = "itomd report",
    extra_sections: Mapping[str, SectionBody] | Sequence[tuple[str, SectionBody]] | None = None,
) -> Path:
    """Write the analysis as one self-contained HTML file, atomically.

    The page holds a table of key numbers (slowest implied timescales against the exact ones, the
    JS divergence in nats with its bins and range, the free-energy and autocorrelation deviations,
    the CK-test deviation), each section's HTML, and the plots: implied timescales, free energy,
    CK test, autocorrelation and the sections' figures. The file is written to a temporary file in
    the same directory and moved into place.

    Parameters
    ----------
    result : AnalysisResult
    path : str or os.PathLike
        HTML file to write; missing parent directories are created.
    title : str
    extra_sections : mapping or sequence of (heading, body), optional
        Appended headings and bodies (the result's own :class:`~itomd.analysis.sections.Section`
        objects are always shown); a ``str`` body is inserted as HTML (trusted), a matplotlib
        ``Figure`` is embedded as a PNG.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    path = Path(path)
    create_directory(path.parent)
    figures = "".join(figure_html(caption, fig) for caption, fig in _figures(result))
    extra_pairs = extra_sections.items() if isinstance(extra_sections, Mapping) else (extra_sections or [])
    extra = _sections_html(extra_pairs)
    notes = "".join(f'<li>{html.escape(note)}</li>' for note in result.notes)
    body = (
        f"<h2>Key numbers</h2>{_key_numbers(result)}\n"
        f"<h2>Slowest implied timescale by lag</h2>{_timescale_table(result)}\n"
        + _mfpt_html(result)
        + "".join(section.report_html(result) for section in result.sections)
        + (f"<h2>Notes</h2><ul class='note'>{notes}</ul>\n" if notes else "")
        + f"<h2>Plots</h2><div class='figs'>{figures}</div>\n{_comparison_html(result)}{extra}\n"
        "<p class='note'>JS divergence in nats (the divergence, not scipy's JS distance, which is its "
        f"square root). Times in {html.escape(result.time_unit)}; free energies in units of kT. MSMs: "
        "deeptime, reversible maximum likelihood; intervals from Bayesian MSM posterior samples. An implied "
        f"timescale is <i>resolved</i> when its eigenvalue exceeds e<sup>−1</sup> (t &gt; τ) by {RESOLUTION_Z:g} "
        "standard errors given the effective counts; unresolved estimates (hollow grey in the plots) "
        "are left out of every error and ratio.</p>\n")
    write_text_atomically(path, _page(title, body))
    return path


def write_page(path: str | os.PathLike, title: str, sections: Sequence[tuple[str, SectionBody]]) -> Path:
    """Write a self-contained HTML page of (heading, body) sections atomically — for benchmark
    results and other pages that are not the analysis of one trajectory set. A ``str`` body is
    inserted as HTML (trusted), a matplotlib ``Figure`` is embedded as a PNG."""
    return write_text_atomically(path, _page(title, _sections_html(sections)))


def _sections_html(sections) -> str:
    return "".join(f"<h2>{html.escape(str(heading))}</h2>"
                   + (figure_html("", content) if isinstance(content, Figure) else str(content))
                   for heading, content in sections)


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n{body}</body></html>\n")


# -- content --------------------------------------------------------------------------------------
def _figures(result: AnalysisResult) -> list[tuple[str, Figure]]:
    """The standard plots, with each section's figures in place of those it replaces (else after them)."""
    standard: list[tuple[str, Callable[[], tuple[str, Figure] | None]]] = [
        (IMPLIED_TIMESCALES_FIGURE, lambda: _plotted("Implied timescales vs lag time (exact: dashed; hollow grey: unresolved)",
                                                     result.implied_timescales.plot, height=5.0)),
        (FREE_ENERGY_FIGURE, lambda: _plotted("Free energy (exact: dashed)", result.free_energy.plot)),
        (CK_TEST_FIGURE, lambda: None if result.ck_test is None else _ck_figure(result)),
        (AUTOCORRELATION_FIGURE, lambda: _autocorrelation_figure(result)),
        ("mfpt", lambda: None if result.mfpt is None else _mfpt_figure(result)),
    ]
    in_place: dict[str, list[tuple[str, Figure]]] = {}
    replaced: set[str] = set()
    appended: list[tuple[str, Figure]] = []
    for section in result.sections:
        figures = section.report_figures(result)
        slots = [name for name, _ in standard if name in section.replaces_figures]
        if slots:
            in_place.setdefault(slots[0], []).extend(figures)
        else:
            appended.extend(figures)
        replaced.update(section.replaces_figures)
    figures = []
    for name, make in standard:
        figures.extend(in_place.get(name, []))
        if name not in replaced and (figure := make()) is not None:
            figures.append(figure)
    figures.extend(appended)
    for _, fig in figures:
        fig.tight_layout()
    return figures


def _plotted(caption: str, plot: Callable, height: float = 4.0) -> tuple[str, Figure]:
    """(caption, figure) of a result's ``plot(ax=...)`` method on a 5.5 inch wide figure."""
    fig = Figure(figsize=(5.5, height))
    plot(ax=fig.subplots())
    return caption, fig


def _mfpt_figure(result: AnalysisResult) -> tuple[str, Figure]:
    comparison = result.comparison
    others = [] if comparison is None or comparison.mfpt is None else [(comparison.label, comparison.mfpt)]
    exact = "" if result.mfpt.reference is None else "; black: exact"
    return (f"Mean first passage times between basins (bars: intervals{exact})",
            _plotted("", lambda ax: result.mfpt.plot(ax=ax, others=others))[1])


def _mfpt_html(result: AnalysisResult) -> str:
    """A table of the mean first passage times between basins, against the comparison and exact values."""
    mfpt = result.mfpt
    if mfpt is None:
        return ""
    unit = result.time_unit
    comparison = result.comparison
    theirs = None if comparison is None else comparison.mfpt
    ratio = None if comparison is None else comparison.mfpt_ratio()
    error = mfpt.relative_error_vs_reference()
    header = ["from → to", f"MFPT ({unit})", f"{mfpt.confidence:.0%} interval", "observed switches"]
    if theirs is not None:
        header += [f"{comparison.label} ({unit})", f"{comparison.label} interval", f"{comparison.label} switches",
                   f"ratio this data / {comparison.label}"]
    if mfpt.reference is not None:
        header += [f"exact ({unit})", "relative error"]
    rows = []
    for i, j in mfpt.estimated_pairs(*([] if theirs is None else [theirs])):
        row = [f"{mfpt.names[i]} → {mfpt.names[j]}", format_number(mfpt.times[i, j]),
               f"[{format_number(mfpt.lower[i, j])}, {format_number(mfpt.upper[i, j])}]", f"{mfpt.transitions[i, j]}"]
        if theirs is not None:
            row += [format_number(theirs.times[i, j]),
                    f"[{format_number(theirs.lower[i, j])}, {format_number(theirs.upper[i, j])}]",
                    f"{theirs.transitions[i, j]}", format_number(ratio[i, j])]
        if mfpt.reference is not None:
            row += [format_number(mfpt.reference[i, j]),
                    "–" if not np.isfinite(error[i, j]) else f"{error[i, j]:+.1%}"]
        rows.append(tuple(row))
    populations = ", ".join(f"{name} {p:.3f}" for name, p in zip(mfpt.names, mfpt.populations))
    missing = [name for name in mfpt.missing_basins() if theirs is None or name in theirs.missing_basins()]
    if missing:
        populations += (f"; not in the MSM (never visited, or too rarely to be connected): {', '.join(missing)}, "
                        "left out of the table")
    return (f"<h2>Mean first passage times between basins</h2>"
            f"<p class='note'>Basins: {html.escape(mfpt.basins.definition)}; populations {html.escape(populations)}. "
            f"From the MSM at lag {mfpt.lag} frames ({mfpt.lag_time:g} {html.escape(unit)}); starts distributed as "
            "equilibrium within the basin. Observed switches: consecutive assigned frames in different basins — "
            "the events an estimate rests on.</p>" + html_table(header, rows))


def _ck_figure(result: AnalysisResult) -> tuple[str, Figure]:
    m = result.ck_test.n_metastable
    return "Chapman–Kolmogorov test", result.ck_test.plot(fig=Figure(figsize=(2.3 * m + 1.2, 2.0 * m + 0.8)))


def _autocorrelation_figure(result: AnalysisResult) -> tuple[str, Figure]:
    """The autocorrelation of the analysis' observable, with the exact curve and the comparison's when known."""
    comparison = result.comparison
    theirs = None if comparison is None else comparison.autocorrelation
    if theirs is None:
        return _plotted("Autocorrelation (exact: dashed)", result.autocorrelation.plot)
    return _plotted(f"Autocorrelation (exact: dashed; {comparison.label}: squares, same lag times)",
                    lambda ax: result.autocorrelation.plot(ax, comparison=theirs, comparison_label=comparison.label))


def _comparison_html(result: AnalysisResult) -> str:
    """Side-by-side implied timescales and the JS divergence against a second data set (e.g. MD)."""
    comparison = result.comparison
    if comparison is None:
        return ""
    mine, other = result.implied_timescales, comparison.implied_timescales
    label = html.escape(comparison.label)
    unit = result.time_unit
    ratio = comparison.slowest_timescale_ratio()
    rows = []
    for i, lag_time in enumerate(mine.lag_times):
        match = np.flatnonzero(np.isclose(other.lag_times, lag_time, rtol=1e-6))
        theirs = _marked(other, match[0]) if match.size else "–"
        ratio_here = ratio[match[0]] if match.size and ratio is not None else np.nan
        rows.append((f"{lag_time:.4g}", _marked(mine, i), theirs, format_number(ratio_here),
                     "–" if mine.reference is None else f"{mine.reference[0]:.4g}"))
    fig = Figure(figsize=(5.5, 4.0))
    ax = fig.subplots()
    for its, style, name in ((mine, "o", "this data"), (other, "s", comparison.label)):
        line, = ax.plot(its.lag_times, its.timescales[:, 0], style + "-", lw=1, label=name)
        unresolved = ~its.resolved[:, 0] & np.isfinite(its.timescales[:, 0])
        ax.plot(its.lag_times[unresolved], its.timescales[unresolved, 0], style, mfc="white", mec="0.45", ms=7)
    if mine.reference is not None:
        ax.axhline(mine.reference[0], color="k", ls=":", label="exact")
    every = np.concatenate([mine.lag_times, other.lag_times])
    edge = np.geomspace(every.min() / 1.5, every.max() * 1.5, 100)
    ax.plot(edge, edge, ":", color="0.3", lw=1, label="t = τ")
    ax.set_xlim(edge[0], edge[-1])
    log_time_axis(ax)
    ax.set_xlabel(f"lag time τ ({unit})")
    ax.set_ylabel(f"slowest implied timescale ({unit})")
    ax.set_title("hollow grey: unresolved", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return (f"<h2>Comparison with {label}</h2>"
            + html_table(["quantity", "value"], [
                (f"{comparison.label} data", f"{comparison.n_trajectories} trajectories, {comparison.n_frames} frames, "
                                             f"frame interval {comparison.frame_interval:g} {unit}"),
                (f"JS divergence vs {comparison.label} (nats)", f"{comparison.js_divergence.value:.4g}"),
                *([] if (acf := comparison.autocorrelation_difference()) is None else [
                    (f"autocorrelation of {result.autocorrelation.observable}: max |C − C_{comparison.label}| over "
                     f"{len(comparison.autocorrelation.lags)} lag times", f"{acf:.3g}")])])
            + html_table([f"lag time ({unit})", f"slowest timescale, this data ({unit})",
                          f"slowest timescale, {comparison.label} ({unit})", f"ratio this data / {comparison.label}",
                          f"exact ({unit})"], rows)
            + "<p class='note'>(…): unresolved, left out of the ratio.</p>"
            + f"<div class='figs'>{figure_html(f'Implied timescales: this data vs {comparison.label} (same states)', fig)}</div>")


def _key_numbers(result: AnalysisResult) -> str:
    its = result.implied_timescales
    unit = result.time_unit
    rows = [("trajectories", f"{result.n_trajectories}"), ("frames (all trajectories)", f"{result.n_frames}"),
            ("frame interval", f"{result.frame_interval:g} {unit}"), ("kT", f"{result.kT:g} (energy unit of the system)"),
            ("MSM states", f"{its.n_states} ({result.discretization.method})"),
            ("slowest implied timescale resolved", f"at {int(its.resolved[:, 0].sum())} of {len(its.lags)} lags")]
    if its.reference is not None:
        rows.append(("exact slowest implied timescale", f"{its.reference[0]:.4g} {unit}"))
        error = its.relative_error_vs_reference()[:, 0]
        if np.isfinite(error).any():
            rows.append(("slowest implied timescale: largest |relative error| (resolved lags)",
                         f"{np.nanmax(np.abs(error)):.1%}"))
    if result.js_divergence is not None:
        js = result.js_divergence
        rows.append(("JS divergence vs exact (nats)", f"{js.value:.4g}"))
        rows.append(("JS divergence histogram",
                     f"{'×'.join(map(str, js.bins))} bins on "
                     + ", ".join(f"[{lo:.3g}, {hi:.3g}]" for lo, hi in js.range)
                     + f", features {list(js.features)}, {js.fraction_outside:.2%} of frames outside"))
    rms = result.free_energy.rms_deviation()
    if rms is not None:
        rows.append(("free energy RMS deviation vs exact", f"{rms:.3g} kT (bins with ≥ 20 frames)"))
    if result.ck_test is not None:
        rows.append(("CK test max |prediction − estimate|",
                     f"{result.ck_test.max_deviation:.3g} (lag {result.ck_test.lag} frames, "
                     f"{result.ck_test.n_metastable} sets)"))
    acf = result.autocorrelation.max_abs_deviation()
    if acf is not None:
        rows.append((f"autocorrelation of {result.autocorrelation.observable}: max |C − C_exact|", f"{acf:.3g}"))
    return html_table(["quantity", "value"], rows)


def _timescale_table(result: AnalysisResult) -> str:
    its = result.implied_timescales
    unit = result.time_unit
    error = its.relative_error_vs_reference()
    rows = []
    for i, lag in enumerate(its.lags):
        rows.append((f"{lag}", f"{its.lag_times[i]:.4g}", _marked(its, i),
                     f"[{format_number(its.lower[i, 0])}, {format_number(its.upper[i, 0])}]",
                     "yes" if its.resolved[i, 0] else "no",
                     "–" if its.reference is None else f"{its.reference[0]:.4g}",
                     "–" if error is None or not np.isfinite(error[i, 0]) else f"{error[i, 0]:+.1%}",
                     f"{its.effective_counts[i]:.0f}"))
    header = ["lag (frames)", f"lag time ({unit})", f"slowest timescale ({unit})", f"{its.confidence:.0%} interval",
              "resolved", f"exact ({unit})", "relative error", "effective counts"]
    return (html_table(header, rows) + "<p class='note'>(…): unresolved (t ≤ τ, or too few transitions to tell); "
            "no relative error is given for it.</p>")


def _marked(its: ImpliedTimescalesResult, row: int, column: int = 0) -> str:
    """A timescale as text, in parentheses where unresolved."""
    text = format_number(its.timescales[row, column])
    return text if its.resolved[row, column] or text == "–" else f"({text})"
