"""Opening the dock fits the slide to the (narrower) canvas again, once."""

from __future__ import annotations

import numpy as np


def _visible_width(viewer) -> float:
    """World units across the canvas at the current zoom (napari's canvas size is (h, w))."""
    width_px = viewer.window._qt_viewer.canvas.size[1]
    return width_px / viewer.camera.zoom


def test_the_dock_refits_the_slide_when_it_opens(make_napari_viewer, qtbot):
    from napari_patchwise._napari.dock.widget import PatchwiseWidget

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    viewer.add_image(np.zeros((512, 2048), np.uint8), name="slide")
    qtbot.wait(50)
    viewer.reset_view()  # fitted to the whole window
    before = _visible_width(viewer)
    assert before >= 2048  # the slide's width fits
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    qtbot.waitUntil(lambda: _visible_width(viewer) >= 2048 and widget.isVisible(), timeout=3000)
    qtbot.wait(100)
    # the canvas is narrower now, and the whole slide's width is still in view
    assert viewer.window._qt_viewer.canvas.size[1] < 1366 - 450
    assert _visible_width(viewer) >= 2048
    # once: a user's zoom afterwards stays
    viewer.camera.zoom *= 3
    zoom = viewer.camera.zoom
    widget.hide()
    widget.show()
    qtbot.wait(100)
    assert viewer.camera.zoom == zoom
