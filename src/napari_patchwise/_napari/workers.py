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


def prepare(table: pd.DataFrame, origin: tuple[int, int], stride: int) -> ComputeResult:
    """Everything O(N) the viewer needs from a patch table (run it off the main thread)."""
    data = PatchData.from_table(table)
    rasters = overlay_rasters(data.raster, data.label, data.tissue_ratio, data.prob)
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
    if cancel.is_set():
        raise Cancelled
    if table.empty:
        raise PatchwiseError(
            f"no patch of {settings.patch_size} px fits on slide '{slide.name}' "
            f"({slide.shape[1]} x {slide.shape[2]} px)",
            hint="choose a smaller patch size or keep edge patches",
        )
    return prepare(table, grid.origin, grid.step)
