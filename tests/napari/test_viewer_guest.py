"""Patchwise as a guest in napari: no change to the user's settings without their action,
and the mask the counts come from opens unarmed (not selected, not editable, pan/zoom)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_patchwise._napari.reader import layers as reader_module

pytestmark = pytest.mark.gui


def _write(tmp_path):
    image = np.zeros((256, 256), np.uint16)
    image[64:192, 64:192] = np.arange(128 * 128).reshape(128, 128) % 997 + 100
    mask = np.zeros((256, 256), np.uint8)
    mask[64:192, 64:192] = 1
    mask[100:120, 100:120] = 2
    tifffile.imwrite(tmp_path / "A.tif", image)
    tifffile.imwrite(tmp_path / "A_mask.tif", mask)
    return tmp_path / "A.tif", tmp_path / "A_mask.tif"


@pytest.fixture
def offers(monkeypatch):
    """The notifications' offers, recorded (and 'not offered yet in this session')."""
    from napari.utils.notifications import notification_manager

    monkeypatch.setattr(reader_module, "_offered", False)
    seen = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


def test_opening_files_leaves_napari_reader_preferences_unchanged(
    make_napari_viewer, qtbot, tmp_path, offers
):
    from napari.settings import get_settings

    slide, mask = _write(tmp_path)
    viewer = make_napari_viewer(show=True)
    before = dict(get_settings().plugins.extension2reader)
    viewer.open(str(slide), plugin="napari-patchwise")
    viewer.open(str(mask), plugin="napari-patchwise")
    qtbot.wait(50)
    assert dict(get_settings().plugins.extension2reader) == before
    # offered once, in words, with an action; the second read does not ask again
    asked = [n for n in offers if reader_module.OFFER_ACTION in [a[0] for a in n.actions]]
    assert len(asked) == 1 and "Use Patchwise for these files" in asked[0].message
    # only the user's action writes the preference (and never over their own choice)
    get_settings().plugins.extension2reader = {**before, "*.tiff": "builtins"}
    (_, action), *_ = asked[0].actions
    action(None)
    prefs = get_settings().plugins.extension2reader
    assert prefs["*.tif"] == "napari-patchwise" and prefs["*.tiff"] == "builtins"


def test_opened_mask_is_not_armed_for_painting(make_napari_viewer, qtbot, tmp_path, offers):
    slide, mask = _write(tmp_path)
    viewer = make_napari_viewer(show=True)
    viewer.open(str(slide), plugin="napari-patchwise")
    (labels,) = viewer.open(str(mask), plugin="napari-patchwise")
    qtbot.waitUntil(lambda: viewer.layers.selection.active is not labels, timeout=2000)
    assert type(labels).__name__ == "Labels"
    assert labels not in viewer.layers.selection
    assert viewer.layers.selection.active is viewer.layers[0]  # the slide
    assert labels.mode == "pan_zoom" and not labels.editable
    # the layer controls grey out the paint tools of a non-editable layer
    controls = viewer.window._qt_viewer.controls.widgets[labels]
    assert not controls.paint_button.isEnabled() and not controls.fill_button.isEnabled()
