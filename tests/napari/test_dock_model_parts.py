"""The dock's parts take the model (and the viewer), never the dock (issue 20, step 2).

Each part is built from a bare :class:`DockModel`; the couplings that went through the
dock now go through the model's fields and events: the Compare tab's sources (what a
session saves), a grouping asked for by an event (the Debias tab's ranking, the
attribute combo box), the Model tab's groups label following it. Real napari viewers
with a hand-built slide under Xvfb.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from napari_patchwise._napari.cohort_tab.browser import CohortBrowser
from napari_patchwise._napari.compare_tab.box import CompareBox
from napari_patchwise._napari.debias_tab.tab import DebiasTab
from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.dock.attribute_choice import AttributeChoice, group_options
from napari_patchwise._napari.dock.model import DockModel
from napari_patchwise._napari.dock.session_box import SessionBox, _comparison
from napari_patchwise._napari.dock.table_io import TableFiles
from napari_patchwise._napari.dock.widget import PatchwiseWidget
from napari_patchwise._napari.model_tab.panel import ModelPanel
from napari_patchwise.io.session import Comparison

P = 16
N = 6


@pytest.fixture
def notes(monkeypatch):
    shown: dict[str, list[str]] = {"info": [], "error": []}
    monkeypatch.setattr(notify, "show_error", shown["error"].append)
    monkeypatch.setattr(notify, "show_info", shown["info"].append)
    return shown


@pytest.mark.gui
def test_every_part_is_built_from_the_model_alone(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer(show=False)
    model = DockModel()
    parts = [
        TableFiles(model),
        ModelPanel(model),
        CohortBrowser(model, viewer),
        CompareBox(model, viewer),
        DebiasTab(model),
        SessionBox(model, viewer),
    ]
    for part in parts:
        qtbot.addWidget(part)
    AttributeChoice(model)
    # no slide: each action says so in one line, nothing is started
    assert parts[0].set_predictions(pd.DataFrame({"row": [0], "col": [0], "prob": [0.5]})) is False
    assert len(notes["error"]) == 1 and notify.OPEN_AN_IMAGE in notes["error"][0]
    assert not model.jobs.any_running()
    # the Model tab's patch size is the model's field
    parts[1].form.patch_size.setValue(48)
    assert model.settings.patch_size == 48
    model.settings.patch_size = 32
    assert parts[1].form.patch_size.value() == 32
    assert group_options(model) == {"tau": model.settings.tau}


@pytest.fixture
def dock(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer(show=True)
    image = np.zeros((N * P, N * P), dtype=np.float32)
    mask = np.zeros((N * P, N * P), dtype=np.uint8)
    image[: N * P // 2] = 1.0
    mask[: N * P // 2] = 1
    mask[:P, :P] = 0
    viewer.add_image(image, name="slide")
    viewer.add_labels(mask, name="slide mask")
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    widget.configure(mask="slide mask", mask_map="binary (0=background,1=tumor)", patch_size=P)
    return widget


def _wait_idle(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.busy(), timeout=60_000)


@pytest.mark.gui
def test_the_compare_tabs_sources_are_model_fields_a_session_reads(dock, tmp_path, notes):
    box, s = dock.compare_box, dock.model.settings
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    a.write_bytes(b"")
    b.write_bytes(b"")
    box.edit_a.setText(f" {a} ")
    box.name_b.setText("B")
    assert (s.compare_a, s.compare_names) == (str(a), ("", "B"))
    s.compare_b = str(b)
    assert box.edit_b.text() == str(b)
    state = dock.current
    assert _comparison(dock.model, [state]) is None  # nothing compared yet
    dock.model.comparison = SimpleNamespace(key=state.key)  # a comparison of this slide
    assert _comparison(dock.model, [state]) == Comparison(a=a, b=b, names=("", "B"), slide=0)
    assert notes["error"] == []


@pytest.mark.gui
def test_a_grouping_asked_for_by_event_regroups_and_the_model_tab_follows(dock, qtbot, notes):
    assert dock.compute()
    _wait_idle(qtbot, dock)
    state, label = dock.current, dock.model_panel.form.tau_label
    assert label.text().endswith("(the dock's tau slider)")
    dock.model.group_requested.emit("border_fraction", 0.25)  # what the ranking's click sends
    _wait_idle(qtbot, dock)
    assert state.settings.attribute == "border_fraction" == state.data.attribute
    assert state.settings.tau == pytest.approx(0.25)
    assert dock.tau_slider.value() == pytest.approx(0.25)
    assert dock.model.settings.tau == pytest.approx(0.25)  # the sliders moved: the model too
    assert label.text() == "border_fraction >= 0.25 (the dock's groups)"
    # NaN: the attribute's remembered threshold (tissue_ratio's default tau)
    dock.model.group_requested.emit("tissue_ratio", math.nan)
    _wait_idle(qtbot, dock)
    assert state.settings.attribute == "tissue_ratio"
    assert label.text().endswith("(the dock's tau slider)")
    assert notes["error"] == []
