"""Every screenshot of the docs (docs/images/viewer_*.png), from the demo's trained runs.

Run under Xvfb (``make screenshots``)::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/make_screenshots.py

Runs the demo's story (:mod:`napari_patchwise.training.demo_story`: a planted-bias cohort, ERM and
GERNE trained with the cpu-quick recipe; cached in ``--data``, so a second call only
takes the screenshots), opens the first test slide as ``patchwise demo`` does and saves
one window screenshot per view:

* ``viewer_compare.png`` — the Compare tab, ERM (A) against GERNE (B);
* with ERM's predictions: ``viewer_labels``, ``viewer_groups``, ``viewer_correctness``,
  ``viewer_probability``, ``viewer_histograms`` (a bin selected) and ``viewer_errors``
  (the most confident error chosen);
* ``viewer_inspector.png`` — at 1366 x 768: the pinned error in the inspector, outlined;
* ``viewer_attribute.png`` — the groups by another attribute (the border fraction);
* ``viewer_training.png`` — the Model tab after a short cpu-quick training on the cohort;
* ``viewer_retrain.png`` — the Debias tab: the ERM run's features (embedded once, cached
  in ``--data``), a DFR head retrained from the dock at the current tau, its predictions
  shown, the accuracy-against-threshold curve and the attribute ranking;
* ``viewer_cohort.png`` — in a new viewer, the Cohort tab over the demo's cohort with
  GERNE's test predictions, the first test slide open.
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

    from napari_patchwise._napari.dock.demo_view import show_story
    from napari_patchwise.cli.demo import build_demo_viewer
    from napari_patchwise.io.tables import read_table
    from napari_patchwise.training.demo_story import run_story

    story = run_story(args.data / "story")
    args.out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-patchwise")
    viewer.window._qt_window.resize(1560, 980)
    layers = build_demo_viewer(args.data, viewer, image=story.test_image, mask=story.test_mask)
    widget, _ = show_story(viewer, story, mask_layer=layers["mask"], images=args.data / "images")
    shots = Shots(viewer, widget, args.out)
    box = widget.compare_box
    box.filter_combo.setCurrentIndex(0)
    viewer.reset_view()
    shots.window("compare", tab=box, roomy=True)

    widget.set_predictions(read_table(story.predictions["erm"]), source="ERM")
    shots.settle()
    box.layer.visible = False
    for kind in ("labels", "groups", "correctness", "probability"):
        shots.overlay(kind)
    # Figure 1 with the bin of tumor patches with tissue ratio in [0.20, 0.25) selected:
    # small tumor tissue, where ERM's errors gather
    widget.highlight_bin(0, 4)
    shots.overlay("groups", also=("highlight",), scroll_to_bottom=True, name="histograms")
    widget.highlight_bin(-1, -1)
    widget.tabs.refresh_errors()
    widget.errors.selectRow(0)  # the most confident error, centred in the view
    shots.overlay("correctness", tab=widget.tabs.widget(1), name="errors", roomy=True)
    # a laptop screen: the whole slide, the pinned error outlined, the inspector, the legend
    viewer.window._qt_window.resize(1366, 768)
    shots.settle()
    viewer.reset_view()
    shots.overlay("correctness", tab=widget.tabs.widget(1), name="inspector")
    viewer.window._qt_window.resize(1560, 980)
    # groups by another attribute (docs/attributes.md): the border fraction, computed on demand
    widget.attribute_choice.choose("border_fraction")
    shots.settle()
    widget.configure(tau=0.5)
    viewer.reset_view()
    shots.overlay("groups", name="attribute")
    widget.attribute_choice.choose("tissue_ratio")
    widget.configure(tau=0.1)
    shots.settle()  # the regrouping done: the dock refuses new work while it is busy
    retrain_screenshot(widget, shots, story, args.data)
    training_screenshot(widget, shots, story, args.data / "dock_run")
    viewer.close()
    cohort_screenshot(args.out, story)


class Shots:
    """Window screenshots of one viewer with the Patchwise dock."""

    def __init__(self, viewer, widget, out: Path) -> None:
        self.viewer, self.widget, self.out = viewer, widget, out

    def settle(self) -> None:
        from napari._qt.dialogs.qt_notification import NapariQtNotification
        from qtpy.QtWidgets import QApplication

        from napari_patchwise._napari.dock.demo_view import wait_until_idle

        for _ in range(30):
            QApplication.processEvents()
        wait_until_idle(self.widget)
        # toasts (e.g. napari's PyQt5 deprecation notice) would cover the canvas
        for toast in self.viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
        QApplication.processEvents()

    def window(
        self, name: str, *, tab=None, scroll_to_bottom: bool = False, roomy: bool = False
    ) -> None:
        """Screenshot of the window; ``roomy``: the tabs get the slide pane's height."""
        if tab is not None:
            self.widget.tabs.setCurrentWidget(tab)
        tabs_room(self.widget, roomy)
        bar = self.widget.scroll.verticalScrollBar()
        self.settle()
        bar.setValue(bar.maximum() if scroll_to_bottom else 0)
        self.settle()
        path = self.out / f"viewer_{name}.png"
        self.viewer.screenshot(str(path), canvas_only=False, flash=False)
        print(path)

    def overlay(self, kind: str, *, also=(), name: str | None = None, **window) -> None:
        """The ``kind`` overlay chosen in "overlay shown" (its legend on the canvas), ``also``
        layers shown beside it, the mask hidden."""
        show_overlay(self.widget, kind, also)
        window.setdefault("tab", self.widget.tabs.widget(0))
        self.window(name or kind, **window)


#: Overlay layer key -> the dock's "overlay shown" choice.
CHOICE = {"correctness": "outcome", "groups": "groups", "labels": "labels",
          "probability": "probability", "comparison": "comparison"}  # fmt: skip


def show_overlay(widget, kind: str, also=()) -> None:
    """Choose ``kind`` as a user would (one overlay, its legend), then ``also``; the mask
    hidden and the overlay the active layer (its controls in the layer panel)."""
    widget.configure(overlay=CHOICE[kind])
    layers = widget.current.overlays.layers
    for key in also:
        layers[key].visible = True
    for layer in widget.viewer.layers:
        if layer.metadata.get("patchwise_mask"):
            layer.visible = False
    if kind in layers:
        widget.viewer.layers.selection.active = layers[kind]


def tabs_room(widget, roomy: bool) -> None:
    """Splitter sizes: by default as the dock opens; ``roomy`` folds the slide settings
    pane away (a user drags its handle) so a tab's table shows whole."""
    splitter = widget.splitter
    if not hasattr(splitter, "opening_sizes"):
        splitter.opening_sizes = splitter.sizes()
    sizes = list(splitter.opening_sizes)
    if roomy:
        setup = splitter.indexOf(widget.setup_scroll)
        sizes[-1] += sizes[setup]
        sizes[setup] = 0
    splitter.setSizes(sizes)


def retrain_screenshot(widget, shots: Shots, story, data: Path) -> None:
    """The Debias tab after "Retrain head" (DFR on the ERM run's features) and a ranking."""
    import shutil
    import time

    from qtpy.QtWidgets import QApplication

    from napari_patchwise.io.feature_store import read_spec
    from napari_patchwise.training.embed import EmbedSource, embed
    from napari_patchwise.training.runs import resolve_checkpoint

    store = data / "erm_features.zarr"
    erm = resolve_checkpoint(story.runs["erm"]).resolve()
    if store.exists() and read_spec(store)["source"].get("checkpoint") != str(erm):
        shutil.rmtree(store)  # embedded from an earlier ERM run
    if not store.exists():
        embed(story.manifest, store, EmbedSource(checkpoint=str(erm)), device="cpu")
    heads = data / "heads"
    shutil.rmtree(heads, ignore_errors=True)
    debias = widget.debias
    box = debias.retrain
    box.features_edit.setText(str(store))
    box.out_edit.setText(str(heads))
    box.method_combo.setCurrentText("dfr")
    widget.tabs.setCurrentWidget(debias)
    done: list = []
    box.retrained.connect(done.append)  # emitted once the new head's predictions are shown
    if box.retrain() is False:
        raise RuntimeError("Retrain head did not start (see the notification above)")
    deadline = time.monotonic() + 900

    def settle() -> None:
        while not done or box.busy() or widget.busy() or widget.compare_box.busy() or debias.busy():
            if time.monotonic() > deadline:
                raise RuntimeError("Retrain head did not finish within 15 minutes")
            QApplication.processEvents()
        shots.settle()

    settle()  # trained, predicted, shown; the Compare tab now holds ERM (A) against the head (B)
    debias.ranking.rank()
    settle()
    # the new head's outcome per patch (the comparison with ERM is in the Compare tab)
    show_overlay(widget, "correctness")
    widget.viewer.reset_view()
    widget.tabs.setCurrentWidget(debias)
    tabs_room(widget, True)
    shots.settle()
    bar = widget.scroll.verticalScrollBar()
    bar.setValue(min(bar.maximum(), widget.tabs.y()))  # the tab from its top
    shots.settle()
    path = shots.out / "viewer_retrain.png"
    widget.viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(path)


def training_screenshot(widget, shots: Shots, story, out: Path) -> None:
    """The Model tab during a short cpu-quick training on the demo's cohort."""
    import shutil

    from qtpy.QtWidgets import QApplication

    panel = widget.model_panel
    shutil.rmtree(out, ignore_errors=True)
    form = panel.form
    form.preset_combo.setCurrentText("cpu-quick")
    form.manifest_edit.setText(str(story.manifest))
    form.out_edit.setText(str(out))
    form.method_combo.setCurrentText("gerne")
    form.steps.setValue(120)
    form.eval_every.setValue(20)
    panel.start_training()
    while panel.busy():
        QApplication.processEvents()
    widget.viewer.reset_view()
    shots.window("training", tab=panel, scroll_to_bottom=True, roomy=True)


def cohort_screenshot(out: Path, story) -> None:
    """The Cohort tab over the demo's cohort, GERNE's test predictions, a test slide open."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_patchwise._napari.dock.widget import PatchwiseWidget

    viewer = napari.Viewer(title="napari-patchwise")
    viewer.window._qt_window.resize(1560, 980)
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise", area="right")
    widget.configure(patch_size=32)
    browser = widget.cohort_browser

    def settle() -> None:
        for _ in range(30):
            QApplication.processEvents()
        while browser.busy() or widget.busy():
            QApplication.processEvents()

    browser.open_manifest(story.manifest)
    settle()
    browser.load_predictions(story.runs["gerne"])
    settle()
    images = [entry.image.resolve() for entry in browser.entries]
    browser.open_slide(images.index(story.test_image.resolve()))
    settle()
    widget.tabs.setCurrentWidget(browser)
    tabs_room(widget, True)
    bar = widget.scroll.verticalScrollBar()
    bar.setValue(min(bar.maximum(), widget.tabs.y()))  # the tab from its top
    viewer.reset_view()
    settle()
    path = out / "viewer_cohort.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(path)
    viewer.close()


if __name__ == "__main__":
    main()
