"""The cohort browser: a manifest's slides counted, predicted, opened one at a time.

The cohort is three hand-built slides (``tests/_cohort.py``: 8 x 8 cells of 16 px, each
background, healthy or tumor over a small or a large part of the cell), so every
patch's label and tissue ratio is read straight from the mask files here, and every
count and metric the browser shows is checked against numpy / ``metrics.evaluate`` on
those arrays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from _cohort import make_cohort
from napari_patchwise.analysis.metrics import evaluate
from napari_patchwise.cohort.manifest import read_manifest
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.groups import GROUP_NAMES
from napari_patchwise.settings import PatchSettings
from napari_patchwise.training.cohort_summary import (
    COMPUTED,
    FROM_CACHE,
    SlideSummary,
    attach_predictions,
    cohort_evaluation,
    cohort_slide_table,
    default_cache_dir,
    predictions_by_slide,
    read_predictions,
)
from napari_patchwise.training.data import load_cohort

P, CELLS = 16, 8
SPLITS = ("train", "val", "test")


def overlay_cells(label, values, ratio) -> np.ndarray:
    """An overlay's grid: 3 * label + value, NaN (transparent) on empty glass."""
    cells = np.where(np.asarray(ratio) == 0, np.nan, 3 * np.asarray(label) + np.asarray(values))
    return cells.reshape(CELLS, CELLS)


def truth(mask_path) -> tuple[np.ndarray, np.ndarray]:
    """Per-patch label and tissue ratio (raster order) straight from a mask file."""
    mask = tifffile.imread(mask_path)
    cells = mask.reshape(CELLS, P, CELLS, P).transpose(0, 2, 1, 3).reshape(CELLS * CELLS, P * P)
    return (cells == 2).any(axis=1).astype(int), (cells > 0).mean(axis=1)


def made_up_prob(label: np.ndarray, seed: int) -> np.ndarray:
    """Mostly right, some confident mistakes, some near the threshold."""
    rng = np.random.default_rng(seed)
    prob = np.where(label == 1, 0.8, 0.2) + rng.uniform(-0.15, 0.15, label.size)
    flip = rng.random(label.size) < 0.2
    prob[flip] = 1.0 - prob[flip]
    return prob


@pytest.fixture
def cohort(tmp_path):
    manifest = make_cohort(tmp_path / "cohort", splits=SPLITS, cells=CELLS, patch=P)
    entries = read_manifest(manifest)
    return manifest, entries, {e.slide: truth(e.mask) for e in entries}


def prediction_table(entries, truths, slides) -> pd.DataFrame:
    """``slide, row, col, prob`` for ``slides`` (as a run's predictions.parquet names them)."""
    rows, cols = np.divmod(np.arange(CELLS * CELLS), CELLS)
    parts = []
    for i, e in enumerate(entries):
        if e.slide in slides:
            prob = made_up_prob(truths[e.slide][0], seed=i)
            parts.append(pd.DataFrame({"slide": e.slide, "row": rows, "col": cols, "prob": prob}))
    return pd.concat(parts, ignore_index=True)


# -- the core: tables, the training cache, cohort sums --------------------------------------
def test_tables_shared_with_the_training_cache(cohort, tmp_path):
    manifest, entries, truths = cohort
    settings = PatchSettings(patch_size=P)
    cache = default_cache_dir(manifest)
    table, source = cohort_slide_table(entries[0], settings, cache_dir=cache)
    assert source == COMPUTED
    label, ratio = truths[entries[0].slide]
    np.testing.assert_array_equal(table.frame["label"], label)
    np.testing.assert_allclose(table.frame["tissue_ratio"], ratio)
    # the browser's table is the one training reuses, and training's the browser's
    stored = sorted(cache.glob("*.parquet"))
    assert len(stored) == 1
    load_cohort(manifest, settings)
    assert sorted(cache.glob("*.parquet"))[0] == stored[0]
    for entry in entries:
        again, source = cohort_slide_table(entry, settings, cache_dir=cache)
        assert source == FROM_CACHE
        np.testing.assert_array_equal(again.frame["label"], truths[entry.slide][0])
    # other settings: another cache entry, computed
    _, source = cohort_slide_table(entries[0], PatchSettings(patch_size=8), cache_dir=cache)
    assert source == COMPUTED
    # a cache folder that cannot be written (here: a file): counted all the same
    blocked = tmp_path / "read-only"
    blocked.write_text("not a folder")
    table, source = cohort_slide_table(entries[1], settings, cache_dir=blocked)
    assert source == COMPUTED
    np.testing.assert_array_equal(table.frame["label"], truths[entries[1].slide][0])


def test_cohort_sums_equal_evaluate_on_the_concatenation(cohort):
    manifest, entries, truths = cohort
    settings = PatchSettings(patch_size=P)
    cache = default_cache_dir(manifest)
    predictions = prediction_table(entries, truths, {"s1", "s2"})
    by_slide = predictions_by_slide(predictions, [e.slide for e in entries], source="p.csv")
    assert sorted(by_slide) == ["s1", "s2"]
    summaries = []
    for e in entries:
        table, source = cohort_slide_table(e, settings, cache_dir=cache)
        table = table.frame
        if e.slide in by_slide:
            table = attach_predictions(table, by_slide[e.slide], slide=e.slide, source="p.csv")
        summaries.append(SlideSummary.from_table(e.slide, e.split, table, source))
    label = np.concatenate([truths[e.slide][0] for e in entries])
    ratio = np.concatenate([truths[e.slide][1] for e in entries])
    prob = np.concatenate([made_up_prob(truths[s][0], seed=i) for i, s in ((1, "s1"), (2, "s2"))])
    for tau, threshold in ((0.1, 0.5), (0.3, 0.35), (0.0, 1.0)):
        counts, metrics = cohort_evaluation(summaries, tau, threshold)
        np.testing.assert_array_equal(
            counts.group_counts, evaluate(label, ratio, tau=tau).group_counts
        )
        expected = evaluate(label[64:], ratio[64:], prob=prob, tau=tau, threshold=threshold)
        np.testing.assert_array_equal(metrics.group_counts, expected.group_counts)
        np.testing.assert_array_equal(metrics.group_correct, expected.group_correct)
        for name in ("accuracy", "wga", "bca"):
            assert getattr(metrics, name) == pytest.approx(getattr(expected, name), nan_ok=True)
    assert summaries[0].evaluate(0.1, 0.5) is None and summaries[0].n_scored == 0
    assert cohort_evaluation(summaries[:1], 0.1, 0.5)[1] is None


def test_prediction_errors_name_the_file(cohort, tmp_path):
    _, entries, truths = cohort
    other = prediction_table(entries, truths, {"s0"}).assign(slide="elsewhere")
    with pytest.raises(PatchwiseError, match=r"p\.csv.*elsewhere, none of the cohort"):
        predictions_by_slide(other, ["s0"], source="p.csv")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(PatchwiseError, match=r"run.*no predictions\.parquet"):
        read_predictions(run)
    table, _ = cohort_slide_table(entries[0], PatchSettings(patch_size=P), cache_dir=tmp_path)
    table = table.frame
    shifted = prediction_table(entries, truths, {"s0"}).assign(row=lambda d: d["row"] + CELLS)
    with pytest.raises(PatchwiseError, match="not patches of the computed grid of 's0'"):
        attach_predictions(table, shifted, slide="s0", source="p.csv")
    shifted.drop(columns="slide").to_csv(tmp_path / "noslide.csv", index=False)
    with pytest.raises(PatchwiseError, match=r"noslide\.csv.*slide"):
        read_predictions(tmp_path / "noslide.csv")


# -- the dock's Cohort tab on a real viewer ----------------------------------------------
@pytest.fixture
def browser(make_napari_viewer, qtbot, monkeypatch):
    """A viewer with the Patchwise dock (16 px patches); notifications recorded."""
    from napari_patchwise._napari.dock import notify
    from napari_patchwise._napari.dock.widget import PatchwiseWidget

    errors: list[str] = []
    monkeypatch.setattr(notify, "show_error", errors.append)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    widget.configure(patch_size=P)
    return viewer, widget, widget.cohort_browser, errors


def wait(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.cohort_browser.busy() and not widget.busy(), timeout=60_000)


def column(summary, c: int) -> dict[str, str]:
    from napari_patchwise._napari.cohort_tab.summary import ROWS

    return {row: summary.text(row, c) for row in ROWS}


def expected_column(label, ratio, prob, tau, threshold, slides=None) -> dict[str, str]:
    """What the comparison table must say for these patches (prob NaN: not predicted).

    ``slides`` (each patch's slide) adds the slide-level interval that ``patchwise metrics
    --ci`` computes on the same predicted patches (same draws: 2,000, seed 0), when at
    least two slides are predicted.
    """
    counts = evaluate(label, ratio, tau=tau).group_counts
    out = {"patches": f"{label.size:,}"}
    out.update({name: f"{int(n):,}" for name, n in zip(GROUP_NAMES, counts, strict=True)})
    scored = ~np.isnan(prob)
    if not scored.any():
        return {**out, "predicted": "0", "accuracy": "—", "BCA": "—", "WGA": "—"}
    ev = evaluate(label[scored], ratio[scored], prob=prob[scored], tau=tau, threshold=threshold)
    out = {
        **out,
        "predicted": f"{int(scored.sum()):,}",
        "accuracy": f"{100 * ev.accuracy:.1f}%",
        "BCA": f"{100 * ev.bca:.1f}%",
        "WGA": f"{100 * ev.wga:.1f}%",
    }
    if slides is not None and np.unique(slides[scored]).size >= 2:
        from napari_patchwise.analysis.intervals import slide_bootstrap_ci, slide_counts

        counts = slide_counts(
            slides[scored], label[scored], ratio[scored], tau=tau, prob=prob[scored],
            threshold=threshold,
        )  # fmt: skip
        ci = slide_bootstrap_ci(counts)
        out["BCA"] += f" [{100 * ci.bca.low:.1f}%, {100 * ci.bca.high:.1f}%]"
        out["WGA"] += f" [{100 * ci.wga.low:.1f}%, {100 * ci.wga.high:.1f}%]"
    return out


def layer_names(viewer) -> set[str]:
    return {layer.name for layer in viewer.layers}


@pytest.mark.gui
def test_browse_switch_slides_and_compare(browser, cohort, qtbot, tmp_path):
    viewer, widget, cb, errors = browser
    manifest, entries, truths = cohort
    assert cb.open_manifest(manifest)
    wait(qtbot, widget)
    assert not errors, errors
    assert cb.slides.rowCount() == 3
    for i, e in enumerate(entries):
        label, _ = truths[e.slide]
        texts = [cb.slides.item(i, j).text() for j in range(6)]
        assert texts == [e.slide, e.split, "64", f"{label.sum()}", "—", "—"]
    # predictions for the val and test slides (s1, s2), as a run's predictions.parquet
    path = tmp_path / "predictions.parquet"
    prediction_table(entries, truths, {"s1", "s2"}).to_parquet(path)
    assert cb.load_predictions(path)
    wait(qtbot, widget)
    assert not errors, errors
    prob = {e.slide: np.full(64, np.nan) for e in entries}
    prob["s1"], prob["s2"] = made_up_prob(truths["s1"][0], 1), made_up_prob(truths["s2"][0], 2)
    for i, e in enumerate(entries):
        label, ratio = truths[e.slide]
        exp = expected_column(label, ratio, prob[e.slide], 0.1, 0.5)
        got = [cb.slides.item(i, j).text() for j in (4, 5)]
        assert got == [exp["accuracy"], exp["WGA"]], e.slide
    every = [np.concatenate([truths[e.slide][k] for e in entries]) for k in (0, 1)]
    all_prob = np.concatenate([prob[e.slide] for e in entries])
    all_slides = np.concatenate([np.full(64, e.slide) for e in entries])
    cohort_column = column(cb.summary, 1)
    assert cohort_column == expected_column(*every, all_prob, 0.1, 0.5, all_slides)
    assert "[" in cohort_column["WGA"]  # two predicted slides: a slide-level interval
    assert column(cb.summary, 0)["patches"] == "—"  # no slide open yet

    # open s0: its channels, mask and overlays; no predictions there
    assert cb.open_slide(0)
    wait(qtbot, widget)
    assert not errors, errors
    names = layer_names(viewer)
    assert {"s0 channel_0", "s0 channel_1", "s0 mask", "s0 tissue groups"} <= names
    assert "s0 correctness" not in names
    assert widget.current.slide.name == "s0"
    label, ratio = truths["s0"]
    groups = viewer.layers["s0 tissue groups"].data
    np.testing.assert_allclose(groups, overlay_cells(label, ratio, ratio), atol=1e-6)
    assert column(cb.summary, 0) == expected_column(label, ratio, prob["s0"], 0.1, 0.5)

    # switch to s2 (test, predicted): s0's layers are gone, s2's are there with outcomes
    cb.slides.cellClicked.emit(2, 0)  # as a click on the row
    wait(qtbot, widget)
    assert not errors, errors
    names = layer_names(viewer)
    assert not [n for n in names if n.startswith("s0 ")], names
    assert {"s2 channel_0", "s2 mask", "s2 tissue groups", "s2 correctness"} <= names
    assert widget.current.slide.name == "s2"
    label, ratio = truths["s2"]
    correctness = viewer.layers["s2 correctness"].data
    expected = overlay_cells(label, prob["s2"], ratio)
    np.testing.assert_allclose(correctness, expected, atol=1e-6)
    image = viewer.layers["s2 channel_0"].data[0]
    np.testing.assert_array_equal(np.asarray(image), tifffile.imread(entries[2].image)[0])
    assert column(cb.summary, 0) == expected_column(label, ratio, prob["s2"], 0.1, 0.5)
    # the dock's own table for s2 agrees with the browser's (same counts, same prob)
    np.testing.assert_allclose(widget.current.data.prob, prob["s2"])

    # the sliders move both columns; the split filter narrows the cohort column
    widget.tau_slider.setValue(0.3)
    widget.threshold_slider.setValue(0.35)
    qtbot.waitUntil(lambda: column(cb.summary, 0)["patches"] != "—" and not
                    cb.refresh_timer.isActive(), timeout=5000)  # fmt: skip
    assert column(cb.summary, 0) == expected_column(label, ratio, prob["s2"], 0.3, 0.35)
    assert column(cb.summary, 1) == expected_column(*every, all_prob, 0.3, 0.35, all_slides)
    cb.split_combo.setCurrentText("val")
    l1, r1 = truths["s1"]
    val_column = column(cb.summary, 1)  # one predicted slide: no interval, not a faked one
    assert val_column == expected_column(l1, r1, prob["s1"], 0.3, 0.35, np.full(64, "s1"))
    assert "[" not in val_column["WGA"]
    assert cb.summary.horizontalHeaderItem(1).text() == "cohort (val)"

    # back to s0: s2's layers go, s0's come back with the cohort's grid (no recount)
    assert cb.open_slide(0)
    wait(qtbot, widget)
    names = layer_names(viewer)
    assert not [n for n in names if n.startswith("s2 ")] and "s0 tissue groups" in names
    assert widget.form.patch_size.value() == P and widget.current.slide.name == "s0"
    assert widget.tau_slider.value() == pytest.approx(0.3)  # the slider stays where it was


@pytest.mark.gui
def test_bad_manifests_and_slides_are_one_notification(browser, cohort, qtbot, tmp_path):
    viewer, widget, cb, errors = browser
    manifest, entries, _ = cohort
    missing = tmp_path / "missing.csv"
    missing.write_text("image,mask,split\ns0.ome.tif,s0_mask.tif,train\nnope.tif,s1_mask.tif,val\n")
    for name in ("s0.ome.tif", "s0_mask.tif", "s1_mask.tif"):
        (tmp_path / name).write_bytes((manifest.parent / name).read_bytes())
    assert not cb.open_manifest(missing)
    assert len(errors) == 1 and "missing.csv" in errors[0] and "'nope.tif' not found" in errors[0]
    assert cb.slides.rowCount() == 0
    # a slide that is not a readable image: its row says so, the rest are counted
    entries[1].image.write_bytes(b"II*\x00 this is not a TIFF")
    errors.clear()
    assert cb.open_manifest(manifest)
    wait(qtbot, widget)
    assert len(errors) == 1 and "s1.ome.tif" in errors[0], errors
    assert [cb.slides.item(i, 2).text() for i in range(3)] == ["64", "error", "64"]
    assert cb.slides.item(1, 2).toolTip() == errors[0]
    assert "2 of 3 slides counted" in cb.status_label.text()
    # a prediction table for another cohort: one notification naming it
    errors.clear()
    other = tmp_path / "other.csv"
    pd.DataFrame({"slide": ["x"], "row": [0], "col": [0], "prob": [0.5]}).to_csv(other)
    assert cb.load_predictions(other)
    wait(qtbot, widget)
    assert len(errors) == 1 and "other.csv" in errors[0] and "none of the cohort" in errors[0]
    # opening the unreadable slide: one notification naming it, no layers added
    errors.clear()
    before = layer_names(viewer)
    cb.open_slide(1)
    wait(qtbot, widget)
    assert len(errors) == 1 and "s1.ome.tif" in errors[0], errors
    assert layer_names(viewer) == before


@pytest.mark.gui
def test_a_slide_not_counted_yet_is_computed_by_the_dock(browser, cohort, qtbot):
    viewer, widget, cb, errors = browser
    manifest, _, truths = cohort
    assert cb.open_manifest(manifest)
    wait(qtbot, widget)
    del cb.summaries[0]  # as if its count had not finished yet
    assert cb.open_slide(0)
    wait(qtbot, widget)
    assert not errors, errors
    label, ratio = truths["s0"]
    groups = viewer.layers["s0 tissue groups"].data
    np.testing.assert_allclose(groups, overlay_cells(label, ratio, ratio), atol=1e-6)
    assert widget.current.settings.patch.patch_size == P
    np.testing.assert_array_equal(widget.current.data.label, label)


@pytest.mark.gui
def test_cancel_keeps_the_browser_usable(browser, cohort, qtbot, monkeypatch):
    from napari_patchwise._napari.dock import notify

    _, widget, cb, errors = browser
    manifest, _, _ = cohort
    notices: list[str] = []
    monkeypatch.setattr(notify, "show_info", notices.append)
    assert cb.open_manifest(manifest)
    assert cb.cancel_button.isEnabled()
    cb.cancel_button.click()
    wait(qtbot, widget)
    assert any("cohort counting cancelled" in n for n in notices), notices
    assert not cb.cancel_button.isEnabled() and not errors
    assert cb.recount()
    wait(qtbot, widget)
    assert [cb.slides.item(i, 2).text() for i in range(3)] == ["64"] * 3
