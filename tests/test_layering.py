"""The package's import graph points one way: every import (module level or inside a function) goes
to a lower layer, as docs/architecture.md draws it. A dependency the wrong way fails here."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "itomd"

#: Layers from the bottom; a module may import only from lower layers (and from its own package).
LAYERS = [
    {"errors"},
    {"validation", "_files", "_allocator", "geometry"},
    {"systems"},
    {"data"},
    {"simulate", "analysis", "nn", "checkpoint"},
    {"diffusion"},
    {"representation"},
    {"models"},
    {"metropolis"},
    {"training", "rollout", "interpolation"},
    {"demo", "speed", "check"},
    {"cli"},
    {"__main__"},
]
RANK = {name: rank for rank, layer in enumerate(LAYERS) for name in layer}


def _unit(module: str) -> str:
    """The top-level unit of ``itomd.X.Y`` (X), or ``itomd`` for the package itself."""
    parts = [part for part in module.split(".") if part != "__init__"]
    return parts[1] if len(parts) > 1 else "itomd"


def _imports(source: Path = SOURCE) -> list[tuple[str, str, str]]:
    """(importing file, importing unit, imported unit) for every itomd import in the package at ``source``."""
    edges = []
    for path in sorted(source.rglob("*.py")):
        relative = path.relative_to(source.parent).with_suffix("")
        unit = _unit(".".join(relative.parts))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("itomd.") and _unit(name) != unit:
                    edges.append((str(path.relative_to(source)), unit, _unit(name)))
    return edges


def test_every_unit_has_a_layer():
    units = {_unit(".".join(p.relative_to(SOURCE.parent).with_suffix("").parts)) for p in SOURCE.rglob("*.py")}
    assert units - {"itomd"} <= set(RANK), sorted(units - {"itomd"} - set(RANK))


def _violations(edges: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return [edge for edge in edges if not RANK[edge[2]] < RANK[edge[1]]]


def test_the_layering_check_catches_an_upward_import(tmp_path):
    """Negative control: a data module importing models inside a function is found."""
    package = tmp_path / "itomd"
    (package / "data").mkdir(parents=True)
    (package / "data" / "bad.py").write_text("def f():\n    from itomd.models import TransitionModel\n")
    (package / "data" / "good.py").write_text("from itomd.systems import System\n")
    assert _violations(_imports(package)) == [("data/bad.py", "data", "models")]


def test_the_package_has_no_violation():
    assert _violations(_imports()) == []
