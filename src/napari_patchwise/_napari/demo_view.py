"""Open the Patchwise dock on a slide with its overlays ready (``patchwise demo``, screenshots).

The demo has no trained model to hand, so its predictions come from a transparent rule
that behaves like an ERM model with the tissue-size shortcut the paper describes: it
follows the tumor content but is pulled towards "tumor" by large tissue and towards
"non-tumor" by small tissue, so the minority groups (tumor/small, non-tumor/large)
collect the errors. They are labelled as rule-based wherever they are shown.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEMO_PATCH_SIZE = 64


def shortcut_predictions(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Rule-based tumor probabilities (``slide, row, col, prob``) with a tissue-size bias."""
    rng = np.random.default_rng(seed)
    tumor = np.nan_to_num(table["tumor_tissue_ratio"].to_numpy(dtype=float))
    tissue = table["tissue_ratio"].to_numpy(dtype=float)
    logit = 6.0 * np.sqrt(tumor) + 3.0 * (tissue - 0.45) - 1.2 + rng.normal(0, 0.7, len(table))
    prob = 1.0 / (1.0 + np.exp(-logit))
    return pd.DataFrame(
        {"slide": table["slide"], "row": table["row"], "col": table["col"], "prob": prob}
    )


def wait_until_idle(widget, timeout_s: float = 300.0) -> None:
    """Process Qt events until the widget's background work is applied (scripts only)."""
    import time

    from qtpy.QtWidgets import QApplication

    deadline = time.monotonic() + timeout_s
    while widget.busy() and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)


def open_patchwise_dock(
    viewer,
    *,
    image_layer=None,
    mask_layer=None,
    patch_size: int = DEMO_PATCH_SIZE,
    tau: float = 0.1,
    wait: bool = False,
    predictions: bool = True,
):
    """Dock the Patchwise widget, compute the grid, then load rule-based predictions.

    With ``predictions=False`` the grid is computed and nothing is loaded.

    With ``wait=True`` (no event loop running: screenshots, ``--no-gui``) this returns
    once everything is shown; otherwise each step starts when the previous one has been
    applied, while napari runs.

    Returns
    -------
    PatchwiseWidget
    """
    from .widget import PatchwiseWidget

    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise", area="right")
    if image_layer is not None:
        widget.image_combo.setCurrentText(image_layer.name)
    if mask_layer is not None:
        widget.mask_combo.setCurrentText(mask_layer.name)
    widget.form.patch_size.setValue(patch_size)
    widget.tau_slider.setValue(tau)

    def load_predictions() -> None:
        state = widget.current
        if predictions and state is not None and state.data is not None:
            widget.set_predictions(
                shortcut_predictions(state.data.table), source="demo rule-based predictions"
            )

    if wait:
        widget.compute()
        wait_until_idle(widget)
        load_predictions()
        wait_until_idle(widget)
        viewer.reset_view()  # the dock took part of the window: fit the slide again
        return widget

    def after_compute() -> None:
        widget.applied.disconnect(after_compute)
        widget.applied.connect(after_predictions)
        load_predictions()

    def after_predictions() -> None:
        widget.applied.disconnect(after_predictions)
        viewer.reset_view()

    widget.applied.connect(after_compute)
    widget.compute()
    return widget


def show_story(viewer, story, *, mask_layer, images) -> dict:
    """Dock the widget on the demo's test slide, load both runs, screenshot each.

    ``story`` is a :class:`napari_patchwise.demo_story.Story`. The grid is cut as the
    runs were trained (their patch size, tau); each run's predictions are loaded in
    turn and the correctness overlay is saved as ``images/<run>.png`` (canvas only);
    the viewer is left with GERNE's predictions loaded.

    Returns
    -------
    dict
        ``{"erm": PNG, "gerne": PNG}`` (``"compare"`` too once the comparison is shown).
    """
    from pathlib import Path

    from ..io.tables import read_table
    from ..runs import read_run_config

    config = read_run_config(story.runs["erm"])
    widget = open_patchwise_dock(
        viewer,
        mask_layer=mask_layer,
        patch_size=config.patch.patch_size,
        tau=config.tau,
        wait=True,
        predictions=False,
    )
    images = Path(images)
    images.mkdir(parents=True, exist_ok=True)
    shots = {}
    mask_layer.visible = False  # the overlays say more than the mask here
    for name, path in story.predictions.items():
        widget.set_predictions(read_table(path), source=f"{name} ({path.name})")
        wait_until_idle(widget)
        shots[name] = _overlay_shot(viewer, widget, "correctness", images / f"{name}.png")
    return shots


def _overlay_shot(viewer, widget, kind: str, path):
    """Show only the ``kind`` overlay of the current slide and save the canvas to ``path``."""
    from qtpy.QtWidgets import QApplication

    for name, layer in widget.current.overlays.layers.items():
        layer.visible = name == kind
    for _ in range(10):
        QApplication.processEvents()
    viewer.screenshot(str(path), canvas_only=True, flash=False)
    return path
