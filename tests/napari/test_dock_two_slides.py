"""Two slides open in the dock, each with its own mask (real napari viewer, under Xvfb).

Two synthetic slides of the same pixel size (so either mask fits either slide) but
different physical pixel sizes (0.5 and 0.25 µm) are written with tifffile as OME-TIFF,
their masks as plain TIFFs, and opened through the plugin's reader in the order a user
would: slide a, its mask, slide b, its mask. Choosing slide b must count it with b's mask
(group counts equal the core's ``patchwise stats`` on b with b's mask), a mask of the
other slide is refused (or warned about when picked by hand), and every layer of a slide
reads micrometres, as napari's scale bar does.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.dock.widget import PatchwiseWidget
from napari_patchwise.groups import group_counts
from napari_patchwise.io import open_slide
from napari_patchwise.patches.grid import PatchGrid, patch_stats
from napari_patchwise.synthetic.slides import SynthConfig, synth_slide

pytestmark = pytest.mark.gui

SIDE = 512
PATCH = 32  # not the dock's default (64): it must carry over from slide a to slide b
TAU = 0.1
PIXEL = {"a": 0.5, "b": 0.25}
SEED = {"a": 3, "b": 8}
CHANNELS = ["CARS", "TPEF", "SHG"]


def write_slide(folder, name: str):
    """``name.ome.tif`` (3 channels, PhysicalSizeX/Y in µm) and ``name_mask.tif``."""
    image, mask = synth_slide(SynthConfig(size=(SIDE, SIDE), seed=SEED[name], spurious=0.7))
    image_path, mask_path = folder / f"{name}.ome.tif", folder / f"{name}_mask.tif"
    size = PIXEL[name]
    metadata = {
        "axes": "CYX",
        "PhysicalSizeX": size,
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": size,
        "PhysicalSizeYUnit": "µm",
        "Channel": {"Name": CHANNELS},
    }
    tifffile.imwrite(image_path, np.asarray(image), ome=True, metadata=metadata)
    tifffile.imwrite(mask_path, np.asarray(mask))
    return image_path, mask_path


def core_counts(image_path, mask_path) -> np.ndarray:
    """What ``patchwise stats IMAGE --mask MASK --patch-size 32`` counts, per group."""
    slide = open_slide(image_path, mask=mask_path, pyramid=False)
    table = patch_stats(slide, PatchGrid(PATCH))
    return group_counts(table["label"], table["tissue_ratio"], TAU)


def dock_counts(widget) -> np.ndarray:
    """The group counts the dock's table shows (the "n" column)."""
    return np.array([int(row[1].text().replace(",", "")) for row in widget.stats.cells])


@pytest.fixture
def two_slides(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    """Slides a and b with their masks opened by the reader, the dock on slide a."""
    errors: list[str] = []
    warnings: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    monkeypatch.setattr(notify, "show_warning", warnings.append, raising=False)
    paths = {name: write_slide(tmp_path, name) for name in ("a", "b")}
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    for name in ("a", "b"):
        for path in paths[name]:
            viewer.open(str(path), plugin="napari-patchwise")
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    return viewer, widget, paths, errors, warnings


def compute(qtbot, widget) -> None:
    widget.compute()
    qtbot.waitUntil(lambda: not widget.busy(), timeout=60_000)


def choose(widget, entry: str) -> None:
    """Choose slide ``entry`` (by one of its channel layers where slides are not listed)."""
    index = widget.image_combo.findText(entry)
    if index < 0:  # a picker of channel layers: b's layers are named "SHG [1]" etc.
        index = widget.image_combo.findText("SHG" if entry == "a" else "SHG [1]")
    widget.image_combo.setCurrentIndex(index)


def test_the_picker_names_slides_and_selecting_a_layer_chooses_its_slide(two_slides):
    viewer, widget, _paths, _errors, _warnings = two_slides
    combo = widget.image_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["a", "b"]
    viewer.layers.selection.active = viewer.layers["TPEF [1]"]  # a channel of slide b
    assert combo.currentText() == "b" and widget.current.slide.name == "b"
    combo.setCurrentText("CARS")  # a layer's name (scripts) chooses its slide
    assert combo.currentText() == "a" and widget.current.slide.name == "a"


def test_the_second_slide_is_counted_with_its_own_mask(two_slides, qtbot):
    _viewer, widget, paths, errors, warnings = two_slides
    choose(widget, "a")
    assert widget.mask_combo.currentText() == "a_mask"
    widget.configure(patch_size=PATCH)
    compute(qtbot, widget)
    assert not errors, errors
    np.testing.assert_array_equal(dock_counts(widget), core_counts(*paths["a"]))

    choose(widget, "b")
    assert widget.current.slide.name == "b"
    assert widget.mask_combo.currentText() == "b_mask"  # the mask follows the slide
    assert widget.form.patch_size.value() == PATCH  # the grid settings carry over
    compute(qtbot, widget)
    assert not errors, errors
    expected = core_counts(*paths["b"])
    assert not np.array_equal(expected, core_counts(paths["b"][0], paths["a"][1]))
    np.testing.assert_array_equal(dock_counts(widget), expected)
    # b's overlays lie over b (pixel size 0.25), and back on a its own numbers return
    assert tuple(widget.current.overlays.layers["groups"].scale) == (PATCH * 0.25,) * 2
    choose(widget, "a")
    assert widget.mask_combo.currentText() == "a_mask"
    np.testing.assert_array_equal(dock_counts(widget), core_counts(*paths["a"]))
    assert not warnings, warnings


def test_a_mask_of_another_slide_is_refused_or_warned(two_slides, qtbot):
    _viewer, widget, _paths, errors, warnings = two_slides
    choose(widget, "b")
    widget.configure(mask="a_mask")  # a script (or a stale choice) picks a's mask
    compute(qtbot, widget)
    assert len(errors) == 1, errors
    assert "'a_mask' belongs to slide 'a'" in errors[0] and errors[0].startswith("b:")
    assert widget.current.data is None  # nothing counted with the wrong mask
    # picked by hand, it is the user's decision: a warning, then it is b's mask
    widget.mask_combo.activated.emit(widget.mask_combo.currentIndex())
    assert len(warnings) == 1 and "opened for slide 'a'" in warnings[0], warnings
    compute(qtbot, widget)
    assert len(errors) == 1, errors
    assert widget.current.data is not None


def test_every_layer_of_a_slide_reads_micrometres(two_slides, qtbot):
    viewer, widget, _paths, errors, _warnings = two_slides
    choose(widget, "b")
    compute(qtbot, widget)
    assert not errors, errors
    for layer in viewer.layers:  # channels, masks and overlays of both slides
        assert tuple(str(u) for u in layer.units) == ("micrometer", "micrometer"), layer.name
    assert tuple(viewer.layers["SHG [1]"].scale) == (0.25, 0.25)
    assert tuple(viewer.layers["b_mask"].scale) == (0.25, 0.25)
    # napari's scale bar reads micrometres
    overlay = viewer.canvas.overlays.scale_bar
    overlay.visible = True
    viewer.reset_view()
    qtbot.wait(50)
    canvas = viewer.window._qt_viewer.canvas
    text = canvas._viewer_overlay_to_visual[overlay][0].node.text.text
    assert text.endswith("µm") or text.endswith("mm"), text
    assert "pixel" not in text


def test_a_slide_without_a_pixel_size_stays_in_pixels(make_napari_viewer, tmp_path):
    image, _mask = synth_slide(SynthConfig(size=(256, 256), seed=1))
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.moveaxis(np.asarray(image), 0, -1))  # RGB-like, no pixel size
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin="napari-patchwise")
    assert layers and all(tuple(str(u) for u in la.units) == ("pixel", "pixel") for la in layers)
