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

from ..errors import PatchwiseError
from ..groups import DEFAULT_ATTRIBUTE
from ..slide import Slide
from .background import Cancelled
from .histograms import BinnedScores, build_panels
from .overlays import OverlayRasters, overlay_rasters
from .state import PatchData, SlideSettings


@dataclass(frozen=True)
class ComputeResult:
    data: PatchData
    rasters: OverlayRasters
    panels: list[BinnedScores]
    origin: tuple[int, int]
    stride: int


def prepare(
    table: pd.DataFrame, origin: tuple[int, int], stride: int, attribute: str = DEFAULT_ATTRIBUTE
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
    return ComputeResult(data=data, rasters=rasters, panels=panels, origin=origin, stride=stride)


def compute_table(
    slide: Slide,
    settings: SlideSettings,
    *,
    cancel: threading.Event,
    progress: Callable[[int, int], None] | None = None,
) -> ComputeResult:
    """Run ``grid.patch_stats`` with the widget's settings; raises :class:`Cancelled`.

    ``progress`` is :func:`.background.run_in_thread`'s (it raises :class:`Cancelled` once ``cancel``
    is set); a result that arrives after Cancel is dropped here too.
    """
    from ..grid import PatchGrid, patch_stats

    grid = PatchGrid(
        patch_size=int(settings.patch_size),
        stride=int(settings.stride) or None,
        keep_edges=bool(settings.keep_edges),
    )
    table = patch_stats(
        slide,
        grid,
        tissue=settings.tissue,
        tissue_threshold=settings.tissue_threshold or None,
        background=settings.background,
        progress=progress,
    )
    table = with_attribute(table, slide, grid, settings, progress)
    if cancel.is_set():
        raise Cancelled
    if table.empty:
        raise PatchwiseError(
            f"no patch of {settings.patch_size} px fits on slide '{slide.name}' "
            f"({slide.shape[1]} x {slide.shape[2]} px)",
            hint="choose a smaller patch size or keep edge patches",
        )
    return prepare(table, grid.origin, grid.step, settings.attribute)


def with_attribute(table, slide: Slide, grid, settings: SlideSettings, progress=None):
    """``table`` with ``settings.attribute``'s column computed when ``patch_stats`` has none
    (mean/std intensity, border fraction: :mod:`napari_patchwise.attributes`)."""
    from ..attributes import column_kind, patch_attributes

    if settings.attribute in table:
        return table
    kind = column_kind(settings.attribute, slide.channel_names)
    attrs = patch_attributes(
        slide,
        grid,
        [kind],
        tissue=settings.tissue,
        tissue_threshold=settings.tissue_threshold or None,
        background=settings.background,
        progress=progress,
    )
    return pd.concat([table, attrs], axis=1)
