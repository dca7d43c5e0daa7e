"""Function-level imports only where laziness is needed, and light entry points stay light.

A function-level import hides a dependency from the reader and costs a dictionary lookup
on every call; it is right only when importing the target at module level would load a
heavy package (torch, Qt, napari, matplotlib, a slide reader, dask.distributed) into a
process that may never need it — ``patchwise --help``, a headless script, napari's start.
The AST test enforces that rule on the core library and the CLI (``_napari`` is the GUI
and imports what it likes): a project module or a light library (the standard library,
numpy, pandas) imported inside a function must (transitively, at module level) pull in a
heavy package, or be listed in :data:`EXCEPTIONS` with its reason.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "napari_patchwise"
SRC = PACKAGE.parent

#: Packages whose import is slow or drags in a GUI: imported only where needed.
HEAVY: tuple[str, ...] = (
    "torch",
    "torchvision",
    "timm",
    "safetensors.torch",
    "qtpy",
    "PyQt5",
    "PyQt6",
    "PySide2",
    "PySide6",
    "napari",
    "magicgui",
    "matplotlib",
    "openslide",
    "wsidicom",
    "dask.distributed",
    "distributed",
)

#: Libraries that must be imported at module level (cheap, and always installed), with
#: the standard library. Others stay where they are: zarr (0.3 s) and scikit-learn (0.8 s)
#: would slow ``patchwise --help``.
LIGHT_THIRD_PARTY: frozenset[str] = frozenset({"numpy", "pandas"})

#: (module, imported module) -> why the import stays inside a function.
_WINDOWS = "Unix only: the lock falls back to a pid file on Windows"
_DASK = "Slide loads dask (0.4 s) on first use, so Ctrl-C early in patchwise is handled"
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("napari_patchwise._atomic", "fcntl"): _WINDOWS,
    ("napari_patchwise", "napari_patchwise.slide"): _DASK,  # tests/test_cli_interrupt.py
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["napari_patchwise", *parts])


MODULES: dict[str, Path] = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_heavy_name(name: str) -> bool:
    return any(name == h or name.startswith(h + ".") for h in HEAVY)


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """Modules an import statement loads: the named ones, their packages, imported submodules."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:
            package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1])
            source = f"{base}.{node.module}" if node.module else base
        else:
            source = node.module or ""
        names = [source]
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            # A submodule (project) or a dotted name that matters (``from dask import
            # distributed``); a plain symbol otherwise.
            if sub in MODULES or _is_heavy_name(sub):
                names.append(sub)
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            yield ".".join(parts[:i])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements run when the module is imported (not in functions or TYPE_CHECKING)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _module_level_imports(block)
            for handler in node.handlers:
                yield from _module_level_imports(handler.body)
        elif isinstance(node, ast.With | ast.For | ast.While | ast.ClassDef):
            yield from _module_level_imports(node.body)


@cache
def _tree(module: str) -> ast.Module:
    return ast.parse(MODULES[module].read_text(encoding="utf-8"))


@cache
def _module_level_targets(module: str) -> tuple[str, ...]:
    path = MODULES[module]
    found = {
        t for n in _module_level_imports(_tree(module).body) for t in _targets(module, path, n)
    }
    return tuple(sorted(found - {module}))


@cache
def heavy_chain(module: str) -> tuple[str, ...]:
    """The import chain by which importing ``module`` loads a heavy package; () if none."""
    # Breadth-first over module-level imports (packages and their submodules import each
    # other, so the graph has loops): the first heavy name reached gives the chain.
    parent: dict[str, str | None] = {module: None}
    queue = [module]
    while queue:
        current = queue.pop(0)
        if _is_heavy_name(current):
            chain = [current]
            while parent[chain[-1]] is not None:
                chain.append(parent[chain[-1]])
            return tuple(reversed(chain))
        for target in _module_level_targets(current) if current in MODULES else ():
            if target not in parent:
                parent[target] = current
                queue.append(target)
    return ()


def _core_modules() -> Iterator[str]:
    for module in sorted(MODULES):
        if not module.startswith("napari_patchwise._napari"):
            yield module


def _is_light(name: str) -> bool:
    root = name.split(".")[0]
    if root == "napari_patchwise":
        return not heavy_chain(name)
    return (root in sys.stdlib_module_names or root in LIGHT_THIRD_PARTY) and not (
        _is_heavy_name(name)
    )


@cache
def parser_modules() -> frozenset[str]:
    """Project modules that building the ``patchwise`` parser loads (``--help``)."""
    probe = (
        "import sys; from napari_patchwise.cli.main import build_parser; build_parser();"
        "print(' '.join(m for m in sys.modules if m.startswith('napari_patchwise')))"
    )
    return frozenset(_run_python(probe).split())


def _needless(module: str, target: str) -> bool:
    """Whether ``module`` has no reason to import ``target`` inside a function."""
    if not _is_light(target):
        return False
    # A module that building the parser loads (a command module, or core code it needs
    # for its flags) imports project code inside the function that needs it when the
    # parser does not load it anyway: ``patchwise --help`` stays as fast as it was.
    return not (
        module in parser_modules()
        and target.startswith("napari_patchwise.")
        and target not in parser_modules()
    )


def _needless_in(module: str, path: Path, tree: ast.Module) -> Iterator[str]:
    seen: set[int] = set()
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if not isinstance(node, ast.Import | ast.ImportFrom) or id(node) in seen:
                continue
            seen.add(id(node))
            targets = list(_targets(module, path, node))
            # The most specific module each statement names decides (a package's
            # __init__ is light even when the submodule is not).
            named = [t for t in targets if not any(o.startswith(t + ".") for o in targets)]
            for target in named:
                if _needless(module, target) and (module, target) not in EXCEPTIONS:
                    yield (
                        f"{path.relative_to(PACKAGE)}:{node.lineno}: {module} imports "
                        f"{target} inside {func.name}() — import it at module level"
                    )


def needless_lazy_imports() -> list[str]:
    """``path:line: module imports target`` for each function-level import that needn't be."""
    found = []
    for module in _core_modules():
        found.extend(_needless_in(module, MODULES[module], _tree(module)))
    return found


def test_function_level_imports_only_where_laziness_is_needed():
    found = needless_lazy_imports()
    assert not found, f"{len(found)} needless function-level imports:\n" + "\n".join(found)


def test_exceptions_are_still_needed():
    stale = []
    for module, target in EXCEPTIONS:
        if module not in MODULES or not _is_light(target):
            stale.append(f"{module} -> {target}")
    assert not stale, "exceptions that no longer apply: " + ", ".join(stale)


def test_the_analysis_sees_heavy_chains():
    # The checks must be able to fail: heavy and light modules are told apart...
    assert heavy_chain("torch") == ("torch",)
    assert heavy_chain("dask.distributed") and not heavy_chain("dask.array")
    gui = [m for m in MODULES if m.startswith("napari_patchwise._napari.")]
    assert any(heavy_chain(m) for m in gui), "the GUI imports Qt at module level"
    assert not heavy_chain("napari_patchwise.patches.table")
    assert _is_light("json") and _is_light("numpy") and not _is_light("torch")
    # ...and a needless lazy import is found, a needed one is not.
    source = """
def f():
    import json
    import torch
    from napari_patchwise.patches import table
    from ..groups import DEFAULT_TAU
"""
    module, path = "napari_patchwise.patches.fake", PACKAGE / "patches" / "fake.py"
    found = list(_needless_in(module, path, ast.parse(source)))
    assert [line.split(" imports ")[1].split()[0] for line in found] == [
        "json",
        "napari_patchwise.patches.table",
        "napari_patchwise.groups",
    ]


def _run_python(code: str) -> str:
    """The standard output of ``code`` run in a fresh interpreter on this source tree."""
    env = {"PYTHONPATH": str(SRC), "PATH": "", "HOME": str(Path.home())}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return out.stdout


def _loaded_after(code: str) -> set[str]:
    """Top-level names of the heavy packages in ``sys.modules`` after running ``code``."""
    probe = textwrap.dedent(code) + textwrap.dedent(
        """
        import sys
        heavy = {'torch', 'torchvision', 'timm', 'napari', 'qtpy', 'PyQt5', 'PyQt6',
                 'PySide2', 'PySide6', 'matplotlib', 'magicgui', 'openslide', 'wsidicom',
                 'distributed'}
        print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & heavy)))
        """
    )
    return set(_run_python(probe).split())


def test_the_probe_sees_a_heavy_package():
    assert _loaded_after("import sys\nsys.modules['torch'] = sys\n") == {"torch"}


def test_the_cli_parser_loads_no_heavy_package():
    loaded = _loaded_after(
        """
        import napari_patchwise.cli
        from napari_patchwise.cli.main import build_parser
        build_parser()
        """
    )
    assert not loaded, f"patchwise --help imports {sorted(loaded)}"


@pytest.mark.parametrize(
    "module",
    [
        "napari_patchwise",
        "napari_patchwise.io",
        "napari_patchwise.patches.table",
        "napari_patchwise.analysis.metrics",
    ],
)
def test_core_entry_points_load_no_torch_qt_or_napari(module):
    loaded = _loaded_after(f"import {module}\n")
    assert not loaded, f"import {module} loads {sorted(loaded)}"
