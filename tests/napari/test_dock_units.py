"""Units, tooltips, labels and number formats of the dock (a real napari viewer, Xvfb).

The slide of tests/napari/test_widget.py at 0.5 µm per pixel: every pixel length in the dock
has its µm beside it; one patch-size field in the window (the Model tab reads the grid
box's); every control has a tooltip in words; no two buttons say the same; one number
format (:func:`napari_patchwise._napari.dock.words.fmt`) in the metrics; and a run's own patch
size is the one the dock cuts to predict with it.
"""

from __future__ import annotations

import collections

import numpy as np
import pandas as pd
import pytest
import tifffile
from qtpy.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QFormLayout,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QTabBar,
)
from test_widget import PROB, P, load_predictions, make_slide, wait_idle

from _cohort import make_cohort
from _damaged import smallcnn_checkpoint
from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.dock.widget import PatchwiseWidget
from napari_patchwise._napari.dock.words import fmt, size_text

pytestmark = pytest.mark.gui
UM = 0.5


@pytest.fixture
def dock(make_napari_viewer, monkeypatch):
    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    viewer = make_napari_viewer(show=True)
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    return viewer, widget, errors


def add_slide(viewer, widget, scale=(UM, UM)) -> None:
    image, mask = make_slide()
    units = ("µm", "µm") if scale != (1, 1) else None
    viewer.add_image(image, name="slide", scale=scale, units=units)
    viewer.add_labels(mask, name="slide mask", scale=scale, units=units)
    widget.configure(mask="slide mask")


def test_words_fmt_and_sizes_by_hand():
    assert fmt(0.87951) == "0.880" and fmt(0.87949, "percent") == "87.9%"
    assert fmt(12345, "count") == "12,345" and fmt(float("nan")) == "—" and fmt(None) == "—"
    assert size_text(64, (0.5, 0.5)) == "64 px (32.0 µm)"
    assert size_text(64, (0.5, 0.25)) == "64 px (32.0 x 16.0 µm)"
    assert size_text(64, None) == "64 px"


def test_pixel_fields_show_um_when_the_slide_has_a_pixel_size(dock):
    viewer, widget, errors = dock
    add_slide(viewer, widget)
    form, train = widget.form, widget.model_panel.form
    form.patch_size.setValue(P)
    form.stride.setValue(0)  # '= patch size'
    assert (
        form.patch_um.text() == f"{P * UM:.1f} µm" and form.stride_um.text() == form.patch_um.text()
    )
    form.stride.setValue(48)
    assert form.stride_um.text() == f"{48 * UM:.1f} µm"
    assert train.patch_size_label.text() == f"{P} px ({P * UM:.1f} µm) (the patch grid's)"
    # a slide without a pixel size: pixels only
    image, _ = make_slide()
    viewer.add_image(image, name="plain")
    widget.configure(image="plain")
    assert form.patch_um.text() == "" and train.patch_size_label.text().startswith(f"{P} px (")
    assert "µm" not in train.patch_size_label.text()
    assert errors == []


def test_one_patch_size_field_in_the_window(dock, tmp_path):
    _, widget, _ = dock
    spins = []
    for layout in widget.findChildren(QFormLayout):
        for row in range(layout.rowCount()):
            label = layout.itemAt(row, QFormLayout.ItemRole.LabelRole)
            field = layout.itemAt(row, QFormLayout.ItemRole.FieldRole)
            if label is None or field is None or field.widget() is None:
                continue
            if label.widget().text() == "patch size":
                found = field.widget()
                spins += [found] if isinstance(found, QSpinBox) else found.findChildren(QSpinBox)
    assert spins == [widget.form.patch_size]  # the Model tab's row shows it, has no field
    panel = widget.model_panel
    panel.form.patch_size.setValue(40)  # the Model tab's patch size is the grid's field
    assert widget.form.patch_size.value() == 40 == widget.model.settings.patch_size
    widget.configure(patch_size=24)
    assert panel.form.patch_size.value() == 24
    panel.form.manifest_edit.setText(str(make_cohort(tmp_path / "cohort")))
    assert panel.form.config(0.1).patch.patch_size == 24


def input_widgets(widget):
    kinds = (QAbstractSpinBox, QComboBox, QLineEdit, QAbstractButton, QSlider)
    for child in widget.findChildren(kinds):
        if child.objectName().startswith("qt_") or isinstance(child.parent(), QTabBar):
            continue  # Qt's own corner buttons and tab-bar scroll arrows
        if isinstance(child, QLineEdit) and isinstance(
            child.parent(), QAbstractSpinBox | QComboBox
        ):
            continue  # the text field inside a spin box or editable combo box
        yield child


def test_every_control_has_a_tooltip_in_words(dock):
    _, widget, _ = dock
    controls = list(input_widgets(widget))
    assert len(controls) > 40
    missing = [
        f"{type(c).__name__} {getattr(c, 'text', lambda: '')()!r} in {type(c.parent()).__name__}"
        for c in controls
        if not c.toolTip().strip()
    ]
    assert missing == []
    flagged = [c.toolTip() for c in controls if "--" in c.toolTip()]
    assert flagged == []


def test_button_labels_are_unique(dock):
    _, widget, _ = dock
    names = [
        b.accessibleName() if b.text() == "…" else b.text()
        for b in widget.findChildren(QPushButton)
    ]
    assert all(names)
    twice = {name: n for name, n in collections.Counter(names).items() if n > 1}
    assert twice == {}


def test_the_metrics_use_the_one_number_format(dock, qtbot, tmp_path):
    viewer, widget, errors = dock
    add_slide(viewer, widget)
    widget.configure(patch_size=P)
    widget.compute_button.click()
    wait_idle(qtbot, widget)
    load_predictions(qtbot, widget, tmp_path)
    s = widget.current.settings
    ev = widget.current.data.evaluator.evaluate(s.tau, s.threshold)
    text = widget.stats.metrics.text()
    for value in (ev.accuracy, ev.bca, ev.wga):
        assert f"<b>{fmt(value, 'percent')}</b>" in text
    tn, fp, fn, tp = ev.confusion
    assert f"TN {fmt(tn, 'count')} · FP {fmt(fp, 'count')} · FN {fmt(fn, 'count')}" in text
    assert f"TP {fmt(tp, 'count')}" in text
    cells = widget.stats.cells
    assert [row[3].text() for row in cells] == [fmt(a, "percent") for a in ev.per_group_accuracy]
    assert all(
        row[2].text().count(".") == 1 and len(row[2].text().split(".")[1]) == 3 for row in cells
    )
    # the status bar: the patch's corner in px and µm, its probability in the same format
    status = widget.patch_status((UM * (3 * P + 10), UM * (6 * P + 20)))
    assert f"y={3 * P} x={6 * P} px ({3 * P * UM:.1f}, {6 * P * UM:.1f} µm)" in status
    assert f"prob {fmt(PROB[3, 6])}" in status
    assert errors == []


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort"), patch=16)


def open_cohort_slide(viewer, widget, folder) -> None:
    viewer.open(str(folder / "s3.ome.tif"), plugin="napari-patchwise")
    viewer.add_labels(tifffile.imread(folder / "s3_mask.tif"), name="s3_mask")
    widget.configure(mask="s3_mask")


def test_predict_cuts_the_runs_own_grid(dock, qtbot, cohort, tmp_path):
    """A run trained on 16 px patches, a grid cut with 32 px: Predict cuts 16 px first."""
    viewer, widget, errors = dock
    run = tmp_path / "run"
    run.mkdir()
    best = smallcnn_checkpoint(run / "best.pt", channels=2, patch=16)
    open_cohort_slide(viewer, widget, cohort.parent)
    widget.configure(patch_size=32)
    with qtbot.waitSignal(widget.applied, timeout=30_000):
        widget.compute_button.click()
    assert len(widget.current.data.table) == 16
    panel = widget.model_panel
    panel.predict_box.run_edit.setText(str(best))
    panel.predict_box.run_edit.editingFinished.emit()
    assert widget.form.patch_size.value() == 32  # a grid is shown: the field keeps it
    shown = []
    widget.applied.connect(lambda: shown.append(widget.current.data.prob is not None))
    panel.predict_box.predict_button.click()
    assert "run's 16 px patches" in panel.status_label.text()
    qtbot.waitUntil(lambda: shown == [False, True], timeout=60_000)  # the grid, then prob
    wait_idle(qtbot, widget)
    qtbot.waitUntil(lambda: not panel.busy(), timeout=5000)
    assert errors == []
    data = widget.current.data
    assert widget.form.patch_size.value() == 16 and int(data.table["height"].max()) == 16
    assert len(data.table) == 64 and int(pd.isna(data.prob).sum()) == 0
    assert np.all((data.prob >= 0) & (data.prob <= 1))


def test_a_chosen_run_sets_the_patch_size_while_no_grid_is_shown(dock, cohort, tmp_path):
    viewer, widget, errors = dock
    open_cohort_slide(viewer, widget, cohort.parent)
    widget.configure(patch_size=64)
    best = smallcnn_checkpoint(tmp_path / "best.pt", channels=2, patch=16)
    widget.model_panel.predict_box.run_edit.setText(str(best))
    widget.model_panel.predict_box.run_edit.editingFinished.emit()
    assert widget.form.patch_size.value() == 16
    assert widget.model_panel.form.patch_size_label.text().startswith("16 px")
    assert errors == []
