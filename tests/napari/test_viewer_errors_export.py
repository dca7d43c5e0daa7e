"""The Errors tab: µm positions, an outline on the chosen error, Alt+Right / Alt+Left from
the canvas, the reviewed ticks and "Export errors…" (a real napari viewer under Xvfb).

test_widget's hand-built slide (8 x 8 patches of 64 px, labels and probabilities known)
is opened through the reader as an OME-TIFF of 0.5 µm pixels, so every position in µm,
every error and every outline is checked against numbers computed here.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from qtpy.QtCore import Qt
from test_qupath_classes import UM, slide_files  # noqa: F401 - the fixture
from test_widget import PROB, N, P, expected_outcomes

from napari_patchwise._napari.canvas.navigation import viewer_camera
from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.dock.widget import PatchwiseWidget
from napari_patchwise._napari.inspect import errors_list
from napari_patchwise._napari.inspect.errors_export import default_path

pytestmark = pytest.mark.gui
OUTCOMES = expected_outcomes(0.5)
ERRORS = {(int(r), int(c)) for r, c in zip(*np.nonzero(np.isin(OUTCOMES, (1, 2))), strict=True)}


@pytest.fixture
def dock(slide_files, make_napari_viewer, qtbot, monkeypatch):  # noqa: F811
    """The slide (0.5 µm pixels) and its mask opened, the grid computed, predictions in."""
    notices = {"error": [], "info": []}
    monkeypatch.setattr(notify, "show_error", notices["error"].append)
    monkeypatch.setattr(notify, "show_info", notices["info"].append)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    for path in slide_files:
        viewer.open(str(path), plugin="napari-patchwise")
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    widget.configure(patch_size=P)
    widget.compute()
    qtbot.waitUntil(lambda: not widget.busy(), timeout=60_000)
    rows, cols = np.indices((N, N))
    frame = {"row": rows.ravel(), "col": cols.ravel(), "prob": PROB.ravel()}
    assert widget.set_predictions(pd.DataFrame(frame))
    qtbot.waitUntil(lambda: not widget.busy() and widget.errors.rowCount() > 0, timeout=60_000)
    assert not notices["error"], notices["error"]
    return viewer, widget, notices


def listed_cell(widget, i: int) -> tuple[int, int]:
    return widget.errors.cell_at(i)


def centre_of(r: int, c: int) -> tuple[float, float]:
    """World centre of patch (r, c): level-0 pixels times 0.5 µm."""
    return (UM * (r * P + (P - 1) / 2), UM * (c * P + (P - 1) / 2))


def test_rows_give_um_positions_and_say_how_many_are_listed(dock, monkeypatch):
    _viewer, widget, _ = dock
    errors = widget.errors
    assert errors.rowCount() == len(ERRORS)
    headers = [errors.horizontalHeaderItem(j).text() for j in range(errors.columnCount())]
    assert headers[5:8] == ["reviewed", "y (µm)", "x (µm)"]
    for i in range(errors.rowCount()):
        r, c = listed_cell(widget, i)
        assert (r, c) in ERRORS
        assert errors.item(i, 6).text() == f"{r * P * UM:,.1f}"
        assert errors.item(i, 7).text() == f"{c * P * UM:,.1f}"
        assert errors.item(i, 4).text() == f"{max(PROB[r, c], 1 - PROB[r, c]):.3f}"
    assert widget.errors_label.text().startswith(f"{len(ERRORS)} misclassified patches; click")
    monkeypatch.setattr(errors_list, "MAX_ROWS", 5)  # a slide with more errors than listed
    widget.tabs.refresh_errors()
    assert errors.rowCount() == 5
    assert widget.errors_label.text().startswith(
        f"{len(ERRORS)} misclassified patches; the 5 most confident are listed"
    )


def test_clicking_a_row_outlines_exactly_that_patch(dock):
    viewer, widget, _ = dock
    widget.errors.selectRow(3)
    r, c = listed_cell(widget, 3)
    outline = widget.inspector.outline
    assert outline is not None and outline.visible and len(outline.data) == 1
    corners = np.asarray(outline.data[0])
    top_left = UM * (np.array([r * P, c * P]) - 0.5)
    bottom_right = UM * (np.array([(r + 1) * P, (c + 1) * P]) - 0.5)
    np.testing.assert_allclose(corners.min(axis=0), top_left)
    np.testing.assert_allclose(corners.max(axis=0), bottom_right)
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:], centre_of(r, c))
    assert widget.inspector.pinned == (widget.current.key, widget.errors.position_at(3))


def test_alt_right_and_alt_left_step_through_the_errors_from_the_canvas(dock, qtbot):
    viewer, widget, _ = dock
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    for expected in (0, 1, 2):
        qtbot.keyClick(canvas, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
        assert widget.errors.currentRow() == expected
        r, c = listed_cell(widget, expected)
        np.testing.assert_allclose(viewer_camera(viewer).center[-2:], centre_of(r, c))
    qtbot.keyClick(canvas, Qt.Key.Key_Left, Qt.KeyboardModifier.AltModifier)
    assert widget.errors.currentRow() == 1
    r, c = listed_cell(widget, 1)
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:], centre_of(r, c))
    assert widget.inspector.pinned[1] == widget.errors.position_at(1)


def test_export_errors_writes_um_positions_and_the_reviewed_flags(dock, qtbot, tmp_path):
    _viewer, widget, notices = dock
    errors, state = widget.errors, widget.current
    errors.item(2, errors_list.REVIEWED).setCheckState(Qt.CheckState.Checked)
    ticked = listed_cell(widget, 2)
    assert state.reviewed == {ticked}  # in the slide's state, for a session file
    widget.tabs.refresh_errors()  # a slider move refills the list: the tick stays
    i = next(i for i in range(errors.rowCount()) if listed_cell(widget, i) == ticked)
    assert errors.item(i, errors_list.REVIEWED).checkState() == Qt.CheckState.Checked
    page = widget.tabs.errors_page
    assert default_path(state).endswith("slide_errors.csv")
    path = tmp_path / "slide_errors.csv"
    page.export_button.export(path)
    qtbot.waitUntil(lambda: not page.export_button.job.busy(), timeout=60_000)
    assert notices["info"][-1] == f"Patchwise: saved {len(ERRORS)} errors to {path}"
    table = pd.read_csv(path)
    assert {(r, c) for r, c in zip(table["row"], table["col"], strict=True)} == ERRORS
    np.testing.assert_array_equal(table["y_um"], table["row"] * P * UM)
    np.testing.assert_array_equal(table["x_um"], table["col"] * P * UM)
    np.testing.assert_array_equal(table["y_px"], table["row"] * P)
    assert (table["height_um"] == P * UM).all() and (table["width_um"] == P * UM).all()
    np.testing.assert_array_equal(table["prob"], PROB[table["row"], table["col"]])
    expected = np.where(OUTCOMES[table["row"], table["col"]] == 1, "FP", "FN")
    np.testing.assert_array_equal(table["outcome"], expected)
    assert table["reviewed"].tolist() == [
        (r, c) == ticked for r, c in zip(table["row"], table["col"], strict=True)
    ]
    assert table["confidence"].is_monotonic_decreasing
    # the same errors as QuPath objects, classed FP / FN
    geojson = tmp_path / "slide_errors.geojson"
    page.export_button.export(geojson)
    qtbot.waitUntil(lambda: not page.export_button.job.busy(), timeout=60_000)
    assert notices["info"][-1] == f"Patchwise: saved {len(ERRORS)} errors to {geojson}"
    features = json.loads(geojson.read_text())["features"]
    names = Counter(f["properties"]["classification"]["name"] for f in features)
    assert names == Counter(table["outcome"])
    assert not notices["error"], notices["error"]
