"""One builder of patch tables, and tables that remember their grid.

* Only ``patch_table.py`` (and ``grid.py`` itself) calls ``grid.patch_stats`` or builds a
  ``PatchGrid(...)``: every consumer goes through ``build_patch_table`` (AST scan).
* A table written by ``write_patch_table`` (or ``patchwise stats``) reads back with the
  grid and settings it was cut with; a table of an older version (no metadata) goes
  through the one fallback, ``guess_grid``.

Counts are checked against a hand-built mask.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from napari_patchwise import Slide
from napari_patchwise.patches.grid import PatchGrid
from napari_patchwise.patches.table import (
    build_patch_table,
    guess_grid,
    read_patch_table,
    read_table_metadata,
    write_patch_table,
)
from napari_patchwise.settings import DEFAULT_PATCH_SIZE, PatchSettings

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "napari_patchwise"
BUILDERS = {"patches/table.py", "patches/grid.py"}


def _offences(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            f = node.func
            name = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            if name in ("patch_stats", "PatchGrid"):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {name}(")
        elif (
            isinstance(node, ast.ImportFrom)
            and (node.module or "").endswith("grid")
            and any(a.name == "patch_stats" for a in node.names)
        ):
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports patch_stats")
    return found


def test_only_the_builder_counts_patches_or_builds_grids():
    offences = [
        o
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).as_posix() not in BUILDERS
        for o in _offences(path)
    ]
    assert offences == [], "use patch_table.build_patch_table / settings_grid instead"


def test_no_literal_default_patch_size_in_signatures():
    """The default patch size is one constant, not a literal 64 in every signature."""
    literal = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == "patch_size"
                and isinstance(node.value, ast.Constant)
            ):
                literal.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.arguments):
                positional = [a.arg for a in (*node.posonlyargs, *node.args)]
                names = positional[len(positional) - len(node.defaults) :]
                kwonly = [a.arg for a in node.kwonlyargs]
                pairs = [
                    *zip(names, node.defaults, strict=True),
                    *zip(kwonly, node.kw_defaults, strict=True),
                ]
                for name, default in pairs:
                    if name == "patch_size" and isinstance(default, ast.Constant) and default.value:
                        literal.append(f"{path.name}:{default.lineno}")
    assert literal == []
    assert PatchSettings().patch_size == DEFAULT_PATCH_SIZE == 64


# -- a hand-built slide: 20 x 28 px, 8 px patches from (2, 4) with stride 6 ---------------
@pytest.fixture
def slide() -> Slide:
    mask = np.zeros((20, 28), np.uint8)
    mask[2:10, 4:12] = 2  # patch (0, 0): all tumor
    mask[8:14, 10:16] = 1  # healthy tissue under patches (0, 1), (1, 0), (1, 1)
    image = da.from_array(np.zeros((1, 20, 28), np.uint8), chunks=16)
    return Slide(levels=(image,), channel_names=("c",), name="s").with_mask(
        da.from_array(mask, chunks=16)
    )


SETTINGS = PatchSettings(patch_size=8, stride=6, tissue="mask", keep_edges=True)


def expected_counts(slide: Slide, grid: PatchGrid) -> tuple[np.ndarray, np.ndarray]:
    """(tissue pixels, tumor pixels) of every patch, raster order, by direct slicing."""
    mask = np.asarray(slide.mask)
    h, w = mask.shape
    ys, xs = grid.positions(h, w)
    tissue, tumor = [], []
    for y in ys:
        for x in xs:
            cell = mask[y : y + grid.patch_size, x : x + grid.patch_size]
            tissue.append(int((cell > 0).sum()))
            tumor.append(int((cell == 2).sum()))
    return np.array(tissue), np.array(tumor)


def test_the_builder_counts_exactly_and_records_its_grid(slide):
    table = build_patch_table(slide, SETTINGS, origin=(2, 4))
    assert table.grid == PatchGrid(8, stride=6, origin=(2, 4), keep_edges=True)
    assert table.settings == PatchSettings(
        patch_size=8, stride=6, tissue="mask", background="dark", keep_edges=True
    )  # the slide's own background, resolved
    assert table.slide == "s" and len(table.frame) == 3 * 4
    tissue, tumor = expected_counts(slide, table.grid)
    np.testing.assert_array_equal(table.frame["n_tissue"], tissue)
    np.testing.assert_array_equal(table.frame["n_tumor"], tumor)
    # by hand: patch (0, 0) is tumor but for the 2 x 2 healthy corner; patch (0, 1) holds
    # 6 x 2 tumor pixels above 2 x 6 healthy ones
    assert (tumor[0], tissue[0], tumor[1], tissue[1]) == (60, 64, 12, 24)


def test_grid_and_settings_read_back_equal(slide, tmp_path):
    table = build_patch_table(slide, SETTINGS, origin=(2, 4))
    path = write_patch_table(table, tmp_path / "t.parquet")
    back = read_patch_table(path)
    assert back.grid == table.grid and back.settings == table.settings and back.slide == "s"
    pd.testing.assert_frame_equal(back.frame, table.frame, check_dtype=False)


def test_an_old_table_goes_through_the_one_fallback(slide, tmp_path):
    table = build_patch_table(slide, SETTINGS, origin=(2, 4))
    old = tmp_path / "old.parquet"
    table.frame.to_parquet(old, index=False)  # as versions before the metadata wrote it
    assert read_table_metadata(old) is None
    back = read_patch_table(old)
    assert back.settings is None
    assert back.grid == guess_grid(table.frame) == table.grid  # partial edges: keep_edges
    csv = tmp_path / "t.csv"
    table.frame.to_csv(csv, index=False)
    assert read_patch_table(csv).grid == table.grid


def test_the_fallback_without_edge_patches(slide):
    table = build_patch_table(slide, PatchSettings(patch_size=8), origin=(1, 3))
    assert guess_grid(table.frame) == PatchGrid(8, stride=8, origin=(1, 3))


def test_stats_writes_the_grid_into_its_table(tmp_path):
    import tifffile

    from napari_patchwise.cli.main import main

    mask = np.zeros((20, 28), np.uint8)
    mask[2:10, 4:12] = 2
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((20, 28), np.uint8))
    tifffile.imwrite(tmp_path / "s_mask.tif", mask)
    out = tmp_path / "t.parquet"
    args = ["stats", str(tmp_path / "s.tif"), "--mask", str(tmp_path / "s_mask.tif")]
    args += ["--patch-size", "8", "--stride", "6", "--origin", "2", "4", "--out", str(out)]
    assert main(args) == 0
    grid, settings = read_table_metadata(out)
    assert grid == PatchGrid(8, stride=6, origin=(2, 4))
    assert (settings.patch_size, settings.stride, settings.background) == (8, 6, None)
