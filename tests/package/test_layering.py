"""The package's layering (docs/architecture.md) and size limits, checked on the source.

Imports may only point to the same layer or a lower one, and no two modules may import
each other, directly or round a loop — at module level or inside functions alike (a lazy
import is still a dependency). Functions stay under 80 lines and classes under 300, so
that no unit grows too big to change safely.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "napari_patchwise"

#: Lowest first; each layer is folders (or top-level modules) of the package. A module
#: belongs to the first entry that equals it or is its package.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("errors", "_atomic", "_progress", "_compute")),
    ("definitions", ("napari_patchwise", "slide", "schema", "groups", "palette", "settings")),
    ("io", ("io",)),
    ("patches", ("patches", "cohort")),
    ("analysis", ("analysis", "synthetic")),
    ("training", ("training",)),
    ("reporting", ("reporting",)),
    ("gui", ("_napari",)),
    ("app", ("cli",)),
)
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 300


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["napari_patchwise", *parts])] = path
    return out


MODULES = _modules()


def _short(module: str) -> str:
    return module.removeprefix("napari_patchwise.") if module != "napari_patchwise" else module


def layer_of(module: str) -> int:
    """Index in :data:`LAYERS` of ``module`` (fully qualified)."""
    short = _short(module)
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if short == member or short.startswith(member + "."):
                return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")


def _imported(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Project modules that ``module`` imports (any depth, any place), with line numbers."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [f"{target}.{alias.name}" for alias in node.names] + [target]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for name in candidates:
            while name and name not in MODULES:  # `from pkg import name` where name is a symbol
                name = name.rpartition(".")[0]
            if name and name != module:
                yield name, node.lineno


GRAPH = {m: sorted({t for t, _ in _imported(m, p)}) for m, p in MODULES.items()}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_point_to_the_same_layer_or_below():
    wrong = []
    for module, path in MODULES.items():
        for target, line in _imported(module, path):
            if layer_of(target) > layer_of(module):
                wrong.append(
                    f"{path.relative_to(PACKAGE)}:{line}: {_short(module)} "
                    f"({LAYERS[layer_of(module)][0]}) imports {_short(target)} "
                    f"({LAYERS[layer_of(target)][0]})"
                )
    assert not wrong, "\n".join(wrong)


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, []):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    cycles = [" <-> ".join(_short(m) for m in c) for c in _cycles(GRAPH)]
    assert not cycles, "import cycles: " + "; ".join(cycles)


def test_the_checks_catch_what_they_claim():
    # A core module importing the GUI, and a loop, are both found.
    assert layer_of("napari_patchwise._napari.dock.widget") > layer_of(
        "napari_patchwise.patches.grid"
    )
    assert layer_of("napari_patchwise.cli.stats") > layer_of("napari_patchwise._napari")
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert "napari_patchwise.io.formats" in GRAPH["napari_patchwise.io.mask"]


def _sizes() -> Iterator[tuple[str, str, int]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                where = f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"
                yield kind, where, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize(
    ("kind", "limit"), [("function", MAX_FUNCTION_LINES), ("class", MAX_CLASS_LINES)]
)
def test_no_unit_is_too_big_to_change_safely(kind, limit):
    big = [f"{where} ({n} lines)" for k, where, n in _sizes() if k == kind and n > limit]
    assert not big, f"{kind}s over {limit} lines: " + "; ".join(big)


MAX_TOP_LEVEL_MODULES = 12


def test_the_top_level_holds_few_modules():
    """Folders show the layers: the package's top level keeps only definitions and base."""
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
