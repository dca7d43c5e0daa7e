"""Screenshots of the viewer's views for the docs (docs/images/viewer_*.png).

Run under Xvfb::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_screenshots.py

Opens the synthetic sample slide (4096 px, through the plugin reader), docks the
Patchwise widget, computes 64 px patches, loads the demo's rule-based predictions and
saves one window screenshot per view: patch labels, tissue groups, correctness, tumor
probability, the Figure-1 histograms with a selected bin, the error list, and the groups
by another attribute (the border fraction).
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
    args = parser.parse_args()

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
    # groups by another attribute (docs/attributes.md): the border fraction, computed on demand
    widget.attribute_choice.choose("border_fraction")
    settle()
    widget.tau_slider.setValue(0.5)
    viewer.reset_view()
    shot("attribute", "groups")
    viewer.close()


if __name__ == "__main__":
    main()
