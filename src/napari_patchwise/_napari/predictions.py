"""Attach a prediction table to a slide's computed patch table, or say why it does not fit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import PatchwiseError
from .state import SlideState


def predictions_for(
    state: SlideState, predictions: pd.DataFrame, path
) -> tuple[pd.DataFrame, tuple[int, int], int]:
    """Merge a prediction table into the slide's patch table, or explain why it does not fit.

    The table must hold ``prob``; its ``slide`` column (if any) must name this slide; its
    ``row``/``col`` must be cells of the computed grid with the same ``y``/``x``. Without
    a computed grid, a full patch table (all statistics columns) is used as it is.
    """
    name = state.slide.name
    if "prob" not in predictions:
        raise PatchwiseError(
            "table has no 'prob' column", path=path, hint="load a prediction table"
        )
    if "slide" in predictions:
        slides = pd.unique(predictions["slide"].astype(str))
        if name not in slides:
            listed = ", ".join(map(str, slides[:3]))
            raise PatchwiseError(
                f"table is for slide {listed}, not '{name}'",
                path=path,
                hint="load the predictions of the open slide",
            )
        predictions = predictions[predictions["slide"].astype(str) == name]
    prob = predictions["prob"].to_numpy(dtype=np.float64)
    if prob.size and not (np.nanmin(prob) >= 0 and np.nanmax(prob) <= 1):
        raise PatchwiseError("'prob' values lie outside [0, 1]", path=path)
    if state.data is None:
        return full_table_for(state, predictions, path)
    raster = state.data.raster
    rows = predictions["row"].to_numpy(dtype=np.int64)
    cols = predictions["col"].to_numpy(dtype=np.int64)
    inside = (rows >= 0) & (rows < raster.shape[0]) & (cols >= 0) & (cols < raster.shape[1])
    positions = np.full(rows.size, -1, dtype=np.int64)
    positions[inside] = raster.index[rows[inside], cols[inside]]
    table = state.data.table
    same_place = positions >= 0
    for column in ("y", "x"):
        if column in predictions and same_place.any():
            same_place[same_place] &= (
                table[column].to_numpy()[positions[same_place]]
                == predictions[column].to_numpy()[same_place]
            )
    if not same_place.all():
        bad = int((~same_place).sum())
        raise PatchwiseError(
            f"{bad:,} of {rows.size:,} predicted patches are not patches of the computed grid "
            f"of '{name}' (different patch size or stride?)",
            path=path,
            hint="compute the grid with the settings the predictions were made with",
        )
    merged = table.drop(columns=[c for c in ("prob", "pred") if c in table]).copy()
    full = np.full(len(merged), np.nan)
    full[positions] = prob
    merged["prob"] = full
    origin, stride = state.geometry
    return merged, origin, stride


def full_table_for(
    state: SlideState, table: pd.DataFrame, path
) -> tuple[pd.DataFrame, tuple[int, int], int]:
    """A complete patch table (``patchwise stats`` / ``predict`` output) for this slide.

    Returns the slide's rows, the grid origin and the stride.
    """
    from ..grid import TABLE_COLUMNS

    missing = [c for c in TABLE_COLUMNS if c not in table]
    if missing:
        raise PatchwiseError(
            f"not a patch table: it lacks {', '.join(missing[:4])}",
            path=path,
            hint="compute the patch grid first, or load a table written by 'patchwise stats'",
        )
    name = state.slide.name
    slides = pd.unique(table["slide"].astype(str))
    if name not in slides:
        raise PatchwiseError(
            f"table is for slide {', '.join(map(str, slides[:3]))}, not '{name}'",
            path=path,
            hint="load the table of the open slide",
        )
    table = table[table["slide"].astype(str) == name].reset_index(drop=True)
    _, height, width = state.slide.shape
    if (table["y"] + table["height"]).max() > height or (table["x"] + table["width"]).max() > width:
        raise PatchwiseError(
            f"table's patches reach beyond the {height} x {width} slide '{name}'",
            path=path,
        )
    origin, stride = geometry_of(table)
    return table, origin, stride


def geometry_of(table: pd.DataFrame) -> tuple[tuple[int, int], int]:
    """Grid origin and stride of a patch table (from its ``row, col, y, x`` columns)."""
    strides = []
    for pos, index in (("y", "row"), ("x", "col")):
        values = table[[index, pos]].drop_duplicates(index).sort_values(index).to_numpy()
        if len(values) > 1:
            strides.append(int((values[1, 1] - values[0, 1]) // (values[1, 0] - values[0, 0])))
    stride = strides[0] if strides else int(table["height"].max())
    first = table.iloc[0]
    origin = (int(first["y"] - first["row"] * stride), int(first["x"] - first["col"] * stride))
    return origin, stride
