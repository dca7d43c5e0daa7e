"""Background work for the dock widget, as napari generator workers.

Everything slower than a frame runs here, off the Qt main thread: computing the patch
table (dask), deriving the per-patch arrays and painting the overlay rasters. Workers
yield ``(done, total)`` progress; results reach the layers only through the worker's
``returned`` signal, i.e. on the main thread.

``patch_stats`` is one blocking call, so it runs in an inner thread while the generator
yields its progress every few tens of milliseconds. Cancelling sets an event that the
progress callback turns into an exception at dask's next finished task, which stops the
computation promptly instead of letting it run to the end unseen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd

from ..errors import PatchwiseError
from ..slide import Slide
from .histograms import BinnedScores, build_panels
from .overlays import OverlayRasters, overlay_rasters
from .state import PatchData, SlideSettings

POLL_S = 0.03


class Cancelled(Exception):
    """The user pressed Cancel."""


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
    """Run ``grid.patch_stats`` with the widget's settings; raises :class:`Cancelled`."""
    from ..grid import PatchGrid, patch_stats

    grid = PatchGrid(
        patch_size=int(settings.patch_size),
        stride=int(settings.stride) or None,
        keep_edges=bool(settings.keep_edges),
    )

    def report(done: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled
        if progress is not None:
            progress(done, total)

    table = patch_stats(
        slide,
        grid,
        tissue=settings.tissue,
        tissue_threshold=settings.tissue_threshold or None,
        background=settings.background,
        progress=report,
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


def run_in_thread(
    func: Callable[..., object], *args, cancel: threading.Event, **kwargs
) -> Generator[tuple[int, int], None, object]:
    """Generator body for a napari ``thread_worker``: run ``func`` and yield its progress.

    ``func`` gets a ``progress`` keyword; the generator yields the latest ``(done,
    total)`` every :data:`POLL_S` seconds and returns ``func``'s result (or raises its
    error). Abort is honoured between yields: pass the same ``cancel`` event to ``func``.
    """
    latest = [(0, 0)]

    def progress(done: int, total: int) -> None:
        latest[0] = (int(done), int(total))

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="patchwise")
    try:
        future = pool.submit(func, *args, cancel=cancel, progress=progress, **kwargs)
        last = None
        while not future.done():
            if latest[0] != last:
                last = latest[0]
                yield last
            time.sleep(POLL_S)
        return future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
