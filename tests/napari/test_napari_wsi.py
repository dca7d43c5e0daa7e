"""napari's File > Open on vendor slides (Aperio SVS, DICOM WSI folder) and the dock on them."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openslide")
pytest.importorskip("wsidicom")

import _wsi

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wsi_gui")
    level0 = _wsi.brightfield(600, 1000, seed=3)
    return {
        "svs": (folder / "slide.svs", _wsi.write_svs(folder / "slide.svs", level0)),
        "dicom": (folder / "case", _wsi.write_dicom_wsi(folder / "case", level0)),
    }


def test_file_open_reads_an_svs_as_rgb_pyramid_layers(make_napari_viewer, qtbot, files):
    from napari.settings import get_settings

    from napari_patchwise._napari.dock.widget import PatchwiseWidget

    path, levels = files["svs"]
    viewer = make_napari_viewer(show=True)
    viewer.open(str(path), plugin="napari-patchwise")
    # Accepting the offer makes Patchwise napari's choice for vendor slides (napari's
    # builtin reader also offers itself for *.svs), so File > Open does not ask.
    from napari_patchwise._napari.reader.layers import claim_reader_preferences

    assert "*.svs" not in get_settings().plugins.extension2reader
    claim_reader_preferences()
    assert get_settings().plugins.extension2reader.get("*.svs") == "napari-patchwise"
    viewer.layers.clear()
    viewer.window._qt_viewer._qt_open([str(path)], stack=False)
    layers = list(viewer.layers)
    assert [layer.name for layer in layers] == ["slide"]  # brightfield: one RGB layer
    (layer,) = layers
    assert layer.rgb and layer.multiscale
    assert [d.shape for d in layer.data] == [(600, 1000, 3), (300, 500, 3), (150, 250, 3)]
    assert tuple(layer.scale) == (0.25, 0.25)
    assert list(layer.contrast_limits) == [0.0, 255.0]
    np.testing.assert_array_equal(np.asarray(layer.data[2]), levels[2])
    slide = layers[0].metadata["patchwise_slide"]
    assert slide.vendor == "aperio" and slide.objective_power == 40.0

    viewer.reset_view()
    qtbot.wait(200)  # let napari load the visible tiles
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
    white = (shot >= 245).all(axis=-1).mean()  # glass, drawn white
    assert 0.2 < white < 0.9, white

    # The dock starts brightfield slides on the bright background.
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    assert widget.current is not None and widget.current.slide.path == path
    assert widget.form.background.currentText() == "bright"


def test_file_open_reads_a_dicom_wsi_folder(make_napari_viewer, files):
    folder, levels = files["dicom"]
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="napari-patchwise")
    assert [layer.name for layer in viewer.layers] == ["case"] and viewer.layers[0].rgb
    viewer.layers.clear()
    # Once the user accepted the offer to be the reader for these files (napari would
    # otherwise ask which reader to use), File > Open on one instance of the slide
    # opens the whole DICOM WSI folder.
    from napari_patchwise._napari.reader.layers import claim_reader_preferences

    claim_reader_preferences()
    instance = sorted(folder.glob("*.dcm"))[0]
    viewer.window._qt_viewer._qt_open([str(instance)], stack=False)
    assert [layer.name for layer in viewer.layers] == ["case"]
    layer = viewer.layers["case"]
    assert [d.shape for d in layer.data] == [(600, 1000, 3), (300, 500, 3)]
    assert tuple(layer.scale) == pytest.approx((0.5, 0.5))
    np.testing.assert_array_equal(np.asarray(layer.data[1]), levels[1])
    assert viewer.layers[0].metadata["patchwise_slide"].name == "case"
