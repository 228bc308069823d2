"""A single self-contained HTML page with the analysis plots (PNG embedded) and key numbers."""

from __future__ import annotations

import base64
import html
import io
import os
import secrets
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from itomd.analysis.pipeline import AnalysisResult  # noqa: E402

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.figs { display: flex; flex-wrap: wrap; gap: 16px; } figure { margin: 0; } figcaption { font-size: 0.9em; color: #555; }
img { max-width: 540px; border: 1px solid #eee; } .note { color: #555; font-size: 0.9em; }
"""


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.4g}"


def _summary_table(result: AnalysisResult) -> str:
    its = result.implied_timescales
    ref = its.reference
    rows = []
    for i, lag in enumerate(its.lags):
        t = its.timescales[i, 0]
        lo, hi = its.lower[i, 0], its.upper[i, 0]
        err = "–" if ref is None else f"{100 * (t / ref[0] - 1):+.1f}%"
        rows.append(f"<tr><td>{lag}</td><td>{its.lag_times[i]:.4g}</td><td>{t:.4g}</td>"
                    f"<td>[{lo:.4g}, {hi:.4g}]</td><td>{_fmt(None if ref is None else ref[0])}</td><td>{err}</td></tr>")
    head = ("<table><tr><th>lag (frames)</th><th>lag time</th><th>slowest ITS</th>"
            f"<th>{int(its.confidence * 100)}% bootstrap CI</th><th>exact</th><th>error</th></tr>")
    return head + "".join(rows) + "</table>"


def _numbers(result: AnalysisResult) -> str:
    items = [("trajectories", str(result.n_trajectories)), ("frames", str(result.n_frames)),
             ("frame interval τ", f"{result.frame_interval:g}"), ("kT", f"{result.kT:g}"),
             ("MSM states", str(result.implied_timescales.n_states))]
    if result.js is not None:
        js = result.js
        items.append(("stationary JS divergence vs exact",
                      f"{js.value:.4g} nats ({'×'.join(map(str, js.bins))} bins on "
                      f"{', '.join(f'[{lo:g}, {hi:g}]' for lo, hi in js.range)})"))
    if result.free_energy is not None and result.free_energy.reference is not None:
        items.append(("FES RMSE vs exact (bins below 5 kT)", f"{_fmt(result.free_energy.rmse_vs_reference())} energy units"))
    if result.ck_test is not None:
        items.append(("CK test max deviation", f"{result.ck_test.max_deviation:.3g} (lag {result.ck_test.lag} frames)"))
    if result.autocorrelation.reference is not None:
        items.append(("autocorrelation max |error| vs exact", f"{result.autocorrelation.max_abs_error():.3g}"))
    return "<table>" + "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in items) + "</table>"


def write_report(result: AnalysisResult, path: str | os.PathLike, title: str = "itomd report",
                 extra_sections: list[tuple[str, str]] | None = None) -> Path:
    """Write one self-contained HTML page (atomically) and return its path.

    Parameters
    ----------
    result : AnalysisResult
    path : str or os.PathLike
        HTML file to write; its directory is created.
    title : str
    extra_sections : list of (heading, html), optional
        Further sections appended verbatim (trusted HTML).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = "".join(f'<figure><img src="data:image/png;base64,{_png(fig)}" alt="{html.escape(t)}">'
                      f"<figcaption>{html.escape(t)}</figcaption></figure>" for t, fig in result.figures())
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in result.notes)
    extra = "".join(f"<h2>{html.escape(h)}</h2>{body}" for h, body in (extra_sections or []))
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<h2>Key numbers</h2>{_numbers(result)}<h2>Slowest implied timescale by lag</h2>{_summary_table(result)}"
            f"{notes}<h2>Plots</h2><div class='figs'>{figures}</div>{extra}"
            f"<p class='note'>JS divergence in nats (not the JS distance). Implied timescales in physical time; "
            f"MSMs by deeptime (reversible maximum likelihood).</p></body></html>")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path
