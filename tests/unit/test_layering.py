"""The layering in DESIGN.md holds: core <- registry, engine, embedding <- training / serving <- platform.

Every import in every module of lorafleet is read (module level and inside functions, since
heavy imports live in functions), and each part may import only the parts below it: serving
never imports training and training never imports serving.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "lorafleet"
ALLOWED = {
    "core": {"core"},
    "registry": {"core", "registry"},
    "engine": {"core", "engine"},
    "embedding": {"core", "embedding"},
    "training": {"core", "registry", "engine", "embedding", "training"},
    "serving": {"core", "registry", "engine", "embedding", "serving"},
    "platform": {"core", "registry", "engine", "embedding", "training", "serving", "platform"},
}


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def _violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        part = rel.parts[0] if len(rel.parts) > 1 else None
        if part is None:
            continue
        if part not in ALLOWED:
            found.append(f"{rel}: lorafleet.{part} is not a known part (add it to the layering)")
            continue
        for line, module in _imports(path):
            names = module.split(".")
            if names[0] != "lorafleet" or len(names) < 2:
                continue
            if names[1] not in ALLOWED[part]:
                found.append(f"{rel}:{line}: {part} imports {module}")
    return found


def test_every_import_follows_the_layering() -> None:
    assert _violations() == []


def test_the_check_sees_function_level_imports(tmp_path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from lorafleet.serving.gateway import Gateway\n")
    assert _imports(module) == [(2, "lorafleet.serving.gateway")]


def test_every_module_says_its_job() -> None:
    missing = [str(p.relative_to(PACKAGE)) for p in sorted(PACKAGE.rglob("*.py"))
               if not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))]
    assert missing == [], "modules without a docstring saying their one job"
