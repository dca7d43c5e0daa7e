"""The dock's overview minimap: the lowest pyramid level, the view's rectangle, click to go.

The slide of tests/napari/test_widget.py (512 x 512 px at 0.5 µm: 256 µm a side) as a
three-level pyramid; its thumbnail is the 128 x 128 lowest level, so one thumbnail
pixel is 2 µm and the world extent (pixel edges) is [-0.25, 255.75) µm on both axes.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt
from qtpy.QtWidgets import QApplication
from test_widget import make_slide

from napari_patchwise._napari.canvas.navigation import viewer_camera
from napari_patchwise._napari.dock.widget import PatchwiseWidget

pytestmark = pytest.mark.gui
UM = 0.5
SIDE = 512 * UM  # µm
EDGE = -0.5 * UM  # world coordinate of level 0's first pixel edge
THUMB = 128  # px of the lowest level
reads: list[int] = []


def _count(block):
    reads.append(block.size)
    return block


@pytest.fixture
def dock(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    image, _mask = make_slide()
    level0 = da.from_array(image, chunks=128).map_blocks(_count, dtype=image.dtype)
    levels = [level0, image[::2, ::2].copy(), image[::4, ::4].copy()]
    viewer.add_image(
        levels, name="slide", multiscale=True, scale=(UM, UM), units=("µm", "µm"),
        contrast_limits=(0.0, 1.0),
    )  # fmt: skip
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    QApplication.processEvents()
    return viewer, widget, image


def placement(minimap) -> tuple[float, float, float]:
    """(left, top, widget px per thumbnail px) of a square thumbnail, computed here."""
    w, h = minimap.width(), minimap.height()
    f = min(w, h) / THUMB
    return (w - THUMB * f) / 2, (h - THUMB * f) / 2, f


def test_thumbnail_is_the_lowest_level_never_level_0(dock):
    _viewer, widget, image = dock
    minimap = widget.minimap
    reads.clear()
    minimap._layers = ()  # read the thumbnail again
    minimap.refresh()
    assert reads == []  # level 0 never computed
    assert minimap.image.shape == (THUMB, THUMB, 3)
    # gray colormap, contrast limits 0..1: the thumbnail is the lowest level itself
    np.testing.assert_allclose(minimap.image[..., 0], image[::4, ::4], atol=1e-6)
    assert minimap.extent == pytest.approx((EDGE, EDGE, EDGE + SIDE, EDGE + SIDE))


def test_rectangle_follows_zoom_and_pan(dock):
    viewer, widget, _image = dock
    minimap = widget.minimap
    camera = viewer_camera(viewer)
    h, w = (float(v) for v in viewer.canvas.size)
    left, top, f = placement(minimap)
    for center, zoom in (((64.0, 192.0), 4.0), ((128.0, 40.0), 8.0), ((30.0, 30.0), 2.5)):
        camera.center = center
        camera.zoom = zoom
        QApplication.processEvents()
        y0, x0 = center[0] - h / 2 / zoom, center[1] - w / 2 / zoom
        y1, x1 = center[0] + h / 2 / zoom, center[1] + w / 2 / zoom
        assert minimap.visible_world() == pytest.approx((y0, x0, y1, x1))
        rect = minimap.view_rect()
        # world µm -> thumbnail px (2 µm each) -> widget px
        assert rect.left() == pytest.approx(left + (x0 - EDGE) / SIDE * THUMB * f)
        assert rect.top() == pytest.approx(top + (y0 - EDGE) / SIDE * THUMB * f)
        assert rect.width() == pytest.approx(w / zoom / SIDE * THUMB * f)
        assert rect.height() == pytest.approx(h / zoom / SIDE * THUMB * f)
    label = widget.overview.label.text()
    assert label.startswith("view: y ") and "µm" in label


def test_click_centres_the_camera_there(dock, qtbot):
    viewer, widget, _image = dock
    minimap = widget.minimap
    camera = viewer_camera(viewer)
    camera.zoom = 6.0
    left, top, f = placement(minimap)
    for u, v in ((96, 32), (10, 120), (64, 64)):  # thumbnail px (column, row)
        pos = QPoint(round(left + (u + 0.5) * f), round(top + (v + 0.5) * f))
        qtbot.mouseClick(minimap, Qt.MouseButton.LeftButton, pos=pos)
        expected = (EDGE + (v + 0.5) * SIDE / THUMB, EDGE + (u + 0.5) * SIDE / THUMB)
        # within one thumbnail pixel (2 µm); the zoom stays
        np.testing.assert_allclose(camera.center[-2:], expected, atol=SIDE / THUMB)
        assert camera.zoom == pytest.approx(6.0)
