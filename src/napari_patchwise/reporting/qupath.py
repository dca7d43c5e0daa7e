"""The one QuPath class scheme of Patchwise's GeoJSON exports (dock, CLI, errors list).

Every export of patches as QuPath objects — the dock's *Save GeoJSON…*, the Errors tab's
*Export errors…*, ``patchwise stats --geojson`` — goes through :func:`write_patches`, so
the same patch gets the same class, colour and measurements whichever way it was saved.
What the class means is a choice (``docs/annotations.md``, "Patches as QuPath objects"):

* ``label`` — ``non-tumor`` / ``tumor`` (the default);
* ``group`` — the four label x attribute groups (``non-tumor/small`` ... ``tumor/large``,
  or ``.../low``, ``.../high`` for another attribute than the tissue ratio);
* ``outcome`` — ``TN`` / ``FP`` / ``FN`` / ``TP`` at the decision threshold (needs
  predictions).

The measurements are the table's counts, label, ratios and ``prob``/``pred``, plus the
``group`` id (0-3), the ``outcome`` code (0-3, TN FP FN TP; only with predictions) and,
when the slide's pixel size is known, ``x_um``, ``y_um``, ``width_um``, ``height_um`` and
``area_um2``. Geometry stays in level-0 pixels (QuPath's convention). Colours are the
overlays' (:mod:`.palette`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis.metrics import CORRECTNESS_NAMES
from ..errors import PatchwiseError
from ..groups import DEFAULT_ATTRIBUTE, DEFAULT_TAU, attribute_values, group_ids, group_names
from ..io.tables import write_geojson
from ..palette import CORRECTNESS_COLORS, GROUP_COLORS, NON_TUMOR, TUMOR, rgb255
from ..schema import DEFAULT_THRESHOLD

#: What a patch's QuPath class can mean (``--geojson-classes``).
CLASS_SCHEMES: tuple[str, ...] = ("label", "group", "outcome")
DEFAULT_SCHEME = "label"
LABEL_NAMES: tuple[str, ...] = ("non-tumor", "tumor")
#: The outcomes that are errors (``errors_only``).
ERROR_OUTCOMES: tuple[str, ...] = ("FP", "FN")
NO_PREDICTIONS = "outcome classes need predictions (a 'prob' column)"

PixelSize = tuple[float, float] | None


def scheme_classes(scheme: str, attribute: str = DEFAULT_ATTRIBUTE) -> dict[str, tuple]:
    """Class name -> QuPath colour (RGB 0-255) of ``scheme``, in the scheme's order."""
    if scheme == "label":
        return dict(zip(LABEL_NAMES, map(rgb255, (NON_TUMOR, TUMOR)), strict=True))
    if scheme == "group":
        return dict(zip(group_names(attribute), map(rgb255, GROUP_COLORS), strict=True))
    if scheme == "outcome":
        return dict(zip(CORRECTNESS_NAMES, map(rgb255, CORRECTNESS_COLORS), strict=True))
    raise PatchwiseError(
        f"unknown QuPath class scheme {scheme!r}", hint=f"choose one of {', '.join(CLASS_SCHEMES)}"
    )


def outcome_codes(label: np.ndarray, prob: np.ndarray, threshold: float) -> np.ndarray:
    """``2 * label + (prob >= threshold)`` (TN FP FN TP); ``-1`` where ``prob`` is NaN."""
    prob = np.asarray(prob, dtype=np.float64)
    codes = 2 * np.asarray(label, dtype=np.int8) + (prob >= threshold)
    return np.where(np.isnan(prob), -1, codes).astype(np.int8)


def patch_measurements(
    table: pd.DataFrame,
    *,
    tau: float = DEFAULT_TAU,
    threshold: float | None = DEFAULT_THRESHOLD,
    attribute: str = DEFAULT_ATTRIBUTE,
    pixel_size: PixelSize | Mapping[str, PixelSize] = None,
) -> pd.DataFrame:
    """``table`` with the scheme's derived columns: ``group``, ``outcome``, ``pred``, µm.

    ``threshold`` None keeps the table's own ``pred`` (``patchwise predict`` decided at
    the run's threshold); without one it is 0.5.

    ``pixel_size`` is the level-0 pixel size (y, x) in µm, or a mapping from the
    ``slide`` column's names to each slide's (None: unknown, no µm columns).
    """

    out = table.copy()
    label = out["label"].to_numpy(dtype=np.int8)
    values = attribute_values(out, attribute)
    out["group"] = group_ids(label, values, tau)
    if "prob" in out:
        prob = out["prob"].to_numpy(dtype=np.float64)
        if threshold is None and "pred" in out:  # the table's own decisions (predict's)
            pred = out["pred"].to_numpy(dtype=np.int8)
            codes = np.where(pred < 0, -1, 2 * label + pred).astype(np.int8)
        else:
            threshold = 0.5 if threshold is None else threshold
            pred = np.where(np.isnan(prob), -1, prob >= threshold).astype(np.int8)
            codes = outcome_codes(label, prob, threshold)
        out["pred"] = pred  # NaN outcome: no prediction, no measurement
        out["outcome"] = np.where(codes < 0, np.nan, codes.astype(np.float64))
    size_y, size_x = _pixel_sizes(out, pixel_size)
    if size_y is not None:
        out["y_um"] = out["y"].to_numpy() * size_y
        out["x_um"] = out["x"].to_numpy() * size_x
        out["height_um"] = out["height"].to_numpy() * size_y
        out["width_um"] = out["width"].to_numpy() * size_x
        out["area_um2"] = out["height_um"] * out["width_um"]
    return out


def _pixel_sizes(table: pd.DataFrame, pixel_size) -> tuple:
    """Per-row (y, x) pixel sizes (NaN where a slide has none), or (None, None)."""
    if pixel_size is None:
        return None, None
    if not isinstance(pixel_size, Mapping):
        return float(pixel_size[0]), float(pixel_size[1])
    if not any(v is not None for v in pixel_size.values()) or "slide" not in table:
        return None, None
    slides = table["slide"].astype(str)
    per_y = {k: (np.nan if v is None else float(v[0])) for k, v in pixel_size.items()}
    per_x = {k: (np.nan if v is None else float(v[1])) for k, v in pixel_size.items()}
    return slides.map(per_y).to_numpy(float), slides.map(per_x).to_numpy(float)


def patch_classes(
    measured: pd.DataFrame, scheme: str, attribute: str = DEFAULT_ATTRIBUTE, *, source=None
) -> np.ndarray:
    """The class name of every row of a :func:`patch_measurements` table under ``scheme``.

    Rows without a prediction have no outcome: under ``outcome`` they are ``""`` (and
    :func:`select_patches` leaves them out).
    """
    names = list(scheme_classes(scheme, attribute))
    if scheme == "label":
        return np.asarray(names, dtype=object)[measured["label"].to_numpy(dtype=np.int64)]
    if scheme == "group":
        return np.asarray(names, dtype=object)[measured["group"].to_numpy(dtype=np.int64)]
    if "outcome" not in measured:
        raise PatchwiseError(
            NO_PREDICTIONS, path=source, hint="load predictions, or choose label or group classes"
        )
    codes = np.nan_to_num(measured["outcome"].to_numpy(dtype=np.float64), nan=-1).astype(np.int64)
    return np.asarray([*names, ""], dtype=object)[codes]


def select_patches(
    measured: pd.DataFrame, classes: np.ndarray, *, errors_only: bool = False, source=None
) -> np.ndarray:
    """Boolean mask of the rows to export: those with a class; only FP/FN when ``errors_only``."""
    keep = classes != ""
    if errors_only:
        if "outcome" not in measured:
            raise PatchwiseError(
                "only errors: " + NO_PREDICTIONS, path=source, hint="load predictions first"
            )
        codes = measured["outcome"].to_numpy()
        keep &= np.isin(codes, [CORRECTNESS_NAMES.index(n) for n in ERROR_OUTCOMES])
    return keep


def write_patches(
    table: pd.DataFrame,
    path: str | os.PathLike,
    *,
    scheme: str = DEFAULT_SCHEME,
    errors_only: bool = False,
    tau: float = DEFAULT_TAU,
    threshold: float | None = DEFAULT_THRESHOLD,
    attribute: str = DEFAULT_ATTRIBUTE,
    pixel_size: PixelSize | Mapping[str, PixelSize] = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write ``table``'s patches as QuPath GeoJSON tiles under ``scheme``; the count written.

    Parameters
    ----------
    table : pandas.DataFrame
        A patch table (``y, x, height, width, label`` and the groups' ``attribute``;
        ``prob`` for outcome classes or ``errors_only``).
    path : path-like
        Output ``*.geojson``; written atomically (nothing on an error or a cancel).
    scheme : {"label", "group", "outcome"}
        What the QuPath class means.
    errors_only : bool
        Keep only the false positives and false negatives.
    tau, threshold, attribute : float, float or None, str
        The groups' attribute threshold, the decision threshold (None: the table's
        ``pred``), the groups' attribute.
    pixel_size : (float, float), mapping or None
        Level-0 pixel size (y, x) in µm (or per slide name): adds the µm measurements.
    progress : callable, optional
        ``(rows written, rows)`` after each chunk; an exception it raises cancels.

    Raises
    ------
    PatchwiseError
        An unknown scheme, or outcome classes / errors only without predictions.
    """

    colours = scheme_classes(scheme, attribute)
    measured = patch_measurements(
        table, tau=tau, threshold=threshold, attribute=attribute, pixel_size=pixel_size
    )
    classes = patch_classes(measured, scheme, attribute, source=path)
    keep = select_patches(measured, classes, errors_only=errors_only, source=path)
    rows = measured[keep].reset_index(drop=True)
    write_geojson(rows, Path(path), names=classes[keep], colors=colours, progress=progress)
    return len(rows)


#: Columns of the Errors list's CSV export (:func:`error_table`).
ERROR_COLUMNS: tuple[str, ...] = (
    "row", "col", "y_um", "x_um", "y_px", "x_px", "height_um", "width_um",
    "label", "prob", "confidence", "outcome", "group", "reviewed",
)  # fmt: skip


def error_table(
    table: pd.DataFrame,
    *,
    tau: float = DEFAULT_TAU,
    threshold: float = DEFAULT_THRESHOLD,
    attribute: str = DEFAULT_ATTRIBUTE,
    pixel_size: PixelSize = None,
    reviewed: set[tuple[int, int]] | frozenset = frozenset(),
) -> pd.DataFrame:
    """Every misclassified patch of one slide's table, most confident first.

    One row per false positive or false negative at ``threshold``: its grid ``row, col``,
    its top-left corner in µm and level-0 pixels, its size in µm (NaN without a pixel
    size), ``label``, ``prob``, ``confidence`` (the probability of the wrong answer),
    ``outcome`` (FP/FN), ``group`` (by name) and ``reviewed`` (the ``(row, col)`` cells in
    ``reviewed``). The same numbers as the QuPath export of the errors.
    """
    if "prob" not in table:
        raise PatchwiseError("the errors list needs predictions", hint="load predictions first")
    m = patch_measurements(
        table, tau=tau, threshold=threshold, attribute=attribute, pixel_size=pixel_size
    )
    m = m[np.isin(m["outcome"].to_numpy(), (1, 2))]
    prob = m["prob"].to_numpy(dtype=np.float64)
    wrong = m["outcome"].to_numpy() == 1  # a false positive's confidence is prob
    nan = np.full(len(m), np.nan)
    out = pd.DataFrame(
        {
            "row": m["row"].to_numpy(np.int64),
            "col": m["col"].to_numpy(np.int64),
            "y_um": m["y_um"].to_numpy() if "y_um" in m else nan,
            "x_um": m["x_um"].to_numpy() if "x_um" in m else nan,
            "y_px": m["y"].to_numpy(np.int64),
            "x_px": m["x"].to_numpy(np.int64),
            "height_um": m["height_um"].to_numpy() if "height_um" in m else nan,
            "width_um": m["width_um"].to_numpy() if "width_um" in m else nan,
            "label": m["label"].to_numpy(np.int64),
            "prob": prob,
            "confidence": np.where(wrong, prob, 1.0 - prob),
            "outcome": np.where(wrong, "FP", "FN"),
            "group": np.asarray(group_names(attribute), dtype=object)[m["group"].to_numpy()],
        }
    )
    cells = list(zip(out["row"].tolist(), out["col"].tolist(), strict=True))
    out["reviewed"] = [cell in reviewed for cell in cells]
    order = np.argsort(-out["confidence"].to_numpy(), kind="stable")
    return out.iloc[order].reset_index(drop=True)
