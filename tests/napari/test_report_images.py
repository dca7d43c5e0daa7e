"""The report's overlay images: cropped to the slide (no canvas bars), with the legend.

``patchwise demo`` saves the correctness and comparison overlays of the test slide for
its HTML report; they used to be the whole canvas (black bars where it is wider than
the slide) with no legend. Checked on test_widget's hand-built slide in a window much
wider than tall.
"""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread
from test_widget import load_predictions, setup  # noqa: F401 - the fixture

from napari_patchwise import palette
from napari_patchwise._napari.dock.demo_view import _overlay_shot
from napari_patchwise.reporting.figures import legend_layout

pytestmark = pytest.mark.gui


def test_overlay_images_are_cropped_to_the_slide_and_carry_their_legend(setup, qtbot, tmp_path):  # noqa: F811
    viewer, widget, _ = setup
    load_predictions(qtbot, widget, tmp_path)
    path = _overlay_shot(viewer, widget, "correctness", tmp_path / "erm.png")
    image = np.round(imread(str(path))[..., :3] * 255).astype(int)
    entries = widget.overlay_choice.legend.entries
    assert [name for name, _ in entries] == ["TN", "FP", "FN", "TP"]
    _, strip_px = legend_layout(entries, image.shape[1])
    top, strip = image[:-strip_px], image[-strip_px:]
    height, width = top.shape[:2]
    assert abs(height - width) <= 2  # the square slide, not the 1500-px-wide canvas
    black_columns = (top < 12).all(axis=(0, 2))
    assert not black_columns.any(), np.nonzero(black_columns)[0][:10]
    assert not (top < 12).all(axis=(1, 2)).any()  # nor black rows
    for colour in palette.CORRECTNESS_COLORS:  # TN FP FN TP boxes in the strip
        rgb = np.array(palette.rgb255(colour))
        assert (np.abs(strip - rgb).max(axis=2) <= 2).any(), colour
    # the canvas legend is back on screen after the shot
    legend = [k for k in viewer.canvas.overlays if k.startswith("patchwise_legend_")]
    assert len(legend) == 4 and all(viewer.canvas.overlays[k].visible for k in legend)
