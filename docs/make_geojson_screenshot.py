"""Screenshot of QuPath annotations used as a slide's mask (docs/images/geojson_mask.png).

Run under Xvfb (``make screenshots`` runs it)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_geojson_screenshot.py

Takes the demo's first test slide (:mod:`napari_patchwise.training.demo_story`, cached in
``--data``), outlines its tumor and healthy regions as a pathologist would in QuPath
(polygons traced at 1/16 resolution: ``Tumor`` and ``Stroma`` annotations, holes kept),
writes them as a QuPath GeoJSON export, opens the slide and the export through the
Patchwise reader, picks the export as the dock's mask with the map
``Tumor=tumor,Stroma=healthy``, computes the patch grid and saves the window.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STEP = 16  # outline resolution: a hand-drawn annotation is far coarser than a pixel mask


def outlines(mask: np.ndarray, value_min: int) -> list[list[list[float]]]:
    """Polygon rings (level-0 x, y) around the pixels of ``mask >= value_min``."""
    from skimage.measure import find_contours

    small = np.pad(mask[::STEP, ::STEP] >= value_min, 1).astype(float)
    rings = []
    for contour in find_contours(small, 0.5):
        if len(contour) < 8:
            continue  # specks nobody would outline
        ring = [[(c - 1 + 0.5) * STEP, (r - 1 + 0.5) * STEP] for r, c in contour]
        rings.append([*ring, ring[0]])
    return rings


def qupath_export(mask: np.ndarray) -> dict:
    """A FeatureCollection as QuPath 0.4+ writes it: one annotation per outline."""
    features = []
    for name, value_min, color in (("Stroma", 1, [150, 200, 150]), ("Tumor", 2, [200, 0, 0])):
        for ring in outlines(mask, value_min):
            features.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Polygon", "coordinates": [ring]},
                    "properties": {
                        "objectType": "annotation",
                        "classification": {"name": name, "color": color},
                    },
                }
            )
    return {"type": "FeatureCollection", "features": features}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "images")
    parser.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "patchwise-shots"
    )
    args = parser.parse_args()

    import napari
    import tifffile
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    from napari_patchwise._napari.dock.demo_view import wait_until_idle
    from napari_patchwise._napari.dock.widget import PatchwiseWidget
    from napari_patchwise.training.demo_story import run_story

    story = run_story(args.data / "story")
    geojson = args.data / "test_annotations.geojson"
    geojson.write_text(json.dumps(qupath_export(tifffile.imread(story.test_mask))))
    viewer = napari.Viewer(title="napari-patchwise")
    viewer.window._qt_window.resize(1560, 980)
    channels = viewer.open(str(story.test_image), plugin="napari-patchwise")
    (annotations,) = viewer.open(str(geojson), plugin="napari-patchwise")
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise", area="right")
    widget.image_combo.setCurrentText(channels[0].name)
    widget.mask_combo.setCurrentText(annotations.name)
    widget.mask_map_field.setCurrentText("Tumor=tumor,Stroma=healthy")
    widget.form.patch_size.setValue(32)
    widget.compute()
    wait_until_idle(widget)
    widget.overlay_choice.choose("labels")  # the patch labels the annotations gave
    widget.current.overlays.layers["labels"].opacity = 0.45
    viewer.layers.move(viewer.layers.index(annotations), len(viewer.layers))  # on top
    annotations.opacity = 0.6
    annotations.contour = 4  # outlines, as drawn in QuPath
    viewer.reset_view()
    for _ in range(30):
        QApplication.processEvents()
    # toasts (the reader's offer) would cover the canvas
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    QApplication.processEvents()
    path = args.out / "geojson_mask.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(path)
    viewer.close()


if __name__ == "__main__":
    main()
