"""Every layer of a slide in the slide's world coordinates; the dock's mask map.

The slide is 512 x 512 with a pixel size of 0.5 um (OME ``PhysicalSize``); its masks are
plain TIFFs without a pixel size, at full or half resolution. Full-resolution classes:
background where ``x < 128``, healthy tissue elsewhere, tumor in
``y in [128, 256), x in [256, 384)`` (rows 2-3, columns 4-5 of the 64 px grid). A half-
resolution mask is the full one at ``[::2, ::2]`` (every boundary is even, so it is exact).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
from napari.layers import Image, Labels

from napari_patchwise._napari.dock.form import MASK_MAP_PRESETS, mask_map_from_text
from napari_patchwise._napari.reader.layer_slide import (
    align_mask_layer,
    mask_transform,
    with_mask_layer,
)
from napari_patchwise._napari.reader.layers import layers_for_path, mask_file_layer, slide_layers
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.io import open_slide
from napari_patchwise.io.mask import MaskMap
from napari_patchwise.io.reader import load_image
from napari_patchwise.patches import grid

SIZE = 512
P = 64
PIXEL = 0.5
TUMOR_CELLS = {(2, 4), (2, 5), (3, 4), (3, 5)}


def full_mask() -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[:, 128:] = 1
    mask[128:256, 256:384] = 2
    return mask


def write_slide(folder, factor: int = 2, *, values01: bool = False):
    """The slide (OME, pixel size 0.5) and its plain-TIFF mask at ``1/factor`` resolution."""
    image = np.zeros((2, SIZE, SIZE), np.uint8)
    image[:, :, 128:] = 200  # tissue
    image[1, 128:256, 256:384] = 90  # the tumor looks different in channel B
    image_path = folder / "slide.ome.tif"
    tifffile.imwrite(
        image_path,
        image,
        ome=True,
        metadata={
            "axes": "CYX",
            "Channel": {"Name": ["A", "B"]},
            "PhysicalSizeX": PIXEL,
            "PhysicalSizeY": PIXEL,
        },
    )
    mask = full_mask()
    if values01:  # a tumor-free slide in 3-class semantics: 0 background, 1 healthy
        mask = np.minimum(mask, 1)
    mask_path = folder / "slide_mask.tif"
    tifffile.imwrite(mask_path, mask[::factor, ::factor])  # no pixel size
    return image_path, mask_path


def bounds(layer) -> np.ndarray:
    """World box covered by the layer's pixels (edges, not centres), last two axes."""
    centres = np.asarray(layer.extent.world)[:, -2:]
    half = np.asarray(layer.scale[-2:], dtype=float) / 2
    return np.stack([centres[0] - half, centres[1] + half])


def assert_same_world(layer, image) -> None:
    """Same world box as ``image``: pixel edges exactly, pixel centres within half a pixel.

    napari's ``extent.world`` spans the centres of the first and last pixels, so a layer
    with coarser pixels (a half-resolution mask, a patch overlay) has its centres half of
    its own pixel inside the image's box.
    """
    np.testing.assert_allclose(bounds(layer), bounds(image), atol=1e-9, err_msg=layer.name)
    half = np.asarray(layer.scale[-2:], dtype=float) / 2
    np.testing.assert_allclose(
        np.asarray(layer.extent.world)[:, -2:],
        np.asarray(image.extent.world)[:, -2:],
        atol=float(half.max()) + 1e-9,
        err_msg=layer.name,
    )


# -- geometry without a viewer ------------------------------------------------------------
@pytest.mark.parametrize("factor", [1, 2, 3])
def test_mask_transform_draws_mask_pixel_over_its_level0_pixels(factor):
    p, t = np.array([0.5, 0.25]), np.array([10.0, -3.0])
    scale, translate = mask_transform(factor, tuple(p), tuple(t))
    mask = Labels(np.zeros((7, 5), np.uint8), scale=scale, translate=translate)
    for i in range(5):
        for first in (factor * i, factor * i + factor - 1):  # level-0 pixels of mask pixel i
            # the centre and the (inner) edges of level-0 pixel ``first``, in world units
            for offset in (-0.499, 0.0, 0.499):
                world = t + p * (first + offset)
                np.testing.assert_array_equal(np.round(mask.world_to_data(world)), [i, i])


def test_align_mask_layer_takes_the_image_scale_times_the_factor():
    image = Image(np.zeros((SIZE, SIZE)), scale=(PIXEL, PIXEL))
    mask = Labels(full_mask()[::2, ::2])  # scale 1, as napari's own reader opens it
    assert align_mask_layer(mask, image)
    assert tuple(mask.scale) == (1.0, 1.0) and tuple(mask.translate) == (0.25, 0.25)
    assert_same_world(mask, image)
    wrong = Labels(np.zeros((300, 500), np.uint8))
    assert not align_mask_layer(wrong, image)  # not an integer fraction: left alone
    assert tuple(wrong.scale) == (1.0, 1.0)


def test_reader_places_a_plain_mask_over_the_slide_it_is_opened_for(tmp_path):
    image_path, mask_path = write_slide(tmp_path, factor=2)
    image_data = layers_for_path(image_path)
    assert [kw["scale"] for _, kw, _ in image_data] == [(PIXEL, PIXEL)] * 2
    image = Image(image_data[0][0], **{**image_data[0][1], "multiscale": True})
    _, kwargs, kind = mask_file_layer(mask_path, load_image(mask_path), images=[image])
    assert kind == "labels"
    assert kwargs["scale"] == (1.0, 1.0) and kwargs["translate"] == (0.25, 0.25)
    # opened on its own, the file's pixel size (none: 1) is all there is
    ((_, alone, _),) = layers_for_path(mask_path)
    assert alone["scale"] == (1.0, 1.0) and alone["translate"] == (0.0, 0.0)


def test_a_slide_opened_with_a_half_resolution_mask_draws_it_in_place(tmp_path):
    image_path, mask_path = write_slide(tmp_path, factor=2)
    slide = open_slide(image_path, mask=mask_path)
    *channels, (data, kwargs, kind) = slide_layers(slide)
    assert kind == "labels" and slide.mask_factor == 2
    image = Image(channels[0][0], **channels[0][1])
    mask = Labels(data, **{k: v for k, v in kwargs.items() if k != "colormap"})
    assert_same_world(mask, image)


# -- mask map: decided by the user, never guessed ------------------------------------------
def _slide_table(slide, mask_layer, mask_map):
    mapped = with_mask_layer(slide, mask_layer, mask_map=mask_map)
    return grid.patch_stats(mapped, grid.PatchGrid(P)).set_index(["row", "col"])


@pytest.mark.parametrize("source", ["labels", "file"])
def test_a_01_mask_is_tumor_free_unless_the_map_says_binary(tmp_path, source):
    image_path, mask_path = write_slide(tmp_path, factor=1, values01=True)
    slide = open_slide(image_path)
    if source == "labels":
        layer = Labels(np.minimum(full_mask(), 1), name="slide mask")
    else:  # a mask file opened by the Patchwise reader
        layer = Labels(np.minimum(full_mask(), 1), name="slide_mask")
        layer.metadata["patchwise_path"] = str(mask_path)

    default = _slide_table(slide, layer, None)
    assert int(default["n_tumor"].sum()) == 0 and int(default["label"].sum()) == 0
    assert int(default["n_healthy"].sum()) == SIZE * (SIZE - 128)
    assert _slide_table(slide, layer, MASK_MAP_PRESETS[0]).equals(default)

    binary = _slide_table(slide, layer, mask_map_from_text(MASK_MAP_PRESETS[1]))
    tissue_cols = binary.index.get_level_values("col") >= 2  # x >= 128
    np.testing.assert_array_equal(binary["label"].to_numpy(), tissue_cols.astype(np.int8))
    assert int(binary["n_tumor"].sum()) == SIZE * (SIZE - 128)


def test_a_mask_value_outside_the_map_is_one_clear_error():
    slide = open_slide_like()
    labels = full_mask()
    labels[0, 0] = 255
    with pytest.raises(PatchwiseError, match=r"values \[255\] that the mask map .* does not"):
        with_mask_layer(slide, Labels(labels, name="m"), mask_map=None)
    ok = with_mask_layer(
        slide, Labels(labels, name="m"), mask_map="0=background,1=healthy,2=tumor,255=background"
    )
    assert int(ok.mask[0, 0].compute()) == 0


def open_slide_like():
    import dask.array as da

    from napari_patchwise import Slide

    return Slide(levels=(da.zeros((1, SIZE, SIZE), dtype=np.uint8),), channel_names=("A",))


def test_mask_map_field_text():
    assert mask_map_from_text(MASK_MAP_PRESETS[0]) == MaskMap.default()
    assert mask_map_from_text(MASK_MAP_PRESETS[1]) == MaskMap.binary()
    assert mask_map_from_text("") == MaskMap.default()
    # a preset typed by name is that preset, not whatever its first word suggests
    assert dict(mask_map_from_text("binary255").classes) == {0: 0, 255: 2}
    assert mask_map_from_text("binary") == MaskMap.binary()
    assert dict(mask_map_from_text("0=background,255=tumor").classes) == {0: 0, 255: 2}
    with pytest.raises(PatchwiseError, match=r"^mask map '0=foo': cannot read mask map item"):
        mask_map_from_text("0=foo")


# -- in a viewer --------------------------------------------------------------------------
def _open_mask(viewer, arrival, image_path, mask_path, factor):
    """Bring slide and mask into the viewer the way ``arrival`` says; return the mask."""
    if arrival == "reader_first":  # both chosen in File > Open, the mask read first
        (mask,) = viewer.open(str(mask_path), plugin="napari-patchwise")
        viewer.open(str(image_path), plugin="napari-patchwise")
        return mask
    viewer.open(str(image_path), plugin="napari-patchwise")
    if arrival == "reader":
        (mask,) = viewer.open(str(mask_path), plugin="napari-patchwise")
        return mask
    # another reader (napari's own): scale 1, nothing known about the slide
    return viewer.add_labels(full_mask()[::factor, ::factor], name="slide_mask")


def _screen_rgb(viewer, world_points) -> np.ndarray:
    from napari_patchwise._napari.canvas.navigation import viewer_camera

    shot = viewer.screenshot(canvas_only=True, flash=False)
    h, w = shot.shape[:2]
    camera = viewer_camera(viewer)
    centre = np.asarray(camera.center[-2:])
    zoom = camera.zoom * w / viewer.canvas.size[1]  # screenshot vs logical pixels
    out = []
    for world in world_points:
        y, x = (np.asarray(world) - centre) * zoom + np.array([h, w]) / 2
        out.append(shot[int(round(y)), int(round(x)), :3])
    return np.array(out, dtype=int)


@pytest.mark.gui
@pytest.mark.parametrize(
    ("arrival", "factor"), [("reader", 2), ("reader_first", 1), ("labels", 2), ("labels", 1)]
)
def test_every_layer_of_a_slide_shares_the_image_world_extent(
    make_napari_viewer, qtbot, monkeypatch, tmp_path, arrival, factor
):
    from napari_patchwise._napari.canvas.navigation import viewer_camera
    from napari_patchwise._napari.dock import notify
    from napari_patchwise._napari.dock.widget import PatchwiseWidget

    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    image_path, mask_path = write_slide(tmp_path, factor=factor)
    viewer = make_napari_viewer(show=True)
    mask = _open_mask(viewer, arrival, image_path, mask_path, factor)
    image = viewer.layers["A"]
    assert tuple(image.scale) == (PIXEL, PIXEL)

    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    widget.configure(image="A")
    widget.configure(mask=mask.name)
    widget.configure(patch_size=P)
    widget.compute()
    qtbot.waitUntil(lambda: not widget.busy(), timeout=60_000)
    assert not errors, errors
    state = widget.current
    table = state.data.table.set_index(["row", "col"])
    tumor = {cell for cell, n in table["n_tumor"].items() if n}
    assert tumor == TUMOR_CELLS and set(table["n_tumor"][list(TUMOR_CELLS)]) == {P * P}

    # predictions (correctness + probability layers) and a histogram bin (highlight)
    prob = np.where(state.data.label == 1, 0.8, 0.3)
    rows, cols = state.data.raster.rows, state.data.raster.cols
    assert widget.set_predictions(
        pd.DataFrame({"slide": "slide", "row": rows, "col": cols, "prob": prob})
    )
    qtbot.waitUntil(lambda: not widget.busy(), timeout=60_000)
    b = next(b for b in range(20) if len(state.panels[0].members(b)))
    widget.highlight_bin(0, b)
    assert not errors, errors
    kinds = {layer.metadata.get("patchwise_overlay") for layer in viewer.layers}
    assert {"labels", "groups", "correctness", "probability", "highlight"} <= kinds

    assert len(viewer.layers) == 2 + 1 + 5
    for layer in viewer.layers:
        assert_same_world(layer, image)

    # each level-0 pixel's centre falls in the mask pixel and the patch cell that hold it
    groups = state.overlays.layers["groups"]
    for y in (0, 1, 2, 3, 130, 131, 510, 511):
        world = np.array([y, y]) * PIXEL
        np.testing.assert_array_equal(np.round(mask.world_to_data(world)), [y // factor] * 2)
        np.testing.assert_array_equal(np.round(groups.world_to_data(world)), [y // P] * 2)

    # an error chosen in the list centres the camera on its patch, in world units
    pos = int(np.flatnonzero(state.data.label == 1)[0])
    widget.go_to_patch(pos)
    y0, x0 = (int(state.data.table[c].iat[pos]) for c in ("y", "x"))
    centre = np.array([y0, x0]) * PIXEL + PIXEL * (P - 1) / 2
    np.testing.assert_allclose(viewer_camera(viewer).center[-2:], centre)

    # on screen: the tumor block's colour where the tumor is, healthy next to it
    for layer in viewer.layers:
        layer.visible = layer is mask
    mask.opacity = 1.0
    viewer.reset_view()
    qtbot.wait(50)
    inside = np.array([192.0, 320.0]) * PIXEL  # level-0 (192, 320): tumor
    beside = np.array([192.0, 200.0]) * PIXEL  # level-0 (192, 200): healthy
    colours = _screen_rgb(viewer, [inside, beside])
    expected = np.array([mask.get_color(2)[:3], mask.get_color(1)[:3]]) * 255
    np.testing.assert_allclose(colours, expected, atol=4)


@pytest.mark.gui
def test_build_demo_viewer_places_a_plain_mask_on_its_slide(make_napari_viewer, tmp_path):
    from napari_patchwise.cli.demo import build_demo_viewer

    image_path, mask_path = write_slide(tmp_path, factor=2)
    viewer = make_napari_viewer()
    layers = build_demo_viewer(tmp_path, viewer, image=image_path, mask=mask_path)
    for layer in viewer.layers:
        assert_same_world(layer, layers["channels"][0])


@pytest.mark.gui
def test_dock_mask_map_field_decides_the_classes(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    from napari_patchwise._napari.dock import notify
    from napari_patchwise._napari.dock.widget import PatchwiseWidget

    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    image_path, _ = write_slide(tmp_path, factor=1)
    viewer = make_napari_viewer()
    viewer.open(str(image_path), plugin="napari-patchwise")
    viewer.add_labels(np.minimum(full_mask(), 1), name="tumor-free mask")
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    assert widget.mask_map_field.currentText() == MASK_MAP_PRESETS[0]  # the default
    widget.configure(mask="tumor-free mask")
    widget.configure(patch_size=P)

    def compute() -> pd.DataFrame:
        widget.compute()
        qtbot.waitUntil(lambda: not widget.busy(), timeout=60_000)
        return widget.current.data.table

    table = compute()
    assert not errors and int(table["label"].sum()) == 0 and int(table["n_tumor"].sum()) == 0

    widget.configure(mask_map=MASK_MAP_PRESETS[1])
    table = compute()
    np.testing.assert_array_equal(table["label"].to_numpy(), (table["x"] >= 128).astype(int))

    widget.configure(mask_map="0=background,1=sick")
    widget.compute()  # a bad spec: one notification, nothing started, the table kept
    assert not widget.busy()
    assert errors == [
        "mask map '0=background,1=sick': cannot read mask map item '1=sick' — write it as "
        "VALUE=CLASS pairs, e.g. 0=background,1=healthy,2=tumor (or NAME=CLASS for "
        "annotation classes, e.g. Tumor=tumor,Stroma=healthy)."
    ]
    assert widget.current.data.table is table


@pytest.mark.gui
def test_view_command_aligns_the_mask_and_applies_mask_map(monkeypatch, tmp_path):
    """``patchwise view IMAGE --mask MASK --mask-map binary`` in this process."""
    from napari_patchwise.cli import view
    from napari_patchwise.cli.main import main

    image_path, mask_path = write_slide(tmp_path, factor=2, values01=True)
    seen = {}

    def fake_screenshot(viewer, path):
        widget = next(iter(viewer.window.dock_widgets.values()))
        seen["table"] = widget.current.data.table
        seen["field"] = widget.mask_map_field.currentText()
        image = viewer.layers["A"]
        for layer in viewer.layers:
            assert_same_world(layer, image)
        seen["layers"] = len(viewer.layers)
        return path

    monkeypatch.setattr(view, "save_screenshot", fake_screenshot)  # the view command's
    args = ["view", str(image_path), "--mask", str(mask_path), "--patch-size", str(P)]
    assert main([*args, "--mask-map", "binary", "--screenshot", str(tmp_path / "s.png")]) == 0
    assert seen["field"] == MASK_MAP_PRESETS[1] and seen["layers"] >= 4
    table = seen["table"]
    np.testing.assert_array_equal(table["label"].to_numpy(), (table["x"] >= 128).astype(int))


def test_view_rejects_a_bad_mask_map_before_napari_starts(tmp_path, capsys):
    from napari_patchwise.cli.main import main

    image_path, mask_path = write_slide(tmp_path)
    code = main(["view", str(image_path), "--mask", str(mask_path), "--mask-map", "1=tumour?"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read mask map item '1=tumour?'" in err[0]
