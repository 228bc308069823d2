"""The analysis package is layered: its modules import each other without a cycle (counting imports
inside functions and ``TYPE_CHECKING`` blocks), and the generic pipeline, report and sections never
import the molecular module."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import itomd.analysis

PACKAGE = Path(itomd.analysis.__file__).parent


def _imports(path: Path) -> set[str]:
    """Modules of itomd.analysis that ``path`` imports anywhere (``from itomd.analysis import x`` counts x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("itomd.analysis"):
            if node.module == "itomd.analysis":
                found |= {alias.name for alias in node.names if (PACKAGE / f"{alias.name}.py").is_file()}
            else:
                found.add(node.module.removeprefix("itomd.analysis."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("itomd.analysis.") for a in node.names
                      if a.name.startswith("itomd.analysis.")}
    return found - {path.stem}


def _graph() -> dict[str, set[str]]:
    return {path.stem: _imports(path) for path in PACKAGE.glob("*.py") if path.stem != "__init__"}


def test_analysis_modules_form_an_acyclic_graph():
    graph = _graph()
    assert {"pipeline", "molecular", "features", "sections", "report"} <= set(graph)
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"import cycle in itomd.analysis: {error.args[1]}") from None
    assert order.index("molecular") < order.index("features") < order.index("pipeline") < order.index("report")


def test_generic_modules_do_not_import_the_molecular_module():
    graph = _graph()
    for generic in ("pipeline", "report", "sections"):
        assert "molecular" not in graph[generic], generic
    assert "pipeline" not in graph["molecular"] and "pipeline" not in graph["features"]
