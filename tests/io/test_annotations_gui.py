"""QuPath annotations in napari: File > Open of a GeoJSON over its slide, the dock's mask,
and Shapes saved as GeoJSON / label TIFF by the npe2 writers (real ``napari.Viewer``).

The slide is 640 x 560 pixels of 0.5 um; the annotations are ``test_annotations``'
QuPath export scaled by 8 (Tumor with a hole, a Stroma MultiPolygon, Other overlapping
the tumor, an unclassified region).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from napari.layers import Labels
from skimage.draw import polygon2mask
from test_annotations import QUPATH_MAP, qupath_expected, qupath_export

from napari_patchwise.io import read_mask
from napari_patchwise.slide import HEALTHY, TUMOR

PIXEL = 0.5
SCALE = 8
SHAPE = (80 * SCALE, 70 * SCALE)


def write_slide(folder):
    image = np.full((2, *SHAPE), 40, np.uint8)
    image[1] = np.kron(qupath_expected(), np.ones((SCALE, SCALE), np.uint8)) * 60 + 40
    path = folder / "slide.ome.tif"
    tifffile.imwrite(
        path,
        image,
        ome=True,
        metadata={"axes": "CYX", "Channel": {"Name": ["A", "B"]},
                  "PhysicalSizeX": PIXEL, "PhysicalSizeY": PIXEL},
    )  # fmt: skip
    export = qupath_export()
    for feature in export["features"]:
        geometry = feature["geometry"]
        geometry["coordinates"] = (np.asarray(geometry["coordinates"]) * SCALE).tolist()
    geojson = folder / "slide.geojson"
    geojson.write_text(json.dumps(export))
    return path, geojson


def name_raster() -> np.ndarray:
    """Labels File > Open shows: 1 Tumor, 2 Stroma, 3 Other, 4 unclassified (max wins)."""
    m = np.zeros((80, 70), np.uint8)
    m[20:50, 10:40] = 1
    m[30:40, 20:30] = 0
    m[0:10, 0:20] = m[50:70, 50:60] = 2
    m[40:60, 30:50] = 3
    m[60:80, 0:10] = 4
    return np.kron(m, np.ones((SCALE, SCALE), np.uint8))


@pytest.mark.gui
def test_open_a_geojson_over_its_slide_and_use_it_as_the_dock_mask(
    make_napari_viewer, qtbot, monkeypatch, tmp_path
):
    from napari_patchwise._napari.dock import notify
    from napari_patchwise._napari.dock.widget import PatchwiseWidget

    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    image_path, geojson = write_slide(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(image_path), plugin="napari-patchwise")
    (layer,) = viewer.open(str(geojson), plugin="napari-patchwise")
    assert isinstance(layer, Labels) and layer.multiscale and len(layer.data) == 3
    assert tuple(layer.scale) == (PIXEL, PIXEL) and layer.data[0].shape == SHAPE
    np.testing.assert_array_equal(np.asarray(layer.data[0][:, :]), name_raster())
    np.testing.assert_array_equal(np.asarray(layer.data[1][:, :]), name_raster()[::2, ::2])
    assert layer.metadata["patchwise_classes"] == ["Tumor", "Stroma", "Other", "unclassified"]
    assert list(layer.features["class"]) == ["", "Tumor", "Stroma", "Other", "unclassified"]

    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    widget.configure(image="A")
    widget.configure(mask=layer.name)
    widget.configure(mask_map=QUPATH_MAP)
    widget.configure(patch_size=10 * SCALE)
    widget.compute()
    qtbot.waitUntil(lambda: not widget.busy(), timeout=60_000)
    assert not errors, errors
    table = widget.current.data.table
    assert int(table["n_tumor"].sum()) == 800 * SCALE**2
    assert int(table["n_tissue"].sum()) == 1500 * SCALE**2

    widget.configure(mask_map="Tumor=tumor")  # Stroma, Other... unmapped
    widget.compute()
    qtbot.waitUntil(lambda: not widget.busy(), timeout=60_000)
    assert len(errors) == 1 and "classes Other (1), Stroma (1), unclassified (1)" in errors[0]


@pytest.mark.gui
def test_a_geojson_without_a_slide_is_one_notification(make_napari_viewer, monkeypatch, tmp_path):
    import napari.utils.notifications as notifications

    shown: list[str] = []
    monkeypatch.setattr(notifications, "show_error", shown.append)
    _, geojson = write_slide(tmp_path)
    viewer = make_napari_viewer()
    assert viewer.open(str(geojson), plugin="napari-patchwise") == []
    assert shown == [
        f"{geojson}: GeoJSON annotations carry no image size; open their slide first — open "
        "the slide, then the .geojson (or patchwise view SLIDE --mask FILE)."
    ]


@pytest.mark.gui
def test_shapes_saved_as_geojson_and_label_tiff_are_the_mask_they_show(
    make_napari_viewer, tmp_path
):
    from napari.plugins.io import save_layers

    image_path, _ = write_slide(tmp_path)
    viewer = make_napari_viewer()
    viewer.open(str(image_path), plugin="napari-patchwise")
    polygon = np.array([[100.3, 50.2], [180.7, 400.1], [420.4, 300.9], [300.2, 80.6]])
    rectangle = np.array([[399.5, 199.5], [399.5, 329.5], [599.5, 329.5], [599.5, 199.5]])
    ellipse = np.array([[20.5, 300.5], [20.5, 500.5], [120.5, 500.5], [120.5, 300.5]])
    shapes = viewer.add_shapes(
        [polygon, rectangle, ellipse, np.array([[10, 10], [50, 60]])],
        shape_type=["polygon", "rectangle", "ellipse", "line"],
        features={"class": ["Tumor", "Healthy", "Tumor", "Tumor"]},
        edge_color="red",
        scale=(PIXEL, PIXEL),
        name="drawn",
    )
    written = save_layers(str(tmp_path / "drawn.geojson"), [shapes], plugin="napari-patchwise")
    assert written == [str(tmp_path / "drawn.geojson")]
    collection = json.loads((tmp_path / "drawn.geojson").read_text())
    assert len(collection["features"]) == 3  # a line has no area
    props = collection["features"][0]["properties"]
    assert props == {"objectType": "annotation",
                     "classification": {"name": "Tumor", "color": [255, 0, 0]}}  # fmt: skip

    mask = read_mask(tmp_path / "drawn.geojson", SHAPE)[0].compute()  # names: tumor, healthy
    # napari centres data pixel (r, c) at (r, c): skimage samples exactly those points
    expected = np.zeros(SHAPE, np.uint8)
    expected[polygon2mask(SHAPE, rectangle)] = HEALTHY
    expected[polygon2mask(SHAPE, polygon)] = TUMOR
    ellipse_pixels = (mask == TUMOR) & ~polygon2mask(SHAPE, polygon)
    np.testing.assert_array_equal(np.where(ellipse_pixels, 0, mask), expected)
    assert expected[400:600, 200:330].all() and (expected == HEALTHY).sum() > 0
    assert abs(ellipse_pixels.sum() / (np.pi * 50 * 100) - 1) < 0.01

    written = save_layers(str(tmp_path / "drawn.ome.tif"), [shapes], plugin="napari-patchwise")
    assert written == [str(tmp_path / "drawn.ome.tif")]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "drawn.ome.tif"), mask)


@pytest.mark.gui
def test_view_command_takes_a_geojson_mask_and_its_class_map(
    make_napari_viewer, monkeypatch, tmp_path
):
    """``patchwise view SLIDE --mask annotations.geojson --mask-map NAMES --patch-size N``."""
    import napari
    from napari_patchwise.cli import view
    from napari_patchwise.cli.main import main

    # the fixture's viewer: with this command building its own, the next test that did
    # (test_world_alignment's view test) failed in napari.Viewer() with "Command
    # 'napari-patchwise.get_reader' already registered" (fixture viewers ran in between)
    monkeypatch.setattr(napari, "Viewer", lambda **kwargs: make_napari_viewer(**kwargs))

    image_path, geojson = write_slide(tmp_path)
    seen = {}

    def fake_screenshot(viewer, path):
        widget = next(iter(viewer.window.dock_widgets.values()))
        seen["table"] = widget.current.data.table
        seen["mask"] = viewer.layers[widget.mask_combo.currentText()]
        return path

    monkeypatch.setattr(view, "save_screenshot", fake_screenshot)  # the view command's
    argv = ["view", str(image_path), "--mask", str(geojson), "--mask-map", QUPATH_MAP,
            "--patch-size", str(10 * SCALE), "--screenshot", str(tmp_path / "s.png")]  # fmt: skip
    assert main(argv) == 0
    assert seen["mask"].metadata["patchwise_path"] == str(geojson)
    assert int(seen["table"]["n_tumor"].sum()) == 800 * SCALE**2


def test_a_slide_opened_with_a_geojson_shows_the_pyramid_filled_from_its_polygons(tmp_path):
    from napari_patchwise._napari.reader.layers import slide_mask_layer
    from napari_patchwise.io import open_slide
    from napari_patchwise.io.annotations import mask_pyramid

    image_path, geojson = write_slide(tmp_path)
    slide = open_slide(image_path, mask=geojson, mask_map=QUPATH_MAP)
    levels, kwargs, kind = slide_mask_layer(slide)
    assert kind == "labels" and kwargs["multiscale"] and len(levels) == 3
    # the reader hands napari the levels filled from the polygons, not a coarsened level 0
    assert [lvl.name for lvl in levels] == [lvl[None][0].name for lvl in mask_pyramid(slide.mask)]
    full = np.kron(qupath_expected(), np.ones((SCALE, SCALE), np.uint8))
    np.testing.assert_array_equal(np.asarray(levels[2]), full[::4, ::4])
