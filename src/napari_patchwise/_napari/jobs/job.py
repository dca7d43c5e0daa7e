"""One helper for every background action of the dock (grid, train, predict, sample).

:class:`BackgroundJob` wraps a napari generator worker (``create_worker`` over a
generator body: :func:`.background.run_in_thread` for a blocking job, or a body of its
own such as :func:`.train_worker.run_training`) and does the wiring each action used to
repeat: start, cancel, progress, the result on the main thread, errors as one-line
notifications, and a busy state that buttons follow.

Errors are ours to report (``_ignore_errors``), never re-raised into Qt: a
:class:`.background.Cancelled` becomes the job's "cancelled" notice, anything else one
line (:func:`.notify.one_line`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from qtpy.QtCore import QObject, Signal

from ..dock import notify
from .background import Cancelled, run_in_thread
from .progress import NapariProgress


class BackgroundJob(QObject):
    """At most one background worker at a time, with its cancel event and progress.

    Parameters
    ----------
    cancelled_message : str
        The notice shown when the user's Cancel ends the job.
    on_error : callable, optional
        Called with the one-line text of an error (after the notification), e.g. to show
        it in a status label.
    parent : QObject, optional
    runner : JobRunner, optional
        The dock's :class:`.job_runner.JobRunner`: it decides whether the job may start
        (one exclusive job at a time, refusals with a message) and hears when it ends.
        Made by :meth:`.job_runner.JobRunner.job`; without one the job is on its own.
    name : str
        What the runner's refusal calls the job ("the patch grid", "training", ...).
    exclusive : bool
        Whether the job excludes every other exclusive job of the runner (False: only a
        second run of itself is refused, e.g. a file export).

    ``busy_changed(bool)`` is emitted when a job starts (True) and when it has finished
    (False), after its result or error was handled.
    """

    busy_changed = Signal(bool)

    def __init__(
        self,
        cancelled_message: str,
        *,
        on_error: Callable[[str], None] | None = None,
        parent: QObject | None = None,
        runner=None,
        name: str = "the running job",
        exclusive: bool = True,
    ) -> None:
        super().__init__(parent)
        self.runner, self.name, self.exclusive = runner, name, exclusive
        self.cancelled_message = cancelled_message
        self.on_error = on_error
        self._worker = None
        self._stop = None
        self._quit_on_cancel = False
        self._bar: NapariProgress | None = None

    # -- state ----------------------------------------------------------------------------
    def busy(self) -> bool:
        """A worker runs (or has not yet reported that it finished)."""
        return self._worker is not None

    @property
    def running(self) -> bool:
        """The same as :meth:`busy`, as a property (what the dock's parts read)."""
        return self._worker is not None

    def cancelled(self) -> bool:
        """Cancel was pressed for the current (or last) job."""
        return self._stop is not None and self._stop.is_set()

    # -- start ----------------------------------------------------------------------------
    def start(
        self,
        job: Callable[..., object],
        *,
        returned: Callable[[object], None],
        progress: Callable[[int, int], None] | None = None,
        description: str | None = None,
    ) -> bool:
        """Run ``job(cancel=, progress=)`` in a thread (see :mod:`.background`).

        ``returned`` gets the result on the main thread; ``progress`` gets ``(done,
        total)`` there whenever a total is known. With ``description`` a napari progress
        bar shows the job in the activity dock until it ends. Cancel stops the job at its
        next progress report or at the worker's next yield, whichever comes first.
        False (after the runner's one-line notice) when the runner refuses it.
        """
        if self.runner is not None and not self.runner.admit(self):
            return False
        stop = threading.Event()
        bar = NapariProgress(description, show_now=True) if description else None
        reports = [f for f in (progress, bar) if f is not None]

        def on_progress(value: tuple[int, int]) -> None:
            done, total = value
            if total:
                for report in reports:
                    report(done, total)

        self._bar = bar
        self._launch(
            run_in_thread,
            job,
            cancel=stop,
            stop=stop,
            quit_on_cancel=True,
            yielded=on_progress,
            returned=returned,
        )
        return True

    def start_generator(
        self,
        body: Callable[..., object],
        *args,
        stop,
        yielded: Callable[[object], None],
        returned: Callable[[object], None],
    ) -> bool:
        """Run the generator ``body(*args)`` in a worker; Cancel only sets ``stop``.

        For bodies that end themselves cleanly when ``stop`` is set (training writes
        ``last.pt`` first and still returns its outcome). False when the runner refuses.
        """
        if self.runner is not None and not self.runner.admit(self):
            return False
        self._launch(
            body, *args, stop=stop, quit_on_cancel=False, yielded=yielded, returned=returned
        )
        return True

    def _launch(self, body, *args, stop, quit_on_cancel, yielded, returned, **kwargs) -> None:
        from napari.qt.threading import create_worker

        worker = create_worker(body, *args, _start_thread=False, _ignore_errors=True, **kwargs)
        worker.yielded.connect(yielded)
        worker.returned.connect(lambda result: self._on_returned(returned, result))
        worker.errored.connect(self._on_error)
        # Cancel ends either at the generator's next yield (aborted) or as Cancelled raised
        # from the job (errored), whichever comes first; both say the same.
        worker.aborted.connect(lambda: notify.info(self.cancelled_message))
        worker.finished.connect(self._on_finished)
        self._worker, self._stop, self._quit_on_cancel = worker, stop, quit_on_cancel
        if self.runner is not None:
            self.runner.started(self)
        self.busy_changed.emit(True)
        worker.start()

    def wait(self) -> None:
        """Turn the Qt event loop here until the job has finished.

        For callers that must block on the main thread (napari calls sample-data
        commands there): the viewer keeps repainting and the progress bar moves.
        """
        if not self.running:
            return
        from qtpy.QtCore import QEventLoop

        loop = QEventLoop()
        self.busy_changed.connect(loop.quit)  # only False arrives while the job runs
        try:
            loop.exec()
        finally:
            self.busy_changed.disconnect(loop.quit)

    # -- cancel and end -------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask the running job to stop (nothing happens when none runs)."""
        if self._stop is not None:
            self._stop.set()
        if self._worker is not None and self._quit_on_cancel:
            self._worker.quit()

    def _on_returned(self, returned: Callable[[object], None], result: object) -> None:
        """The result on the main thread; the runner hears first that this job is done,
        in the same call, so ``returned`` may start the next job (a handover)."""
        if self.runner is not None:
            self.runner.finished(self)
        returned(result)

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            notify.info(self.cancelled_message)
            return
        text = notify.one_line(exc)
        notify.error(text)
        if self.on_error is not None:
            self.on_error(text)

    def _on_finished(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._bar = None
        self._worker = None
        self.busy_changed.emit(False)
        if self.runner is not None:  # after the job's own listeners: queued work may start
            self.runner.finished(self)
