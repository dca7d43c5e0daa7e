"""The patch-grid jobs of the dock: compute a slide's table, prepare what the viewer shows.

Everything O(N) — the patch table (dask), the per-patch arrays, the overlay rasters and
histogram bins — is prepared here, off the Qt main thread (run by
:class:`.jobs.BackgroundJob` through :func:`.background.run_in_thread`); the result
reaches the layers only through the worker's ``returned`` signal, on the main thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from ...errors import PatchwiseError
from ...groups import DEFAULT_ATTRIBUTE
from ...patches.grid import PatchGrid
from ...patches.table import PatchTable
from ...slide import Slide
from ..canvas.overlays import OverlayRasters, overlay_rasters
from ..dock.state import PatchData, SlideSettings
from ..inspect.histograms import BinnedScores, build_panels
from .background import Cancelled


@dataclass(frozen=True)
class ComputeResult:
    data: PatchData
    rasters: OverlayRasters
    panels: list[BinnedScores]
    grid: PatchGrid  # the grid the table lies on


def prepare(
    table: pd.DataFrame, grid: PatchGrid, attribute: str = DEFAULT_ATTRIBUTE
) -> ComputeResult:
    """Everything O(N) the viewer needs from a patch table (run it off the main thread).

    Groups by ``attribute`` (a table without that column, e.g. a loaded file, falls back
    to ``tissue_ratio``: the dock's attribute choice then shows it).
    """
    if attribute not in table:
        attribute = DEFAULT_ATTRIBUTE
    data = PatchData.from_table(table, attribute=attribute)
    glass = table["tissue_ratio"].to_numpy() == 0 if "tissue_ratio" in table else None
    rasters = overlay_rasters(data.raster, data.label, data.overlay_values(), data.prob, glass)
    panels = build_panels(table, data.prob)
    return ComputeResult(data=data, rasters=rasters, panels=panels, grid=grid)


def compute_table(
    slide: Slide,
    settings: SlideSettings,
    *,
    cancel: threading.Event,
    progress: Callable[[int, int], None] | None = None,
) -> ComputeResult:
    """The slide's patch table with the widget's settings
    (:func:`~napari_patchwise.patches.table.build_patch_table`); raises :class:`Cancelled`.

    ``progress`` is :func:`.background.run_in_thread`'s (it raises :class:`Cancelled` once ``cancel``
    is set); a result that arrives after Cancel is dropped here too.
    """
    from ...patches.table import build_patch_table

    table = build_patch_table(slide, settings.patch, progress=progress)
    table = with_attribute(table, slide, settings.attribute, progress)
    if cancel.is_set():
        raise Cancelled
    if table.frame.empty:
        raise PatchwiseError(
            f"no patch of {settings.patch.patch_size} px fits on slide '{slide.name}' "
            f"({slide.shape[1]} x {slide.shape[2]} px)",
            hint="choose a smaller patch size or keep edge patches",
        )
    return prepare(table.frame, table.grid, settings.attribute)


def with_attribute(table: PatchTable, slide: Slide, attribute: str, progress=None) -> PatchTable:
    """``table`` with ``attribute``'s column computed when ``patch_stats`` has none
    (mean/std intensity, border fraction: :mod:`napari_patchwise.patches.attributes`), on the
    table's own grid and with its settings."""
    from ...patches.attributes import column_kind
    from ...patches.table import with_attributes

    if attribute in table.frame:
        return table
    return with_attributes(
        table, slide, [column_kind(attribute, slide.channel_names)], progress=progress
    )
