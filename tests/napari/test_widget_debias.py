"""The dock's Debias tab on a real napari viewer (run under Xvfb): retrain a head at the
dock's threshold, the accuracy curve against the attribute threshold, the ranking table.

The cohort is tests/_cohort.py's tiny one (16 px patches, 8 x 8 cells per slide), its
model a 4-step smallcnn run and the run's features (as tests/training/test_features.py).
"""

from __future__ import annotations

import gc
import os
import time

import numpy as np
import pandas as pd
import pytest
import tifffile

pytest.importorskip("torch")

from _cohort import make_cohort
from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.dock.stats_panel import _fmt
from napari_patchwise._napari.dock.widget import PatchwiseWidget
from napari_patchwise.analysis.metrics import evaluate
from napari_patchwise.cli.main import main
from napari_patchwise.training.embed import EmbedSource, embed

pytestmark = pytest.mark.gui

P = 16
FAST = ["--num-threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A tiny cohort, a 4-step smallcnn run and its features."""
    folder = tmp_path_factory.mktemp("cohort")
    manifest = make_cohort(folder, patch=P)
    run = folder / "run"
    args = ["train", str(manifest), "--steps", "4", "--eval-every", "2", "--out", str(run)]
    small = ["--model", "smallcnn", "--patch-size", str(P), "--batch-size", "16", *FAST]
    assert main([*args, *small]) == 0
    store = folder / "features.zarr"
    embed(manifest, store, EmbedSource(checkpoint=str(run)), device="cpu", chunk_rows=16)
    return manifest, run, store


@pytest.fixture
def dock(make_napari_viewer, qtbot, monkeypatch, cohort):
    """The dock on the cohort's test slide s3 (grid computed); notifications recorded."""
    notes: dict[str, list[str]] = {"error": [], "info": []}
    monkeypatch.setattr(notify, "show_error", notes["error"].append)
    monkeypatch.setattr(notify, "show_info", notes["info"].append)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    folder = cohort[0].parent
    viewer.open(str(folder / "s3.ome.tif"), plugin="napari-patchwise")
    viewer.add_labels(tifffile.imread(folder / "s3_mask.tif"), name="s3_mask")
    widget.configure(mask="s3_mask")
    widget.configure(patch_size=P)
    with qtbot.waitSignal(widget.applied, timeout=30_000):
        widget.compute_button.click()
    return viewer, widget, notes


def predict_with(qtbot, widget, run) -> None:
    """Show ``run``'s predictions through the Model tab's Predict."""
    widget.model_panel.predict_box.run_edit.setText(str(run))
    with qtbot.waitSignal(widget.applied, timeout=60_000):
        widget.model_panel.predict_box.predict_button.click()


def test_retrain_head_shows_the_new_heads_predictions_without_stalling(
    dock, qtbot, cohort, tmp_path
):
    from qtpy.QtCore import QTimer

    from napari_patchwise.training.predict import predict_table

    _viewer, widget, notes = dock
    manifest, run, store = cohort
    predict_with(qtbot, widget, run)  # the source run's predictions are shown first
    before = widget.current.data.prob.copy()
    widget.tau_slider.setValue(0.3)
    box = widget.debias.retrain
    box.extra_options = {"num_threads": 1, "seed": 1, "batch_size": 16}
    box.features_edit.setText(str(store))
    box.out_edit.setText(str(tmp_path / "heads"))
    box.method_combo.setCurrentText("gerne")
    box.steps.setValue(20)
    qtbot.wait(500)  # the histograms' redraw after the slider move is not the retraining's
    # A full garbage collection over this process's heap (napari, torch, the earlier tests)
    # blocks the main thread for about 0.5 s wherever it happens to fall (measured: max gap
    # 570 ms without, 25 ms with the heap frozen); it is no part of the retraining.
    gc.collect()
    gc.freeze()
    returned_at: list[float] = []
    on_predicted = box._on_predicted

    def record_return(*args):
        returned_at.append(time.perf_counter())
        on_predicted(*args)

    box._on_predicted = record_return
    beats: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: beats.append(time.perf_counter()))
    timer.start(10)
    started = time.perf_counter()
    try:
        with qtbot.waitSignal(box.retrained, timeout=120_000) as signal:
            box.retrain_button.click()
        ended = time.perf_counter()
    finally:
        timer.stop()
        gc.unfreeze()
    assert notes["error"] == []
    head = signal.args[0]
    assert head == tmp_path / "heads" / "gerne-tissue_ratio-0.3"
    assert manifest.samefile(box.manifest_edit.text())  # taken from the store
    config = pd.read_json(head / "config.json", typ="series")
    assert config["tau"] == pytest.approx(0.3) and config["features"] == str(store)
    # the dock shows exactly what the new head predicts for the slide
    state = widget.current
    table = state.data.table
    expected = predict_table(state.slide, table, head)["prob"].to_numpy()
    np.testing.assert_allclose(state.data.prob, expected, atol=1e-6)
    assert not np.allclose(before, expected, atol=1e-3)  # the head changed the predictions
    layer = state.overlays.layers["probability"]
    glass = table["tissue_ratio"].to_numpy() == 0  # empty glass: transparent (NaN)
    painted = state.data.raster.paint(np.where(glass, np.nan, expected).astype(np.float32))
    np.testing.assert_allclose(layer.data, painted)
    s = state.settings
    ev = evaluate(state.data.label, state.data.attribute_values, prob=expected, tau=s.tau,
                  threshold=s.threshold)  # fmt: skip
    stats = widget.stats
    assert [row[3].text() for row in stats.cells] == [_fmt(a) for a in ev.per_group_accuracy]
    assert f"WGA <b>{_fmt(ev.wga)}</b>" in stats.metrics.text()
    # the event loop kept beating from the click while the head trained and predicted
    # (handing the result to the layers is the dock's usual one-layer-per-turn path)
    working = [b for b in beats if b <= returned_at[0]]
    gaps = np.diff([started, *working, returned_at[0]])
    applying = np.diff([b for b in beats if b >= returned_at[0]] + [ended])
    # 50 ms on an idle machine; the OS delays a runnable main thread with the load per core
    budget = 0.050 * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))
    print(
        f"retrain + predict {returned_at[0] - started:.1f} s, {len(working)} beats, max gap "
        f"{gaps.max() * 1e3:.1f} ms; applying: max gap {applying.max() * 1e3:.1f} ms"
    )
    assert len(working) > 10 and gaps.max() < budget
    # a second head: the comparison follows (the first head as A, the new one as B)
    widget.tau_slider.setValue(0.5)
    box.method_combo.setCurrentText("erm")
    with qtbot.waitSignal(widget.compare_box.compared, timeout=120_000):
        box.retrain_button.click()
    assert widget.compare_box.data.names == ("gerne-tissue_ratio-0.3", "erm-tissue_ratio-0.5")


def test_the_curve_follows_predictions_and_the_threshold(dock, qtbot, cohort):
    _viewer, widget, notes = dock
    debias = widget.debias
    assert debias.curve.points is None  # no predictions yet
    predict_with(qtbot, widget, cohort[1])
    qtbot.waitUntil(lambda: debias.curve.points is not None and not debias.busy(), timeout=10_000)
    data = widget.current.data
    points = debias.curve.points
    for k in (0, len(points.thresholds) // 2, len(points.thresholds) - 1):
        ev = evaluate(data.label, data.attribute_values, prob=data.prob,
                      tau=points.thresholds[k], threshold=0.5)  # fmt: skip
        assert points.wga[k] == pytest.approx(ev.wga) and points.bca == pytest.approx(ev.bca)
    x, _, _ = points.display()
    np.testing.assert_array_equal(debias.curve.wga_line.get_xdata(), x)
    # the marker follows the tau slider
    widget.tau_slider.setValue(0.4)
    qtbot.waitUntil(lambda: debias.curve.marker.get_xdata()[0] == pytest.approx(0.4), timeout=2000)
    # a new decision threshold: the curve is recomputed at it
    widget.threshold_slider.setValue(0.7)
    qtbot.waitUntil(
        lambda: debias.curve.points.decision_threshold == pytest.approx(0.7), timeout=5000
    )
    ev = evaluate(data.label, data.attribute_values, prob=data.prob,
                  tau=points.thresholds[0], threshold=0.7)  # fmt: skip
    assert debias.curve.points.wga[0] == pytest.approx(ev.wga)
    assert notes["error"] == []


def test_a_ranking_row_groups_the_slide_by_its_attribute(dock, qtbot, cohort):
    from napari_patchwise.analysis.attribute_ranking import AttributeRank, rank_attributes

    _viewer, widget, notes = dock
    ranking = widget.debias.ranking
    assert not ranking.rank()  # no predictions yet: one notification
    assert "no predictions to rank" in notes["error"][-1]
    predict_with(qtbot, widget, cohort[1])
    with qtbot.waitSignal(ranking.job.busy_changed, timeout=60_000):
        ranking.rank_button.click()
    qtbot.waitUntil(lambda: not ranking.busy(), timeout=60_000)
    names = [ranking.table.item(i, 0).text() for i in range(ranking.table.rowCount())]
    # every attribute the dock can compute, plus the table's own
    assert {"tissue_ratio", "border_fraction"} <= set(names), names
    assert any(n.startswith("mean_") for n in names)
    tissue = next(r for r in ranking.ranks if r.attribute == "tissue_ratio")
    expected = rank_attributes(widget.current.data.table, ["tissue_ratio"])[0]
    assert tissue.threshold == expected.threshold and tissue.gap == pytest.approx(expected.gap)
    assert tissue.noise_floor == pytest.approx(expected.noise_floor)  # the same seeded null
    assert ranking.table.horizontalHeaderItem(3).text() == "noise floor"
    # the tissue_ratio row: tau moves to its best threshold
    row = [r.attribute for r in ranking.ranks].index("tissue_ratio")
    ranking.table.cellClicked.emit(row, 0)
    assert widget.current.settings.tau == pytest.approx(tissue.threshold)
    # another attribute's row (this tiny slide's intensities separate the classes
    # perfectly, so no threshold of theirs qualifies: a hand-made rank stands in)
    rank = AttributeRank("mean_channel_1", 40.0, 0.1, 0.5, (0, 0, 0, 0), (0.0,) * 4)
    ranking.show_ranks([tissue, rank])
    assert ranking.table.item(1, 1).text() == "40"
    with qtbot.waitSignal(widget.applied, timeout=60_000):
        ranking.table.cellClicked.emit(1, 0)
    state = widget.current
    s = state.settings
    assert s.attribute == "mean_channel_1" == widget.tuning.attribute_combo.currentText()
    assert s.tau == pytest.approx(40.0) and widget.tau_slider.value() == pytest.approx(40.0)
    channel = state.data.table["mean_channel_1"].to_numpy()
    ev = state.data.evaluator.evaluate(s.tau, s.threshold)
    assert ev.attribute == "mean_channel_1"
    counts = evaluate(state.data.label, channel, tau=40.0).group_counts
    np.testing.assert_array_equal(ev.group_counts, counts)
    assert counts[1] + counts[3] > 0 and counts[0] + counts[2] > 0  # both sides hold patches
    assert notes["error"][1:] == []


def test_bad_retrain_inputs_are_one_notification_line(dock, qtbot, cohort, tmp_path):
    _viewer, widget, notes = dock
    box = widget.debias.retrain
    assert not box.retrain()
    assert notes["error"][-1].startswith("choose a feature store")
    box.features_edit.setText(str(tmp_path / "missing.zarr"))
    assert not box.retrain()
    assert "feature store not found" in notes["error"][-1]
    box.features_edit.setText(str(cohort[2]))
    box.manifest_edit.setText(str(tmp_path / "none.csv"))
    assert not box.retrain()
    assert "cohort manifest not found" in notes["error"][-1]
    box.manifest_edit.setText("")  # filled in from the store again
    widget.configure(patch_size=8)
    with qtbot.waitSignal(widget.applied, timeout=30_000):
        widget.compute_button.click()
    assert not box.retrain()
    assert "features were embedded from 16 px patches" in notes["error"][-1]
    assert len(notes["error"]) == 4 and all("\n" not in e for e in notes["error"])
    assert not box.busy() and box.retrain_button.isEnabled()
