"""Coupling counts of the package, for reviews of structural changes.

Prints, for ``src/napari_patchwise``: the places that build a patch grid or count patches
outside ``grid``'s own builder, modules under ``_napari/`` that hold the dock, ``.busy()``
calls, private names imported across modules, function-level imports of project modules,
top-level modules and the largest module. Run ``python tools/coupling_counts.py [SRC]``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "napari_patchwise"
#: The one builder of patch tables (and the grid it builds on).
BUILDERS = {"patches/table.py", "patches/grid.py"}
#: The dock's own modules (they may hold the dock).
DOCK = {"_napari/dock/widget.py", "_napari/dock/binding.py"}


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([PACKAGE, *parts])


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def _function_level_imports(tree: ast.AST, module: str, path: Path) -> int:
    count = 0
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.ImportFrom):
                if _resolve(module, path, node).startswith(PACKAGE):
                    count += 1
            elif isinstance(node, ast.Import):
                count += sum(a.name.startswith(PACKAGE) for a in node.names)
    return count


def counts(root: Path) -> dict[str, object]:
    """The counts for the package rooted at ``root``."""
    out = {
        "builders (patch_stats calls / PatchGrid constructions outside the builder)": 0,
        "_napari modules holding the dock": 0,
        ".busy() calls": 0,
        "private names imported across modules": 0,
        "function-level imports of project modules": 0,
        "top-level modules": 0,
        "largest module": ("", 0),
    }
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        module = _module_name(root, path)
        rel = path.relative_to(root)
        lines = text.count("\n")
        if lines > out["largest module"][1]:
            out["largest module"] = (str(rel), lines)
        if len(rel.parts) == 1 and rel.name != "__init__.py":
            out["top-level modules"] += 1
        out["function-level imports of project modules"] += _function_level_imports(
            tree, module, path
        )
        dock = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if name in {"patch_stats", "PatchGrid"} and rel.as_posix() not in BUILDERS:
                    out[
                        "builders (patch_stats calls / PatchGrid constructions outside the builder)"
                    ] += 1
                if name == "busy":
                    out[".busy() calls"] += 1
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, path, node)
                if target.startswith(PACKAGE) and target != module:
                    out["private names imported across modules"] += sum(
                        a.name.startswith("_") and not a.name.startswith("__") for a in node.names
                    )
            if rel.parts[0] == "_napari" and rel.as_posix() not in DOCK:
                if isinstance(node, ast.Attribute) and node.attr == "dock":
                    dock = True
                if isinstance(node, ast.arg) and node.arg == "dock":
                    dock = True
        out["_napari modules holding the dock"] += dock
    return out


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1] / "src" / PACKAGE
    for key, value in counts(src).items():
        print(f"{key}: {value}")
