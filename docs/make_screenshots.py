"""Screenshots of the viewer's views for the docs (docs/images/viewer_*.png).

Run under Xvfb::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_screenshots.py

Opens the synthetic sample slide (4096 px, through the plugin reader), docks the
Patchwise widget, computes 64 px patches, loads the demo's rule-based predictions and
saves one window screenshot per view: patch labels, tissue groups, correctness, tumor
probability, the Figure-1 histograms with a selected bin, the error list, and the Compare
tab (the demo rule against a rule without its tissue-size term). Then, in a new viewer,
the Cohort tab (``viewer_cohort.png``): a manifest of three synthetic 2048 px slides
(train, val, test), counted, with rule-based predictions for the val and test slides, the
test slide open (``--cohort-only`` makes just this one).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "images")
    parser.add_argument(
        "--data", type=Path, default=Path(tempfile.gettempdir()) / "patchwise-shots"
    )
    parser.add_argument("--cohort-only", action="store_true", help="only viewer_cohort.png")
    args = parser.parse_args()
    if args.cohort_only:
        cohort_screenshot(args.out, args.data)
        return

    import napari
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    from napari_patchwise._napari.demo_view import open_patchwise_dock, wait_until_idle
    from napari_patchwise.commands.demo import build_demo_viewer, prepare_demo_data

    image, mask = prepare_demo_data(args.data, size=4096, seed=0)
    viewer = napari.Viewer(title="napari-patchwise")
    viewer.window._qt_window.resize(1560, 980)
    layers = build_demo_viewer(args.data, viewer, image=image, mask=mask)
    widget = open_patchwise_dock(
        viewer, mask_layer=layers["mask"], patch_size=64, tau=0.1, wait=True
    )
    overlays = widget.current.overlays.layers
    args.out.mkdir(parents=True, exist_ok=True)

    def settle() -> None:
        for _ in range(30):
            QApplication.processEvents()
        wait_until_idle(widget)
        # toasts (e.g. napari's PyQt5 deprecation notice) would cover the canvas
        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
        QApplication.processEvents()

    def scroll_dock(to_bottom: bool) -> None:
        bar = widget.scroll.verticalScrollBar()
        bar.setValue(bar.maximum() if to_bottom else 0)

    def shot(name: str, show: str | None, *, tab: int = 0) -> None:
        for kind, layer in overlays.items():
            layer.visible = kind == show or (kind == "highlight" and show == "highlight")
        layers["mask"].visible = False
        widget.tabs.setCurrentIndex(tab)
        settle()
        path = args.out / f"viewer_{name}.png"
        viewer.screenshot(str(path), canvas_only=False, flash=False)
        print(path)

    viewer.reset_view()
    shot("labels", "labels")
    shot("groups", "groups")
    shot("correctness", "correctness")
    shot("probability", "probability")
    # Figure 1 with the bin of non-tumor patches with tissue ratio in [0.90, 0.95) selected
    widget.highlight_bin(2, 18)
    overlays["groups"].visible = True
    for kind, layer in overlays.items():
        layer.visible = kind in ("groups", "highlight")
    widget.tabs.setCurrentIndex(0)
    settle()
    scroll_dock(True)
    settle()
    viewer.screenshot(str(args.out / "viewer_histograms.png"), canvas_only=False, flash=False)
    widget.highlight_bin(-1, -1)
    # the error list, with its first (most confident) error chosen
    widget.tabs.refresh_errors()
    widget.tabs.setCurrentIndex(1)
    widget.errors.selectRow(0)
    scroll_dock(True)
    shot("errors", "correctness", tab=1)
    scroll_dock(False)
    compare_shot(viewer, widget, args, settle)
    viewer.close()
    cohort_screenshot(args.out, args.data)


def write_cohort(folder: Path) -> Path:
    """Three synthetic slides (train, val, test) and their manifest, written once."""
    from napari_patchwise.synth import SynthConfig, write_synthetic_slide

    folder.mkdir(parents=True, exist_ok=True)
    lines = ["image,mask,split,slide"]
    for i, split in enumerate(("train", "val", "test")):
        image, mask = folder / f"case{i + 1}.ome.tif", folder / f"case{i + 1}_mask.tif"
        if not image.exists() or not mask.exists():
            config = SynthConfig(size=(2048, 2048), seed=10 + i, spurious=0.8)
            write_synthetic_slide(image, mask, config, overwrite=True)
        lines.append(f"{image.name},{mask.name},{split},case{i + 1}")
    manifest = folder / "cohort.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def cohort_screenshot(out: Path, data: Path) -> None:
    """The Cohort tab with the test slide open and its correctness overlay."""
    import napari
    import pandas as pd
    from qtpy.QtWidgets import QApplication

    from napari_patchwise._napari.demo_view import shortcut_predictions
    from napari_patchwise._napari.widget import PatchwiseWidget

    manifest = write_cohort(data / "cohort")
    viewer = napari.Viewer(title="napari-patchwise")
    viewer.window._qt_window.resize(1560, 980)
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise", area="right")
    widget.form.patch_size.setValue(64)
    browser = widget.cohort_browser

    def settle() -> None:
        for _ in range(30):
            QApplication.processEvents()
        while browser.busy() or widget.busy():
            QApplication.processEvents()

    browser.open_manifest(manifest)
    settle()
    # rule-based predictions (the demo's transparent tissue-size-biased rule), val + test
    tables = [s.table for s in browser.summaries.values() if s.split != "train"]
    predictions = pd.concat([shortcut_predictions(t, seed=7) for t in tables])
    path = data / "cohort" / "rule_predictions.parquet"
    predictions.to_parquet(path)
    browser.load_predictions(path)
    settle()
    browser.open_slide(2)
    settle()
    widget.tabs.setCurrentWidget(browser)
    bar = widget.scroll.verticalScrollBar()
    bar.setValue(min(bar.maximum(), widget.tabs.y()))  # the tab from its top
    viewer.reset_view()
    settle()
    path = out / "viewer_cohort.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(path)
    viewer.close()


def tumor_only_predictions(table, seed: int = 1):
    """A rule without the demo rule's tissue-size term (run B of the comparison shot)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    tumor = np.nan_to_num(table["tumor_tissue_ratio"].to_numpy(dtype=float))
    logit = 6.0 * np.sqrt(tumor) - 1.2 + rng.normal(0, 0.7, len(table))
    return pd.DataFrame({"slide": table["slide"], "row": table["row"], "col": table["col"]}).assign(
        prob=1.0 / (1.0 + np.exp(-logit))
    )


def compare_shot(viewer, widget, args, settle) -> None:
    """The Compare tab: the demo's size-biased rule (A) against a tumor-only rule (B)."""
    from napari_patchwise._napari.demo_view import shortcut_predictions

    table = widget.current.data.table
    path_a, path_b = args.data / "rule_size_biased.parquet", args.data / "rule_tumor_only.parquet"
    shortcut_predictions(table, seed=0).to_parquet(path_a)
    tumor_only_predictions(table).to_parquet(path_b)
    box = widget.compare_box
    box.load_tables(path_a, path_b, names=("size rule", "tumor rule"))
    box.wait()
    settle()
    for layer in viewer.layers:
        layer.visible = layer is box.layer or not layer.metadata.get("patchwise_overlay")
        if layer.metadata.get("patchwise_mask"):
            layer.visible = False
    widget.tabs.setCurrentWidget(box)
    box.filter_combo.setCurrentIndex(0)
    viewer.reset_view()
    settle()
    widget.scroll.verticalScrollBar().setValue(widget.tabs.y())  # the tab from its top
    settle()
    path = args.out / "viewer_compare.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(path)


if __name__ == "__main__":
    main()
