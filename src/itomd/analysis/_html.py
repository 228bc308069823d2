"""HTML building blocks of the reports: escaped tables, embedded PNG figures, numbers.

A leaf module (nothing else from :mod:`itomd.analysis`), so that the report and every
:class:`~itomd.analysis.sections.Section` can render with it without importing each other.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def html_table(header: list[str], rows: list[tuple[str, ...]]) -> str:
    """An HTML table of strings (escaped here)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def figure_html(caption: str, fig: Figure) -> str:
    """A matplotlib figure as an embedded PNG (base64) with its caption, rendered by the Agg canvas."""
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    text = html.escape(caption)
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{text}">'
            f"<figcaption>{text}</figcaption></figure>")


def format_number(value: float) -> str:
    """Four significant digits, or "–" for NaN/inf."""
    return f"{value:.4g}" if np.isfinite(value) else "–"
