"""Open the Patchwise dock on the demo's test slide with both runs compared
(``patchwise demo``, ``docs/make_screenshots.py``).

The predictions are those of the demo's two trained runs (ERM and GERNE,
:mod:`napari_patchwise.training.demo_story`); nothing here makes predictions up.
"""

from __future__ import annotations

from ...groups import DEFAULT_TAU


def wait_until_idle(widget, timeout_s: float = 300.0) -> None:
    """Process Qt events until the widget's background work is applied (scripts only)."""
    import time

    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while widget.model.jobs.any_running() and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)


def open_patchwise_dock(
    viewer, *, image_layer=None, mask_layer=None, patch_size: int, tau: float = DEFAULT_TAU
):
    """Dock the Patchwise widget on the chosen layers and compute the patch grid.

    Returns once the grid is shown (no event loop needs to run: scripts, ``--no-gui``).

    Returns
    -------
    PatchwiseWidget
    """
    from .widget import PatchwiseWidget

    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise", area="right")
    widget.configure(image=image_layer, mask=mask_layer, patch_size=patch_size, tau=tau)
    widget.compute()
    wait_until_idle(widget)
    viewer.reset_view()  # the dock took part of the window: fit the slide again
    return widget


def show_story(viewer, story, *, mask_layer, images) -> dict:
    """Dock the widget on the demo's test slide, load both runs, screenshot each.

    ``story`` is a :class:`napari_patchwise.training.demo_story.Story`. The grid is cut as the
    runs were trained (their patch size, tau); each run's predictions are loaded in
    turn and the correctness overlay is saved as ``images/<run>.png`` (canvas only);
    then the two runs are compared in the dock's Compare tab (ERM as run A, GERNE as run
    B) and its overlay saved as ``images/compare.png``. The viewer is left there: GERNE's
    predictions loaded, the comparison overlay shown, the Compare tab open.

    Returns
    -------
    (PatchwiseWidget, dict)
        The dock and the screenshots, ``{"erm": PNG, "gerne": PNG, "compare": PNG}``.
    """
    from pathlib import Path

    from ...io.tables import read_table
    from ...training.runs import read_run_config

    config = read_run_config(story.runs["erm"])
    widget = open_patchwise_dock(
        viewer, mask_layer=mask_layer, patch_size=config.patch.patch_size, tau=config.tau
    )
    images = Path(images)
    images.mkdir(parents=True, exist_ok=True)
    shots = {}
    mask_layer.visible = False  # the overlays say more than the mask here
    for name, path in story.predictions.items():
        widget.set_predictions(read_table(path), source=f"{name} ({path.name})")
        wait_until_idle(widget)
        shots[name] = _overlay_shot(viewer, widget, "correctness", images / f"{name}.png")
    box = widget.compare_box
    box.load_tables(story.predictions["erm"], story.predictions["gerne"], names=("ERM", "GERNE"))
    box.wait()
    wait_until_idle(widget)
    shots["compare"] = _overlay_shot(viewer, widget, None, images / "compare.png")
    box.layer.visible = True
    widget.tabs.setCurrentWidget(box)
    bar = widget.scroll.verticalScrollBar()
    bar.setValue(min(bar.maximum(), widget.tabs.y()))  # the Compare tab from its top
    return widget, shots


#: The longest side of a report image, in pixels.
SHOT_PX = 1000


def _overlay_shot(viewer, widget, kind: str | None, path):
    """Show only the ``kind`` overlay of the current slide (None: the comparison) and save
    the slide's extent, cropped (no canvas bars beside it), with the overlay's legend in
    a strip below (:func:`napari_patchwise.reporting.figures.overlay_with_legend`)."""
    from qtpy.QtWidgets import QApplication

    from ...reporting.figures import overlay_with_legend
    from ..canvas.overlay_choice import LEGEND_PREFIX

    widget.configure(overlay="outcome" if kind == "correctness" else "comparison")
    entries = widget.overlay_choice.legend.entries
    for _ in range(10):
        QApplication.processEvents()
    legend = [o for k, o in viewer.canvas.overlays.items() if k.startswith(LEGEND_PREFIX)]
    for overlay in legend:  # drawn below the image instead of over its corner
        overlay.visible = False
    try:
        height, width = widget.current.slide.shape[1:]
        image = viewer.export_figure(scale_factor=min(1.0, SHOT_PX / max(height, width)),
                                     flash=False)  # fmt: skip
    finally:
        for overlay in legend:
            overlay.visible = True
    overlay_with_legend(image[..., :3], entries).savefig(str(path), dpi=100)
    return path
