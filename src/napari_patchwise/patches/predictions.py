"""One slide's patch table: its rows, its grid, predictions attached, the worst errors.

A patch table (``patchwise stats`` / ``predict`` output, or one computed in the viewer)
may hold several slides; these functions pick one slide's rows and check that a
prediction table fits them. They are pure numpy/pandas: the viewer and the CLI share
them (``patchwise view --table`` checks the slide name with :func:`slide_rows` before
napari starts).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import PatchwiseError
from ..schema import PREDICTION_COLUMNS, TABLE_COLUMNS
from .table import guess_grid

if TYPE_CHECKING:
    from .grid import PatchGrid

#: How many misclassified patches :func:`top_errors` returns by default.
TOP_ERRORS = 500

Source = str | os.PathLike


def slide_rows(
    table: pd.DataFrame,
    slide: str,
    *,
    source: Source,
    hint: str = "load the table of the open slide",
) -> pd.DataFrame:
    """The rows of ``table`` whose ``slide`` column names ``slide`` (index reset).

    Raises
    ------
    PatchwiseError
        No row is for ``slide`` (the message lists up to three slides the table holds).
    """
    names = table["slide"].astype(str)
    match = (names == slide).to_numpy()  # set(names) took 1 s per 10^6 arrow strings
    if not match.any():
        listed = ", ".join(map(str, pd.unique(names)[:3]))
        raise PatchwiseError(f"table is for slide {listed}, not '{slide}'", path=source, hint=hint)
    return table[match].reset_index(drop=True)


def full_table(
    table: pd.DataFrame,
    slide: str,
    slide_yx: tuple[int, int],
    *,
    source: Source,
    grid: PatchGrid | None = None,
) -> tuple[pd.DataFrame, PatchGrid]:
    """A complete patch table's rows for ``slide``, with the grid they lie on.

    Parameters
    ----------
    table : DataFrame
        Every column of ``schema.TABLE_COLUMNS`` (``prob`` optional).
    slide : str
        The slide's name.
    slide_yx : (int, int)
        The slide's level-0 size; no patch may reach beyond it.
    source : str or path
        Where the table came from (named in errors).
    grid : PatchGrid, optional
        The grid the table file records (:func:`.patch_table.read_table_metadata`);
        default: guessed from the rows (:func:`.patch_table.guess_grid`, older files).

    Raises
    ------
    PatchwiseError
        Columns missing, no rows for ``slide``, or patches outside the slide.
    """

    missing = [c for c in TABLE_COLUMNS if c not in table]
    if missing:
        raise PatchwiseError(
            f"not a patch table: it lacks {', '.join(missing[:4])}",
            path=source,
            hint="compute the patch grid first, or load a table written by 'patchwise stats'",
        )
    table = slide_rows(table, slide, source=source)
    height, width = slide_yx
    if (table["y"] + table["height"]).max() > height or (table["x"] + table["width"]).max() > width:
        raise PatchwiseError(
            f"table's patches reach beyond the {height} x {width} slide '{slide}'", path=source
        )
    return table, guess_grid(table) if grid is None else grid


def slide_predictions(predictions: pd.DataFrame, slide: str, *, source: Source) -> pd.DataFrame:
    """The rows of a prediction table for ``slide``, checked.

    The table must hold ``prob`` in [0, 1] (NaN: no prediction); a ``slide`` column, if
    present, must name ``slide``.
    """
    if "prob" not in predictions:
        raise PatchwiseError(
            "table has no 'prob' column", path=source, hint="load a prediction table"
        )
    if "slide" in predictions:
        predictions = slide_rows(
            predictions, slide, source=source, hint="load the predictions of the open slide"
        )
    prob = predictions["prob"].to_numpy(dtype=np.float64)
    if prob.size and not (np.nanmin(prob) >= 0 and np.nanmax(prob) <= 1):
        raise PatchwiseError("'prob' values lie outside [0, 1]", path=source)
    return predictions


def merge_predictions(
    table: pd.DataFrame,
    index: np.ndarray,
    predictions: pd.DataFrame,
    *,
    slide: str,
    source: Source,
) -> pd.DataFrame:
    """``table`` with the ``prob`` of ``predictions`` (NaN for patches without one).

    Parameters
    ----------
    table : DataFrame
        The slide's patch table (one row per patch of its grid).
    index : ndarray of int, shape (n_rows, n_cols)
        Row position of ``table`` at each grid cell, ``-1`` where there is no patch.
    predictions : DataFrame
        ``row, col, prob`` (optionally ``y, x``), already the slide's
        (:func:`slide_predictions`).

    Raises
    ------
    PatchwiseError
        A prediction's ``row, col`` is not a patch of the grid, or its ``y, x`` differ.
    """
    positions = _grid_positions(index, predictions)
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
            f"{bad:,} of {positions.size:,} predicted patches are not patches of the computed "
            f"grid of '{slide}' (different patch size or stride?)",
            path=source,
            hint="compute the grid with the settings the predictions were made with",
        )
    merged = table.drop(columns=[c for c in PREDICTION_COLUMNS if c in table]).copy()
    prob = np.full(len(merged), np.nan)
    prob[positions] = predictions["prob"].to_numpy(dtype=np.float64)
    merged["prob"] = prob
    return merged


def _grid_positions(index: np.ndarray, predictions: pd.DataFrame) -> np.ndarray:
    """Table position of each prediction's ``row, col`` (``-1`` outside the grid)."""
    rows = predictions["row"].to_numpy(dtype=np.int64)
    cols = predictions["col"].to_numpy(dtype=np.int64)
    n_rows, n_cols = index.shape
    inside = (rows >= 0) & (rows < n_rows) & (cols >= 0) & (cols < n_cols)
    positions = np.full(rows.size, -1, dtype=np.int64)
    positions[inside] = index[rows[inside], cols[inside]]
    return positions


def with_pred(table: pd.DataFrame, prob: np.ndarray | None, threshold: float) -> pd.DataFrame:
    """``table`` with ``pred = prob >= threshold`` as int8 (``-1``: no prediction).

    Without ``prob`` the table is returned as it is.
    """
    if prob is None:
        return table
    table = table.copy()
    table["pred"] = np.where(np.isnan(prob), -1, prob >= threshold).astype(np.int8)
    return table


def top_errors(
    label: np.ndarray,
    prob: np.ndarray,
    *,
    threshold: float,
    limit: int = TOP_ERRORS,
) -> tuple[np.ndarray, np.ndarray]:
    """Table positions of the misclassified patches, most confident first, and confidences.

    Confidence is the probability the model gave its (wrong) answer: ``prob`` for a false
    positive, ``1 - prob`` for a false negative. Patches without a prediction (NaN) are
    never errors. At most ``limit`` are returned (an O(N) partial selection, then a sort
    of those).

    Examples
    --------
    >>> import numpy as np
    >>> positions, confidence = top_errors(
    ...     np.array([0, 1, 1, 0]), np.array([0.9, 0.2, 0.8, 0.6]), threshold=0.5
    ... )
    >>> positions.tolist(), confidence.round(2).tolist()
    ([0, 1, 3], [0.9, 0.8, 0.6])
    """
    pred = prob >= threshold
    wrong = np.flatnonzero((pred != (label == 1)) & ~np.isnan(prob))
    confidence = np.where(pred[wrong], prob[wrong], 1.0 - prob[wrong])
    if wrong.size > limit:
        keep = np.argpartition(-confidence, limit - 1)[:limit]
        wrong, confidence = wrong[keep], confidence[keep]
    order = np.argsort(-confidence, kind="stable")
    return wrong[order], confidence[order]
