"""The small shared pieces every module relies on: errors, atomic writes, Slide."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from napari_patchwise import PatchwiseError, Slide
from napari_patchwise._atomic import OutputKind, atomic_path


def test_error_reads_as_one_line_with_path_and_hint():
    err = PatchwiseError(
        "mask has values {7}\nnot in the map.", path="/data/m.tif", hint="pass --mask-map"
    )
    assert str(err) == "/data/m.tif: mask has values {7} not in the map — pass --mask-map."
    assert "\n" not in str(err)


def test_atomic_path_renames_on_success(tmp_path):
    target = tmp_path / "table.csv"
    with atomic_path(target) as tmp:
        # Inside a fresh private folder beside the target, with the target's own name.
        assert tmp.name == "table.csv" and tmp.parent.parent == tmp_path
        tmp.write_text("a,b\n1,2\n")
        assert not target.exists()
    assert target.read_text() == "a,b\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.ome.zarr"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "chunk").write_bytes(b"x")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_existing_directory_only_when_asked(tmp_path):
    target = tmp_path / "store.zarr"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(PatchwiseError, match="existing folder"), atomic_path(target) as tmp:
        tmp.mkdir()
    assert sorted(p.name for p in target.iterdir()) == ["old"]  # never deleted unasked
    # replaced only when asked AND recognisably the command's own kind of output
    kind = OutputKind(
        "a test store",
        folder=True,
        recognise=lambda folder: any((folder / n).is_file() for n in ("old", "new")),
        owns=lambda folder, name: name in {"old", "new"},
    )
    with atomic_path(target, replace=kind) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["store.zarr"]
    (target / "someone_elses").write_text("keep")  # an entry the kind does not write
    with pytest.raises(PatchwiseError), atomic_path(target, replace=kind) as tmp:
        tmp.mkdir()
    assert (target / "someone_elses").read_text() == "keep"


def test_slide_geometry_and_contrast_from_smallest_level():
    level0 = da.from_array(np.arange(2 * 8 * 8, dtype=np.uint16).reshape(2, 8, 8), chunks=(1, 4, 4))
    level1 = level0[:, ::2, ::2]
    slide = Slide(levels=(level0, level1), channel_names=("A", "B"))
    assert slide.shape == (2, 8, 8)
    assert slide.n_channels == 2
    assert slide.downsamples == (1, 2)
    limits = slide.display_contrast_limits()
    assert len(limits) == 2 and limits[0][0] < limits[0][1]
    assert limits[1][0] >= 64  # channel B values start at 64


def test_slide_rejects_mismatched_channel_names():
    with pytest.raises(ValueError, match="channel names"):
        Slide(levels=(da.zeros((3, 4, 4)),), channel_names=("A",))


def test_sources_cite_docs_pages_not_files_users_never_have():
    # DESIGN.md and METHODS.md are reference notes outside the repository; what users
    # and contributors need lives in docs/, and every docs/ page the code cites exists.
    repo = Path(__file__).resolve().parents[1]
    files = [p for p in (repo / "src" / "napari_patchwise").rglob("*") if p.is_file()]
    files = [p for p in files if "__pycache__" not in p.parts]
    assert len(files) > 20
    cited = set()
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        for name in ("DESIGN.md", "METHODS.md"):
            assert name not in text, f"{path.relative_to(repo)} cites {name}"
        cited.update(re.findall(r"docs/[\w-]+\.md", text))
    assert "docs/methods.md" in cited
    assert sorted(page for page in cited if not (repo / page).is_file()) == []


def test_core_does_not_import_qt_napari_or_torch():
    """Every module outside ``_napari/`` imports headless: no Qt, no napari, no torch.

    The list is walked from the package, so a new core module is covered without being
    named here (commands included: the CLI starts without napari or torch).
    """
    code = (
        "import sys, pkgutil, importlib, napari_patchwise as p;"
        "names = [m.name for m in pkgutil.walk_packages(p.__path__, 'napari_patchwise.')"
        " if '._napari' not in m.name and not m.name.endswith('__main__')];"
        "[importlib.import_module(n) for n in names];"
        "bad = [m for m in ('napari', 'PyQt5', 'PyQt6', 'PySide6', 'qtpy', 'torch', 'vispy')"
        " if m in sys.modules];"
        "print(len(names), bad); sys.exit(1 if bad or len(names) < 40 else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
