"""The dock's one job runner: which background job runs, refusals, work queued for idle.

Every background action of the dock (grid, training, prediction, comparison, embedding,
ranking, opening a session or a cohort slide, ...) is a :class:`.jobs.BackgroundJob`
made by :meth:`JobRunner.job`. The runner owns their mutual exclusion, so no part asks
another part whether it is busy:

* at most one *exclusive* job runs at a time, across all tabs (training blocks a
  prediction, a comparison blocks the grid); a second one is **refused** with one
  notice naming the running job — ``Patchwise: <running job> is running — wait for it
  or cancel it`` — and its ``start`` returns False;
* a job that is not exclusive (a file export, the threshold curve) refuses only a second
  run of itself (``Patchwise: <job> is already running``);
* :meth:`JobRunner.hold` keeps the runner busy while a result is being handed to the
  layers over several event-loop turns (the dock's grid steps);
* :meth:`JobRunner.when_idle` **queues** work until no exclusive job runs and nothing is
  held (a session's next step, the comparison after a retrained head): no polling.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QObject, QTimer, Signal

from ..dock import notify
from .job import BackgroundJob


class JobRunner(QObject):
    """Mutual exclusion of the dock's background jobs, refusals, the idle queue.

    ``busy_changed(bool)`` is emitted when the runner turns busy (an exclusive job
    started or a hold was taken) and idle again; buttons that start exclusive work
    follow it.
    """

    busy_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: list[BackgroundJob] = []  # running, exclusive or not
        self._holds: list[str] = []
        self._queue: list[Callable[[], object]] = []
        self._was_busy = False

    # -- making jobs ----------------------------------------------------------------------
    def job(
        self,
        name: str,
        cancelled_message: str,
        *,
        exclusive: bool = True,
        on_error: Callable[[str], None] | None = None,
        parent: QObject | None = None,
    ) -> BackgroundJob:
        """A :class:`.jobs.BackgroundJob` this runner admits (``name``: what a refusal says)."""
        return BackgroundJob(
            cancelled_message,
            on_error=on_error,
            parent=parent or self,
            runner=self,
            name=name,
            exclusive=exclusive,
        )

    # -- state ----------------------------------------------------------------------------
    def running(self) -> str | None:
        """The name of the exclusive job that runs (or of the hold), None when idle."""
        for job in self._jobs:
            if job.exclusive:
                return job.name
        return self._holds[0] if self._holds else None

    def idle(self) -> bool:
        """No exclusive job runs and no result is being shown."""
        return self.running() is None

    def any_running(self) -> bool:
        """Any job of this runner runs (exclusive or not): scripts wait for this."""
        return bool(self._jobs) or bool(self._holds)

    def admit(self, job: BackgroundJob | None = None, *, exclusive: bool = True) -> bool:
        """Whether ``job`` (None: an exclusive action without a job) may start now.

        False after one notice saying what runs; the caller changes nothing then.
        """
        if job is not None and job.running:
            notify.info(f"Patchwise: {job.name} is already running")
            return False
        if job is not None:
            exclusive = job.exclusive
        other = self.running()
        if exclusive and other is not None:
            notify.info(f"Patchwise: {other} is running — wait for it or cancel it")
            return False
        return True

    # -- what jobs report -----------------------------------------------------------------
    def started(self, job: BackgroundJob) -> None:
        """A job of this runner started (called by :class:`.jobs.BackgroundJob`)."""
        self._jobs.append(job)
        self._changed()

    def finished(self, job: BackgroundJob) -> None:
        """A job of this runner ended (after its result and listeners)."""
        if job in self._jobs:
            self._jobs.remove(job)
        self._changed()

    def hold(self, name: str) -> None:
        """Stay busy as ``name`` (a result being shown) until :meth:`release`."""
        self._holds.append(name)
        self._changed()

    def release(self, name: str) -> None:
        """End a :meth:`hold` (no-op when ``name`` is not held)."""
        if name in self._holds:
            self._holds.remove(name)
        self._changed()

    def _changed(self) -> None:
        busy = not self.idle()
        if busy != self._was_busy:
            self._was_busy = busy
            self.busy_changed.emit(busy)
        if not busy and self._queue:
            # next event-loop turn: the ended job's own cleanup (progress bar) comes first
            QTimer.singleShot(0, self._drain)

    # -- queue and cancel -----------------------------------------------------------------
    def when_idle(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` now when idle, else once every exclusive job has ended.

        Queued callbacks run first in, first out; one that starts an exclusive job makes
        the rest wait for that job too.
        """
        self._queue.append(callback)
        if self.idle():
            self._drain()

    def _drain(self) -> None:
        while self._queue and self.idle():
            self._queue.pop(0)()

    def clear_queue(self) -> None:
        """Forget the queued callbacks (e.g. a session whose step failed)."""
        self._queue.clear()

    def cancel(self) -> None:
        """Cancel every running exclusive job (Cancel of whichever tab started it)."""
        for job in list(self._jobs):
            if job.exclusive:
                job.cancel()
