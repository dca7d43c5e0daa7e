"""A slide's patch table with the grid and settings it was cut with: :class:`PatchTable`.

:func:`build_patch_table` is the ONE place where slide + settings become a patch table
(the CLI's ``stats`` and ``predict``, the training cache, ``embed``, the cohort browser
and the viewer's dock all call it); nothing else calls
:func:`~napari_patchwise.patches.grid.patch_stats` or builds a
:class:`~napari_patchwise.patches.grid.PatchGrid` from settings (``tests/patches/test_one_builder.py``).

A table written by :func:`write_patch_table` (parquet) carries its grid and settings
in the file's key-value metadata (key ``patchwise``), so :func:`read_patch_table` gives
them back exactly. A table without that metadata (written by an older version, a CSV,
or a table the user assembled) goes once through :func:`guess_grid`, the one place that
reconstructs a grid from the rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .._progress import ProgressCallback
from ..errors import PatchwiseError
from ..io.tables import read_table, table_format, write_table
from ..settings import PatchSettings
from ..slide import Slide
from .attributes import DEFAULT_BORDER_MARGIN, attribute_columns, patch_attributes
from .grid import PatchGrid, patch_stats

#: Key of the table's grid and settings in a parquet file's key-value metadata.
METADATA_KEY = b"patchwise"
#: Version of that metadata's layout.
METADATA_VERSION = 1


@dataclass(frozen=True)
class PatchTable:
    """One slide's patch table and how it was cut.

    Parameters
    ----------
    frame : DataFrame
        One row per patch in raster order (``schema.TABLE_COLUMNS``, attributes after).
    grid : PatchGrid
        The grid the rows lie on.
    settings : PatchSettings
        The settings the table was counted with (``background`` resolved to the slide's);
        ``None`` for a table read back without metadata (only its grid is known).
    slide : str
        The slide's name (the ``slide`` column).
    """

    frame: pd.DataFrame
    grid: PatchGrid
    settings: PatchSettings | None
    slide: str

    def with_frame(self, frame: pd.DataFrame) -> PatchTable:
        """The same grid and settings over other rows or columns (e.g. predictions)."""
        return replace(self, frame=frame)


def settings_grid(settings: PatchSettings, origin: tuple[int, int] = (0, 0)) -> PatchGrid:
    """The :class:`PatchGrid` that ``settings`` describe (``origin`` in level-0 pixels)."""
    return PatchGrid(
        int(settings.patch_size),
        stride=None if settings.stride is None else int(settings.stride),
        origin=(int(origin[0]), int(origin[1])),
        keep_edges=bool(settings.keep_edges),
    )


def resolved_settings(settings: PatchSettings, slide: Slide) -> PatchSettings:
    """``settings`` with ``background=None`` made the slide's own background.

    ``None`` and the slide's own value count the same patches, so they must key the same
    cached table: the cohort browser (which passes the form's explicit background) and a
    training run (``None``) then share one entry.
    """
    if settings.background is None:
        return replace(settings, background=slide.background)
    return settings


def build_patch_table(
    slide: Slide,
    settings: PatchSettings,
    *,
    origin: tuple[int, int] = (0, 0),
    channels: Sequence[int | str] | None = None,
    attributes: Sequence[str] = (),
    border_margin: int | None = None,
    slide_index: int = 0,
    labels: bool = True,
    progress: ProgressCallback | None = None,
) -> PatchTable:
    """Cut ``slide`` into patches with ``settings`` and count them (docs/numbers.md).

    Parameters
    ----------
    slide : Slide
        Must carry a mask when ``labels`` (patch labels come from it).
    settings : PatchSettings
        Grid and tissue settings (``None`` fields: automatic).
    origin : (int, int)
        ``(y, x)`` of the first patch (``patchwise stats --origin``).
    channels : sequence of int or str, optional
        Channels whose mean is the brightness of intensity tissue; default all.
    attributes : sequence of {"intensity", "border", "slide"}
        Extra attribute kinds joined as columns (:mod:`.attributes`).
    border_margin : int, optional
        Margin of the ``border`` attribute; default its module's.
    slide_index : int
        The ``slide_index`` attribute's value.
    labels : bool
        Count labels and tissue (:func:`~napari_patchwise.patches.grid.patch_stats`); False: the
        geometry columns only (a slide without a mask, to predict).
    progress : callable, optional
        ``progress(done, total)`` as the counts proceed (it may raise to cancel).

    Raises
    ------
    PatchwiseError
        Bad settings, no mask (with ``labels``), or an attribute column that would
        replace one of the table's own.
    """
    settings.validate()
    settings = resolved_settings(settings, slide)
    grid = settings_grid(settings, origin)
    tissue = {
        "tissue": settings.tissue,
        "tissue_threshold": settings.tissue_threshold,
        "background": settings.background,
        "channels": channels,
    }
    if labels:
        frame = patch_stats(slide, grid, progress=progress, **tissue)
    else:
        frame = geometry_frame(slide, grid)
    table = PatchTable(frame, grid, settings, slide.name)
    if attributes:
        table = with_attributes(
            table, slide, attributes, channels=channels, border_margin=border_margin,
            slide_index=slide_index, progress=progress,
        )  # fmt: skip
    return table


def with_attributes(
    table: PatchTable,
    slide: Slide,
    kinds: Sequence[str],
    *,
    channels: Sequence[int | str] | None = None,
    border_margin: int | None = None,
    slide_index: int = 0,
    progress: ProgressCallback | None = None,
) -> PatchTable:
    """``table`` with the attribute columns of ``kinds`` joined, on the table's own grid.

    Tissue comes from ``table.settings`` (the automatic defaults for a table whose
    settings are unknown). Columns the table already has are not computed again.
    """

    frame = table.frame
    kinds = [k for k in kinds if not set(attribute_columns([k], slide.channel_names)) <= set(frame)]
    if not kinds:
        return table
    settings = table.settings or PatchSettings()
    attrs = patch_attributes(
        slide,
        table.grid,
        list(kinds),
        tissue=settings.tissue,
        tissue_threshold=settings.tissue_threshold,
        background=settings.background,
        channels=channels,
        border_margin=DEFAULT_BORDER_MARGIN if border_margin is None else border_margin,
        slide_index=slide_index,
        progress=progress,
    )
    clash = [c for c in attrs.columns if c in frame.columns]
    if clash:
        raise PatchwiseError(
            f"attribute column(s) {', '.join(clash)} would replace the table's own",
            path=slide.path,
            hint="rename the channels (--channel-names when converting) or drop intensity",
        )
    joined = pd.concat([frame.reset_index(drop=True), attrs.reset_index(drop=True)], axis=1)
    return table.with_frame(joined)


def geometry_frame(slide: Slide, grid: PatchGrid) -> pd.DataFrame:
    """Patch positions of a slide on ``grid`` (no labels): the geometry columns only."""
    _, height, width = slide.shape
    ys, xs = grid.positions(height, width)
    hs, ws = grid.extents(height, width)
    rows, cols = np.meshgrid(np.arange(len(ys)), np.arange(len(xs)), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    return pd.DataFrame(
        {
            "slide": slide.name,
            "row": rows.astype(np.int64),
            "col": cols.astype(np.int64),
            "y": ys[rows],
            "x": xs[cols],
            "height": hs[rows],
            "width": ws[cols],
        }
    )


# -- the table file's metadata -------------------------------------------------------------
def table_metadata(grid: PatchGrid, settings: PatchSettings | None) -> dict[bytes, bytes]:
    """The key-value metadata that records ``grid`` and ``settings`` in a parquet file."""
    payload = {
        "version": METADATA_VERSION,
        "grid": {
            "patch_size": grid.patch_size,
            "stride": grid.step,
            "origin": list(grid.origin),
            "keep_edges": grid.keep_edges,
        },
        "settings": None if settings is None else asdict(settings),
    }
    return {METADATA_KEY: json.dumps(payload, sort_keys=True).encode()}


def parse_metadata(
    metadata: dict[bytes, bytes] | None,
) -> tuple[PatchGrid, PatchSettings | None] | None:
    """The grid and settings recorded by :func:`table_metadata`; None if there are none."""
    raw = (metadata or {}).get(METADATA_KEY)
    if raw is None:
        return None
    try:
        payload = json.loads(raw)
        g = payload["grid"]
        grid = PatchGrid(
            int(g["patch_size"]),
            stride=int(g["stride"]),
            origin=(int(g["origin"][0]), int(g["origin"][1])),
            keep_edges=bool(g["keep_edges"]),
        )
        settings = payload.get("settings")
        return grid, None if settings is None else PatchSettings(**settings)
    except (ValueError, KeyError, TypeError, IndexError):
        return None  # foreign or damaged metadata: read like an old table


def write_patch_table(table: PatchTable, path: str | os.PathLike) -> Path:
    """Write ``table`` atomically (parquet: with its grid and settings in the metadata)."""

    return write_table(table.frame, path, metadata=table_metadata(table.grid, table.settings))


def read_table_metadata(path: str | os.PathLike) -> tuple[PatchGrid, PatchSettings | None] | None:
    """The grid and settings a parquet table file records; None for any other file."""

    if table_format(path) != "parquet":
        return None  # a CSV has no place for them
    import pyarrow.parquet as pq

    return parse_metadata(pq.read_schema(path).metadata)


def read_patch_table(path: str | os.PathLike) -> PatchTable:
    """One slide's patch table file and the grid it was cut with.

    The grid and settings come from the file's metadata; a file without any (an older
    version's table, a CSV) goes through :func:`guess_grid` and has ``settings=None``.
    """

    frame = read_table(path)
    name = str(frame["slide"].iat[0]) if len(frame) and "slide" in frame else ""
    return frame_table(frame, name, read_table_metadata(path))


def frame_table(
    frame: pd.DataFrame,
    slide: str,
    recorded: tuple[PatchGrid, PatchSettings | None] | None = None,
) -> PatchTable:
    """A :class:`PatchTable` of rows whose grid is ``recorded`` or, failing that, guessed."""
    if recorded is None:
        return PatchTable(frame, guess_grid(frame), None, slide)
    grid, settings = recorded
    return PatchTable(frame, grid, settings, slide)


def guess_grid(frame: pd.DataFrame) -> PatchGrid:
    """The grid of a table that does not record it (older files): guessed from its rows.

    The stride from two neighbouring rows / columns (else the tallest patch), the origin
    from the first patch, the patch size from the tallest or widest patch, edge patches
    kept when some patch is partial. The one place where a grid is reconstructed.
    """
    if frame.empty:
        raise PatchwiseError("the patch table has no rows, so it has no grid")
    size = int(max(frame["height"].max(), frame["width"].max()))
    strides = []
    for pos, index in (("y", "row"), ("x", "col")):
        values = frame[[index, pos]].drop_duplicates(index).sort_values(index).to_numpy()
        if len(values) > 1:
            strides.append(int((values[1, 1] - values[0, 1]) // (values[1, 0] - values[0, 0])))
    stride = strides[0] if strides else size
    first = frame.iloc[0]
    origin = (int(first["y"] - first["row"] * stride), int(first["x"] - first["col"] * stride))
    partial = bool((frame["height"] < size).any() or (frame["width"] < size).any())
    return PatchGrid(size, stride=stride, origin=origin, keep_edges=partial)
