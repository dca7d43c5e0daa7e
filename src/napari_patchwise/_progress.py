"""Progress reporting shared by the library, the CLI and the napari workers.

Library functions take ``progress: ProgressCallback | None`` and call it as
``progress(done, total)``; the CLI passes a tqdm bar, napari workers pass a function
that yields to the Qt side. Nothing here imports Qt.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

ProgressCallback = Callable[[int, int], None]


@contextlib.contextmanager
def tqdm_progress(
    desc: str, unit: str = "chunk", *, disable: bool = False
) -> Iterator[ProgressCallback]:
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr."""
    from tqdm.auto import tqdm

    bar = tqdm(desc=desc, unit=unit, disable=disable, dynamic_ncols=True, file=sys.stderr)

    def update(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        # update() redraws at most every `mininterval` (0.1 s): callers may report per tile
        # without flooding a log with bar redraws.
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()


@contextlib.contextmanager
def dask_progress(progress: ProgressCallback | None) -> Iterator[None]:
    """Report the tasks of every dask computation in the block to ``progress``."""
    if progress is None:
        yield
        return
    from dask.callbacks import Callback

    state = {"done": 0, "total": 0}

    def start_state(dsk, st):  # noqa: ARG001
        state["total"] = state["done"] + sum(len(st[k]) for k in ("ready", "waiting", "running"))
        progress(state["done"], state["total"])

    def posttask(key, result, dsk, st, worker_id):  # noqa: ARG001
        state["done"] += 1
        progress(state["done"], max(state["total"], state["done"]))

    with Callback(start_state=start_state, posttask=posttask):
        yield
