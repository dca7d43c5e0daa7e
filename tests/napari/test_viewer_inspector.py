"""The patch inspector (hover, click to pin, outline) and the overlays' status in words.

The slide of tests/napari/test_widget.py with a pixel size of 0.5 µm, so positions read in µm.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt
from qtpy.QtWidgets import QApplication
from test_widget import LABEL, PROB, N, P, expected_groups, load_predictions, make_slide, wait_idle

from napari_patchwise._napari.canvas.navigation import viewer_camera
from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.dock.widget import PatchwiseWidget
from napari_patchwise.analysis.metrics import CORRECTNESS_NAMES
from napari_patchwise.groups import GROUP_NAMES

pytestmark = pytest.mark.gui
UM = 0.5  # µm per level-0 pixel


@pytest.fixture
def dock(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    image, mask = make_slide()
    viewer.add_image(image, name="slide", scale=(UM, UM), units=("µm", "µm"))
    viewer.add_labels(mask, name="slide mask", scale=(UM, UM), units=("µm", "µm"))
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    widget.configure(patch_size=P)
    widget.configure(mask="slide mask")
    widget.compute_button.click()
    wait_idle(qtbot, widget)
    load_predictions(qtbot, widget, tmp_path)
    assert not errors, errors
    return viewer, widget


def world(r: int, c: int, dy: int = 10, dx: int = 20) -> tuple[float, float]:
    return (UM * (r * P + dy), UM * (c * P + dx))


def click(qtbot, viewer, position) -> None:
    """A real left click on the canvas at a world position."""
    camera = viewer_camera(viewer)
    native = viewer.window._qt_viewer.canvas.native
    h, w = native.height(), native.width()
    y, x = (np.asarray(position) - np.asarray(camera.center[-2:])) * camera.zoom + (h / 2, w / 2)
    qtbot.mouseClick(native, Qt.MouseButton.LeftButton, pos=QPoint(int(x), int(y)))


def outcome(r: int, c: int, threshold: float) -> str:
    return CORRECTNESS_NAMES[2 * LABEL[r, c] + int(PROB[r, c] >= threshold)]


def test_hover_and_click_pin_a_patch_in_the_inspector_despite_status_updates(dock, qtbot):
    viewer, widget = dock
    inspector = widget.inspector
    threshold = widget.current.settings.threshold
    group = GROUP_NAMES[expected_groups(widget.current.settings.tau)[3, 6]]
    viewer.mouse_over_canvas = True
    viewer.cursor.position = world(3, 6)  # hover
    facts = inspector.facts
    assert facts["position"] == "y 96.0 µm, x 192.0 µm (level-0 px y 192, x 384)"
    assert facts["size"] == "32.0 µm x 32.0 µm (64 x 64 px)"
    assert facts["group"] == group and facts["probability"] == f"{PROB[3, 6]:.3f}"
    assert facts["outcome"].startswith(outcome(3, 6, threshold))
    assert "96.0 µm" in inspector.text.text() and group in inspector.text.text()

    viewer.reset_view()
    QApplication.processEvents()
    click(qtbot, viewer, world(5, 2, 32, 32))  # pin another patch with a real click
    qtbot.waitUntil(lambda: inspector.pinned is not None, timeout=2000)
    pinned_text = inspector.text.text()
    assert "y 160.0 µm, x 64.0 µm" in pinned_text and f"{PROB[5, 2]:.3f}" in pinned_text
    # one rectangle around the pinned patch, in µm
    (rect,) = inspector.outline.data
    np.testing.assert_allclose(rect.min(axis=0), UM * (np.array([5 * P, 2 * P]) - 0.5))
    np.testing.assert_allclose(rect.max(axis=0), UM * (np.array([6 * P, 3 * P]) - 0.5))
    # a second of hovering elsewhere and napari status updates leaves the pinned patch
    end = time.monotonic() + 1.0
    k = 0
    while time.monotonic() < end:
        viewer.cursor.position = world(k % N, (3 * k) % N)
        viewer.status = f"napari status {k}"
        qtbot.wait(20)
        k += 1
    assert inspector.text.text() == pinned_text
    assert (
        inspector.facts["group"] == GROUP_NAMES[expected_groups(widget.current.settings.tau)[5, 2]]
    )
    # a click off the grid unpins
    click(qtbot, viewer, (UM * (N * P + 200), UM * (N * P + 200)))
    qtbot.waitUntil(lambda: inspector.pinned is None, timeout=2000)
    assert not inspector.outline.visible


def test_overlay_status_says_words_not_encoded_values(dock):
    _viewer, widget = dock
    overlays = widget.current.overlays
    threshold = widget.current.settings.threshold
    position = world(3, 6)
    for layer in overlays.layers.values():
        layer.visible = True  # napari reads no value from a hidden layer
    correctness = overlays.layers["correctness"]
    status = correctness.get_status(position, world=True)
    assert status["value"] == f"{outcome(3, 6, threshold)} · prob {PROB[3, 6]:.3f}"
    assert status["coordinates"].endswith(status["value"])
    groups = overlays.layers["groups"].get_status(position, world=True)
    assert groups["value"] == GROUP_NAMES[expected_groups(widget.current.settings.tau)[3, 6]]
    labels = overlays.layers["labels"].get_status(position, world=True)
    assert labels["value"] == ("tumor" if LABEL[3, 6] else "non-tumor")
    probability = overlays.layers["probability"].get_status(position, world=True)
    assert probability["value"] == f"prob {PROB[3, 6]:.3f}"


def test_inspector_shows_both_runs_probabilities_in_a_comparison(dock):
    from types import SimpleNamespace

    from napari_patchwise._napari.canvas.inspector import patch_facts
    from napari_patchwise._napari.canvas.overlays import PatchRaster

    _, widget = dock
    state = widget.current
    table = state.data.table
    pos = int(np.flatnonzero((table["row"] == 3) & (table["col"] == 6))[0])
    # two runs on this slide, their patches in another order than the dock's table
    order = np.arange(len(table))[::-1]
    runs = table.iloc[order]
    compare = SimpleNamespace(
        key=state.key,
        names=("ERM", "GERNE"),
        raster=PatchRaster.from_table(runs),
        prob_a=np.linspace(0, 1, len(runs)),
        prob_b=np.linspace(1, 0, len(runs)),
    )
    at = int(np.flatnonzero(order == pos)[0])
    facts = patch_facts(state, pos, compare)
    assert facts["prob ERM"] == f"{compare.prob_a[at]:.3f}"
    assert facts["prob GERNE"] == f"{compare.prob_b[at]:.3f}"
    other = SimpleNamespace(**{**vars(compare), "key": "another slide"})
    assert "prob ERM" not in patch_facts(state, pos, other)
