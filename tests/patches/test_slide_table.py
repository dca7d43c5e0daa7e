"""One slide's patch table (core, no Qt): its rows, grid, predictions attached, worst errors.

The table is a real ``grid.patch_stats`` table of a small slide whose grid starts at
``(2, 4)`` with 8 px patches (4 x 5 cells), so the origin and stride are known.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from napari_patchwise import Slide
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.patches.grid import PatchGrid, patch_stats
from napari_patchwise.patches.predictions import (
    full_table,
    merge_predictions,
    slide_predictions,
    slide_rows,
    top_errors,
    with_pred,
)
from napari_patchwise.patches.table import guess_grid

ORIGIN, STRIDE = (2, 4), 8


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    mask = np.ones((36, 46), np.uint8)
    mask[2:10, 4:12] = 2  # cell (0, 0) is tumor
    image = da.from_array(np.zeros((1, 36, 46), np.uint8), chunks=16)
    slide = Slide(levels=(image,), channel_names=("c",), name="s").with_mask(
        da.from_array(mask, chunks=16)
    )
    return patch_stats(slide, PatchGrid(patch_size=STRIDE, origin=ORIGIN))


def index_of(table: pd.DataFrame) -> np.ndarray:
    index = np.full((4, 5), -1)
    index[table["row"], table["col"]] = np.arange(len(table))
    return index


def test_geometry_and_full_table_of_a_real_grid(table):
    assert len(table) == 20
    assert (guess_grid(table).origin, guess_grid(table).step) == (ORIGIN, STRIDE)
    both = pd.concat([table.assign(slide="other"), table])
    rows, grid = full_table(both, "s", (36, 46), source="t.csv")
    assert (grid.origin, grid.step) == (ORIGIN, STRIDE)
    assert rows.index.tolist() == list(range(20)) and (rows["slide"] == "s").all()
    pd.testing.assert_frame_equal(rows, table)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop(columns=["n_tissue", "label"]), "t.csv: not a patch table: it lacks n_tissue, label"),
        (lambda t: t.assign(slide="a"), "t.csv: table is for slide a, not 's' — load the table"),
        (lambda t: t.assign(y=t["y"] + 3), "t.csv: table's patches reach beyond the 36 x 46 slide 's'"),
    ],
)  # fmt: skip
def test_a_table_that_does_not_fit_the_slide_is_one_line(table, change, message):
    with pytest.raises(PatchwiseError) as info:
        full_table(change(table), "s", (36, 46), source="t.csv")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_slide_rows_lists_the_slides_in_table_order_with_the_callers_hint():
    table = pd.DataFrame({"slide": ["b", "a", "b", "c", "d"], "v": range(5)})
    with pytest.raises(PatchwiseError) as info:
        slide_rows(table, "x", source="t.csv", hint="pass the table of this image")
    assert (
        str(info.value)
        == "t.csv: table is for slide b, a, c, not 'x' — pass the table of this image."
    )
    assert slide_rows(table, "b", source="t.csv")["v"].tolist() == [0, 2]


def test_predictions_land_on_their_cells_and_others_stay_nan(table):
    predictions = pd.DataFrame(
        {"slide": ["s", "s", "other"], "row": [0, 3, 0], "col": [0, 4, 1], "prob": [0.9, 0.2, 0.5]}
    )
    mine = slide_predictions(predictions, "s", source="p.csv")
    assert mine["prob"].tolist() == [0.9, 0.2]
    merged = merge_predictions(table, index_of(table), mine, slide="s", source="p.csv")
    expected = np.full(20, np.nan)
    expected[0], expected[19] = 0.9, 0.2  # raster order: (0, 0) first, (3, 4) last
    np.testing.assert_array_equal(merged["prob"].to_numpy(), expected)
    assert "prob" not in table  # the slide's table is not changed


@pytest.mark.parametrize(
    ("predictions", "message"),
    [
        (pd.DataFrame({"row": [0], "col": [0]}), "p.csv: table has no 'prob' column"),
        (pd.DataFrame({"row": [0], "col": [0], "prob": [1.5]}), "p.csv: 'prob' values lie outside [0, 1]"),
        (pd.DataFrame({"slide": ["t"], "row": [0], "col": [0], "prob": [0.5]}), "p.csv: table is for slide t, not 's' — load the predictions"),
    ],
)  # fmt: skip
def test_a_prediction_table_that_is_not_for_the_slide_is_refused(predictions, message):
    with pytest.raises(PatchwiseError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        slide_predictions(predictions, "s", source="p.csv")


def test_predictions_of_another_grid_are_refused_with_their_count(table):
    # (4, 0) is outside the 4 x 5 grid; (1, 1) is a cell but its y is another grid's
    predictions = pd.DataFrame(
        {"row": [0, 4, 1], "col": [0, 0, 1], "y": [2, 34, 11], "prob": [0.1, 0.2, 0.3]}
    )
    with pytest.raises(PatchwiseError) as info:
        merge_predictions(table, index_of(table), predictions, slide="s", source="p.csv")
    assert str(info.value).startswith(
        "p.csv: 2 of 3 predicted patches are not patches of the computed grid of 's'"
    )


def test_pred_follows_the_threshold_and_is_minus_one_without_a_prediction():
    table = pd.DataFrame({"row": [0, 1, 2, 3]})
    prob = np.array([0.2, 0.5, np.nan, 0.7])
    assert with_pred(table, prob, 0.5)["pred"].tolist() == [0, 1, -1, 1]
    assert with_pred(table, prob, 0.75)["pred"].dtype == np.int8
    assert with_pred(table, None, 0.5) is table and "pred" not in table


def test_top_errors_most_confident_first_at_most_limit_nan_never_wrong():
    label = np.array([0, 1, 1, 0, 0, 1, 0])
    prob = np.array([0.9, 0.2, 0.8, 0.6, np.nan, 0.05, 0.3])
    positions, confidence = top_errors(label, prob, threshold=0.5)
    assert positions.tolist() == [5, 0, 1, 3]  # FN 0.95, FP 0.9, FN 0.8, FP 0.6
    np.testing.assert_allclose(confidence, [0.95, 0.9, 0.8, 0.6])
    positions, _ = top_errors(label, prob, threshold=0.5, limit=2)
    assert positions.tolist() == [5, 0]
    positions, _ = top_errors(label, prob, threshold=0.1)  # 0.2 and 0.8 are tumor now
    assert positions.tolist() == [5, 0, 3, 6]
