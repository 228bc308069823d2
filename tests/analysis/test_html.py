"""HTML pieces of the report: escaped tables, embedded PNG figures, numbers to four digits."""

import base64
import re

import numpy as np
from matplotlib.figure import Figure

from itomd.analysis._html import figure_html, format_number, html_table


def test_tables_escape_every_cell_and_heading():
    table = html_table(["a<b", "c"], [("1 & 2", "<script>"), ("x", "y")])
    assert table == ("<table><tr><th>a&lt;b</th><th>c</th></tr>"
                     "<tr><td>1 &amp; 2</td><td>&lt;script&gt;</td></tr><tr><td>x</td><td>y</td></tr></table>")


def test_figures_are_embedded_as_png_with_an_escaped_caption():
    figure = Figure(figsize=(2, 1))
    figure.subplots().plot([0, 1], [1, 0])
    text = figure_html('F "x" < 1', figure)
    (data,) = re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
    assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    assert 'alt="F &quot;x&quot; &lt; 1"' in text and "<figcaption>F &quot;x&quot; &lt; 1</figcaption>" in text


def test_numbers_have_four_significant_digits_and_a_dash_when_not_finite():
    assert format_number(3.14159265) == "3.142" and format_number(123456.0) == "1.235e+05"
    assert format_number(np.nan) == "–" and format_number(np.inf) == "–" and format_number(-np.inf) == "–"
