"""The Debias tab's discovered slices on a real napari viewer (run under Xvfb)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

pytest.importorskip("torch")

from _cohort import make_cohort
from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.dock.widget import PatchwiseWidget
from napari_patchwise.analysis.discover import slice_positions

pytestmark = pytest.mark.gui

P = 16


def test_slice_positions_match_slide_row_and_col():
    table = pd.DataFrame({"slide": ["a"] * 4, "row": [0, 0, 1, 1], "col": [0, 1, 0, 1]})
    per_patch = pd.DataFrame(
        {
            "slide": ["a", "a", "b", "a"],
            "row": [1, 0, 0, 1],
            "col": [1, 1, 0, 0],
            "slice": [2, 2, 2, 5],
        }
    )
    np.testing.assert_array_equal(slice_positions(table, per_patch, 2), [1, 3])
    np.testing.assert_array_equal(slice_positions(table, per_patch, 5), [2])
    np.testing.assert_array_equal(
        slice_positions(table.drop(columns="slide"), per_patch, 2), [0, 1, 3]
    )  # without a slide column, slide b's patch (0, 0) matches too


@pytest.fixture
def dock(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    notes: dict[str, list[str]] = {"error": [], "info": []}
    monkeypatch.setattr(notify, "show_error", notes["error"].append)
    monkeypatch.setattr(notify, "show_info", notes["info"].append)
    folder = tmp_path / "cohort"
    make_cohort(folder, splits=("test",), patch=P)
    viewer = make_napari_viewer(show=True)
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    viewer.open(str(folder / "s0.ome.tif"), plugin="napari-patchwise")
    viewer.add_labels(tifffile.imread(folder / "s0_mask.tif"), name="s0_mask")
    widget.configure(mask="s0_mask")
    widget.configure(patch_size=P)
    with qtbot.waitSignal(widget.applied, timeout=30_000):
        widget.compute_button.click()
    return viewer, widget, notes


def test_a_slice_row_outlines_its_patches_on_the_slide(dock, tmp_path):
    _viewer, widget, notes = dock
    box = widget.debias.slices
    table = widget.current.data.table
    slide = str(table["slide"].iat[0])
    chosen = np.array([0, 3, 7])
    per_patch = pd.DataFrame({"slide": slide, "row": table["row"], "col": table["col"], "slice": 1})
    per_patch.loc[chosen, "slice"] = 4
    out = tmp_path / "slices.parquet"
    per_patch.to_parquet(out)
    slices = [
        {"id": 4, "rank": 0, "size": 3, "accuracy": 0.0, "score": 0.2, "above_noise": True,
         "attributes": [{"column": "pen", "correlation": 0.9}]},
        {"id": 1, "rank": 1, "size": len(table) - 3, "accuracy": 0.9, "score": -0.01,
         "above_noise": False, "attributes": []},
    ]  # fmt: skip
    (tmp_path / "slices.json").write_text(json.dumps({"noise_floor": 0.05, "slices": slices}))
    assert box.load(out)
    assert box.table.rowCount() == 2 and box.table.item(0, 3).text() == "3"
    assert box.table.item(0, 7).text() == "pen (+0.90)"
    members = box.show_slice(0)
    np.testing.assert_array_equal(members, chosen)
    state = widget.current
    layer = state.overlays.layers["highlight"]
    raster = state.data.raster
    expected = np.zeros(raster.shape, dtype=np.uint8)
    expected[raster.rows[chosen], raster.cols[chosen]] = 1
    np.testing.assert_array_equal(np.asarray(layer.data), expected)
    assert layer.visible
    legend = widget.overlay_choice.legend
    assert [name for name, _ in legend.entries] == [
        "slice 4 (rank 0): 3 patches here, accuracy 0.0%"
    ]  # the canvas legend names the outlined slice
    box.clear()
    assert not layer.visible
    assert "slice 4" not in " ".join(name for name, _ in legend.entries)
    assert notes["error"] == []


def test_a_file_that_is_not_discovers_output_is_one_notification(dock, tmp_path):
    _viewer, widget, notes = dock
    bad = tmp_path / "x.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(bad)
    assert not widget.debias.slices.load(bad)
    assert len(notes["error"]) == 1 and "patchwise discover" in notes["error"][0]
