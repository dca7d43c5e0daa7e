"""Dask computations that write to disk and must stop cleanly on an interrupt."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor


@contextlib.contextmanager
def joined_threads(num_workers: int | None = None) -> Iterator[None]:
    """Run the threaded dask computations of the block on a pool joined on exit.

    On Ctrl-C or SIGTERM the main thread unwinds at once, but dask's shared thread pool
    keeps running its in-flight tasks. A task that writes (``da.store`` into a zarr store)
    would then recreate chunk files in a temporary directory that the unwinding has just
    removed. Joining the pool first (queued tasks cancelled, running ones finished —
    one chunk each) lets the cleanup that follows see the final state.
    """
    import dask

    pool = ThreadPoolExecutor(max_workers=num_workers or os.cpu_count() or 1)
    try:
        with dask.config.set(pool=pool):
            yield
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
