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
):
    """Dock the Patchwise widget, compute the grid, then load rule-based predictions.

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
        if state is not None and state.data is not None:
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
