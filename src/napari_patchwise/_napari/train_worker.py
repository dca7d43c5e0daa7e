"""Training and prediction as napari generator workers (no Qt, no layers here).

``train.train`` is one blocking call, so it runs in a plain Python thread. Its callbacks
push events into a :class:`queue.Queue`; :func:`run_training`, the body of a napari
generator worker, drains the queue every :data:`POLL_S` seconds and yields the events
in batches, so the main thread redraws at most a few tens of times per second however
fast the steps are. Cancel sets an event that ``should_stop()`` returns: the loop stops
after the current step and writes ``last.pt`` first, then the generator returns.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import PatchwiseError
from ..slide import Slide
from ..train import TrainCallbacks, TrainConfig
from .workers import Cancelled

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
    """Training hooks that only enqueue events (they run in the training thread)."""

    def __init__(self, events: queue.Queue, stop: threading.Event) -> None:
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


def _drain(events: queue.Queue) -> list:
    batch = []
    while True:
        try:
            batch.append(events.get_nowait())
        except queue.Empty:
            return batch


def run_training(config: TrainConfig, stop: threading.Event) -> Generator[list, None, TrainOutcome]:
    """Generator body for a napari ``thread_worker``: train, yielding event batches.

    Yields lists of :class:`Prepare` / :class:`Step` / :class:`Eval`; returns a
    :class:`TrainOutcome`, or raises the training's error (e.g. :class:`PatchwiseError`).
    If the generator is closed early (the viewer quits), training is asked to stop too.
    """
    from ..train import train

    events: queue.Queue = queue.Queue()
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["out"] = train(config, QueueCallbacks(events, stop))
        except BaseException as exc:  # handed to the worker's thread below
            result["error"] = exc

    thread = threading.Thread(target=target, name="patchwise-train", daemon=True)
    thread.start()
    try:
        while True:
            alive = thread.is_alive()  # read before draining: no event is left behind
            batch = _drain(events)
            if batch:
                yield batch
            if not alive:
                break
            time.sleep(POLL_S)
    finally:
        if thread.is_alive():
            stop.set()
    thread.join()
    if "error" in result:
        raise result["error"]
    return TrainOutcome(out=Path(result["out"]), cancelled=stop.is_set())


def checkpoint_patch_size(run_dir: str | Path) -> int:
    """The patch size the run's ``best.pt`` was trained on (raises if there is none)."""
    import torch

    from ..predict import checkpoint_path

    path = checkpoint_path(run_dir)
    meta = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return int(meta["patch_size"])


def predict_job(
    slide: Slide, table: pd.DataFrame, run_dir: str | Path, *, batch_size: int = 256
) -> Callable[..., pd.DataFrame]:
    """A ``job(cancel=, progress=)`` for :func:`.workers.run_in_thread` predicting ``table``.

    Refuses a grid cut with another patch size than the model's (the overlays would
    not match the patches the model saw).
    """

    def job(*, cancel: threading.Event, progress) -> pd.DataFrame:
        from ..predict import predict_table

        patch_size = checkpoint_patch_size(run_dir)
        grid_size = int(table["height"].max()) if len(table) else patch_size
        if grid_size != patch_size:
            raise PatchwiseError(
                f"the patch grid of '{slide.name}' uses {grid_size} px patches but the model "
                f"was trained on {patch_size} px patches",
                path=run_dir,
                hint=f"compute the patch grid with patch size {patch_size}, then predict",
            )

        def report(done: int, total: int) -> None:
            if cancel.is_set():
                raise Cancelled
            progress(done, total)

        return predict_table(slide, table, run_dir, batch_size=batch_size, progress=report)

    return job


def train_groups_job(manifest: str | Path, settings) -> Callable[..., tuple]:
    """A ``job(cancel=, progress=)`` returning the training split's ``(label, tissue_ratio)``.

    It prepares the cohort exactly as training does (``data.load_cohort`` with
    ``settings``, a :class:`~napari_patchwise.data.PatchSettings`), so the patch caches
    it builds are reused by the next run; GERNE's ``beta_max`` follows from these arrays
    for any tau and c without reading the slides again.
    """

    def job(*, cancel: threading.Event, progress) -> tuple:
        import numpy as np

        from ..data import load_cohort

        def report(done: int, total: int) -> None:
            if cancel.is_set():
                raise Cancelled
            progress(done, total)

        table = load_cohort(manifest, settings, progress=report).table("train")
        if table.empty:
            raise PatchwiseError("the manifest has no training slides", path=manifest)
        return (
            table["label"].to_numpy(np.int64),
            table["tissue_ratio"].to_numpy(np.float64),
        )

    return job
