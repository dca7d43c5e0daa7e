"""Dask computations that must stop cleanly (and quietly) on an interrupt."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import resource_tracker
from typing import Any

from .errors import PatchwiseError


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


class _DropAllExit:
    """Logging filter: drop the records of dask.distributed's ``AllExit`` shutdown signal."""

    def filter(self, record) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            # asyncio may pass the exception in the message context only.
            exc = getattr(record, "exception", None)
        return type(exc).__name__ != "AllExit"


def quiet_distributed_shutdown() -> None:
    """Keep dask.distributed's shutdown signal off stderr (idempotent).

    When a run with a distributed client is interrupted (Ctrl-C, SIGTERM), the client
    cancels every pending gather by raising ``AllExit`` in its event loop; nothing
    retrieves those tasks, so asyncio prints "Task exception was never retrieved" and a
    traceback for each — about 165 of them above our one "interrupted" line. ``AllExit``
    only ever means "the client is closing", so the filter drops exactly those records,
    for the rest of the process (asyncio may report them when the tasks are collected,
    after the client has closed).
    """

    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _DropAllExit) for f in logger.filters):
        logger.addFilter(_DropAllExit())


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Hold Ctrl-C back while the block starts worker processes; deliver it afterwards.

    Processes started in the block inherit the blocked signal (a signal mask survives
    ``fork`` and ``exec``), so a worker never sees the terminal's Ctrl-C, not even while
    it is still importing (a ``KeyboardInterrupt`` traceback per worker otherwise). In
    this process the signal stays pending and arrives as ``KeyboardInterrupt`` when the
    block ends: nothing is lost. A no-op where signals cannot be blocked (Windows).
    """

    if not hasattr(signal, "pthread_sigmask"):
        yield
        return

    # Starting multiprocessing's resource tracker unblocks SIGINT in the calling thread
    # once it has spawned it: start it before blocking, so the workers' spawns find
    # it running and leave the mask alone.
    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


#: Preload for the worker processes of a ``LocalCluster`` the command starts itself: see
#: :func:`dask_setup`. Pass as ``LocalCluster(..., preload=[WORKER_PRELOAD])``.
WORKER_PRELOAD = __name__


def dask_setup(worker) -> None:  # noqa: ARG001 - the preload interface
    """Worker preload (``WORKER_PRELOAD``): the worker process ignores Ctrl-C, logs nothing.

    Ctrl-C in a terminal signals the whole process group, so the worker processes of a
    local cluster got it too and each printed a ``KeyboardInterrupt`` traceback under
    the command's one "interrupted" line. The command's process handles the interrupt:
    it closes the cluster, which stops the workers. A worker stopped mid-task then logs
    its cancelled tasks (one line listing every task key) and its lost scheduler
    connection; none of that is the user's to read: a task's error reaches the command,
    which reports it as its own one line.
    """

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed").setLevel(logging.CRITICAL + 1)


@contextlib.contextmanager
def dask_client(address: str | None, workers: int | None) -> Iterator[Any]:
    """Make a distributed Client current for the block; yields it (or ``None``).

    ``address``: a running scheduler's (``tcp://host:8786``); ``workers``: start a local
    cluster of that many single-threaded worker processes; neither: no client (dask's
    threads). What ``--scheduler`` / ``--workers`` of the commands mean.
    """
    if address is None and workers is None:
        yield None
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise PatchwiseError(
            "dask.distributed is not installed",
            hint="pip install 'napari-patchwise[distributed]'",
        ) from exc
    quiet_distributed_shutdown()  # no AllExit tracebacks when the run is interrupted
    if address is not None:
        try:
            client = Client(address, timeout=10)
        except (OSError, TimeoutError, ValueError) as exc:  # ValueError: a malformed address
            raise PatchwiseError(
                f"cannot reach the dask scheduler at {address} ({exc})",
                hint="check the address (tcp://host:8786) and that the scheduler runs",
            ) from exc
        with client:
            yield client
        return
    # Workers ignore Ctrl-C (this process closes them): no traceback from each of them.
    # One pressed while they start arrives when the block ends: the finally closes them.
    cluster = None
    try:
        with sigint_blocked():
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                dashboard_address=None,
                preload=[WORKER_PRELOAD],
            )
        with Client(cluster) as client:
            yield client
    finally:
        if cluster is not None:
            cluster.close()
