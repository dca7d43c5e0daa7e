"""Every example in a core module's docstrings runs (doctest), so the docs cannot rot.

Modules are found by scanning the source for ``>>>``: a new example is tested without
being listed here. The napari adapter and the commands are left out (they need a viewer
or a command line); their behaviour has tests of its own.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "napari_patchwise"


def _modules_with_examples() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[0] in ("_napari", "commands") or ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        found.append(".".join(["napari_patchwise", *parts]))
    return found


MODULES = _modules_with_examples()


def test_examples_are_found():
    assert {"napari_patchwise.groups", "napari_patchwise.analysis.metrics"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name}: no example ran"
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
