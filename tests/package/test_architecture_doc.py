"""docs/architecture.md cannot drift: its file map is generated, its paths exist, it stays short."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "napari_patchwise"
DOC = ROOT / "docs" / "architecture.md"


def _file_map_tool():
    spec = importlib.util.spec_from_file_location("file_map", ROOT / "tools" / "file_map.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_file_map_is_generated_from_the_current_docstrings():
    tool = _file_map_tool()
    text = DOC.read_text(encoding="utf-8")
    assert tool.updated(text) == text, "stale file map: run python tools/file_map.py"


def test_the_file_map_lists_every_module_once(tmp_path):
    tool = _file_map_tool()
    listed = re.findall(r"`([\w]+\.py)`", tool.file_map())
    modules = [p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py"]
    modules = [p for p in modules if p.name != "__init__.py" or p.parent == PACKAGE]
    assert len(listed) == len(modules)


def test_the_generator_follows_a_docstring_change(tmp_path):
    tool = _file_map_tool()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "thing.py").write_text('"""Counts the things. More words."""\n')
    assert tool.file_map(tmp_path / "pkg") == "- `thing.py` Counts the things\n"


def test_every_path_the_prose_names_exists():
    prose = DOC.read_text(encoding="utf-8").split(_file_map_tool().BEGIN)[0]
    named = set(re.findall(r"`((?:[\w]+/)*[\w]+\.py)`", prose))
    named |= {m + "/" for m in re.findall(r"\b((?:_napari/)?[a-z_]+)/\s", prose)}
    missing = sorted(p for p in named if not (PACKAGE / p).exists() and not (ROOT / p).exists())
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_the_page_stays_short():
    assert len(DOC.read_text(encoding="utf-8").splitlines()) <= 300
