"""The HTML report: one self-contained, atomically written page of key numbers, tables and figures."""

from matplotlib.figure import Figure

from itomd.analysis import write_report


def test_write_report(prinz_result, tmp_path):
    extra = Figure()
    extra.subplots().plot([0, 1], [1, 0])
    path = write_report(prinz_result, tmp_path / "new" / "report.html", title="Prinz <test>",
                        extra_sections={"Training": "<p>loss 0.1</p>", "Extra figure": extra})
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert text.count('<img src="data:image/png;base64,') == 6  # ITS, FES, CK, ACF, MFPT + the extra one
    assert f"{prinz_result.js_divergence.value:.4g}" in text and "nats" in text
    assert "100 bins" in text and "Prinz &lt;test&gt;" in text and "<p>loss 0.1</p>" in text
    assert "<figcaption>Free energy (exact: dashed)</figcaption>" in text and "Chemical validity" not in text
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]  # no temporary left over


def test_write_page_escapes_headings_embeds_figures_and_leaves_no_temporary(tmp_path):
    from itomd.analysis.report import write_page

    figure = Figure()
    figure.subplots().plot([0, 1], [0, 1])
    path = write_page(tmp_path / "page.html", "Bench <1>", [("a & b", "<p>raw html</p>"), ("plot", figure)])
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<title>Bench &lt;1&gt;</title>" in text
    assert "<h2>a &amp; b</h2><p>raw html</p>" in text  # a str body is trusted HTML, the heading is escaped
    assert text.count('<img src="data:image/png;base64,') == 1 and "<h2>plot</h2><figure>" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]
