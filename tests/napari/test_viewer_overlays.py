"""One patch overlay at a time (the dock's selector) with its legend drawn on the canvas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile
from test_widget import (
    load_predictions,
    make_slide,
    rgb,
    setup,  # noqa: F401 - the fixture
)

from napari_patchwise._napari.canvas.overlay_choice import CHOICES, legend_entries
from napari_patchwise._napari.canvas.overlays import CORRECTNESS_COLORS, GROUP_COLORS

pytestmark = pytest.mark.gui
PATCH_OVERLAYS = ("labels", "groups", "correctness", "probability", "comparison")


@pytest.fixture
def shown(setup, qtbot, tmp_path):  # noqa: F811 - test_widget's fixture
    """tests/napari/test_widget.py's slide with its grid and predictions."""
    viewer, widget, _ = setup
    load_predictions(qtbot, widget, tmp_path)
    return viewer, widget


def visible_overlays(viewer) -> list[str]:
    return [
        layer.metadata["patchwise_overlay"]
        for layer in viewer.layers
        if layer.visible and layer.metadata.get("patchwise_overlay") in PATCH_OVERLAYS
    ]


def has_colour(shot: np.ndarray, hex_color: str, *, atol: int = 2, at_least: int = 30) -> bool:
    close = np.abs(shot[..., :3].astype(int) - rgb(hex_color)).max(axis=-1) <= atol
    return int(close.sum()) >= at_least


def test_choosing_an_overlay_leaves_exactly_that_one_visible(shown, qtbot):
    viewer, widget = shown
    choice = widget.overlay_choice
    assert choice.choice() == "outcome"  # predictions loaded: the outcome overlay
    for name, kind in CHOICES.items():
        if name == "comparison":
            continue  # no second run here (tests/napari/test_widget_compare.py has one)
        choice.choose(name)
        assert visible_overlays(viewer) == ([] if kind is None else [kind]), name
        assert choice.legend.entries == legend_entries(name)
    choice.choose("none")
    assert not [k for k in viewer.canvas.overlays if k.startswith("patchwise_legend")]


def test_legend_is_drawn_on_the_canvas(shown, qtbot):
    viewer, widget = shown
    widget.overlay_choice.choose("outcome")
    for layer in viewer.layers:  # only the legend can show these colours exactly
        layer.visible = False
    qtbot.wait(50)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    for colour in CORRECTNESS_COLORS:
        assert has_colour(shot, colour), colour


def test_view_screenshot_shows_the_legend(tmp_path):
    """The real command in its own process (a second in-process `view` in the test
    process would register napari's plugin actions twice)."""
    image, mask = make_slide()
    noise = np.random.default_rng(0).integers(0, 30, image.shape)
    tifffile.imwrite(tmp_path / "slide.tif", (image * 200 + noise).astype(np.uint8))
    tifffile.imwrite(tmp_path / "slide_mask.tif", mask)
    png = tmp_path / "shot.png"
    args = ["view", str(tmp_path / "slide.tif"), "--mask", str(tmp_path / "slide_mask.tif")]
    done = subprocess.run(
        [sys.executable, "-m", "napari_patchwise.cli", *args, "--patch-size", "64",
         "--screenshot", str(png)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert str(png) in done.stdout
    shot = tifffile.imread(png) if png.suffix == ".tif" else _read_png(png)
    for colour in GROUP_COLORS:
        assert has_colour(shot, colour), colour


def _read_png(path) -> np.ndarray:
    from imageio.v3 import imread

    return np.asarray(imread(path))


def test_empty_glass_patches_are_transparent_on_every_overlay(shown):
    from test_widget import K

    _, widget = shown
    layers = widget.current.overlays.layers
    glass = K == 0  # patch (0, 0) has no tissue
    assert glass.sum() == 1
    for kind in ("groups", "correctness", "probability"):
        data = np.asarray(layers[kind].data)
        assert np.isnan(data[glass]).all() and not np.isnan(data[~glass]).any(), kind
    labels = np.asarray(layers["labels"].data)
    assert (labels[glass] == 0).all() and (labels[~glass] > 0).all()
