"""The training loop shared by every method: steps, evaluation, selection, checkpoints.

``train(config)`` prepares the cohort (patch tables and caches, :mod:`.data`), builds the
model (:mod:`.models`) and the method (:mod:`.methods`), then runs ``config.steps``
optimisation steps. Every ``eval_every`` steps it evaluates the validation split per group
(:func:`metrics.evaluate`), appends a row to ``history.csv``, keeps the best checkpoint
by validation WGA and by validation BCA, and writes ``last.pt``. At the end the selected
checkpoints are evaluated on the test split (``metrics.json``, ``predictions.parquet``).

Run directory (docs/methods.md, "The run directory")::

    config.json          the TrainConfig
    last.pt              model, optimiser, method state (e.g. GroupDRO's q), step, history,
                         running sums and RNG state: resuming continues exactly
    best.pt              best checkpoint by ``config.select``
    best_val_wga.pt /    best checkpoint by the other selection metric (so ERM's "selected
    best_val_bca.pt      by val BCA" and "by val WGA" rows come from one run)
    history.csv          one row per evaluation
    metrics.json         test metrics of the selected checkpoint (and of the other one)
    predictions.parquet  test patches with ``prob`` and ``pred`` of the selected checkpoint

Checkpoints hold only tensors and plain Python values: ``torch.load(...,
weights_only=True)`` reads them. Every file is written atomically.

The settings, their defaults and checks are :class:`~.train_config.TrainConfig`'s
(re-exported here).

Structure
---------
:func:`train` checks the run directory (:func:`_check_run_dir`), prepares the data
(:func:`_prepare_data`), sets up the method, model and optimiser
(:func:`_set_up_optimisation`), starts a :class:`RunState` (fresh, or read back from
``last.pt`` by :func:`_resumed_state`), runs the steps (:func:`_run_steps`: one
:func:`_train_step` each, :func:`_evaluate_and_select` every ``eval_every``) and tests the
selected checkpoints (:func:`_final_test`). Everything a resume needs is in
:class:`RunState` and the objects it checkpoints with it.

Data parallel
-------------
Under ``torchrun`` (``WORLD_SIZE > 1``) the loop initialises ``torch.distributed`` from
the environment (gloo on CPU, NCCL on CUDA), wraps the model in
``DistributedDataParallel``, draws each rank's batches with its own seed, and lets only
rank 0 write files. Every rank evaluates (so all take the same selection decisions).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._atomic import atomic_path, write_json
from .._progress import ProgressCallback
from ..analysis.metrics import evaluate, group_size_warnings
from ..cohort.manifest import read_manifest
from ..errors import PatchwiseError, first_line
from ..groups import GROUP_NAMES, counts_of_groups, group_names
from ..io import open_slide
from ..io.tables import write_table
from .config import (
    DEVICES,
    MAX_SEED,
    PRECISIONS,
    SELECT_METRICS,
    WORST_SLICE,
    TrainConfig,
    selection_metrics,
)
from .encoders import encoder_spec, is_encoder_name
from .inference import Forward, autocast_context
from .methods import TrainingGroups, make_method
from .models import build_model, check_weights_file
from .runs import (
    BEST,
    CONFIG,
    FIRST_STAGE,
    HISTORY,
    INPUTS,
    LAST,
    METRICS,
    PREDICTIONS,
    absolute_paths,
    best_checkpoint_path,
    check_last_identity,
    check_new_run_dir,
    check_output_dir,
    check_resume,
    load_checkpoint,
    load_model,
    run_identity,
    run_inputs,
    run_lock,
    write_inputs,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .data import Cohort, PatchDataset
    from .methods import Method

log = logging.getLogger(__name__)

__all__ = [
    "DEVICES",
    "MAX_SEED",
    "PRECISIONS",
    "SELECT_METRICS",
    "RunState",
    "TrainCallbacks",
    "TrainConfig",
    "dataset_probabilities",
    "default_num_threads",
    "evaluate_split",
    "group_column",
    "load_checkpoint_model",
    "passive_openmp_waits",
    "resolve_device",
    "train",
    "usable_cores",
]


class TrainCallbacks:
    """Hooks the loop calls; subclass and override what you need (all are no-ops).

    They run in the training thread: a GUI must hand results to its main thread.
    """

    def on_prepare(self, done: int, total: int) -> None:
        """Progress while the patch tables and caches are prepared."""

    def on_step(self, step: int, total: int, loss: float) -> None:
        """After each optimisation step (``step`` counts from 1)."""

    def on_eval(self, step: int, metrics: dict[str, Any]) -> None:
        """After each validation; ``metrics`` is the new ``history.csv`` row."""

    def should_stop(self) -> bool:
        """Polled after every step: return True to stop (``last.pt`` is written first)."""
        return False


# -- small helpers --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_kind: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str, local_rank: int = 0):
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise PatchwiseError(
                "--device cuda but no CUDA device is available", hint="use --device cpu or auto"
            )
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def check_inputs(config: TrainConfig, *, device: bool = True) -> None:
    """The run's inputs, checked before any patch is cut: seconds, not hours, to a refusal.

    The manifest (rows, files, splits; no patient in two splits:
    :func:`cohort.read_manifest`), the ``weights`` file (:func:`models.check_weights_file`)
    and, with ``device``, that ``config.device`` exists here (False where the runs go to
    other machines: ``sweep --scheduler``). :meth:`TrainConfig.validate` checks the values.

    Raises
    ------
    PatchwiseError
        The first input that cannot work.
    """

    read_manifest(config.manifest)
    if config.slices is not None:  # read once here: a refusal before any training
        from ..analysis.discover import read_slice_table

        read_slice_table(config.slices)
    if config.weights is not None:
        check_weights_file(config.weights, config.model)
    if device:
        resolve_device(config.device)


# -- CPU threads ------------------------------------------------------------------------------
# Measured on the 2-core machine (docs/benchmarks.md, "Training speed"): torch's OpenMP
# threads spin at the end of every parallel region; when another process holds one of the
# cores, each of the hundreds of regions of a step waits for the descheduled thread, and
# two spinning threads ran smallcnn 3x slower than one. Waiting passively (sleeping),
# two threads are as fast as one under that load and ~1.8x faster on a quiet machine.
_CGROUP = Path("/sys/fs/cgroup")


def passive_openmp_waits() -> bool:
    """Make torch's OpenMP threads sleep, not spin, while they wait (before torch loads).

    Sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set a policy. GNU OpenMP reads it
    once, when torch is first imported: afterwards nothing changes it, so this returns
    whether the setting can still take effect (torch not imported yet). Child processes
    (loader workers, sweep runs) inherit it.
    """
    if "torch" in sys.modules:
        return False
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return True


def cgroup_cpu_limit(root: Path = _CGROUP) -> float | None:
    """CPUs a cgroup CPU quota allows (``cpu.max``; v1 ``cpu.cfs_quota_us``), or None.

    Containers (``docker --cpus``, Kubernetes limits) cap CPU time without hiding any CPU,
    so neither the affinity mask nor torch's default sees the cap.
    """
    try:
        quota, period = (root / "cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cores(cgroup_root: Path = _CGROUP) -> int:
    """CPUs this process can keep busy: its affinity mask, capped by a cgroup quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks (macOS, Windows)
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cgroup_root)
    if limit is not None:
        cores = min(cores, int(limit))  # a fraction of a CPU cannot keep one more thread busy
    return max(1, cores)


def default_num_threads(torch_threads: int, cores: int | None = None) -> int:
    """torch intra-op threads of a run that leaves ``num_threads`` out.

    One per usable core (:func:`usable_cores`), never more than ``torch_threads``
    (torch's own default: physical cores, or ``OMP_NUM_THREADS``; 1 per rank under
    ``torchrun``). Loader workers are not subtracted: they use about 1 % of a core
    at the model's pace (docs/benchmarks.md, "Training speed").
    """
    cores = usable_cores() if cores is None else cores
    return max(1, min(int(torch_threads), int(cores)))


def _save(obj: dict, path: Path) -> None:
    """``torch.save`` into place atomically: a failed write leaves the previous file.

    torch reports a failed write (a full disk) as a ``RuntimeError`` from its zip writer
    ("enforce fail at inline_container.cc"): that becomes an ``OSError`` naming ``path``.
    """
    import torch

    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except RuntimeError as exc:
        if not any(k in str(exc) for k in ("inline_container", "PytorchStreamWriter")):
            raise
        raise _checkpoint_write_error(path, _nbytes(obj)) from exc


def _nbytes(value: Any) -> int:
    """Bytes of the tensors in a checkpoint dict (about what ``torch.save`` writes)."""
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_nbytes(v) for v in value)
    return int(value.numel() * value.element_size()) if hasattr(value, "element_size") else 0


def _checkpoint_write_error(path: Path, size: int) -> OSError:
    """The ``OSError`` of a checkpoint torch could not write (the disk is full, or not)."""

    try:  # the failed temporary is gone again: is there room for the whole file?
        full = shutil.disk_usage(path.parent).free < size + (1 << 20)
    except OSError:
        full = False
    reason = os.strerror(errno.ENOSPC) if full else "the file system refused the write"
    kept = f"; the previous {path.name} is unchanged" if path.exists() else ""
    return OSError(
        errno.ENOSPC if full else errno.EIO,
        f"the checkpoint could not be written ({reason}){kept}",
        str(path),
    )


def _cpu_state(module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _json_clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(v) for v in value]
    return value


def group_column(name: str) -> str:
    """History column of a group's validation accuracy, e.g. ``val_acc_tumor_small``."""
    return "val_acc_" + name.replace("/", "_").replace("-", "_")


class _Requests:
    """The DataLoader's batch sampler: the pre-determined batches of the remaining steps."""

    def __init__(self, sampler, start: int, stop: int, augment: bool):
        self.sampler, self.start, self.stop, self.augment = sampler, start, stop, augment

    def __iter__(self):
        return self.sampler.requests(self.start, self.stop, augment=self.augment)

    def __len__(self) -> int:
        return (self.stop - self.start) * self.sampler.batches_per_step


# -- evaluation ------------------------------------------------------------------------------
def dataset_probabilities(
    model,
    dataset,
    device,
    *,
    batch_size: int,
    num_workers: int = 0,
    autocast=None,
    channels_last: bool | None = None,
):
    """Tumor probability of every patch of ``dataset`` (no augmentation), in order.

    ``channels_last``: the run's memory format (default: on CUDA), see
    :class:`.inference.Forward`.
    """
    from torch.utils.data import DataLoader

    from .data import identity_collate, sequential_requests

    if len(dataset) == 0:
        return np.zeros(0, dtype=np.float32)
    loader = DataLoader(
        dataset,
        batch_sampler=sequential_requests(len(dataset), batch_size),
        num_workers=num_workers,
        collate_fn=identity_collate,
    )
    was_training = model.training
    model.eval()
    forward = Forward(
        model, device, autocast=autocast or contextlib.nullcontext, channels_last=channels_last
    )
    out = [forward.probabilities(x) for x, _y, _g in loader]
    model.train(was_training)
    return np.concatenate(out)


def evaluate_split(dataset, prob: np.ndarray, tau: float, threshold: float):
    """C's per-group evaluation of one split's predictions (``tau``: the dataset's
    attribute threshold, :attr:`TrainConfig.group_threshold`)."""

    return evaluate(
        dataset.labels,
        dataset.attribute_values,
        prob=prob,
        tau=tau,
        threshold=threshold,
        attribute=dataset.attribute,
    )


def _history_row(step: int, evaluation, train_logs: dict[str, float], seconds: float) -> dict:
    row: dict[str, Any] = {"step": step, **train_logs}
    row.update(
        val_accuracy=evaluation.accuracy,
        val_wga=evaluation.wga,
        val_bca=evaluation.bca,
        val_worst_class=evaluation.worst_class_accuracy,
    )
    for g, name in enumerate(GROUP_NAMES):
        row[group_column(name)] = float(evaluation.per_group_accuracy[g])
    row["seconds"] = seconds
    return row


# -- the loop ----------------------------------------------------------------------------------


# -- what survives a resume ------------------------------------------------------------------
def _no_best(metrics: tuple[str, ...] = SELECT_METRICS) -> dict[str, dict[str, float]]:
    return {m: {"value": -math.inf, "step": -1} for m in metrics}


@dataclass
class RunState:
    """The loop's own bookkeeping: with the model, optimiser, method and grad-scaler
    states and torch's RNG, everything the next step depends on.

    :meth:`to_checkpoint` writes it all into ``last.pt`` and :meth:`restore` reads it
    back, so a resumed run continues bit-identically (its batches are a pure function of
    seed and step, :mod:`.samplers`).

    Attributes
    ----------
    step : int
        Steps done.
    history : list of dict
        The ``history.csv`` rows so far.
    best : dict
        Per selection metric, ``{"value", "step"}`` of its best checkpoint so far.
    pending, pending_n : dict, int
        Sums of the step logs since the last evaluation, and how many steps they hold.
    """

    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, dict[str, float]] = field(default_factory=_no_best)
    pending: dict[str, float] = field(default_factory=dict)
    pending_n: int = 0

    def add_logs(self, logs: Mapping[str, float]) -> None:
        """Add one step's logs to the running sums."""
        for k, v in logs.items():
            self.pending[k] = self.pending.get(k, 0.0) + float(v)
        self.pending_n += 1

    def take_train_logs(self) -> dict[str, float]:
        """Mean of the step logs since the last evaluation; the sums start again."""
        means = {k: v / max(self.pending_n, 1) for k, v in self.pending.items()}
        self.pending, self.pending_n = {}, 0
        return means

    def select(self, row: Mapping[str, Any]) -> list[str]:
        """Record an evaluation row; the metrics whose best checkpoint it now is."""
        improved = []
        for metric in self.best:  # the config's selection_metrics
            value = row.get(metric)
            value = -math.inf if value is None or not math.isfinite(value) else float(value)
            if value > self.best[metric]["value"] or self.best[metric]["step"] < 0:
                self.best[metric] = {"value": value, "step": self.step}
                improved.append(metric)
        return improved

    def to_checkpoint(self, opt: _Optimisation, meta: dict[str, Any]) -> dict[str, Any]:
        """The ``last.pt`` dict (tensors and plain values only: weights_only loads it)."""
        import torch

        return {
            "model": _cpu_state(opt.model),
            "optimizer": opt.optimizer.state_dict(),
            "method": opt.method.state_dict(),
            "scaler": opt.scaler.state_dict() if opt.scaler.is_enabled() else {},
            "step": self.step,
            "history": self.history,
            "best": self.best,
            "pending": self.pending,
            "pending_n": self.pending_n,
            "torch_rng": torch.get_rng_state(),
            "meta": meta,
        }

    @classmethod
    def restore(cls, ckpt: Mapping[str, Any], opt: _Optimisation) -> RunState:
        """Load a ``last.pt`` dict into ``opt`` and torch's RNG; return its state.

        Raises KeyError, RuntimeError, TypeError or AttributeError for a checkpoint
        that is not a ``last.pt`` of this run's settings.
        """
        import torch

        opt.model.load_state_dict(ckpt["model"])
        opt.optimizer.load_state_dict(ckpt["optimizer"])
        opt.method.load_state_dict(ckpt["method"])
        opt.method.to(opt.device)
        if ckpt.get("scaler"):
            opt.scaler.load_state_dict(ckpt["scaler"])
        state = cls(
            step=int(ckpt["step"]),
            history=list(ckpt["history"]),
            best={k: dict(v) for k, v in ckpt["best"].items()},
            pending=dict(ckpt["pending"]),
            pending_n=int(ckpt["pending_n"]),
        )
        torch.set_rng_state(ckpt["torch_rng"])
        return state


# -- the parts of a run ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Data:
    """The datasets of a run and the normalisation they share."""

    train_set: PatchDataset
    val_set: PatchDataset
    test_set: PatchDataset | None
    channels: int
    mean: np.ndarray
    std: np.ndarray
    head: Any = None  # head.HeadSource of a head run (train --features)
    encoder: dict[str, Any] | None = None  # a timm encoder's spec (encoders.encoder_spec)


@dataclass(frozen=True)
class _Optimisation:
    """What a step needs: the model (``net``: wrapped for data parallel), optimiser, ..."""

    model: torch.nn.Module
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    method: Method
    device: torch.device
    autocast: Callable[[], contextlib.AbstractContextManager]
    channels_last: bool
    frozen_bn: list[torch.nn.Module]


@dataclass(frozen=True)
class _Run:
    """One training run: its settings, folder, ranks, data and optimisation."""

    config: TrainConfig
    out: Path
    dist: _Dist
    data: _Data
    opt: _Optimisation
    meta: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)  # runs.run_inputs: inputs.json
    strict: bool = True  # the folder records its data: its last.pt must carry its identity
    inputs_cache: dict[str, Any] = field(default_factory=dict)  # e.g. the val patches' slices

    @property
    def identity(self) -> dict[str, Any]:
        """What ``last.pt`` records of this run (:func:`runs.run_identity`)."""

        return run_identity(self.config, self.inputs)

    def best_path(self, metric: str) -> Path:
        return best_checkpoint_path(self.out, metric, self.config.select)

    def save_best(self, metric: str, state: RunState) -> None:
        if self.dist.main:
            best = state.best[metric]
            _save(
                {
                    "model": self.model_state(),
                    "step": best["step"],
                    "metric": metric,
                    "value": best["value"],
                    **self.meta,
                },
                self.best_path(metric),
            )

    def model_state(self) -> dict[str, Any]:
        """The model's state dict; a head run's is the full model's (:mod:`.head`)."""
        if self.data.head is not None:
            return self.data.head.full_state(self.opt.model)
        return _cpu_state(self.opt.model)

    def save_last(self, state: RunState) -> None:
        if self.dist.main:
            ckpt = state.to_checkpoint(self.opt, self.meta)
            ckpt["run"] = self.identity  # a resume refuses a last.pt of another run
            if self.data.head is not None:  # the full model, so that predict reads it too
                ckpt["model"] = self.model_state()
            _save(ckpt, self.out / LAST)
            if not (self.out / INPUTS).is_file():  # a run of an older patchwise, resumed
                write_inputs(self.out, self.inputs)


# -- the loop ----------------------------------------------------------------------------------
def train(
    config: TrainConfig,
    callbacks: TrainCallbacks | None = None,
    *,
    progress: ProgressCallback | None = None,
    overwrite: bool = False,
) -> Path:
    """Train a patch classifier as ``config`` says; return the run directory.

    Parameters
    ----------
    config : TrainConfig
        The run's settings (also written to ``config.json``).
    callbacks : TrainCallbacks, optional
        Progress, metrics and cancellation hooks (the napari training panel uses them).
    progress : callable, optional
        ``progress(step, steps)`` after every step (e.g. a tqdm bar).
    overwrite : bool
        Replace the run already in ``config.out`` (``--overwrite``): only a folder that
        is recognisably a run, its files removed once every check has passed. Without
        it (and without ``config.resume``) a folder holding any run file is refused.

    Returns
    -------
    pathlib.Path
        The run directory ``config.out``. A cancelled run has ``last.pt`` (resume it with
        ``resume=True``) but no test metrics yet.

    Notes
    -----
    torch runs ``config.num_threads`` intra-op threads, by default one per usable core
    (:func:`default_num_threads`), restored when the run ends. If torch is not imported
    yet, its OpenMP threads are made to wait passively (:func:`passive_openmp_waits`); a
    program that imports torch first should set ``OMP_WAIT_POLICY=PASSIVE`` before that
    import to get the same speed on a busy machine.

    Raises
    ------
    PatchwiseError
        Bad options or data (see :meth:`TrainConfig.validate`, :func:`cohort.read_manifest`
        and the methods' own checks), or a folder holding run files without ``resume``
        (or ``overwrite``, for a recognisable run).
    """
    passive_openmp_waits()  # before torch loads: see "CPU threads" above
    import torch

    if config.features is not None:  # the head's checkpoints are the store's model's
        from .head import with_store_settings

        config = with_store_settings(config)
    config.validate()
    config = absolute_paths(config)  # config.json names the files wherever it is resumed
    threads = torch.get_num_threads()
    run_threads = config.num_threads or default_num_threads(threads)
    torch.set_num_threads(int(run_threads))
    log.info("torch intra-op threads: %d", run_threads)
    try:
        with contextlib.ExitStack() as stack:
            return _train(config, callbacks or TrainCallbacks(), progress, stack, overwrite)
    finally:
        torch.set_num_threads(threads)


def _train(
    config: TrainConfig,
    callbacks: TrainCallbacks,
    progress: ProgressCallback | None,
    stack: contextlib.ExitStack,
    overwrite: bool = False,
) -> Path:
    """Every check, then the steps, then the test of the selected checkpoints."""
    import torch

    dist = _init_distributed("cuda" if config.device == "cuda" else "cpu")
    out = Path(config.out)
    replaced, inputs, strict = _check_run_dir(config, out, dist, stack, overwrite)
    check_inputs(config, device=False)
    device = resolve_device(config.device, dist.local_rank)
    data = _prepare_data(config, dist, callbacks)
    opt = _set_up_optimisation(config, data, device, dist)
    meta = _checkpoint_meta(config, data)
    run = _Run(config, out, dist, data, opt, meta, inputs, strict)
    state = (
        _resumed_state(run) if config.resume else RunState(best=_no_best(selection_metrics(config)))
    )
    if dist.main:  # every check has passed: the run directory now holds a run
        for old in replaced:  # --overwrite: the old run's files go only now
            old.unlink(missing_ok=True)
        with atomic_path(out / CONFIG) as tmp:
            tmp.write_text(config.to_json())
        if strict:  # else (an older run's folder) with the first last.pt that records it
            write_inputs(out, inputs)
    run.opt.method.prepare(FirstStage(run))  # JTT, gerne-inferred: their first model
    if config.method in _dfr_methods():
        cancelled = _fit_dfr(run, state, callbacks)
    else:
        cancelled = _run_steps(run, state, callbacks, progress)
    if not cancelled and dist.main:
        _final_test(run, state.best)
    if dist.world > 1:
        torch.distributed.barrier()
    return out


@dataclass(frozen=True)
class FirstStage:
    """What a two-stage method (:meth:`Method.prepare`) may do before the run's steps.

    :meth:`train_erm` trains an ERM run of the same data and settings (the method's own
    hyperparameters at their defaults, ``overrides`` on top) into the run's subfolder
    ``first_stage/`` (replaced each time: it is the run's own), with the same loop,
    selection and checkpoints; :meth:`train_probabilities` gives one of its checkpoints'
    tumor probabilities of the training patches, in the training set's order.
    """

    run: _Run

    def train_erm(self, name: str, **overrides: Any) -> Path:
        config = self.run.config
        if self.run.dist.world > 1:
            raise PatchwiseError(
                f"--method {config.method} trains a first-stage model and does not run "
                "under torchrun yet",
                hint="run it on one process",
            )
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        own = {k: defaults[k] for k in type(self.run.opt.method).hyperparameters}
        sub = self.run.out / FIRST_STAGE
        stage = dataclasses.replace(
            config, **own, method="erm", out=str(sub), resume=False, **overrides
        )
        self.log(f"first stage ({name}): ERM into {sub}")
        train(stage, overwrite=True)
        return sub

    def train_probabilities(self, folder: Path, which: str) -> np.ndarray:
        """``which``: ``"last"`` (the model at its last step) or ``"best"`` (best.pt)."""

        ckpt, _ = load_checkpoint(Path(folder) / (LAST if which == "last" else BEST))
        state = ckpt["model"]
        if self.run.data.head is not None:  # checkpoints hold the full model
            state = self.run.data.head.head_state(state)
        model = copy.deepcopy(self.run.opt.model)
        model.load_state_dict(state)
        config = self.run.config
        return dataset_probabilities(
            model,
            self.run.data.train_set,
            self.run.opt.device,
            batch_size=config.eval_batch_size,
            num_workers=config.num_workers,
            autocast=self.run.opt.autocast,
            channels_last=self.run.opt.channels_last,
        )

    def log(self, message: str) -> None:
        log.info("%s", message)


def _check_run_dir(
    config: TrainConfig, out: Path, dist: _Dist, stack: contextlib.ExitStack, overwrite: bool
) -> tuple[list[Path], dict[str, Any], bool]:
    """The run directory's rules: a folder, held by one run, resumed only when it has a
    run of the same settings and data, a new run only where no run file is.

    Returns the old run's files that ``overwrite`` replaces (remove them once every check
    has passed, :func:`.runs.check_new_run_dir`), the run's data record
    (:func:`runs.run_inputs`) and whether the folder's own record was checked (False: a
    run of an older patchwise, resumed with a warning).
    """

    check_output_dir(out)
    if dist.main:
        # held until the run ends: a second `train` into the same folder stops here; the
        # checks below run under it, and an empty folder it created goes if they fail
        stack.enter_context(run_lock(out))
    replaced = check_new_run_dir(out, resume=config.resume, overwrite=overwrite)
    if config.resume and not (out / LAST).is_file():
        raise PatchwiseError(
            "nothing to resume: no last.pt",
            path=out,
            hint="drop --resume to start a new run",
            dock_hint="train it anew, or in a new run folder",
        )
    inputs = run_inputs(config)
    if config.resume:
        return replaced, inputs, check_resume(out, config, inputs)
    return replaced, inputs, True


def _prepare_data(config: TrainConfig, dist: _Dist, callbacks: TrainCallbacks) -> _Data:
    """Patch tables, caches and datasets; rank 0 builds the caches, the others find them."""
    import torch

    from .data import channel_stats, load_cohort, make_dataset

    if config.features is not None:
        return _head_data(config)
    cohort: Cohort | None = None
    if dist.main:
        cohort = load_cohort(
            config.manifest,
            config.patch,
            cache_dir=config.cache_dir,
            progress=callbacks.on_prepare,
            attribute=config.attribute,
        )
    if dist.world > 1:
        torch.distributed.barrier()
    if cohort is None:
        cohort = load_cohort(
            config.manifest, config.patch, cache_dir=config.cache_dir, attribute=config.attribute
        )
    encoder = _encoder_of(config, cohort)
    if encoder is None:
        mean, std = channel_stats([s.cache for s in cohort.splits["train"]])
    else:  # an encoder normalises inside the model, as it was trained (encoders.py)
        mean = np.zeros(cohort.channels, np.float32)
        std = np.ones(cohort.channels, np.float32)

    def dataset(split: str) -> PatchDataset:
        return make_dataset(
            cohort, split, config.group_threshold, mean, std, attribute=config.attribute
        )

    data = _Data(
        train_set=dataset("train"),
        val_set=dataset("val"),
        test_set=dataset("test") if "test" in cohort.splits else None,
        channels=int(cohort.channels),
        mean=mean,
        std=std,
        encoder=encoder,
    )
    if len(data.train_set) == 0 or len(data.val_set) == 0:
        raise PatchwiseError(
            "the training or validation slides hold no whole patch",
            path=config.manifest,
            hint="use a smaller --patch-size",
        )
    return data


def _encoder_of(config: TrainConfig, cohort: Cohort) -> dict[str, Any] | None:
    """The encoder spec of a timm ``--model`` over ``cohort`` (None for the others)."""

    if not is_encoder_name(config.model):
        return None
    first = cohort.splits["train"][0]
    return encoder_spec(
        config.model,
        channel_names=open_slide(first.entry.image, pyramid=False).channel_names,
        dtype=first.dtype,
        channels=config.channels,
        input_size=config.input_size,
    )


def _head_data(config: TrainConfig) -> _Data:
    """The datasets of a head run: a feature store's vectors (:mod:`.head`)."""
    from .head import prepare

    head = prepare(config)
    mean, std = (np.asarray(head.source.meta[k], dtype=np.float32) for k in ("mean", "std"))
    return _Data(
        head.train_set, head.val_set, head.test_set, head.source.dim, mean, std, head.source
    )


def _set_up_optimisation(config: TrainConfig, data: _Data, device, dist: _Dist) -> _Optimisation:
    """Method, model (the same initial weights on every rank), optimiser, precision."""
    import torch

    train_set = data.train_set
    groups = TrainingGroups(train_set.labels, train_set.groups, config.group_threshold)
    method = make_method(config.method, groups, config)  # the method's own checks
    torch.manual_seed(config.seed)
    if data.head is not None:
        model = data.head.new_head().to(device)
    else:
        model = build_model(
            config.model, data.channels, weights=config.weights, encoder=data.encoder
        ).to(device)
    channels_last = device.type == "cuda" and config.channels_last and data.head is None
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    method.to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    autocast, amp_dtype = autocast_context(device, config.precision)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    # BatchNorm layers kept in eval mode when frozen (running statistics fixed, affine
    # parameters still trained): SubpopBench's default for a pretrained backbone (neither
    # paper states it), whose running statistics are worth keeping (docs/methods.md,
    # "BatchNorm").
    batchnorm = torch.nn.modules.batchnorm._BatchNorm
    frozen_bn = [m for m in model.modules() if isinstance(m, batchnorm)] if config.freeze_bn else []
    net = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return _Optimisation(
        model, net, optimizer, scaler, method, device, autocast, channels_last, frozen_bn
    )


def _checkpoint_meta(config: TrainConfig, data: _Data) -> dict[str, Any]:
    """What a checkpoint needs to be used alone (see :func:`runs.load_checkpoint`)."""
    if data.head is not None:  # the full model's: the store's
        return {**data.head.meta, "tau": float(config.tau), "threshold": float(config.threshold)}
    meta = {
        "model_name": config.model,
        "in_channels": data.channels,
        "mean": [float(v) for v in data.mean],
        "std": [float(v) for v in data.std],
        "tau": float(config.tau),
        "threshold": float(config.threshold),
        "patch_size": int(config.patch.patch_size),
    }
    if data.encoder is not None:
        meta["encoder"] = data.encoder
    return meta


def _resumed_state(run: _Run) -> RunState:
    """The state of ``last.pt``, loaded into the run's model, optimiser and method."""

    last = run.out / LAST
    ckpt, _ = load_checkpoint(last)
    check_last_identity(ckpt, run.identity, last, strict=run.strict)
    if run.data.head is not None:  # last.pt holds the full model; the loop trains the head
        ckpt["model"] = run.data.head.head_state(ckpt["model"])
    try:
        state = RunState.restore(ckpt, run.opt)
    except (KeyError, RuntimeError, TypeError, AttributeError) as exc:
        raise PatchwiseError(
            f"cannot resume from this checkpoint ({first_line(exc)})",
            path=last,
            hint="the file is damaged or not a last.pt of this run; start a new run",
        ) from None
    if state.step > run.config.steps:
        raise PatchwiseError(
            f"the run already has {state.step} steps, more than --steps {run.config.steps}",
            path=run.out,
            hint=f"pass --steps above {state.step} to continue it",
        )
    return state


def _run_steps(
    run: _Run, state: RunState, callbacks: TrainCallbacks, progress: ProgressCallback | None
) -> bool:
    """Steps ``state.step + 1 .. config.steps``; True when stopped before the last one."""
    config = run.config
    sampler = run.opt.method.make_sampler(
        config.batch_size, seed=config.seed * 1000 + run.dist.rank
    )
    batches = _batches(run, sampler, state.step)
    t0 = time.perf_counter()
    for step in range(state.step + 1, config.steps + 1):
        logs = _train_step(run, next(batches), step)
        state.step = step
        state.add_logs(logs)
        callbacks.on_step(step, config.steps, logs["loss"])
        if progress is not None:
            progress(step, config.steps)
        stop = _should_stop(callbacks, run.dist)
        if step % config.eval_every == 0 or step == config.steps:
            row = _evaluate_and_select(run, state, time.perf_counter() - t0)
            callbacks.on_eval(step, row)
        if stop:
            if step % config.eval_every != 0:
                run.save_last(state)
            return True
    return False


def _dfr_methods() -> dict[str, str]:
    """The DFR methods (fitted by :func:`_fit_dfr`, not by steps) and their split."""
    from .methods.dfr import FIT_ON

    return FIT_ON


def _fit_dfr(run: _Run, state: RunState, callbacks: TrainCallbacks) -> bool:
    """DFR (:mod:`.methods.dfr`) instead of steps: one history row per C, its heads saved."""

    import torch

    from .methods.dfr import FIT_ON, Split, fit_dfr

    config = run.config
    sets = {"train": run.data.train_set, "val": run.data.val_set}

    def evaluate(split: str, rows: np.ndarray, prob: np.ndarray):
        whole = sets[split]
        part = copy.copy(whole)  # its per-row arrays (labels, grouping values...) cut to rows
        for name, value in vars(whole).items():
            if isinstance(value, np.ndarray) and value.shape[:1] == (len(whole),):
                setattr(part, name, value[rows])
        return evaluate_split(part, prob, config.group_threshold, config.threshold)

    def split(name: str) -> Split:
        data = sets[name]
        return Split(data.vectors.numpy(), data.labels, data.groups)

    t0 = time.perf_counter()
    fit_on = FIT_ON[config.method]
    result = fit_dfr(
        split("train"),
        split("val"),
        evaluate,
        fit_on=fit_on,
        select=SELECT_METRICS,
        seed=config.seed,
    )
    for step, (c, evaluation) in enumerate(result.rows, start=1):
        row = {**_history_row(step, evaluation, {}, time.perf_counter() - t0), "C": c}
        if fit_on == "train":  # what selected C: the held-out half of the training split
            search = result.search[step - 1]
            row.update(train_half_wga=search.wga, train_half_bca=search.bca)
        state.history.append(row)
        callbacks.on_eval(step, row)
    head = run.opt.model
    for metric in (*[m for m in SELECT_METRICS if m != config.select], config.select):
        fit = result.heads[metric]  # config.select's last: the model ends as best.pt's
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(fit.weight))
            head.bias.copy_(torch.from_numpy(fit.bias))
        state.best[metric] = {"value": fit.value, "step": fit.step}
        run.save_best(metric, state)
    state.step = len(result.rows)
    run.save_last(state)
    if run.dist.main:
        _write_history(state.history, run.out / HISTORY)
    return False


def _batches(run: _Run, sampler, start: int) -> Iterator[list]:
    """Each step's batches ``[(x, y, group), ...]`` on the device, from step ``start + 1``.

    The loader (and its workers) start here, before the first step is timed.
    """
    from torch.utils.data import DataLoader

    from .data import identity_collate

    config = run.config
    loader = DataLoader(
        run.data.train_set,
        batch_sampler=_Requests(sampler, start, config.steps, config.augment),
        num_workers=config.num_workers,
        collate_fn=identity_collate,
        pin_memory=run.opt.device.type == "cuda",
        persistent_workers=False,
    )
    return _on_device(iter(loader), config.steps - start, sampler.batches_per_step, run.opt)


def _on_device(requests: Iterator, n_steps: int, per_step: int, opt: _Optimisation):
    import torch

    for _ in range(n_steps):
        batches = []
        for _ in range(per_step):
            x, y, g = next(requests)
            x = x.to(opt.device, non_blocking=True)
            if opt.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y, g = y.to(opt.device, non_blocking=True), g.to(opt.device, non_blocking=True)
            batches.append((x, y, g))
        yield batches


def _train_step(run: _Run, batches: list, step: int) -> dict[str, float]:
    """One optimisation step; the method's logs (``loss`` first) as floats."""
    opt = run.opt
    opt.model.train()
    for module in opt.frozen_bn:
        module.eval()
    with opt.autocast():
        loss, logs = opt.method.loss(opt.net, batches)
    opt.optimizer.zero_grad(set_to_none=True)
    opt.scaler.scale(loss).backward()
    opt.scaler.step(opt.optimizer)
    opt.scaler.update()
    logs = {k: float(v) for k, v in logs.items()}
    if not math.isfinite(logs["loss"]):
        raise PatchwiseError(
            f"training diverged at step {step} (loss {logs['loss']})",
            path=run.out,
            hint="lower --lr (or --beta for GERNE)",
        )
    return logs


def _should_stop(callbacks: TrainCallbacks, dist: _Dist) -> bool:
    """The callbacks' stop request; under data parallel, any rank's stops every rank."""
    stop = bool(callbacks.should_stop())
    if dist.world > 1:
        import torch

        flag = torch.tensor([float(stop)])
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        stop = bool(flag.item())
    return stop


def _evaluate_and_select(run: _Run, state: RunState, seconds: float) -> dict[str, Any]:
    """Validate, append the history row, keep the best checkpoints, write ``last.pt``."""
    config, opt, val_set = run.config, run.opt, run.data.val_set
    prob = dataset_probabilities(
        opt.model,
        val_set,
        opt.device,
        batch_size=config.eval_batch_size,
        num_workers=config.num_workers,
        autocast=opt.autocast,
        channels_last=opt.channels_last,
    )
    evaluation = evaluate_split(val_set, prob, config.group_threshold, config.threshold)
    row = _history_row(state.step, evaluation, state.take_train_logs(), seconds)
    if config.slices is not None:
        row[WORST_SLICE] = _worst_slice(run, prob)
    state.history.append(row)
    for metric in state.select(row):
        run.save_best(metric, state)
    run.save_last(state)
    if run.dist.main:
        _write_history(state.history, run.out / HISTORY)
    return row


def _worst_slice(run: _Run, prob: np.ndarray) -> float:
    """The validation split's worst accuracy over the slices of ``config.slices``."""
    from ..analysis.discover import read_slice_table, slice_of_patches, worst_slice_accuracy

    if "val_slice_ids" not in run.inputs_cache:  # joined once per run
        keys = _split_table(run.data.val_set)
        slices = read_slice_table(run.config.slices)
        run.inputs_cache["val_slice_ids"] = slice_of_patches(keys, slices)
    correct = (prob >= run.config.threshold).astype(int) == np.asarray(run.data.val_set.labels)
    return worst_slice_accuracy(run.inputs_cache["val_slice_ids"], correct)


def _write_history(history: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


def load_checkpoint_model(path: str | os.PathLike, device="cpu"):
    """Rebuild the model saved in a run or a ``best*.pt`` / ``last.pt`` file.

    Returns ``(model in eval mode, meta dict)``; see :func:`runs.load_model`.
    """

    return load_model(path, device)


# -- the final test ------------------------------------------------------------------------------
def _final_test(run: _Run, best: Mapping[str, Mapping[str, float]]) -> None:
    """Test metrics of the checkpoints selected by each metric; predictions of config.select's."""
    config, test_set = run.config, run.data.test_set
    result: dict[str, Any] = {
        "selected_by": config.select,
        "method": config.method,
        "tau": config.tau,
        "attribute": config.attribute,
        "attribute_threshold": config.group_threshold,
        "seed": config.seed,
        "step": best[config.select]["step"],
        "val_value": best[config.select]["value"],
        "test": None,
        "by_selection": {},
        "warnings": _group_warnings("validation", run.data.val_set),
    }
    if config.method in _dfr_methods():  # which labels the head was fitted on
        from .methods.dfr import FIT_ON, FITTED_ON_LABEL

        result["fitted_on"] = FITTED_ON_LABEL[FIT_ON[config.method]]
    if test_set is None or len(test_set) == 0:
        log.warning("no test slides: metrics.json holds no test metrics")
        test_set = None
    for metric in selection_metrics(config):
        entry = {"step": best[metric]["step"], "val_value": best[metric]["value"], "test": None}
        if test_set is not None:
            prob = _test_probabilities(run, metric)
            entry["test"] = evaluate_split(
                test_set, prob, config.group_threshold, config.threshold
            ).to_dict()
            entry["test"]["warnings"] = _group_warnings("test", test_set)
            if metric == config.select:
                result["test"] = entry["test"]
                result["warnings"] += entry["test"]["warnings"]
                write_table(_test_table(config, test_set, prob), run.out / PREDICTIONS)
        result["by_selection"][metric] = entry
    write_json(run.out / METRICS, _json_clean(result))


def _group_warnings(split: str, dataset) -> list[str]:
    """``"<split>: ..."`` for each empty or tiny group of a split (metrics.json, the CLI)."""

    if dataset is None or len(dataset) == 0:
        return []
    counts = counts_of_groups(dataset.groups)
    lines = group_size_warnings(counts, group_names(dataset.attribute))
    return [f"{split}: {line}" for line in lines]


def _test_probabilities(run: _Run, metric: str) -> np.ndarray:
    """The test split's probabilities under the best checkpoint by ``metric``."""
    if run.data.head is not None:
        model = run.data.head.load_head(run.best_path(metric), run.opt.device)
    else:
        model, _ = load_checkpoint_model(run.best_path(metric), run.opt.device)
    return dataset_probabilities(
        model,
        run.data.test_set,
        run.opt.device,
        batch_size=run.config.eval_batch_size,
        autocast=run.opt.autocast,
        channels_last=run.opt.channels_last,
    )


def _test_table(config: TrainConfig, test_set: PatchDataset, prob: np.ndarray) -> Any:
    """The test split's patch tables with ``prob`` and ``pred`` appended."""

    table = _split_table(test_set)
    if test_set.attribute not in table:  # an extra attribute (docs/attributes.md)
        table[test_set.attribute] = test_set.attribute_values
    table["prob"] = prob.astype(np.float32)
    table["pred"] = (prob >= config.threshold).astype(np.int8)
    return table


def _split_table(dataset) -> Any:
    """A split's patch tables (``slide, row, col``, ...), in the dataset's order."""

    if getattr(dataset, "table", None) is not None:  # a head run's FeatureDataset
        return dataset.table.copy()
    tables = [pd.read_parquet(Path(c).with_suffix(".parquet")) for c in dataset.caches]
    return pd.concat(tables, ignore_index=True)
