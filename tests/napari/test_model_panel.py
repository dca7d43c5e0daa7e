"""The dock's Model tab on a real napari viewer (run under Xvfb): train, cancel, predict.

The cohort is tests/_cohort.py's tiny one (16 px patches, 8 x 8 cells per slide); the
model is the CPU-friendly smallcnn with one torch thread.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from _cohort import make_cohort
from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.dock.widget import PatchwiseWidget
from napari_patchwise._napari.model_tab import panel as panel_module

pytestmark = pytest.mark.gui

P = 16
STEPS = 15
EVAL_EVERY = 5


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("cohort"), patch=P)


@pytest.fixture
def dock(make_napari_viewer, qtbot, monkeypatch):
    """The dock on a viewer; notifications recorded instead of shown."""
    notes: dict[str, list[str]] = {"error": [], "info": []}
    monkeypatch.setattr(notify, "show_error", notes["error"].append)
    monkeypatch.setattr(notify, "show_info", notes["info"].append)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    panel = widget.model_panel
    panel.extra_options = {"num_threads": 1, "seed": 1, "augment": False}
    return viewer, widget, panel, notes


def fill(panel, manifest, out, *, steps=STEPS):
    panel.form.manifest_edit.setText(str(manifest))
    panel.form.out_edit.setText(str(out))
    panel.form.model_combo.setCurrentText("smallcnn")
    panel.form.patch_size.setValue(P)
    panel.form.steps.setValue(steps)
    panel.form.eval_every.setValue(EVAL_EVERY)
    panel.form.batch_size.setValue(16)
    panel.form.lr.setValue(0.05)


def train_and_wait(qtbot, panel, timeout_s=60):
    with qtbot.waitSignal(panel.trained, timeout=timeout_s * 1000):
        panel.form.train_button.click()
    qtbot.waitUntil(lambda: not panel.busy(), timeout=5000)


def test_training_from_the_panel_writes_the_run_and_draws_every_evaluation(
    dock, qtbot, manifest, tmp_path
):
    _viewer, widget, panel, notes = dock
    widget.tau_slider.setValue(0.3)
    fill(panel, manifest, tmp_path / "run")
    panel.form.method_combo.setCurrentText("gerne")
    assert panel.form.beta.isEnabled() and panel.form.c.isEnabled()
    panel.form.beta.setValue(0.5)
    train_and_wait(qtbot, panel)
    assert notes["error"] == []
    run = tmp_path / "run"
    for name in ("best.pt", "last.pt", "history.csv", "config.json"):
        assert (run / name).is_file(), name
    config = pd.read_json(run / "config.json", typ="series")
    assert config["tau"] == pytest.approx(0.3)  # the dock's slider
    assert config["method"] == "gerne" and config["beta"] == pytest.approx(0.5)
    history = pd.read_csv(run / "history.csv")
    assert history["step"].tolist() == [5, 10, 15]
    curves = panel.curves
    assert list(curves.wga_line.get_xdata()) == [5, 10, 15]
    assert list(curves.wga_line.get_ydata()) == pytest.approx(history["val_wga"].tolist())
    assert list(curves.bca_line.get_ydata()) == pytest.approx(history["val_bca"].tolist())
    assert list(curves.loss_line.get_xdata()) == list(range(1, STEPS + 1))
    assert panel.progress_bar.value() == panel.progress_bar.maximum() == STEPS
    assert panel.form.train_button.isEnabled() and not panel.form.cancel_button.isEnabled()
    assert panel.predict_box.run_edit.text() == str(run)  # predict defaults to the run just trained


def test_cancel_stops_within_a_step_and_leaves_a_valid_last_checkpoint(
    dock, qtbot, manifest, tmp_path
):
    _, _, panel, notes = dock
    steps = 10_000
    fill(panel, manifest, tmp_path / "run", steps=steps)
    panel.form.train_button.click()
    assert panel.form.cancel_button.isEnabled() and not panel.form.train_button.isEnabled()
    qtbot.waitUntil(lambda: panel.progress_bar.value() >= 3, timeout=60_000)
    with qtbot.waitSignal(panel.trained, timeout=30_000):
        clicked = panel.progress_bar.value()
        panel.form.cancel_button.click()
    qtbot.waitUntil(lambda: not panel.busy(), timeout=5000)
    last = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=True)
    # The loop polls should_stop() after every step; the steps beyond the one shown at the
    # click are those already run but still in the pipe (about POLL_S worth of steps).
    assert clicked <= last["step"] <= clicked + 25
    assert last["step"] < steps
    # the UI shows the step the run stopped at, and the checkpoint is a full state
    assert panel.progress_bar.value() == last["step"] == panel.curves.steps[-1]
    assert {"model", "optimizer", "history"} <= set(last)
    assert panel_module.TRAIN_CANCELLED in notes["info"]
    assert notes["error"] == []
    assert panel.form.train_button.isEnabled() and panel.predict_box.predict_button.isEnabled()
    assert not panel.form.cancel_button.isEnabled()


def test_a_bad_manifest_is_one_notification_line(dock, qtbot, tmp_path):
    _, _, panel, notes = dock
    bad = tmp_path / "cohort.csv"
    bad.write_text("image,split\nmissing.tif,train\n")
    fill(panel, bad, tmp_path / "run")
    panel.form.train_button.click()
    qtbot.waitUntil(lambda: not panel.busy() and bool(notes["error"]), timeout=30_000)
    (message,) = notes["error"]
    assert "\n" not in message and "Traceback" not in message
    assert "cohort.csv" in message
    assert panel.form.train_button.isEnabled()
    # a file that does not exist is refused before any worker starts
    fill(panel, tmp_path / "nope.csv", tmp_path / "run2")
    panel.form.train_button.click()
    assert not panel.busy()
    assert "nope.csv" in notes["error"][-1] and "not found" in notes["error"][-1]


def test_the_paper_preset_fills_the_form_and_is_refused_without_weights(dock, manifest, tmp_path):
    _, _, panel, notes = dock
    form = panel.form
    fill(panel, manifest, tmp_path / "run")
    form.preset_combo.setCurrentText("paper")
    shown = (form.model_combo.currentText(), form.lr.value(), form.batch_size.value())
    assert shown == ("resnet50", 1e-4, 32) and form.c.value() == 0.5
    assert form.freeze_bn.isChecked() and form.select_combo.currentText() == "val_wga"
    form.train_button.click()
    assert not panel.busy() and len(notes["error"]) == 1
    assert "preset paper needs weights" in notes["error"][0]
    assert "\n" not in notes["error"][0] and not (tmp_path / "run").exists()
    # with a weights file: the preset's values the form does not show, the fields' own
    form.weights_edit.setText(str(tmp_path / "resnet50.pt"))
    form.lr.setValue(0.001)
    config = form.config(0.1)
    assert (config.preset, config.weights, config.freeze_bn) == (
        "paper",
        str(tmp_path / "resnet50.pt"),
        True,
    )
    assert (config.lr, config.weight_decay, config.momentum) == (0.001, 0.01, 0.9)
    # frozen statistics of random weights: refused as on the command line
    form.preset_combo.setCurrentText("none")
    form.weights_edit.setText("")
    form.train_button.click()
    assert "frozen BatchNorm statistics needs weights" in notes["error"][-1]
    form.freeze_bn.setChecked(False)
    config = form.config(0.1)
    assert (config.preset, config.weights, config.freeze_bn, config.lr) == (
        None,
        None,
        False,
        0.001,
    )


def test_predict_from_the_panel_loads_prob_into_the_dock(dock, qtbot, manifest, tmp_path):
    viewer, widget, panel, notes = dock
    fill(panel, manifest, tmp_path / "run", steps=10)
    train_and_wait(qtbot, panel)
    # the cohort's test slide and its mask, opened as napari would
    folder = manifest.parent
    viewer.open(str(folder / "s3.ome.tif"), plugin="napari-patchwise")
    viewer.add_labels(tifffile.imread(folder / "s3_mask.tif"), name="s3_mask")
    widget.configure(mask="s3_mask")
    widget.configure(patch_size=P)
    with qtbot.waitSignal(widget.applied, timeout=30_000):
        widget.compute_button.click()
    assert widget.current.data.prob is None
    with qtbot.waitSignal(widget.applied, timeout=60_000):
        panel.predict_box.predict_button.click()
    assert notes["error"] == []
    data = widget.current.data
    assert data.prob is not None
    n = len(data.table)
    assert n == 64 and int(pd.isna(data.prob).sum()) == 0  # every patch predicted
    names = [layer.name for layer in viewer.layers]
    assert any(name.endswith("correctness") for name in names)
    assert any(name.endswith("tumor probability") for name in names)
    # the metrics table shows an evaluation (TN + FP + FN + TP = labelled patches)
    s = widget.current.settings
    tn, fp, fn, tp = data.evaluator.evaluate(s.tau, s.threshold).confusion
    assert tn + fp + fn + tp == n
    assert widget.errors_label.text().startswith("0 misclassified patches; click one to go there")


def expected_beta_max(manifest, tau: float, c: float) -> float:
    """GERNE's bound from the training masks, by hand: every 16 px cell is a patch."""
    labels, ratios = [], []
    for name in ("s0", "s1"):  # the two training slides
        mask = tifffile.imread(manifest.parent / f"{name}_mask.tif")
        cells = mask.reshape(8, P, 8, P).transpose(0, 2, 1, 3).reshape(64, P * P)
        labels.append((cells == 2).any(axis=1))
        ratios.append((cells > 0).mean(axis=1))
    label, large = np.concatenate(labels), np.concatenate(ratios) >= tau
    alpha = np.array([[np.mean(large[label == y] == a) for a in (0, 1)] for y in (0, 1)])
    a_max = alpha.max()
    return a_max / (c * (a_max - 0.5)) - 1.0


def test_check_cohort_shows_beta_max_for_the_current_tau_and_c(dock, qtbot, manifest, tmp_path):
    _, widget, panel, notes = dock
    fill(panel, manifest, tmp_path / "run")
    panel.form.method_combo.setCurrentText("gerne")
    assert panel.beta_max() is None
    with qtbot.waitSignal(panel.form.check_button.clicked, timeout=1000):
        panel.form.check_button.click()
    qtbot.waitUntil(lambda: not panel.busy(), timeout=30_000)
    assert notes["error"] == []
    for tau, c in ((0.3, 0.5), (0.05, 1.0)):
        widget.tau_slider.setValue(tau)
        panel.form.c.setValue(c)
        bound = expected_beta_max(manifest, tau, c)
        assert panel.beta_max() == pytest.approx(bound)
        assert panel.form.beta_max_label.text().startswith(f"{bound:.4g} ")
    panel.form.beta.setValue(bound + 1.0)
    assert panel.form.beta_max_label.text().endswith("beta is too large")
    panel.form.patch_size.setValue(2 * P)  # other patches: the bound is unknown again
    assert panel.beta_max() is None


def test_the_dock_mask_map_is_the_cohort_map_for_training(dock, monkeypatch, manifest, tmp_path):
    """One map for the slides shown and the cohort trained (it was the default, always)."""
    _, widget, panel, notes = dock
    fill(panel, manifest, tmp_path / "run")
    spec = "0=background,1=healthy,2=tumor,3=tumor"
    widget.configure(mask_map=spec)
    started = []
    monkeypatch.setattr(
        panel.job, "start_generator", lambda _fn, config, *a, **k: started.append(config)
    )
    panel.form.train_button.click()
    assert notes["error"] == []
    assert [c.patch.mask_map for c in started] == [spec]
    assert panel._groups_key()[2] == spec  # Check cohort's groups use it too
    widget.configure(mask_map="0=bg,1=bone")
    panel.form.train_button.click()
    assert len(started) == 1 and "mask map" in notes["error"][-1]
    assert panel.beta_max() is None
