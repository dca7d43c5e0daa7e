"""The dock's evented model, its one job runner and ``configure`` (issue 20, step 2).

The source checks read the ``_napari`` modules' syntax trees; the rest drive a real
``napari.Viewer`` with a hand-built slide under Xvfb.
"""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.dock.widget import PatchwiseWidget

NAPARI = Path(__file__).resolve().parents[2] / "src" / "napari_patchwise" / "_napari"

#: The dock itself: the only modules that may hold it.
DOCK_MODULES = {"dock/widget.py", "dock/binding.py"}


def _trees():
    for path in sorted(NAPARI.rglob("*.py")):
        yield path.relative_to(NAPARI).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _holds_the_dock(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "dock":
            return True  # self.dock, part.dock
        if isinstance(node, ast.arg) and node.arg == "dock":
            return True  # a dock parameter
        if isinstance(node, ast.Name) and node.id == "dock":
            return True  # dock.<anything>, a local called dock
    return False


def test_no_part_outside_the_dock_takes_the_dock():
    holders = {name for name, tree in _trees() if _holds_the_dock(tree)} - DOCK_MODULES
    assert not holders, f"parts that take the dock (give them the model instead): {sorted(holders)}"


def test_no_part_asks_a_job_whether_it_is_busy():
    """The job runner owns exclusion: ``.busy()`` is called nowhere in ``_napari``."""
    calls = [
        f"{name}:{node.lineno}"
        for name, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "busy"
    ]
    assert calls == []


def test_no_polling_timer_waits_for_the_dock():
    """Work that waits for the dock is queued on the runner (``when_idle``), not polled."""
    for name in ("dock/session_box.py", "debias_tab/retrain_box.py"):
        text = (NAPARI / name).read_text(encoding="utf-8")
        assert "setInterval" not in text and "singleShot(50" not in text, name


#: Nested controls of the dock that scripts used to set (``configure`` does it now).
NESTED = ("form.", "_slider.", "_combo.", "mask_map_field.", "overlay_choice.choose")


@pytest.mark.parametrize("path", ["cli/view.py", "_napari/dock/demo_view.py"])
def test_view_and_the_demo_set_the_dock_through_configure(path):
    text = (NAPARI.parent / path).read_text(encoding="utf-8")
    pokes = [f"{path}:{i}" for i, line in enumerate(text.splitlines(), 1)
             if "widget." in line and any(n in line for n in NESTED)]  # fmt: skip
    assert pokes == []
    assert "widget.configure(" in text


# -- on a real viewer -----------------------------------------------------------------------
P = 16
N = 6


@pytest.fixture
def notes(monkeypatch):
    shown: dict[str, list[str]] = {"info": [], "error": []}
    monkeypatch.setattr(notify, "show_error", shown["error"].append)
    monkeypatch.setattr(notify, "show_info", shown["info"].append)
    return shown


@pytest.fixture
def dock(make_napari_viewer, qtbot, notes):
    viewer = make_napari_viewer(show=True)
    image = np.zeros((N * P, N * P), dtype=np.float32)
    mask = np.zeros((N * P, N * P), dtype=np.uint8)
    image[: N * P // 2] = 1.0
    mask[: N * P // 2] = 1
    mask[:P, :P] = 0  # binary: 1 is tumor, 0 background
    viewer.add_image(image, name="slide")
    viewer.add_labels(mask, name="slide mask")
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    return widget


def _blocking_job(release: threading.Event):
    def job(*, cancel, progress):
        while not release.is_set():
            progress(0, 1)
            time.sleep(0.01)
        return "done"

    return job


@pytest.mark.gui
def test_configure_sets_the_model_and_the_bound_widgets_show_it(dock, qtbot, notes):
    dock.configure(
        mask="slide mask",
        mask_map="binary (0=background,1=tumor)",
        patch_size=P,
        tau=0.3,
        threshold=0.7,
    )
    s = dock.model.settings
    assert (s.mask_layer, s.mask_map, s.patch_size) == (
        "slide mask",
        "binary (0=background,1=tumor)",
        P,
    )
    assert s.tau == pytest.approx(0.3) and s.threshold == pytest.approx(0.7)
    assert dock.form.patch_size.value() == P  # the widgets show what the model holds
    assert dock.mask_combo.currentText() == "slide mask"
    assert dock.tau_slider.value() == pytest.approx(0.3)
    assert dock.threshold_slider.value() == pytest.approx(0.7)
    assert dock.compute()
    dock.configure(overlay="labels")  # while the grid is computed: once it is shown
    qtbot.waitUntil(lambda: not dock.busy(), timeout=60_000)
    data = dock.current.data
    assert data is not None and int(data.table["height"].max()) == P
    assert dock.overlay_choice.choice() == "labels" and s.overlay == "labels"
    assert dock.current.settings.tau == pytest.approx(0.3)  # the slide's own tau
    assert notes["error"] == []


@pytest.mark.gui
def test_model_events_update_the_widgets_and_the_widgets_the_model(dock, qtbot):
    s, seen = dock.model.settings, []
    s.events.tau.connect(seen.append)
    s.tau = 0.4  # model -> widget -> the slide's state
    assert dock.tau_slider.value() == pytest.approx(0.4)
    assert dock.current.settings.tau == pytest.approx(0.4)
    dock.threshold_slider.setValue(0.25)  # widget -> model
    assert s.threshold == pytest.approx(0.25)
    dock.form.patch_size.setValue(24)
    assert s.patch_size == 24
    s.patch_size = 40
    assert dock.form.patch_size.value() == 40
    assert seen == [pytest.approx(0.4)]
    dock.model_panel.form.manifest_edit.setText("cohort.csv")  # the Model tab's field
    assert dock.model.settings.manifest == "cohort.csv"  # what the Debias tab reads
    dock.model.compare_requested.emit("a.parquet", "b.parquet", ("A", "B"))  # the Compare tab
    box = dock.compare_box
    assert (box.edit_a.text(), box.edit_b.text(), box.name_b.text()) == (
        "a.parquet",
        "b.parquet",
        "B",
    )
    changed = []
    dock.model.current_changed.connect(changed.append)
    dock.current = None
    assert changed == [None]


@pytest.mark.gui
def test_one_job_at_a_time_across_tabs_refused_with_a_message_and_cancel(dock, qtbot, notes):
    """Training (the Model tab's job) blocks the grid, a prediction and a comparison."""
    panel, runner = dock.model_panel, dock.model.jobs
    release, results, queued = threading.Event(), [], []
    panel.job.name = "training"
    assert panel.job.start(_blocking_job(release), returned=results.append)
    assert not runner.idle() and runner.running() == "training"
    assert not dock.compute_button.isEnabled()  # buttons follow the runner

    assert dock.compute() is False
    assert dock.grid_job.running is False
    panel.start_predict()
    dock.compare_box.edit_a.setText("a.parquet")
    dock.compare_box.edit_b.setText("b.parquet")
    assert dock.compare_box.compare() is False
    assert notes["info"] == [
        "Patchwise: training is running — wait for it or cancel it",
        "Patchwise: training is already running",
        "Patchwise: training is running — wait for it or cancel it",
    ]
    runner.when_idle(lambda: queued.append(runner.running()))  # queued, not refused
    assert queued == []

    runner.cancel()  # the tab's Cancel: the job stops at its next report
    qtbot.waitUntil(lambda: not panel.job.running, timeout=10_000)
    qtbot.waitUntil(lambda: queued == [None], timeout=5_000)  # ran once idle
    assert results == [] and runner.idle() and dock.compute_button.isEnabled()
    assert any("cancelled" in text for text in notes["info"])

    release.set()
    notes["info"].clear()
    dock.configure(patch_size=P)
    assert dock.compute()  # idle again: the grid starts
    qtbot.waitUntil(lambda: not dock.busy(), timeout=60_000)
    assert dock.current.data is not None and notes["info"] == []


@pytest.mark.gui
def test_a_second_run_of_a_job_that_is_not_exclusive_is_refused_alone(dock, qtbot, notes):
    runner, release = dock.model.jobs, threading.Event()
    export = dock.table_files.export_job
    assert not export.exclusive
    assert export.start(_blocking_job(release), returned=lambda _r: None)
    assert runner.idle()  # an export leaves the grid free
    assert export.start(_blocking_job(release), returned=lambda _r: None) is False
    assert notes["info"] == ["Patchwise: the export is already running"]
    release.set()
    qtbot.waitUntil(lambda: not export.running, timeout=10_000)
