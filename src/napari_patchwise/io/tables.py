"""Patch tables on disk: parquet or CSV by extension, and a GeoJSON export for QuPath.

Every write is atomic (a temporary sibling renamed over the target), so an interrupted
run never leaves a half-written table. Reading normalises column types, so a table read
back from CSV has the same dtypes as one read from parquet.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._atomic import atomic_path
from ..errors import PatchwiseError
from ..groups import GROUP_NAMES, group_ids
from ..palette import GEOJSON_CLASS_COLORS
from ..schema import BINARY_COLUMNS as _SMALL_INT_COLUMNS
from ..schema import FLOAT_COLUMNS as _FLOAT_COLUMNS
from ..schema import GEOMETRY_COLUMNS, METRIC_COLUMNS, PREDICTION_COLUMNS, RATIO_COLUMNS
from ..schema import INT_COLUMNS as _INT_COLUMNS
from ..schema import TABLE_COLUMNS as PATCH_COLUMNS

TABLE_FORMATS = {".parquet": "parquet", ".csv": "csv", ".csv.gz": "csv"}
# QuPath colours (RGB) of the classifications written by write_geojson: the one palette.
_CLASS_COLORS = GEOJSON_CLASS_COLORS
# Every count, label, ratio and prediction of a patch (its position is the geometry).
# With the class scheme's derived ones (napari_patchwise.reporting.qupath): group id, outcome code
# and the position and size in µm when the slide's pixel size is known.
_GEOJSON_MEASUREMENTS = (
    "n_pixels",
    *PATCH_COLUMNS[len(GEOMETRY_COLUMNS) :],
    *PREDICTION_COLUMNS,
    "group",
    "outcome",
    "y_um",
    "x_um",
    "height_um",
    "width_um",
    "area_um2",
)
_INT_MEASUREMENTS = ("n_", "label", "pred", "group", "outcome")


def table_format(path: str | os.PathLike) -> str:
    """``"parquet"`` or ``"csv"`` from the file name; a clear error for anything else."""
    name = Path(path).name.lower()
    for suffix, fmt in sorted(TABLE_FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    raise PatchwiseError(
        "unknown table format",
        path=path,
        hint="name the table *.parquet, *.csv or *.csv.gz",
    )


def read_table(
    path: str | os.PathLike, *, required: Sequence[str] | None = METRIC_COLUMNS
) -> pd.DataFrame:
    """Read a patch table written by :func:`write_table` (or any parquet/CSV with its columns).

    Parameters
    ----------
    path : path-like
        ``*.parquet``, ``*.csv`` or ``*.csv.gz``.
    required : sequence of str, optional
        Columns that must be present (default: those the metrics need); ``None`` to skip.

    Returns
    -------
    pandas.DataFrame
        With normalised dtypes: counts int64, ``label``/``pred`` int8, ratios and ``prob``
        float64, ``slide`` str.
    """
    fmt = table_format(path)
    path = Path(path)
    if not path.is_file():
        raise PatchwiseError("no such table", path=path, hint="check the path")
    try:
        df = pd.read_parquet(path) if fmt == "parquet" else pd.read_csv(path, dtype={"slide": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PatchwiseError(
            f"cannot read the {fmt} table ({first_line})", path=path, hint="is the file complete?"
        ) from exc
    if required is not None:
        validate_table(df, required=required, path=path)
    return normalize_dtypes(df, path=path)


def write_table(
    df: pd.DataFrame, path: str | os.PathLike, *, metadata: dict[bytes, bytes] | None = None
) -> Path:
    """Write ``df`` as parquet or CSV (by extension) atomically; returns the path.

    ``metadata``: key-value pairs added to a parquet file's schema metadata (a CSV has
    no place for them: they are left out).
    """
    fmt = table_format(path)
    path = Path(path)
    with atomic_path(path) as tmp:
        if fmt == "parquet" and metadata:
            import pyarrow as pa
            import pyarrow.parquet as pq

            arrow = pa.Table.from_pandas(df, preserve_index=False)
            pq.write_table(
                arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **metadata}), tmp
            )
        elif fmt == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            # The temporary name keeps ".csv.gz", so pandas infers the compression.
            df.to_csv(tmp, index=False)
    return path


def validate_table(
    df: pd.DataFrame,
    *,
    required: Sequence[str] = PATCH_COLUMNS,
    path: str | os.PathLike | None = None,
) -> None:
    """Raise a clear :class:`PatchwiseError` if ``df`` lacks any of ``required``."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise PatchwiseError(
            f"table lacks column(s) {', '.join(missing)}",
            path=path,
            hint="use a table written by 'patchwise stats' (or 'patchwise predict')",
        )


def check_values(
    df: pd.DataFrame, *, path: str | os.PathLike | None = None, missing_ok: bool = True
) -> None:
    """Raise a one-line :class:`PatchwiseError` for values a patch table cannot hold.

    ``label`` must be the integer 0 or 1; ``prob`` a number in [0, 1]; ``pred`` 0 or 1;
    counts and positions whole numbers. Checked on the values as read, before any cast:
    casting first would turn 257 into 1 and 0.5 into 0 without a word.

    Parameters
    ----------
    missing_ok : bool
        Accept patches without a prediction, as the dock saves them: ``prob`` NaN and
        ``pred`` -1. False where every patch needs one (metrics).
    """
    no_prediction = df["prob"].isna() if "prob" in df else None
    for col in ("label", "prob", "pred", *_INT_COLUMNS):
        if col not in df:
            continue
        raw = df[col]
        values = pd.to_numeric(raw, errors="coerce").astype(np.float64)
        missing = raw.isna()
        if col == "prob":
            bad = ~values.between(0.0, 1.0)  # NaN, inf and text included
            if missing_ok:
                bad &= ~missing
            rule = "must be a number in [0, 1]" + ("" if missing_ok else " for every patch")
        elif col == "pred":
            allowed = values.isin((0.0, 1.0))
            if missing_ok and no_prediction is not None:
                allowed |= (values == -1) & no_prediction
            bad = ~allowed
            rule = "must be 0 or 1" + (" (-1 only where prob is empty)" if missing_ok else "")
        elif col in _SMALL_INT_COLUMNS:
            bad = ~values.isin((0.0, 1.0))
            rule = "must be 0 or 1"
        else:
            bad = ~np.isfinite(values) | (values != np.round(values))
            rule = "must hold whole numbers"
        if bad.any():
            example = raw[bad].iloc[0]
            example = example.item() if isinstance(example, np.generic) else example
            raise PatchwiseError(
                f"column {col!r} {rule}; found {example!r} ({int(bad.sum())} bad value(s))",
                path=path,
                hint="use a table written by 'patchwise stats' or 'patchwise predict'",
            )
    _check_ratios(df, path)


def _check_ratios(df: pd.DataFrame, path: str | os.PathLike | None) -> None:
    """Ratio columns (:data:`~napari_patchwise.schema.RATIO_COLUMNS`) hold numbers in
    [0, 1] or NaN: a tissue ratio of 7 groups its patch as "large" without a word."""
    for col in RATIO_COLUMNS:
        if col not in df:
            continue
        raw = df[col]
        values = pd.to_numeric(raw, errors="coerce").astype(np.float64)
        bad = ~values.between(0.0, 1.0) & ~raw.isna()
        if bad.any():
            first = int(np.flatnonzero(bad.to_numpy())[0])
            example = raw.iloc[first]
            example = example.item() if isinstance(example, np.generic) else example
            raise PatchwiseError(
                f"column {col!r} must hold ratios in [0, 1]; {int(bad.sum())} value(s) "
                f"outside, e.g. {example!r} in data row {first + 1}",
                path=path,
                hint="use a table written by 'patchwise stats' or 'patchwise predict'",
            )


def normalize_dtypes(df: pd.DataFrame, *, path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Canonical dtypes of the known patch-table columns (others left as they are).

    Values are checked first (:func:`check_values`), so no cast can change one.
    """
    check_values(df, path=path)
    df = df.copy()
    try:
        for col in _INT_COLUMNS:
            if col in df:
                df[col] = df[col].astype(np.int64)
        for col in _SMALL_INT_COLUMNS:
            if col in df:
                df[col] = df[col].astype(np.int8)
        for col in _FLOAT_COLUMNS:
            if col in df:
                df[col] = df[col].astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise PatchwiseError(
            f"column {col!r} holds values of the wrong type ({exc})",
            path=path,
            hint="counts and labels must be integers, ratios numbers",
        ) from exc
    if "slide" in df:
        df["slide"] = df["slide"].astype(str).astype(object)
    return df


def write_geojson(
    df: pd.DataFrame,
    path: str | os.PathLike,
    *,
    pixel_size: tuple[float, float] | None = None,
    tau: float | None = None,
    object_type: str = "tile",
    chunk_rows: int = 10_000,
    progress: Callable[[int, int], None] | None = None,
    names: np.ndarray | None = None,
    colors: dict[str, tuple[int, int, int]] | None = None,
) -> Path:
    """Export the patch grid as a GeoJSON FeatureCollection that QuPath can import.

    One ``Polygon`` per patch, in level-0 pixel coordinates (QuPath's convention: origin
    at the top-left of the full-resolution image, x right, y down), as a closed ring
    ``(x, y) -> (x + width, y) -> (x + width, y + height) -> (x, y + height) -> (x, y)``.
    ``properties`` hold ``objectType``, a ``classification`` (``{"name", "color"}``) and
    ``measurements`` (a name -> number map, as QuPath 0.4+ reads and writes them; NaN is
    left out).

    Parameters
    ----------
    df : pandas.DataFrame
        A patch table (``x, y, width, height, label`` at least).
    path : path-like
        Output file (``*.geojson`` or ``*.json``).
    pixel_size : (float, float), optional
        Level-0 pixel size in micrometres (y, x); adds an ``area_um2`` measurement.
    tau : float, optional
        Classify patches by group (``tumor/large`` ...) instead of by label.
    object_type : {"tile", "annotation", "detection"}
        QuPath object type of every patch.
    chunk_rows : int
        Rows formatted at a time: the file is streamed, never built whole in memory.
    progress : callable, optional
        Called with ``(rows written, rows)`` after each chunk; an exception it raises
        (a cancel) stops the export and leaves no file.
    names, colors : ndarray of str and dict, optional
        Each row's class name and the classes' colours, as
        :func:`napari_patchwise.reporting.qupath.write_patches` chooses them (the one class scheme
        of every export); without them, ``tau`` decides between label and group classes.
    """
    if object_type not in ("tile", "annotation", "detection"):
        raise PatchwiseError(f"unknown QuPath object type {object_type!r}")
    validate_table(df, required=("y", "x", "height", "width", "label"), path=path)
    measure_cols = [c for c in _GEOJSON_MEASUREMENTS if c in df.columns]
    names = _class_names(df, tau) if names is None else np.asarray(names)
    colors = _CLASS_COLORS if colors is None else colors
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write('{"type": "FeatureCollection", "features": [\n')
        first = True
        for start in range(0, len(df), chunk_rows):
            part = df.iloc[start : start + chunk_rows]
            lines = _features(
                part,
                names[start : start + chunk_rows],
                measure_cols,
                pixel_size,
                object_type,
                colors,
            )
            for i, line in enumerate(lines):
                fh.write(line if first else ",\n" + line)
                first = False
                if i % 2000 == 1999:  # the formatting is pure Python and holds the GIL:
                    time.sleep(0.0005)  # let a GUI thread run (napari dock, background save)
            if progress is not None:
                progress(min(start + chunk_rows, len(df)), len(df))
        fh.write("\n]}\n")
    return path


def _class_names(df: pd.DataFrame, tau: float | None) -> np.ndarray:
    if tau is None:
        return np.where(df["label"].to_numpy() > 0, "tumor", "non-tumor")

    validate_table(df, required=("tissue_ratio",))
    return np.asarray(GROUP_NAMES)[group_ids(df["label"].to_numpy(), df["tissue_ratio"], tau)]


def _features(
    part: pd.DataFrame,
    names: np.ndarray,
    measure_cols: list[str],
    pixel_size: tuple[float, float] | None,
    object_type: str,
    colors: dict[str, tuple[int, int, int]],
) -> Iterable[str]:
    ys = part["y"].to_numpy(np.int64)
    xs = part["x"].to_numpy(np.int64)
    hs = part["height"].to_numpy(np.int64)
    ws = part["width"].to_numpy(np.int64)
    slides = part["slide"].astype(str).to_numpy() if "slide" in part else None
    values = {c: part[c].to_numpy() for c in measure_cols}
    for i in range(len(part)):
        x0, y0, x1, y1 = int(xs[i]), int(ys[i]), int(xs[i] + ws[i]), int(ys[i] + hs[i])
        measurements = {}
        for c in measure_cols:
            v = float(values[c][i])
            if not math.isnan(v):
                measurements[c] = (
                    int(v) if v.is_integer() and c.startswith(_INT_MEASUREMENTS) else v
                )
        if pixel_size is not None and "area_um2" not in measure_cols:
            measurements["area_um2"] = float(hs[i] * ws[i] * pixel_size[0] * pixel_size[1])
        name = str(names[i])
        props = {
            "objectType": object_type,
            "classification": {"name": name, "color": list(colors[name])},
            "measurements": measurements,
        }
        if slides is not None:
            props["name"] = f"{slides[i]} y={y0} x={x0}"
        feature = {
            "type": "Feature",
            "geometry": {
                "type": "Polygon",
                "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]],
            },
            "properties": props,
        }
        yield json.dumps(feature, separators=(",", ":"))
