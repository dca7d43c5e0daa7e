"""Sweeps over training settings with selection on the validation split (``patchwise sweep``).

A sweep trains one run per (grid point, seed) into ``SWEEP_DIR/<name>``, where the name
spells the grid values and the seed (``beta=2_c=0.5_seed=0``), and then selects the grid
point whose runs have the best mean validation metric (WGA by default, the paper's
choice; ``docs/methods.md``, "Sweeps"). The sweep folder holds:

* ``sweep.json``: what was asked (manifest, grid, seeds, selection metric), written first;
* one run directory per (grid point, seed), as ``patchwise train`` writes it;
* ``sweep.csv``: one row per run (grid values, seed, status ``run``/``skipped``/
  ``failed``, a note, the validation metrics at their selected checkpoints, the test
  metrics of the checkpoint the sweep's metric selects) and ``selected.json`` (the
  selected grid point, its mean validation value and its runs), written once every run
  has ended.

GERNE points whose beta lies outside ``[-1, beta_max)`` are skipped with a note: the
bound depends on the training split's group shares (alpha, computed once from the
prepared cohort) and on c (:func:`methods.gerne.beta_max`).

Runs go to spawned worker processes (each with one torch thread unless told otherwise)
or to tasks on a ``dask.distributed`` cluster. A rerun of the same sweep reuses finished
runs, resumes interrupted ones from their ``last.pt`` and restarts those whose files are
damaged. Ctrl-C (or SIGTERM) asks every running run to stop after its current step and
write ``last.pt`` (the stop file), then ends the sweep.

This module knows the sweep folder's layout; :mod:`.report_run` renders it.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import dataclasses
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._atomic import (
    atomic_path,
    exclusive_lock,
    held_by_another,
    lock_held,
    lock_holder,
    pid_alive,
    read_json_object,
    write_json,
)
from ..errors import PatchwiseError
from ..groups import table_group_ids
from ..settings import PatchSettings
from . import runs
from .config import SELECT_METRICS, TrainConfig, check_used
from .data import load_cohort
from .loop import TrainCallbacks, train
from .methods.base import TrainingGroups
from .methods.gerne import beta_max
from .runs import (
    CONFIG,
    INPUTS,
    LAST,
    LOCK,
    PREDICTIONS,
    check_output_dir,
    config_changes,
    inputs_changes,
    is_run_file,
    load_checkpoint,
    read_inputs,
    read_metrics,
    read_run_config,
    run_inputs,
)

if TYPE_CHECKING:
    import pandas as pd

SPEC = "sweep.json"
TABLE = "sweep.csv"
SELECTED = "selected.json"
STOP = ".patchwise-sweep-stop"
SWEEP_LOCK = ".patchwise-sweep.lock"
STATUSES: tuple[str, ...] = ("run", "skipped", "failed")
#: Options a grid may not vary: the seeds are their own list (``--seeds``).
NOT_AXES: frozenset[str] = frozenset({"seed"})
#: How often a worker process checks that its sweep still runs (the fallback where the
#: kernel cannot end it with its parent), and how long a rerun waits for an orphan.
WATCHDOG_S = 0.5
ORPHAN_WAIT_S = 3.0
log = logging.getLogger(__name__)
_warned_old: set[str] = set()  # sweep folders whose older runs were warned about


# -- the grid ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Axis:
    """One ``--grid NAME=V1,V2...``: a numeric training option and its values."""

    name: str
    values: tuple[int | float, ...]
    texts: tuple[str, ...]  # each value as run names spell it


def numeric_options() -> dict[str, type]:
    """Every numeric :class:`TrainConfig` option (flag order) and its kind, int or float."""

    hints = {**typing.get_type_hints(PatchSettings), **typing.get_type_hints(TrainConfig)}
    kinds: dict[str, type] = {}
    for field in TrainConfig.option_fields():
        args = typing.get_args(hints[field.name]) or (hints[field.name],)
        numbers = [a for a in args if a in (int, float)]
        if numbers and field.name not in NOT_AXES:
            kinds[field.name] = float if float in numbers else int
    return kinds


def parse_axis(spec: str) -> Axis:
    """``"beta=0.5,1,2"`` as an :class:`Axis` (option names as flags or config keys).

    Raises
    ------
    PatchwiseError
        No ``=``, an option that is not a numeric training option, a value that is not
        a (whole, for integer options) finite number, or a value given twice.
    """
    name, sep, values = str(spec).partition("=")
    name = name.strip().lstrip("-").replace("-", "_")
    kinds = numeric_options()
    if not sep or not name:
        raise PatchwiseError(f"--grid {spec!r} is not NAME=V1,V2,...", hint="e.g. beta=0.5,1,2")
    if name not in kinds:
        what = "seeds are listed with --seeds" if name in NOT_AXES else "not a numeric option"
        raise PatchwiseError(
            f"--grid {name}: {what} of patchwise train",
            hint=f"numeric options: {', '.join(kinds)}",
        )
    texts = [t.strip() for t in values.split(",")]
    parsed = [_number(name, t, kinds[name]) for t in texts]
    spelled = [_spell(v) for v in parsed]
    if len(set(spelled)) < len(spelled):
        raise PatchwiseError(f"--grid {name}: a value is listed twice ({values})")
    return Axis(name, tuple(parsed), tuple(spelled))


def _number(name: str, text: str, kind: type) -> int | float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (kind is int and not value.is_integer()):
        what = "a whole number" if kind is int else "a finite number"
        raise PatchwiseError(f"--grid {name}: {text!r} is not {what}", hint=f"e.g. {name}=1,2")
    return int(value) if kind is int else value


def _spell(value: int | float) -> str:
    """The shortest text that reads back as ``value`` (``1.0`` -> ``"1"``, ``1e-4``)."""
    if isinstance(value, int):
        return str(value)
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


# -- the plan: one run per (point, seed) ------------------------------------------------------
@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its grid point, seed, settings, and why it is skipped (if it is)."""

    name: str
    point: tuple[tuple[str, int | float], ...]
    seed: int
    config: TrainConfig
    skip: str | None = None

    @property
    def out(self) -> Path:
        return Path(self.config.out)


def run_name(axes: Sequence[Axis], index: Sequence[int], seed: int) -> str:
    """``beta=2_c=0.5_seed=0``: the grid values as spelled in ``--grid``, then the seed."""
    parts = [f"{a.name}={a.texts[i]}" for a, i in zip(axes, index, strict=True)]
    return "_".join([*parts, f"seed={seed}"])


def plan(
    axes: Sequence[Axis],
    seeds: Sequence[int],
    sweep_dir: str | os.PathLike,
    make_config: Callable[[dict[str, Any]], TrainConfig],
) -> list[SweepRun]:
    """Every (grid point, seed) in grid order, each with its validated settings.

    ``make_config(options)`` builds a run's :class:`TrainConfig` from the grid values,
    ``seed`` and ``out`` (the ``patchwise sweep`` command builds it with ``patchwise
    train``'s own parser, so every train flag means what it means there).
    """
    if len({a.name for a in axes}) < len(axes):
        raise PatchwiseError("--grid names an option twice", hint="give each option once")
    if len(set(seeds)) < len(seeds):
        raise PatchwiseError(f"--seeds lists a seed twice ({list(seeds)})")
    runs = []
    for index in np.ndindex(*(len(a.values) for a in axes)):
        point = tuple((a.name, a.values[i]) for a, i in zip(axes, index, strict=True))
        for seed in seeds:
            name = run_name(axes, index, seed)
            out = Path(sweep_dir).resolve() / name
            config = make_config({**dict(point), "seed": seed, "out": str(out)})
            config.validate()
            if not runs:  # an axis the method ignores would select among equal runs
                axes_names = [a.name for a in axes]
                check_used(config, axes_names, label=lambda name: f"--grid {name}")
            runs.append(SweepRun(name, point, seed, config))
    return runs


def with_bounds(runs: Sequence[SweepRun], progress=None) -> list[SweepRun]:
    """The runs, GERNE's out-of-bound betas marked skipped with the bound in a note.

    Prepares each distinct cohort once (patch tables and caches, so parallel runs find
    them ready) and computes alpha once per (cohort, tau).
    """

    alphas: dict[tuple, np.ndarray] = {}
    marked = []
    for run in runs:
        config = run.config
        key = (*_cohort_key(config), config.attribute, config.group_threshold)
        if key not in alphas:
            alphas[key] = _training_alpha(config, progress)
        if config.method == "gerne":
            bound = beta_max(alphas[key], config.c)
            if not -1.0 <= config.beta < bound:
                run = dataclasses.replace(run, skip=_bound_note(config.beta, config.c, bound))
        marked.append(run)
    return marked


def _bound_note(beta: float, c: float, bound: float) -> str:
    if beta < -1.0:
        return f"GERNE needs beta >= -1, got beta={beta:g}"
    return (
        f"beta={beta:g} is at or above GERNE's bound beta_max={bound:.4g} for c={c:g} "
        "(the weight of the largest group would not be positive)"
    )


def _cohort_key(config: TrainConfig) -> tuple:
    return (config.manifest, config.patch, config.cache_dir)


def _training_alpha(config: TrainConfig, progress=None) -> np.ndarray:
    """alpha of the training split's groups (``config.attribute`` at its threshold; the
    cohort's caches built or reused)."""

    cohort = load_cohort(
        config.manifest,
        config.patch,
        cache_dir=config.cache_dir,
        progress=progress,
        attribute=config.attribute,
    )
    table = cohort.table("train")
    ids = table_group_ids(table, config.attribute, config.group_threshold).astype(np.int64)
    label = table["label"].to_numpy(np.int64)
    return TrainingGroups(label, ids, config.group_threshold).alpha


# -- the grids of a folder ----------------------------------------------------------------------
#: ``sweep.json`` keys that make two sweeps different experiments (never merged).
SPEC_KEYS: tuple[str, ...] = ("manifest", "method", "select")


def grid_spec(axes: Sequence[Axis], seeds: Sequence[int]) -> dict[str, Any]:
    """One grid as ``sweep.json`` lists it: its axes (in ``--grid`` order) and seeds."""
    return {"axes": {a.name: list(a.values) for a in axes}, "seeds": sorted(set(seeds))}


def _same_grid(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    axes_a, axes_b = dict(a.get("axes") or {}), dict(b.get("axes") or {})
    same_axes = list(axes_a) == list(axes_b) and all(
        [float(v) for v in axes_a[k]] == [float(v) for v in axes_b[k]] for k in axes_a
    )
    return same_axes and sorted(a.get("seeds") or []) == sorted(b.get("seeds") or [])


def _grid_text(grid: Mapping[str, Any]) -> str:
    axes = " ".join(
        f"{k}={','.join(_spell(v) for v in vs)}" for k, vs in (grid.get("axes") or {}).items()
    )
    return f"{axes or '(no grid)'} seeds {','.join(map(str, grid.get('seeds') or []))}"


def folder_grids(
    sweep_dir: str | os.PathLike,
    grid: Mapping[str, Any],
    fixed: Mapping[str, Any],
    *,
    merge: bool = False,
) -> list[dict[str, Any]]:
    """The grids the sweep in ``sweep_dir`` runs: those its ``sweep.json`` lists, plus
    ``grid`` when it is new and ``merge`` is set.

    ``fixed`` holds the :data:`SPEC_KEYS` of this sweep. A folder holding another grid
    is refused without ``merge`` (its ``sweep.json``, ``sweep.csv`` and
    ``selected.json`` would describe only the new grid, the first one's runs unlisted);
    a sweep of another manifest, method or selection metric is always refused.
    """
    path = Path(sweep_dir) / SPEC
    if not path.is_file():
        return [dict(grid)]
    spec = read_json_object(path)
    for key in SPEC_KEYS:
        if str(spec.get(key)) != str(fixed[key]):
            raise PatchwiseError(
                f"holds a sweep of another {key} ({spec.get(key)}; this one: {fixed[key]}); "
                "it was left as it is",
                path=sweep_dir,
                hint="choose another --out",
            )
    grids = spec.get("grids") or [{"axes": spec.get("axes") or {}, "seeds": spec.get("seeds")}]
    if any(_same_grid(grid, g) for g in grids):
        return [dict(g) for g in grids]  # a rerun: resume the whole sweep
    if not merge:
        raise PatchwiseError(
            f"holds a sweep of another grid ({'; '.join(_grid_text(g) for g in grids)}; this "
            f"one: {_grid_text(grid)}); it was left as it is",
            path=sweep_dir,
            hint="rerun the sweep with its own grid, pass --merge to add this grid to it, or "
            "choose another --out",
        )
    return [*(dict(g) for g in grids), dict(grid)]


def _grid_axes(grid: Mapping[str, Any]) -> list[Axis]:
    """The axes of a ``sweep.json`` grid (values spelled as run names spell them)."""
    return [
        parse_axis(f"{name}={','.join(_spell(v) for v in values)}")
        for name, values in (grid.get("axes") or {}).items()
    ]


def union_axes(grids: Sequence[Mapping[str, Any]]) -> list[Axis]:
    """Every axis of ``grids`` (first-seen order) with every value any grid gives it."""
    values: dict[str, list] = {}
    for grid in grids:
        for name, vs in (grid.get("axes") or {}).items():
            values.setdefault(name, [])
            values[name] += [v for v in vs if float(v) not in map(float, values[name])]
    return [parse_axis(f"{k}={','.join(_spell(v) for v in vs)}") for k, vs in values.items()]


def plan_grids(
    grids: Sequence[Mapping[str, Any]],
    sweep_dir: str | os.PathLike,
    make_config: Callable[[dict[str, Any]], TrainConfig],
) -> list[SweepRun]:
    """:func:`plan` of every grid, each run once, its point spelled over every grid's axes
    (an axis a grid does not vary takes the run's own setting), so that one table and one
    selection cover them all."""
    names = [a.name for a in union_axes(grids)]
    runs: dict[str, SweepRun] = {}
    for grid in grids:
        for run in plan(_grid_axes(grid), grid.get("seeds") or [0], sweep_dir, make_config):
            options = run.config.to_options()
            point = tuple((name, options[name]) for name in names)
            runs.setdefault(run.name, dataclasses.replace(run, point=point))
    return list(runs.values())


# -- what is already in the folder ----------------------------------------------------------
def check_folder(sweep_dir: str | os.PathLike) -> Path:
    """Refuse a ``--out`` that is a file, or a folder with content that is not a sweep."""

    sweep_dir = Path(sweep_dir)
    check_output_dir(sweep_dir)
    content = [p for p in sweep_dir.iterdir() if p.name != SWEEP_LOCK] if sweep_dir.is_dir() else []
    if content and not (sweep_dir / SPEC).is_file():
        raise PatchwiseError(
            f"the folder holds files but no {SPEC}: not a sweep folder",
            path=sweep_dir,
            hint="choose a new or empty folder for --out",
        )
    return sweep_dir


def check_existing_runs(runs: Sequence[SweepRun]) -> None:
    """Refuse, before any work, a run folder that holds a run with other settings or data.

    A rerun may only raise ``--steps`` (and change threads or loader workers): anything
    else would mix two experiments under one name. The slides must be those the run
    recorded (``inputs.json``): a replaced, added or removed slide is named. A folder
    whose ``config.json`` is unreadable is damaged and will be restarted; runs of an
    older patchwise (no ``inputs.json``) are reused with one warning.
    """

    now: dict[tuple, dict] = {}  # the data's record, once per (manifest, store)
    old = []
    for run in runs:
        if run.skip or not (run.out / CONFIG).is_file():
            continue
        try:
            saved = read_run_config(run.out)
            saved_inputs = read_inputs(run.out)
        except PatchwiseError:
            continue  # damaged: restarted by the run's task
        changes = config_changes(saved, run.config, saved_inputs)
        if saved.steps > run.config.steps:
            changes.append(f"steps {saved.steps!r} -> {run.config.steps!r}")
        if changes:
            raise PatchwiseError(
                "holds a run with other settings: " + "; ".join(changes),
                path=run.out,
                hint="rerun the sweep with its own flags (--steps may only grow), "
                "or choose another --out",
            )
        if saved_inputs is None:
            old.append(run.name)
        else:
            _check_run_data(run, saved_inputs, now)
    _warn_old_runs(runs, old)


def _check_run_data(run: SweepRun, saved_inputs: dict, now: dict[tuple, dict]) -> None:
    key = (run.config.manifest, run.config.features)
    if key not in now:
        now[key] = run_inputs(run.config)
    changes = inputs_changes(saved_inputs, now[key])
    if changes:
        more = f"; and {len(changes) - 3} more" if len(changes) > 3 else ""
        raise PatchwiseError(
            "holds a run of other data: " + "; ".join(changes[:3]) + more,
            path=run.out,
            hint="put the sweep's slides back, or sweep the new data into another --out",
        )


def _warn_old_runs(runs: Sequence[SweepRun], old: list[str]) -> None:
    folder = str(runs[0].out.parent) if runs else ""
    if old and folder not in _warned_old:
        _warned_old.add(folder)
        log.warning(
            "patchwise: warning: %d run(s) in %s were written by an older patchwise (no "
            "%s): their data cannot be checked; reused as they are",
            len(old),
            folder,
            INPUTS,
        )


def finished(run: SweepRun) -> bool:
    """Whether the run's folder holds this run, trained to its last step and tested."""
    return run_is_finished(run.config)


def run_is_finished(config: TrainConfig) -> bool:
    """Whether ``config.out`` holds a run trained to ``config.steps`` and tested.

    Other settings are not compared: see :func:`.runs.config_changes`.
    """

    out = Path(config.out)
    try:
        metrics = _run_metrics(out, config.select)
        saved = read_run_config(out)
    except PatchwiseError:
        return False
    return saved is not None and saved.steps == config.steps and metrics is not None


def _run_metrics(out: Path, select: str) -> dict | None:
    """``metrics.json`` of a finished run (None when it is missing or incomplete)."""
    try:
        metrics = read_metrics(out)
        entry = metrics["by_selection"][select]
        float(entry["val_value"] if entry["val_value"] is not None else math.nan)
    except (PatchwiseError, ValueError, KeyError, TypeError):
        return None
    if entry.get("test") is not None and not (out / PREDICTIONS).is_file():
        return None
    return metrics


# -- one run, in a worker process or on a dask worker ------------------------------------------
class _Stop(TrainCallbacks):
    """A run's callbacks: stop after the current step when the sweep's stop file appears,
    or (in a worker process of our own) at the first Ctrl-C; a second one stops at once."""

    def __init__(self, stop_file: Path):
        self.stop_file = stop_file
        self.stopped = False

    def on_sigint(self, signum, frame) -> None:  # noqa: ARG002 - a signal handler's signature
        if self.stopped:
            raise KeyboardInterrupt
        self.stopped = True

    def should_stop(self) -> bool:
        self.stopped = self.stopped or self.stop_file.exists()
        return self.stopped


def train_run(config: TrainConfig, stop_file: str, own_process: bool) -> tuple[str, str]:
    """Train (resume, or restart) one run; ``(status, note)`` with status ``run``,
    ``failed`` or ``interrupted``. A task: module-level, so it pickles by reference."""
    stop = _Stop(Path(stop_file))
    if stop.should_stop():
        return "interrupted", ""
    if own_process:
        _take_over_from_orphan(Path(config.out))
    previous = signal.signal(signal.SIGINT, stop.on_sigint) if own_process else None
    try:
        train(_resume_or_restart(config), stop)
    except PatchwiseError as exc:
        return "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - one run's failure must not end the sweep
        return "failed", f"{type(exc).__name__}: {exc}"
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    return ("interrupted", "") if stop.stopped else ("run", "")


def _resume_or_restart(config: TrainConfig) -> TrainConfig:
    """Resume from a readable ``last.pt`` of this run; otherwise start afresh."""

    out = Path(config.out)
    if (out / LAST).is_file():
        try:
            load_checkpoint(out / LAST)
            read_run_config(out)
        except PatchwiseError:
            clear_run(out)  # damaged: truncated, unreadable, or not this run's
        else:
            return dataclasses.replace(config, resume=True)
    elif out.is_dir():
        clear_run(out)  # stopped before its first evaluation: nothing worth keeping
    return config


def clear_run(out: Path) -> None:
    """Remove a damaged or unfinished run's files, refusing files train never writes."""
    files = [p for p in out.iterdir() if not p.name.startswith(".patchwise-tmp-")]
    foreign = [p.name for p in files if not _is_run_file(p)]
    if foreign:
        raise PatchwiseError(
            f"cannot restart the run: the folder holds files patchwise train does not write "
            f"({', '.join(sorted(foreign))})",
            path=out,
            hint="move them away and rerun the sweep",
        )
    for path in files:
        path.unlink()


def _is_run_file(path: Path) -> bool:
    return path.is_file() and is_run_file(path.name)


# -- running the plan ------------------------------------------------------------------------
def execute(
    runs: Sequence[SweepRun],
    sweep_dir: str | os.PathLike,
    *,
    workers: int = 1,
    client: Any = None,
    on_result: Callable[[SweepRun, str, str], None] | None = None,
) -> dict[str, tuple[str, str]]:
    """Train every run that is not skipped or finished; ``{name: (status, note)}``.

    Parameters
    ----------
    runs : sequence of SweepRun
        The plan (:func:`plan`, :func:`with_bounds`).
    workers : int
        Spawned worker processes (without ``client``).
    client : distributed.Client, optional
        Run each training as a task on this cluster instead (the paths must be visible
        to its workers).
    on_result : callable, optional
        ``on_result(run, status, note)`` as each run ends (``reused`` for a finished one).

    Raises
    ------
    KeyboardInterrupt
        After every running run stopped and wrote ``last.pt``.
    """
    report = on_result or (lambda run, status, note: None)  # noqa: ARG005
    outcomes: dict[str, tuple[str, str]] = {}
    todo = []
    for run in runs:
        if run.skip:
            outcomes[run.name] = ("skipped", run.skip)
            report(run, "skipped", run.skip)
        elif finished(run):
            outcomes[run.name] = ("run", "")
            report(run, "reused", "")
        else:
            todo.append(run)
    stop_file = Path(sweep_dir) / STOP
    stop_file.unlink(missing_ok=True)
    if not todo:
        return outcomes
    backend = _Cluster(client) if client is not None else _Pool(min(workers, len(todo)))
    futures = {backend.submit(run.config, str(stop_file)): run for run in todo}
    try:
        for future in backend.as_completed(list(futures)):
            run = futures[future]
            outcomes[run.name] = status, note = future.result()
            report(run, status, note)
    except KeyboardInterrupt:
        stop_file.touch()  # running runs stop after their step; queued ones do not start
        backend.stop(list(futures))
        raise
    finally:
        backend.close()
        stop_file.unlink(missing_ok=True)
    return outcomes


class _Pool:
    """Spawned worker processes (``concurrent.futures``)."""

    def __init__(self, workers: int):
        self.cf = cf
        self.pool = cf.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(os.getpid(),),
        )

    def submit(self, config: TrainConfig, stop_file: str) -> Any:
        return self.pool.submit(train_run, config, stop_file, True)

    def as_completed(self, futures: list) -> Iterator[Any]:
        return self.cf.as_completed(futures)

    def stop(self, futures: list) -> None:  # noqa: ARG002 - same signature as _Cluster.stop
        self.pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _init_worker(sweep_pid: int) -> None:
    """A worker process's setup: Ctrl-C ignored between runs, its sweep's pid in the run
    locks it takes, and an end with its sweep however the sweep ends."""

    # A worker between runs ignores Ctrl-C (the terminal sends it to every process): the
    # sweep decides; during a run, train_run's handler stops it after its current step.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    runs.lock_note = f"sweep {sweep_pid}"
    die_with_parent(sweep_pid)


def die_with_parent(parent: int) -> None:
    """End this process when ``parent`` ends, even by SIGKILL.

    On Linux the kernel does it (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); everywhere a
    daemon thread checks every :data:`WATCHDOG_S` seconds that the parent is still the
    parent (an orphan is re-parented) and ends the process otherwise. A killed sweep's
    worker would go on training a run nobody waits for, and hold its run directory.
    """

    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the kernel was told
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent,), daemon=True, name="patchwise-parent-watchdog"
    ).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCHDOG_S)
    os._exit(1)  # files are written atomically: the run resumes from its last.pt


def _take_over_from_orphan(out: Path) -> None:
    """Free a run directory that a worker of a dead sweep still holds.

    The run lock names its holder and the holder's sweep (:data:`.runs.lock_note`).
    Only one sweep runs in a folder (:func:`sweep_lock`), so a holder of another sweep
    whose process is gone is an orphan: it is given :data:`ORPHAN_WAIT_S` seconds to end
    by itself (:func:`die_with_parent`), then killed. Anything else is left to the run
    lock (a ``patchwise train`` of its own into the folder is refused as before).
    """

    lock = out / LOCK
    words, ours = lock_holder(lock), runs.lock_note.split()[-1:]
    if len(words) < 2 or not ours or str(words[1]) == ours[0] or pid_alive(words[1]):
        return
    deadline = time.monotonic() + ORPHAN_WAIT_S
    while lock_held(lock) and time.monotonic() < deadline:
        time.sleep(0.1)
    if lock_held(lock) and pid_alive(words[0]):
        log.warning(
            "patchwise: warning: ending pid %d, an orphan of sweep pid %d in %s",
            words[0],
            words[1],
            out,
        )
        with contextlib.suppress(OSError):
            os.kill(words[0], getattr(signal, "SIGKILL", signal.SIGTERM))
        deadline = time.monotonic() + ORPHAN_WAIT_S
        while lock_held(lock) and time.monotonic() < deadline:
            time.sleep(0.1)


class _Cluster:
    """Tasks on a ``dask.distributed`` cluster (one training per worker thread)."""

    def __init__(self, client: Any):
        self.client = client

    def submit(self, config: TrainConfig, stop_file: str) -> Any:
        return self.client.submit(train_run, config, stop_file, False, pure=False)

    def as_completed(self, futures: list) -> Iterator[Any]:
        from distributed import as_completed

        return as_completed(futures)

    def stop(self, futures: list) -> None:
        from distributed import wait

        wait(futures)  # each task sees the stop file after its current step

    def close(self) -> None:
        pass


# -- the sweep table and the selection ------------------------------------------------------
def sweep_table(
    runs: Sequence[SweepRun], outcomes: Mapping[str, tuple[str, str]], select: str
) -> pd.DataFrame:
    """One row per run: grid values, seed, status, note, validation and test metrics.

    ``val_wga`` / ``val_bca`` are each metric's best validation value (at the checkpoint
    it selects, ``metrics.json``); ``step``, ``test_wga`` and ``test_bca`` belong to the
    checkpoint selected by ``select``.
    """

    rows = []
    for run in runs:
        status, note = outcomes.get(run.name, ("failed", "not run"))
        row: dict[str, Any] = {"run": run.name, **dict(run.point), "seed": run.seed}
        row.update(status=status, note=note, **_metric_cells(run, status, select))
        rows.append(row)
    return pd.DataFrame(rows)


def _metric_cells(run: SweepRun, status: str, select: str) -> dict[str, float]:
    cells = dict.fromkeys(("step", "val_wga", "val_bca", "test_wga", "test_bca"), math.nan)
    metrics = _run_metrics(run.out, select) if status == "run" else None
    if metrics is None:
        return cells
    for metric in SELECT_METRICS:
        entry = metrics["by_selection"].get(metric) or {}
        cells[metric] = _float(entry.get("val_value"))
    chosen = metrics["by_selection"][select]
    cells[select] = _float(chosen.get("val_value"))  # val_worst_slice: only when selected
    test = chosen.get("test") or {}
    cells.update(step=_float(chosen.get("step")))
    cells.update(test_wga=_float(test.get("wga")), test_bca=_float(test.get("bca")))
    return cells


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def select_point(table: pd.DataFrame, axes: Sequence[str], select: str) -> dict[str, Any]:
    """The grid point with the best mean (over seeds) of ``select`` (``selected.json``).

    Only points whose every seed ran and has a finite value compete (a point missing a
    seed would be compared on fewer draws); ties go to the first point in grid order.
    """
    best: dict[str, Any] | None = None
    for key, rows in _points(table, axes):
        values = rows[select].to_numpy(dtype=float)
        if (rows["status"] != "run").any() or not np.isfinite(values).all():
            continue
        mean = float(values.mean())
        if best is None or mean > best["val_mean"]:
            best = {
                "point": dict(zip(axes, key, strict=True)),
                "val_mean": mean,
                "val_std": float(values.std(ddof=1)) if len(values) > 1 else None,
                "seeds": [int(s) for s in rows["seed"]],
                "runs": list(rows["run"]),
                "test_wga_mean": _mean(rows["test_wga"]),
                "test_bca_mean": _mean(rows["test_bca"]),
            }
    if best is None:
        return {"select": select, "point": None, "reason": "no grid point ran on every seed"}
    return {"select": select, **best}


def _points(table: pd.DataFrame, axes: Sequence[str]) -> Iterator[tuple[tuple, pd.DataFrame]]:
    """``(grid values, rows)`` per grid point, in the table's (grid) order."""
    if not axes:
        yield (), table
        return
    yield from (
        (key if isinstance(key, tuple) else (key,), rows)
        for key, rows in table.groupby(list(axes), sort=False)
    )


def _mean(values: pd.Series) -> float | None:
    finite = values.to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(finite.mean()) if finite.size else None


def write_results(
    sweep_dir: str | os.PathLike, table: pd.DataFrame, selected: Mapping[str, Any]
) -> None:
    """``sweep.csv`` (``selected`` column added) and ``selected.json``, each atomically."""
    table = table.copy()
    table["selected"] = table["run"].isin(selected.get("runs") or [])
    sweep_dir = Path(sweep_dir)
    with atomic_path(sweep_dir / TABLE) as tmp:
        table.to_csv(tmp, index=False)
    write_json(sweep_dir / SELECTED, dict(selected))


# -- reading a sweep folder back ------------------------------------------------------------------
def is_sweep(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a sweep folder (it holds ``sweep.json``)."""
    return (Path(path) / SPEC).is_file()


def read_sweep(sweep_dir: str | os.PathLike) -> tuple[dict, pd.DataFrame, dict]:
    """``(sweep.json, sweep.csv, selected.json)`` of a finished sweep.

    Raises
    ------
    PatchwiseError
        Not a sweep folder, not finished (no table yet), or a damaged file.
    """

    sweep_dir = Path(sweep_dir)
    if not is_sweep(sweep_dir):
        raise PatchwiseError(f"not a sweep folder (no {SPEC})", path=sweep_dir)
    if not (sweep_dir / TABLE).is_file() or not (sweep_dir / SELECTED).is_file():
        raise PatchwiseError(
            f"the sweep has not finished (no {TABLE} / {SELECTED} yet)",
            path=sweep_dir,
            hint="rerun the same `patchwise sweep` to finish it",
        )
    spec, selected = read_json_object(sweep_dir / SPEC), read_json_object(sweep_dir / SELECTED)
    try:
        table = pd.read_csv(sweep_dir / TABLE, keep_default_na=False, na_values=[""])
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PatchwiseError(f"cannot read the table ({exc})", path=sweep_dir / TABLE) from None
    columns = ["run", "seed", "status", *spec.get("axes", {})]
    missing = [c for c in columns if c not in table]
    if missing or "select" not in selected:
        raise PatchwiseError(
            f"damaged sweep table (no {', '.join(missing) or 'select'})",
            path=sweep_dir / (TABLE if missing else SELECTED),
            hint="rerun the same `patchwise sweep` to rewrite it",
        )
    return spec, table, selected


# -- the whole sweep -----------------------------------------------------------------------------
@contextlib.contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold the sweep folder: a second ``patchwise sweep`` into it stops with one line."""

    busy = held_by_another("sweep", "is running in this folder", sweep_dir)
    with exclusive_lock(sweep_dir / SWEEP_LOCK, busy):
        yield


def _fixed(runs: Sequence[SweepRun]) -> dict[str, Any]:
    config = runs[0].config
    return {"manifest": str(config.manifest), "method": config.method, "select": config.select}


def write_spec(
    sweep_dir: Path,
    runs: Sequence[SweepRun],
    axes: Sequence[Axis],
    grids: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """``sweep.json``: the manifest, method, selection metric, the axes and seeds of every
    grid together, each grid (``grids``: more than one after ``--merge``) and the run names."""
    spec = {
        **_fixed(runs),
        "axes": {a.name: list(a.values) for a in axes},
        "seeds": sorted({r.seed for r in runs}),
        "grids": list(grids) if grids else [grid_spec(axes, [r.seed for r in runs])],
        "runs": [r.name for r in runs],
    }
    write_json(sweep_dir / SPEC, spec)


def prepare_sweep(
    axes: Sequence[Axis],
    seeds: Sequence[int],
    sweep_dir: str | os.PathLike,
    make_config: Callable[[dict[str, Any]], TrainConfig],
    *,
    progress: Callable[[int, int], None] | None = None,
    merge: bool = False,
) -> list[SweepRun]:
    """The plan, checked: the folder, each run's settings and what earlier sweeps left.

    Every check happens here, before the first run starts; the cohort is prepared
    (``progress``) and out-of-bound GERNE points are marked skipped. A folder holding a
    sweep of another grid is refused, or with ``merge`` planned together with this one
    (:func:`folder_grids`); a rerun of a merged sweep's grid resumes every grid.
    """
    sweep_dir = check_folder(sweep_dir)
    runs = plan(axes, seeds, sweep_dir, make_config)
    grids = folder_grids(sweep_dir, grid_spec(axes, seeds), _fixed(runs), merge=merge)
    if len(grids) > 1:
        runs = plan_grids(grids, sweep_dir, make_config)
    check_existing_runs(runs)
    return with_bounds(runs, progress)  # prepares the cohort: every run finds it ready


def complete_sweep(
    runs: Sequence[SweepRun],
    axes: Sequence[Axis],
    sweep_dir: str | os.PathLike,
    *,
    workers: int = 1,
    client: Any = None,
    on_result: Callable[[SweepRun, str, str], None] | None = None,
    seeds: Sequence[int] | None = None,
    merge: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train the prepared runs (:func:`execute`), then write the table and the selection.

    ``axes`` and ``seeds`` are this sweep's grid (``seeds`` default: the runs'); the
    folder's grids are checked again under the lock (:func:`folder_grids`).
    """
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    seeds = sorted({r.seed for r in runs}) if seeds is None else seeds
    with sweep_lock(sweep_dir):
        # again, now that no other sweep can change the folder
        grids = folder_grids(sweep_dir, grid_spec(axes, seeds), _fixed(runs), merge=merge)
        axes = union_axes(grids) if len(grids) > 1 else axes
        check_existing_runs(runs)
        write_spec(sweep_dir, runs, axes, grids)
        outcomes = execute(runs, sweep_dir, workers=workers, client=client, on_result=on_result)
        select = runs[0].config.select
        table = sweep_table(runs, outcomes, select)
        selected = select_point(table, [a.name for a in axes], select)
        write_results(sweep_dir, table, selected)
    return table, selected


def run_sweep(
    axes: Sequence[Axis],
    seeds: Sequence[int],
    sweep_dir: str | os.PathLike,
    make_config: Callable[[dict[str, Any]], TrainConfig],
    *,
    workers: int = 1,
    client: Any = None,
    on_result: Callable[[SweepRun, str, str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    merge: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The whole ``patchwise sweep``: :func:`prepare_sweep`, then :func:`complete_sweep`.

    Returns the sweep table and the selection, also written to ``sweep.csv`` and
    ``selected.json``. ``merge`` adds this grid to the sweep already in ``sweep_dir``.
    """
    runs = prepare_sweep(axes, seeds, sweep_dir, make_config, progress=progress, merge=merge)
    return complete_sweep(
        runs,
        axes,
        sweep_dir,
        workers=workers,
        client=client,
        on_result=on_result,
        seeds=seeds,
        merge=merge,
    )
