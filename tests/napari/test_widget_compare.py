"""The dock's Compare tab on a real napari viewer (run under Xvfb).

Two runs' prediction tables of a hand-built slide are loaded; the comparison layer's
four classes are checked cell by cell against classes computed with numpy straight from
the two tables, at two thresholds, and the side-by-side table against scikit-learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from napari_patchwise._napari.canvas.navigation import viewer_camera
from napari_patchwise._napari.dock import notify
from napari_patchwise._napari.dock.widget import PatchwiseWidget
from napari_patchwise.groups import group_ids

pytestmark = pytest.mark.gui

P = 32
N = 8
K = np.arange(N * N).reshape(N, N) % (P + 1)  # tissue rows per patch


def make_slide() -> tuple[np.ndarray, np.ndarray]:
    """Patch (r, c) has K rows of tissue; every third patch with tissue holds tumor."""
    image = np.zeros((N * P, N * P), dtype=np.float32)
    mask = np.zeros((N * P, N * P), dtype=np.uint8)
    for r in range(N):
        for c in range(N):
            k = K[r, c]
            mask[r * P : r * P + k, c * P : (c + 1) * P] = 1
            image[r * P : r * P + k, c * P : (c + 1) * P] = 1.0
            if (r + c) % 3 == 0 and k:
                mask[r * P, c * P] = 2
    return image, mask


@pytest.fixture
def docked(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    """The slide with its grid computed, and two runs' prediction tables on disk."""
    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    viewer = make_napari_viewer(show=True)
    image, mask = make_slide()
    viewer.add_image(image, name="slide", scale=(0.5, 0.5))
    viewer.add_labels(mask, name="slide mask", scale=(0.5, 0.5))
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    widget.configure(patch_size=P)
    widget.configure(mask="slide mask")
    widget.compute_button.click()
    qtbot.waitUntil(lambda: not widget.busy(), timeout=60_000)
    table = widget.current.data.table
    rng = np.random.default_rng(3)
    keys = table[["slide", "row", "col"]]
    prob_a = rng.random(len(table))
    prob_b = np.clip(prob_a + rng.normal(0, 0.35, len(table)), 0, 1)
    keys.assign(prob=prob_a).to_parquet(tmp_path / "erm.parquet")
    # B's rows in another order, as CSV: rows are matched by slide, row, col
    keys.assign(prob=prob_b).iloc[::-1].to_csv(tmp_path / "gerne.csv", index=False)
    assert not errors, errors
    return viewer, widget, errors, tmp_path


def expected_classes(table, path_a, path_b, threshold, *, drawn=True):
    """Comparison class per (row, col) straight from the two files, with numpy (``drawn``:
    as the layer draws them, empty glass -1)."""
    a = pd.read_parquet(path_a).set_index(["row", "col"])["prob"]
    b = pd.read_csv(path_b).set_index(["row", "col"])["prob"]
    keys = pd.MultiIndex.from_frame(table[["row", "col"]])
    tumor = table["label"].to_numpy() == 1
    right_a = (a.reindex(keys).to_numpy() >= threshold) == tumor
    right_b = (b.reindex(keys).to_numpy() >= threshold) == tumor
    classes = np.select(
        [right_a & right_b, ~right_a & ~right_b, right_a & ~right_b], [0, 1, 2], default=3
    )
    # empty glass (tissue ratio 0) is drawn transparent, as on every overlay
    if drawn:
        classes = np.where(table["tissue_ratio"].to_numpy() > 0, classes, -1)
    grid = np.full((N, N), -1)
    grid[table["row"], table["col"]] = classes
    return grid


def test_comparison_layer_matches_the_tables_at_two_thresholds(docked, qtbot):
    _viewer, widget, errors, tmp = docked
    box = widget.compare_box
    table = widget.current.data.table
    assert box.load_tables(tmp / "erm.parquet", tmp / "gerne.csv", names=("ERM", "GERNE"))
    with qtbot.waitSignal(box.compared, timeout=60_000):
        pass
    assert not errors, errors
    layer = box.layer
    assert layer.name == "slide run comparison"
    assert layer.metadata["patchwise_overlay"] == "comparison"
    correctness = widget.current.overlays.layers.get("correctness")
    if correctness is not None:  # same grid transform as the dock's own overlays
        assert tuple(layer.scale) == tuple(correctness.scale)
    assert tuple(layer.scale) == (P * 0.5, P * 0.5)
    assert layer.data is box.data.grid.values  # updated in place, then refreshed
    for threshold in (0.5, 0.3, 0.31):  # 0.3 -> 0.31 recomputes only a few cells
        widget.threshold_slider.setValue(threshold)
        expected = expected_classes(table, tmp / "erm.parquet", tmp / "gerne.csv", threshold)
        shown = np.asarray(layer.data).astype(int) - 1
        np.testing.assert_array_equal(shown, expected)
        every = expected_classes(
            table, tmp / "erm.parquet", tmp / "gerne.csv", threshold, drawn=False
        )
        counts = [int((every == k).sum()) for k in range(4)]  # glass counted
        assert min(counts) > 0, counts  # every class is on the slide
        assert f"only ERM right {counts[2]:,}" in box.summary.text()
        assert f"only GERNE right {counts[3]:,}" in box.summary.text()
        qtbot.waitUntil(
            lambda c=counts: f"{c[3]:,} patches fixed by GERNE" in box.list_label.text()
        )
        assert box.patches.rowCount() == counts[3]


def test_side_by_side_table_follows_tau_and_agrees_with_sklearn(docked, qtbot):
    _viewer, widget, _errors, tmp = docked
    box = widget.compare_box
    table = widget.current.data.table
    box.load_tables(tmp / "erm.parquet", tmp / "gerne.csv")
    with qtbot.waitSignal(box.compared, timeout=60_000):
        pass
    assert box.table.horizontalHeaderItem(2).text() == "erm"
    assert box.table.horizontalHeaderItem(3).text() == "gerne"
    label = table["label"].to_numpy()
    probs = {
        2: pd.read_parquet(tmp / "erm.parquet")["prob"].to_numpy(),
        3: pd.read_csv(tmp / "gerne.csv")["prob"].to_numpy()[::-1],
    }
    for tau in (0.1, 0.6):
        widget.tau_slider.setValue(tau)
        groups = group_ids(label, table["tissue_ratio"].to_numpy(), tau)
        for g in range(4):
            members = groups == g
            assert box.table.item(g, 1).text() == f"{members.sum():,}"
            for column, prob in probs.items():
                acc = accuracy_score(label[members], prob[members] >= 0.5)
                assert box.table.item(g, column).text() == f"{100 * acc:.1f}%"


def test_broken_list_goes_to_the_patch(docked, qtbot):
    viewer, widget, _errors, tmp = docked
    box = widget.compare_box
    box.load_tables(tmp / "erm.parquet", tmp / "gerne.csv", names=("ERM", "GERNE"))
    with qtbot.waitSignal(box.compared, timeout=60_000):
        pass
    box.filter_combo.setCurrentIndex(1)
    assert box.filter_combo.currentText() == "broken by GERNE"
    expected = expected_classes(
        widget.current.data.table, tmp / "erm.parquet", tmp / "gerne.csv", 0.5
    )
    assert box.patches.rowCount() == int((expected == 2).sum())
    box.patches.selectRow(0)
    pos = box.patches.position_at(0)
    row, col = (int(box.data.table[c].iat[pos]) for c in ("row", "col"))
    assert expected[row, col] == 2  # only ERM right: broken by GERNE
    centre = viewer_camera(viewer).center[-2:]
    np.testing.assert_allclose(
        centre, (0.5 * (row * P + (P - 1) / 2), 0.5 * (col * P + (P - 1) / 2))
    )


def test_tables_of_other_patches_are_one_notification(docked, qtbot):
    _viewer, widget, errors, tmp = docked
    box = widget.compare_box
    pd.read_csv(tmp / "gerne.csv").iloc[5:].to_csv(tmp / "short.csv", index=False)
    box.load_tables(tmp / "erm.parquet", tmp / "short.csv")
    qtbot.waitUntil(lambda: not box.busy(), timeout=60_000)
    assert len(errors) == 1
    assert "5 of A's 64 are not in B" in errors[0] and "\n" not in errors[0]
    assert box.layer is None
    box.use_last_trainings()  # nothing trained in this dock yet
    assert "train two runs" in errors[-1]


# -- run folders: the dock's last two trainings ------------------------------------------
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """ERM and GERNE trained briefly on tests/_cohort.py's cohort (test slide: s3)."""
    from _cohort import make_cohort
    from napari_patchwise.training.loop import TrainConfig, train

    folder = tmp_path_factory.mktemp("cohort")
    manifest = make_cohort(folder)
    runs = [
        train(
            TrainConfig.from_options(
                manifest=str(manifest),
                out=str(folder / method),
                method=method,
                model="smallcnn",
                patch_size=16,
                steps=6,
                eval_every=3,
                batch_size=16,
                num_threads=1,
                seed=seed,
            )
        )
        for seed, method in enumerate(("erm", "gerne"))
    ]
    return folder, runs


def open_cohort_slide(viewer, widget, qtbot, folder, name):
    import tifffile

    viewer.open(str(folder / f"{name}.ome.tif"), plugin="napari-patchwise")
    viewer.add_labels(tifffile.imread(folder / f"{name}_mask.tif"), name=f"{name}_mask")
    widget.configure(mask=f"{name}_mask")
    widget.configure(patch_size=16)
    with qtbot.waitSignal(widget.applied, timeout=30_000):
        widget.compute_button.click()


def test_last_two_trainings_use_their_test_predictions_or_predict_the_slide(
    make_napari_viewer, qtbot, monkeypatch, two_runs
):
    from napari_patchwise.io import open_slide
    from napari_patchwise.training.predict import predict_table

    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    folder, (erm, gerne) = two_runs
    viewer = make_napari_viewer(show=True)
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    box = widget.compare_box
    for run in (erm, gerne):  # what the Model tab emits when a run ends
        widget.model_panel.trained.emit(run)
    # s3 is the cohort's test slide: both runs' predictions.parquet hold it
    open_cohort_slide(viewer, widget, qtbot, folder, "s3")
    with qtbot.waitSignal(box.compared, timeout=60_000):
        assert box.use_last_trainings()
    assert not errors, errors
    assert box.data.names == ("ERM", "GERNE")
    table = widget.current.data.table
    for prob, run in ((box.data.prob_a, erm), (box.data.prob_b, gerne)):
        saved = pd.read_parquet(run / "predictions.parquet")
        saved = saved[saved["slide"] == "s3"].set_index(["row", "col"])["prob"]
        np.testing.assert_allclose(
            prob, saved.reindex(pd.MultiIndex.from_frame(table[["row", "col"]]))
        )
    # s1 is a training slide: no saved predictions, so each run's checkpoint predicts it
    open_cohort_slide(viewer, widget, qtbot, folder, "s1")
    with qtbot.waitSignal(box.compared, timeout=120_000):
        assert box.use_last_trainings()
    assert not errors, errors
    table = widget.current.data.table
    slide = open_slide(folder / "s1.ome.tif", mask=folder / "s1_mask.tif")
    direct = predict_table(slide, table, erm, batch_size=64)
    np.testing.assert_allclose(box.data.prob_a, direct["prob"], rtol=1e-5)
    shown = np.asarray(box.layer.data)
    assert box.layer.name == "s1 run comparison"
    # every patch with tissue has both predictions (empty glass is drawn transparent)
    assert int((shown > 0).sum()) == int((table["tissue_ratio"] > 0).sum())
    assert int(box.data.grid.counts.sum()) == len(table)  # and every patch is counted


def test_a_threshold_move_repaints_the_layer(docked, qtbot):
    """The layer's array changes in place; the canvas must show the new classes."""
    viewer, widget, errors, tmp = docked
    box = widget.compare_box
    keys = widget.current.data.table[["slide", "row", "col"]]
    keys.assign(prob=0.4).to_parquet(tmp / "flat_a.parquet")
    keys.assign(prob=0.4).to_parquet(tmp / "flat_b.parquet")
    widget.threshold_slider.setValue(0.5)
    with qtbot.waitSignal(box.compared, timeout=60_000):
        box.load_tables(tmp / "flat_a.parquet", tmp / "flat_b.parquet")
    for layer in viewer.layers:
        layer.visible = layer is box.layer
    box.layer.opacity = 1.0
    viewer.reset_view()

    def yellow_pixels() -> int:  # "both wrong"
        qtbot.wait(50)
        shot = viewer.screenshot(canvas_only=True, flash=False).astype(int)
        return int(((shot[..., 0] > 200) & (shot[..., 1] > 200) & (shot[..., 2] < 120)).sum())

    label = widget.current.data.table["label"].to_numpy()
    before = yellow_pixels()  # at 0.5 every tumor patch is missed by both
    widget.threshold_slider.setValue(0.3)  # now every non-tumor patch is
    after = yellow_pixels()
    assert (label == 1).sum() < (label == 0).sum() / 1.5
    assert after > 1.5 * before > 0
    assert not errors, errors


def test_docs_script_block_runs(docked, qtbot, monkeypatch):
    """docs/compare.md's "From a script" block, with the dock as ``widget``."""
    import re
    from pathlib import Path

    _viewer, widget, errors, tmp = docked
    doc = Path(__file__).resolve().parents[2] / "docs" / "compare.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.DOTALL)
    (script,) = [block for block in blocks if "widget." in block]
    for name, source in (("erm", tmp / "erm.parquet"), ("gerne", tmp / "gerne.csv")):
        (tmp / name).mkdir()
        table = pd.read_parquet(source) if name == "erm" else pd.read_csv(source)
        table.to_parquet(tmp / name / "predictions.parquet")
    monkeypatch.chdir(tmp)
    exec(compile(script, str(doc), "exec"), {"widget": widget})
    assert not errors, errors
    assert widget.compare_box.data is not None
    assert widget.compare_box.data.names == ("ERM", "GERNE")


def test_without_a_computed_grid_a_complete_table_gives_the_grid(docked, qtbot):
    viewer, widget, errors, tmp = docked
    table = widget.current.data.table.assign(slide="copy")
    image, _mask = make_slide()
    viewer.add_image(image, name="copy", scale=(0.5, 0.5))
    widget.configure(image="copy")
    assert widget.current.slide.name == "copy" and widget.current.data is None
    a = pd.read_parquet(tmp / "erm.parquet").assign(slide="copy")
    b = pd.read_csv(tmp / "gerne.csv").assign(slide="copy")
    table.merge(a, on=["slide", "row", "col"]).to_parquet(tmp / "copy_a.parquet")
    b.to_parquet(tmp / "copy_b.parquet")
    box = widget.compare_box
    with qtbot.waitSignal(box.compared, timeout=60_000):
        box.load_tables(tmp / "copy_a.parquet", tmp / "copy_b.parquet")
    assert not errors, errors
    assert box.layer.name == "copy run comparison"
    assert tuple(box.layer.scale) == (P * 0.5, P * 0.5)
    expected = expected_classes(table, tmp / "erm.parquet", tmp / "gerne.csv", 0.5)
    np.testing.assert_array_equal(np.asarray(box.layer.data).astype(int) - 1, expected)
    # only B's table: no labels anywhere, one notification (once the dock's own follow-up
    # work on the new grid is done: a comparison asked for meanwhile is refused, as a
    # user's would be)
    qtbot.waitUntil(lambda: not widget.busy() and not box.busy(), timeout=60_000)
    box.load_tables(tmp / "copy_b.parquet", tmp / "copy_a.parquet")
    qtbot.waitUntil(lambda: not box.busy(), timeout=60_000)
    assert len(errors) == 1 and "not a patch table" in errors[0]
