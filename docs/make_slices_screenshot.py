"""Screenshot of discovered slices over a slide with planted pen marks
(docs/images/discovered_slices.png).

Run under Xvfb::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_slices_screenshot.py

Builds a small cohort whose only shortcut is pen marks (``patchwise synth --spurious 0
--artefact pen=0.9`` on the training and validation slides; the test slide has the pen
marks on the other class, ``pen=-0.9``, as a cohort from another site would), trains a
small CNN with ERM for 40 steps, embeds the test patches with its own checkpoint, runs
``patchwise discover`` on its test predictions (4 slices), then opens the test slide with
the Patchwise dock, computes its patch grid, loads the slices into the Debias tab's
"Discovered slices" box, clicks the top slice (its patches outlined in the highlight
layer, over the pen strokes) and saves the window. Everything is cached in ``--data``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PATCH = 32
LAYOUT = {"train": ([1, 2, 3], "pen=0.9"), "val": ([4], "pen=0.9"), "test": ([5], "pen=-0.9")}


def cli(*args) -> None:
    from napari_patchwise.cli.main import main

    if main([str(a) for a in args]) != 0:
        raise SystemExit(f"patchwise {' '.join(map(str, args))} failed")


def build(data: Path) -> tuple[Path, Path, Path]:
    """The cohort, the ERM run, its features and slices; (test slide, its mask, slices)."""
    data.mkdir(parents=True, exist_ok=True)
    lines = ["image,mask,split"]
    for split, (seeds, artefact) in LAYOUT.items():
        for seed in seeds:
            slide = data / f"s{seed}.ome.tif"
            if not slide.exists():
                cli("synth", "--size", 768, 768, "--out", slide, "--seed", seed,
                    "--spurious", "0", "--artefact", artefact,
                    "--artefact-patch-size", PATCH, "--quiet")  # fmt: skip
            lines.append(f"{slide.name},s{seed}_mask.tif,{split}")
    manifest = data / "cohort.csv"
    manifest.write_text("\n".join(lines) + "\n")
    run, store, slices = data / "erm", data / "erm-features.zarr", data / "slices.parquet"
    if not (run / "metrics.json").exists():
        cli("train", manifest, "--model", "smallcnn", "--patch-size", PATCH,
            "--batch-size", 32, "--steps", 40, "--eval-every", 20, "--seed", 0,
            "--num-threads", 1, "--quiet", "--out", run, "--overwrite")  # fmt: skip
    if not store.exists():
        cli("embed", manifest, "--checkpoint", run, "--out", store, "--quiet")
    if not slices.exists():
        cli("discover", run / "predictions.parquet", "--features", store, "--out", slices,
            "--slices", 4, "--permutations", 20)  # fmt: skip
    test = LAYOUT["test"][0][0]
    return data / f"s{test}.ome.tif", data / f"s{test}_mask.tif", slices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "images")
    parser.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "patchwise-shots" / "slices"
    )
    args = parser.parse_args()
    image, mask, slices = build(args.data)

    import napari
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    from napari_patchwise._napari.dock.demo_view import wait_until_idle
    from napari_patchwise._napari.dock.widget import PatchwiseWidget

    viewer = napari.Viewer(title="napari-patchwise")
    viewer.window._qt_window.resize(1560, 980)
    channels = viewer.open(str(image), plugin="napari-patchwise")
    (mask_layer,) = viewer.open(str(mask), plugin="napari-patchwise")
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise", area="right")
    widget.image_combo.setCurrentText(channels[0].name)
    widget.mask_combo.setCurrentText(mask_layer.name)
    widget.form.patch_size.setValue(PATCH)
    widget.compute()
    wait_until_idle(widget)
    mask_layer.visible = False
    box = widget.debias.slices
    if not box.load(slices):
        raise SystemExit(f"{slices}: the slices did not load")
    for layer in widget.current.overlays.layers.values():
        layer.visible = False
    box.show_slice(0)  # the top slice, outlined on the slide (its layer shown again)
    widget.current.overlays.layers["highlight"].opacity = 0.5  # the pen strokes show through
    widget.tabs.setCurrentWidget(widget.debias)
    viewer.reset_view()
    for _ in range(30):
        QApplication.processEvents()
    wait_until_idle(widget)
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # the reader's offer would cover the canvas
    widget.scroll.ensureWidgetVisible(box)  # the Debias tab's "Discovered slices" box
    for _ in range(30):
        QApplication.processEvents()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "discovered_slices.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(path)
    viewer.close()


if __name__ == "__main__":
    main()
