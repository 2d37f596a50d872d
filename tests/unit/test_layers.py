"""The layers point one way: pages -> studio -> core. core imports neither streamlit nor studio nor pages,
and studio imports no page (checked on every import statement, including those inside functions).

    .venv/bin/python -m pytest tests/unit/test_layers.py
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {"core": ("streamlit", "studio", "pages"), "studio": ("pages",)}


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.lineno, node.module))
    return out


def test_layers_point_one_way() -> None:
    bad = []
    for layer, banned in FORBIDDEN.items():
        for path in sorted((REPO / layer).rglob("*.py")):
            for line, name in _imports(path):
                if name.split(".")[0] in banned:
                    bad.append(f"{path.relative_to(REPO)}:{line}: imports {name}")
    assert not bad, "\n".join(bad)


def test_the_check_sees_an_upward_import(tmp_path) -> None:
    p = tmp_path / "m.py"
    p.write_text("def f():\n    import streamlit as st\n    from studio.ui import i18n\n", encoding="utf-8")
    assert [n for _, n in _imports(p)] == ["streamlit", "studio.ui"]
