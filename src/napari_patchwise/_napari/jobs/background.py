"""Blocking work off the Qt main thread: the job protocol, the poll loop, cancellation.

No Qt and no napari here: the training child process imports :mod:`.train_worker`,
which builds on this module.

A *job* is ``job(*, cancel, progress)``: a blocking call that reports ``progress(done,
total)`` and returns a result. :func:`run_in_thread` is the body of a napari generator
worker that runs a job in an inner thread and yields its latest progress; the progress
callback it hands the job raises :class:`Cancelled` once the ``cancel`` event is set, so
a long computation stops at its next report (dask's next finished task, the next batch)
instead of running to the end unseen. :func:`poll` is the dock's one poll loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor

POLL_S = 0.03


class Cancelled(Exception):
    """The user pressed Cancel."""


class TrainingFailed(Exception):
    """Training ended with an unexpected error (its message is the one line to show)."""


def poll(
    future: Future, take: Callable[[], object | None], interval: float
) -> Generator[object, None, object]:
    """Yield ``take()`` every ``interval`` seconds until ``future`` is done; return its result.

    ``take`` returns what was reported since the last call (``None``: nothing new); it is
    called once more after the future is done, so nothing reported is lost. Closing the
    generator (napari's abort) leaves the future running: the caller stops it.
    """
    while True:
        done = future.done()
        item = take()
        if item is not None:
            yield item
        if done:
            return future.result()
        time.sleep(interval)


def run_in_thread(
    func: Callable[..., object], *args, cancel: threading.Event, **kwargs
) -> Generator[tuple[int, int], None, object]:
    """Generator body for a napari ``thread_worker``: run ``func`` and yield its progress.

    ``func`` gets ``cancel`` and a ``progress(done, total)`` keyword; ``progress`` raises
    :class:`Cancelled` once ``cancel`` is set. The generator yields the latest ``(done,
    total)`` every :data:`POLL_S` seconds and returns ``func``'s result (or raises its
    error).
    """
    latest: list[tuple[int, int]] = [(0, 0)]
    shown: list[tuple[int, int] | None] = [None]

    def progress(done: int, total: int) -> None:
        if cancel.is_set():
            raise Cancelled
        latest[0] = (int(done), int(total))

    def take() -> tuple[int, int] | None:
        if latest[0] == shown[0]:
            return None
        shown[0] = latest[0]
        return shown[0]

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="patchwise")
    try:
        future = pool.submit(func, *args, cancel=cancel, progress=progress, **kwargs)
        return (yield from poll(future, take, POLL_S))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
