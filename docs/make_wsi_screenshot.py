"""Screenshot of a vendor slide in napari (docs/images/wsi_svs.png).

Run under Xvfb::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_wsi_screenshot.py

Writes a 3072 x 2048 Aperio-style SVS (JPEG tiles, 3 levels, label and macro) whose
tissue is scikit-image's immunohistochemistry sample (a real brightfield image, mirrored
into an irregular tissue piece on white glass), opens it through the Patchwise reader,
docks the Patchwise widget and saves the window.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def brightfield_slide(height: int = 2048, width: int = 3072) -> np.ndarray:
    """White glass with an irregular piece of IHC-stained tissue, ``(Y, X, 3)`` uint8."""
    from skimage.data import immunohistochemistry

    tile = immunohistochemistry()
    block = np.concatenate([tile, tile[::-1]], axis=0)
    block = np.concatenate([block, block[:, ::-1]], axis=1)  # 1024 px, seamless
    reps = (-(-height // 1024), -(-width // 1024), 1)
    tissue = np.tile(block, reps)[:height, :width]
    yy, xx = np.mgrid[0:height, 0:width]
    angle = np.arctan2(yy - height / 2, xx - width / 2)
    radius = np.hypot((yy - height / 2) / (0.42 * height), (xx - width / 2) / (0.42 * width))
    edge = 1 + 0.12 * np.sin(3 * angle) + 0.06 * np.cos(7 * angle)
    image = np.full((height, width, 3), 245, np.uint8)
    inside = radius < edge
    image[inside] = tissue[inside]
    return image


def write_svs(path: Path, image: np.ndarray) -> None:
    import tifffile

    h, w = image.shape[:2]
    meta = "|AppMag = 20|MPP = 0.5|ScannerType = docs"
    head = "Aperio Image Library v12.0.15"
    desc = f"{head}\n{w}x{h} [0,0 {w}x{h}] (256x256) JPEG/RGB Q=90{meta}"
    options = dict(photometric="rgb", metadata=None)
    with tifffile.TiffWriter(path) as tw:
        tiled = dict(
            tile=(256, 256),
            compression="jpeg",
            compressionargs={"level": 90},
            description=desc,
            **options,
        )
        tw.write(image, **tiled)
        tw.write(image[::16, ::16], description=f"{head}\nthumbnail{meta}", **options)
        for f in (4, 16):
            tw.write(np.ascontiguousarray(image[::f, ::f]), **tiled)
        label = np.full((200, 300, 3), 235, np.uint8)
        tw.write(label, subfiletype=1, description=f"{head}\nlabel 300x200", **options)
        macro = np.ascontiguousarray(image[::8, ::8])
        tw.write(macro, subfiletype=9, description=f"{head}\nmacro", **options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "images" / "wsi_svs.png")
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_patchwise._napari.dock.widget import PatchwiseWidget

    path = Path(tempfile.mkdtemp()) / "CMU-like.svs"
    write_svs(path, brightfield_slide())
    viewer = napari.Viewer(title="napari-patchwise: Aperio SVS through OpenSlide")
    viewer.window._qt_window.resize(1560, 980)
    viewer.open(str(path), plugin="napari-patchwise")
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    viewer.reset_view()
    for _ in range(60):
        QApplication.processEvents()
    slide = viewer.layers[0].metadata["patchwise_slide"]
    print(slide.vendor, slide.pixel_size, slide.objective_power, sorted(slide.associated))
    print("dock background:", widget.form.background.currentText())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=False, flash=False)
    viewer.close()


if __name__ == "__main__":
    main()
