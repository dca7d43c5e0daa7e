"""The dock's attribute choice on a real napari viewer: groups by any per-patch attribute.

The slide of ``test_widget``: 64 px patches, patch ``(r, c)`` holds ``k = 8 r + c`` rows of
tissue (value 1.0, background 0.0) from its top edge. Its intensity std is then
``sqrt(p (1 - p))`` with ``p = k / 64``, which is *not* monotone in the tissue ratio, so
grouping by it gives groups that tau never could.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from qtpy.QtWidgets import QLabel
from test_widget import (
    LABEL,
    PROB,
    N,
    P,
    assert_colours,
    load_predictions,
    make_slide,
    overlay_colours,
    setup,  # noqa: F401 - the fixture
    wait_idle,
)

from napari_patchwise._napari.canvas.overlays import GROUP_COLORS, step_contrast_limits
from napari_patchwise.analysis.metrics import evaluate
from napari_patchwise.groups import GROUP_NAMES, group_ids
from napari_patchwise.patches.attributes import border_codes

pytestmark = pytest.mark.gui


def patch_std() -> np.ndarray:
    image, _ = make_slide()
    return image.reshape(N, P, N, P).std(axis=(1, 3), dtype=np.float64)


def choose(qtbot, widget, attribute: str) -> None:
    combo = widget.tuning.attribute_combo
    index = combo.findText(attribute)
    assert index >= 0, [combo.itemText(i) for i in range(combo.count())]
    combo.setCurrentIndex(index)
    combo.activated.emit(index)  # what a user's pick sends
    wait_idle(qtbot, widget)


def shown_counts(widget) -> list[int]:
    return [int(widget.stats.cells[g][1].text().replace(",", "")) for g in range(4)]


def test_choosing_an_attribute_regroups_overlay_counts_and_histograms(setup, qtbot, tmp_path):  # noqa: F811
    viewer, widget, errors = setup
    load_predictions(qtbot, widget, tmp_path)
    state = widget.current
    channel = state.slide.channel_names[0]
    column = f"std_{channel}"
    choose(qtbot, widget, column)
    assert not errors, errors
    std = patch_std()
    np.testing.assert_allclose(state.data.table[column].to_numpy().reshape(N, N), std, atol=1e-12)
    # the threshold slider now speaks the attribute's units and starts at its median
    assert (
        widget.tuning.layout_.labelForField(widget.tau_slider).text() == "attribute threshold (>=)"
    )
    assert state.settings.tau == pytest.approx(np.median(std), abs=1e-3)
    for t in (0.3, 0.45):
        widget.tau_slider.setValue(t)
        t = widget.tau_slider.value()  # what the slider holds after rounding to its step
        ids = 2 * LABEL + (std >= t)
        assert shown_counts(widget) == np.bincount(ids.ravel(), minlength=4).tolist()
        assert [widget.stats.cells[g][0].text() for g in range(4)] == [
            "non-tumor/low", "non-tumor/high", "tumor/low", "tumor/high",
        ]  # fmt: skip
        layer = state.overlays.layers["groups"]
        assert_colours(overlay_colours(viewer, layer), ids, GROUP_COLORS)
        ev = evaluate(LABEL.ravel(), std.ravel(), prob=PROB.ravel(), tau=t)
        np.testing.assert_array_equal(
            state.data.evaluator.evaluate(t, 0.5).group_correct, ev.group_correct
        )
    legend = {label.text() for label in widget.stats.legend_groups.findChildren(QLabel)}
    assert {"non-tumor/high", "tumor/low"} <= legend and "tumor/small" not in legend
    # the histograms have no tau marker for another attribute
    assert math.isnan(widget.histograms._tau_line.get_xdata()[0])
    # back to tissue_ratio: tau's own value and the tau groups again
    choose(qtbot, widget, "tissue_ratio")
    assert state.settings.tau == pytest.approx(0.1)
    ratio = state.data.table["tissue_ratio"].to_numpy()
    expected = group_ids(LABEL.ravel(), ratio, widget.tau_slider.value())
    assert shown_counts(widget) == np.bincount(expected, minlength=4).tolist()
    assert [widget.stats.cells[g][0].text() for g in range(4)] == list(GROUP_NAMES)
    assert widget.histograms._tau_line.get_xdata()[0] == pytest.approx(0.1)


def test_border_fraction_is_computed_on_demand_and_groups_exactly(setup, qtbot):  # noqa: F811
    viewer, widget, errors = setup
    choose(qtbot, widget, "border_fraction")
    assert not errors, errors
    state = widget.current
    _, mask = make_slide()
    near = border_codes(mask, 16)  # 2: tissue within the default 16 px of background
    tissue = (near > 0).reshape(N, P, N, P).sum(axis=(1, 3))
    close = (near == 2).reshape(N, P, N, P).sum(axis=(1, 3))
    with np.errstate(invalid="ignore"):
        expected = np.where(tissue > 0, close / np.maximum(tissue, 1), np.nan)
    got = state.data.table["border_fraction"].to_numpy().reshape(N, N)
    np.testing.assert_array_equal(got, expected)
    widget.tau_slider.setValue(0.5)
    t = widget.tau_slider.value()
    ids = 2 * LABEL + (np.nan_to_num(expected, nan=-1.0) >= t)
    assert shown_counts(widget) == np.bincount(ids.ravel(), minlength=4).tolist()
    assert_colours(overlay_colours(viewer, state.overlays.layers["groups"]), ids, GROUP_COLORS)
    # the Model tab trains with the same groups
    from napari_patchwise._napari.dock.attribute_choice import group_options

    assert group_options(widget.model) == {
        "tau": 0.1,
        "attribute": "border_fraction",
        "attribute_threshold": t,
    }
    assert "border_fraction >= " in widget.model_panel.form.tau_label.text()
    # chosen from code (the Debias tab's ranking, scripts), not the combo box: the Model
    # tab follows too (it read the combo box, which lags until the regrouping is applied)
    widget.attribute_choice.choose("tissue_ratio")
    wait_idle(qtbot, widget)
    assert group_options(widget.model) == {"tau": widget.tau_slider.value()}
    assert widget.model_panel.form.tau_label.text().endswith("(the dock's tau slider)")
    widget.attribute_choice.choose("border_fraction")
    wait_idle(qtbot, widget)
    assert group_options(widget.model)["attribute"] == "border_fraction"
    # a table without the chosen column falls back to tissue_ratio and its tau, everywhere
    table = state.data.table.drop(columns=["border_fraction"])
    assert widget.show_table(table)
    wait_idle(qtbot, widget)
    assert widget.tuning.attribute_combo.currentText() == "tissue_ratio"
    assert state.settings.tau == pytest.approx(0.1) and state.data.attribute == "tissue_ratio"
    expected = group_ids(LABEL.ravel(), table["tissue_ratio"].to_numpy(), 0.1)
    assert shown_counts(widget) == np.bincount(expected, minlength=4).tolist()
    limits = state.overlays.layers["groups"].contrast_limits
    assert tuple(limits) == pytest.approx(step_contrast_limits(0.1))
