"""Training and prediction as napari generator workers (no Qt, no layers here).

Training runs in a **separate process** (``multiprocessing``, spawn): ``torch.optim``
loads triton lazily, and triton's bundled LLVM segfaults when it is first loaded after
Mesa's llvmpipe, which any napari viewer on software OpenGL has already loaded. A fresh
process has no Mesa, and the viewer's process never imports the optimiser (training
there also never competes with the viewer for the GIL). The child's training callbacks
put events into a ``multiprocessing`` queue; :func:`run_training`, the body of a napari
generator worker, collects them and yields them in batches about every :data:`POLL_S`
seconds, so the main thread redraws a few tens of times per second however fast the
steps are. Cancel sets a shared event that ``should_stop()`` returns: the loop stops
after the current step and writes ``last.pt`` first, then the child reports back.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ...errors import PatchwiseError
from ...patches.table import PatchTable
from ...slide import Slide
from ...training.inference import DEFAULT_BATCH_SIZE
from ...training.loop import TrainCallbacks, TrainConfig
from .background import TrainingFailed, poll

POLL_S = 0.05


@dataclass(frozen=True)
class Prepare:
    """Patch tables and caches are being prepared: ``done`` of ``total`` slides."""

    done: int
    total: int


@dataclass(frozen=True)
class Step:
    """Optimisation step ``step`` of ``total`` finished with training loss ``loss``."""

    step: int
    total: int
    loss: float


@dataclass(frozen=True)
class Eval:
    """Validation after ``step``: the ``history.csv`` row."""

    step: int
    metrics: dict[str, Any]


@dataclass(frozen=True)
class TrainOutcome:
    """What a finished (or cancelled) run left behind."""

    out: Path
    cancelled: bool


class QueueCallbacks(TrainCallbacks):
    """Training hooks that only enqueue events (queue and stop event are shared with the
    viewer's process)."""

    def __init__(self, events, stop) -> None:
        self.events = events
        self.stop = stop

    def on_prepare(self, done: int, total: int) -> None:
        self.events.put(Prepare(int(done), int(total)))

    def on_step(self, step: int, total: int, loss: float) -> None:
        self.events.put(Step(int(step), int(total), float(loss)))

    def on_eval(self, step: int, metrics: dict[str, Any]) -> None:
        self.events.put(Eval(int(step), dict(metrics)))

    def should_stop(self) -> bool:
        return self.stop.is_set()


@dataclass(frozen=True)
class _Finished:
    out: str


@dataclass(frozen=True)
class _Failed:
    message: str
    patchwise: bool  # a PatchwiseError: the message is already the user's one line


def _train_in_child(config_json: str, events, stop) -> None:
    """The training process: run ``train.train``; report the run directory or the error."""
    from ...training.loop import train
    from ..dock.words import dock_line

    try:
        out = train(TrainConfig.from_json(config_json), QueueCallbacks(events, stop))
        events.put(_Finished(str(out)))
    except PatchwiseError as exc:
        events.put(_Failed(dock_line(exc), patchwise=True))  # the dock's hint
    except BaseException as exc:  # noqa: BLE001 - the parent shows it as one line
        text = " ".join(str(exc).split()) or type(exc).__name__
        events.put(_Failed(f"Patchwise: training failed: {type(exc).__name__}: {text}", False))


def stop_event():
    """A stop flag the training process can see (a spawn-context ``Event``)."""
    import multiprocessing

    return multiprocessing.get_context("spawn").Event()


def run_training(config: TrainConfig, stop=None) -> Generator[list, None, TrainOutcome]:
    """Generator body for a napari ``thread_worker``: train in a child process.

    ``stop`` is an event from :func:`stop_event`; setting it stops training after the
    current step. Yields lists of :class:`Prepare` / :class:`Step` / :class:`Eval`;
    returns a :class:`TrainOutcome`, or raises :class:`PatchwiseError` (bad manifest or
    options) / :class:`TrainingFailed`. If the generator is closed early (the viewer
    quits), training is asked to stop too.
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    stop = stop if stop is not None else context.Event()
    events = context.Queue()
    process = context.Process(
        target=_train_in_child,
        args=(config.to_json(), events, stop),
        name="patchwise-train",
        daemon=True,
    )
    process.start()
    inbox: deque = deque()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="patchwise-train")
    future = pool.submit(_receive, events, process, inbox)
    try:
        end = yield from poll(future, lambda: _drain(inbox), POLL_S)
    finally:
        if not future.done() and process.is_alive():
            stop.set()
        pool.shutdown(wait=False)
    process.join(timeout=10)
    if end is None:
        raise TrainingFailed(
            f"Patchwise: the training process ended unexpectedly (exit code {process.exitcode})"
        )
    if isinstance(end, _Failed):
        raise PatchwiseError(end.message) if end.patchwise else TrainingFailed(end.message)
    return TrainOutcome(out=Path(end.out), cancelled=stop.is_set())


def _receive(events, process, inbox: deque) -> _Finished | _Failed | None:
    """Move the child's events into ``inbox`` until its last word (``None``: it died)."""
    dead_since = None
    while True:
        try:
            event = events.get(timeout=POLL_S)
        except queue.Empty:
            if process.is_alive():
                continue
            # events put just before the child exited may still be in the pipe
            dead_since = dead_since or time.monotonic()
            if time.monotonic() - dead_since > 2.0:
                return None
            continue
        if isinstance(event, _Finished | _Failed):
            return event
        inbox.append(event)


def _drain(inbox: deque) -> list | None:
    """The events received since the last call (``None`` when there are none)."""
    batch = []
    while inbox:
        batch.append(inbox.popleft())
    return batch or None


def checkpoint_patch_size(run_dir: str | Path) -> int:
    """The patch size a run or checkpoint file was trained on (see :mod:`..runs`)."""
    from ...training.runs import checkpoint_meta

    return int(checkpoint_meta(run_dir)["patch_size"])


def predict_job(
    slide: Slide, table: PatchTable, run_dir: str | Path, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> Callable[..., pd.DataFrame]:
    """A ``job(cancel=, progress=)`` for :func:`.background.run_in_thread` predicting ``table``
    (the frame returned with ``prob`` and ``pred``).

    Refuses a grid cut with another patch size than the model's (the overlays would
    not match the patches the model saw).
    """

    def job(*, cancel: threading.Event, progress) -> pd.DataFrame:  # noqa: ARG001 - the job protocol
        from ...training.predict import predict_table

        patch_size = checkpoint_patch_size(run_dir)
        grid_size = table.grid.patch_size
        if grid_size != patch_size:
            raise PatchwiseError(
                f"the patch grid of '{slide.name}' uses {grid_size} px patches but the model "
                f"was trained on {patch_size} px patches",
                path=run_dir,
                hint=f"compute the patch grid with patch size {patch_size}, then predict",
            )
        # run_in_thread's progress raises Cancelled at the next batch once Cancel is pressed
        return predict_table(slide, table.frame, run_dir, batch_size=batch_size, progress=progress)

    return job


def train_groups_job(manifest: str | Path, settings) -> Callable[..., tuple]:
    """A ``job(cancel=, progress=)`` returning the training split's ``(label, tissue_ratio)``.

    It prepares the cohort exactly as training does (``data.load_cohort`` with
    ``settings``, a :class:`~napari_patchwise.settings.PatchSettings`), so the patch caches
    it builds are reused by the next run; GERNE's ``beta_max`` follows from these arrays
    for any tau and c without reading the slides again.
    """

    def job(*, cancel: threading.Event, progress) -> tuple:  # noqa: ARG001 - the job protocol
        import numpy as np

        from ...training.data import load_cohort

        # run_in_thread's progress raises Cancelled at the next slide once Cancel is pressed
        table = load_cohort(manifest, settings, progress=progress).table("train")
        if table.empty:
            raise PatchwiseError("the manifest has no training slides", path=manifest)
        return (
            table["label"].to_numpy(np.int64),
            table["tissue_ratio"].to_numpy(np.float64),
        )

    return job
