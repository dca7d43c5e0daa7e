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

Defaults
--------
The paper trains an ImageNet-pretrained ResNet-50 with SGD (momentum 0.9, lr 1e-4,
weight decay 1e-2). Without pretrained weights (this project never downloads any) such
a small learning rate barely moves a randomly initialised network, so the defaults here
are lr 0.01 and weight decay 1e-4 with momentum 0.9, which make the CPU planted-bias
benchmark (``benchmarks/planted_bias.py``) learn; pass ``--lr 1e-4 --weight-decay 0.01``
with ``--weights`` to reproduce the paper's setting.

Data parallel
-------------
Under ``torchrun`` (``WORLD_SIZE > 1``) the loop initialises ``torch.distributed`` from
the environment (gloo on CPU, NCCL on CUDA), wraps the model in
``DistributedDataParallel``, draws each rank's batches with its own seed, and lets only
rank 0 write files. Every rank evaluates (so all take the same selection decisions).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path
from ._progress import ProgressCallback
from .errors import PatchwiseError
from .groups import GROUP_NAMES

log = logging.getLogger(__name__)

SELECT_METRICS: tuple[str, ...] = ("val_wga", "val_bca")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
# Samplers seed numpy with seed * 1000 + rank and torch with seed: keep both in range.
MAX_SEED = 2**32 // 1000 - 1


@dataclass
class TrainConfig:
    """Everything a training run depends on (the CLI flags and ``config.json``).

    See the module docstring for why ``lr`` and ``weight_decay`` differ from the paper's.
    ``batch_size`` is the size of each batch; GERNE draws two such batches per step
    (``batch_size / 2`` per class each).
    """

    manifest: str
    out: str
    method: str = "erm"
    tau: float = 0.1
    patch_size: int = 64
    stride: int | None = None
    tissue: str = "auto"
    tissue_threshold: float | None = None
    background: str = "dark"
    mask_map: str | None = None
    model: str = "resnet50"
    weights: str | None = None
    steps: int = 2000
    batch_size: int = 32
    lr: float = 0.01
    weight_decay: float = 1e-4
    momentum: float = 0.9
    beta: float = 1.0
    c: float = 0.5
    eta: float = 0.01
    class_balanced: bool = False
    augment: bool = True
    freeze_bn: bool = False
    eval_every: int = 100
    select: str = "val_wga"
    threshold: float = 0.5
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    num_workers: int = 0
    num_threads: int | None = None
    eval_batch_size: int = 256
    cache_dir: str | None = None
    resume: bool = False

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> TrainConfig:
        """From JSON text or a ``config.json`` path (unknown keys are an error)."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PatchwiseError(f"unknown training option(s) {', '.join(unknown)} in config")
        return cls(**data)

    def validate(self) -> None:
        """Refuse options that cannot work, before any data is read."""
        from .methods import METHOD_NAMES
        from .models import MODEL_NAMES

        checks = [
            (
                self.method in METHOD_NAMES,
                f"unknown method {self.method!r}",
                f"one of {', '.join(METHOD_NAMES)}",
            ),
            (
                self.model in MODEL_NAMES,
                f"unknown model {self.model!r}",
                f"one of {', '.join(MODEL_NAMES)}",
            ),
            (
                self.select in SELECT_METRICS,
                f"unknown selection metric {self.select!r}",
                "val_wga or val_bca",
            ),
            (self.device in DEVICES, f"unknown device {self.device!r}", "auto, cpu or cuda"),
            (
                self.precision in PRECISIONS,
                f"unknown precision {self.precision!r}",
                ", ".join(PRECISIONS),
            ),
            (0.0 <= self.tau <= 1.0, f"tau={self.tau} is outside [0, 1]", "e.g. --tau 0.1"),
            (self.steps > 0, f"steps must be positive, got {self.steps}", "e.g. --steps 2000"),
            (
                self.batch_size > 1,
                f"batch size must be at least 2, got {self.batch_size}",
                "e.g. 32",
            ),
            (
                self.eval_every > 0,
                f"eval_every must be positive, got {self.eval_every}",
                "e.g. 100",
            ),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}", "e.g. --lr 0.01"),
            (self.patch_size > 0, f"patch size must be positive, got {self.patch_size}", "e.g. 64"),
            (
                self.stride is None or self.stride > 0,
                f"stride must be positive, got {self.stride}",
                "e.g. --stride 64, or leave it out",
            ),
            (
                self.weight_decay >= 0,
                f"weight decay must be >= 0, got {self.weight_decay}",
                "e.g. --weight-decay 1e-4",
            ),
            (
                0 <= self.momentum < 1,
                f"momentum must be in [0, 1), got {self.momentum}",
                "e.g. --momentum 0.9",
            ),
            (
                0 <= self.threshold <= 1,
                f"threshold={self.threshold} is outside [0, 1]",
                "e.g. --threshold 0.5",
            ),
            (
                self.eval_batch_size > 0,
                f"eval batch size must be positive, got {self.eval_batch_size}",
                "e.g. --eval-batch-size 256",
            ),
            (
                self.num_workers >= 0,
                f"num_workers must be >= 0, got {self.num_workers}",
                "0 loads batches in the training process",
            ),
            (
                self.num_threads is None or self.num_threads > 0,
                f"num_threads must be positive, got {self.num_threads}",
                "e.g. --num-threads 4, or leave it out",
            ),
            (
                0 <= self.seed <= MAX_SEED,
                f"seed must be in [0, {MAX_SEED}], got {self.seed}",
                "e.g. --seed 0",
            ),
        ]
        # NaN fails every comparison above only by luck of how each is written, and inf
        # passes several: refuse both for every real-valued option first
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                flag = "--" + field.name.replace("_", "-")
                raise PatchwiseError(f"{flag} must be a finite number, got {value}")
        for ok, message, hint in checks:
            if not ok:
                raise PatchwiseError(message, hint=hint)
        if self.method == "gerne" and self.batch_size % 2:
            raise PatchwiseError(
                f"GERNE draws batch_size/2 patches per class; batch size {self.batch_size} is odd",
                hint="use an even --batch-size",
            )


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


def _autocast(device, precision: str):
    """Mixed precision on CUDA only: bf16 where supported, else fp16 (with a grad scaler)."""
    import torch

    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext, None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return (lambda: torch.autocast("cuda", dtype=dtype)), dtype


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, allow_nan=False))


def _save(obj: dict, path: Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


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
    model, dataset, device, *, batch_size: int, num_workers: int = 0, autocast=None
):
    """Tumor probability of every patch of ``dataset`` (no augmentation), in order."""
    import torch
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
    autocast = autocast or contextlib.nullcontext
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for x, _y, _g in loader:
            x = x.to(device, non_blocking=True)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                logits = model(x)
            out.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy())
    model.train(was_training)
    return np.concatenate(out)


def evaluate_split(dataset, prob: np.ndarray, tau: float, threshold: float):
    """C's per-group evaluation of one split's predictions."""
    from .metrics import evaluate

    return evaluate(dataset.labels, dataset.tissue_ratio, prob=prob, tau=tau, threshold=threshold)


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
def train(
    config: TrainConfig,
    callbacks: TrainCallbacks | None = None,
    *,
    progress: ProgressCallback | None = None,
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

    Returns
    -------
    pathlib.Path
        The run directory ``config.out``. A cancelled run has ``last.pt`` (resume it with
        ``resume=True``) but no test metrics yet.

    Raises
    ------
    PatchwiseError
        Bad options or data (see :meth:`TrainConfig.validate`, :func:`cohort.read_manifest`
        and the methods' own checks), or an existing run without ``resume``.
    """
    import torch

    config.validate()
    threads = torch.get_num_threads()
    if config.num_threads:
        # on a busy machine, fewer intra-op threads than cores avoids spin-wait contention
        torch.set_num_threads(int(config.num_threads))
    try:
        with contextlib.ExitStack() as stack:
            return _train(config, callbacks, progress, stack)
    finally:
        torch.set_num_threads(threads)


def _train(
    config: TrainConfig, callbacks: TrainCallbacks | None, progress, stack: contextlib.ExitStack
) -> Path:
    import torch

    from .data import PatchSettings, channel_stats, load_cohort, make_dataset
    from .methods import TrainingGroups, make_method
    from .models import build_model
    from .runs import _first_line, check_output_dir, check_resume, load_checkpoint, run_lock

    callbacks = callbacks or TrainCallbacks()
    dist_info = _init_distributed("cuda" if config.device == "cuda" else "cpu")
    out = Path(config.out)
    last_path = out / "last.pt"
    check_output_dir(out)
    if dist_info.main:
        # held until the run ends: a second `train` into the same folder stops here; the
        # checks below run under it, and an empty folder it created goes if they fail
        stack.enter_context(run_lock(out))
    if config.resume and not last_path.is_file():
        raise PatchwiseError(
            "nothing to resume: no last.pt", path=out, hint="drop --resume to start a new run"
        )
    if not config.resume and last_path.is_file():
        raise PatchwiseError(
            "run directory already holds a run (last.pt)",
            path=out,
            hint="pass --resume to continue it, or choose another --out",
        )
    if config.resume:
        check_resume(out, config)
    device = resolve_device(config.device, dist_info.local_rank)
    autocast, amp_dtype = _autocast(device, config.precision)

    # -- data: rank 0 builds the caches, the others then find them ready
    settings = PatchSettings(
        patch_size=config.patch_size,
        stride=config.stride,
        tissue=config.tissue,
        tissue_threshold=config.tissue_threshold,
        background=config.background,
        mask_map=config.mask_map,
    )
    cohort = None
    if dist_info.main:
        cohort = load_cohort(
            config.manifest, settings, cache_dir=config.cache_dir, progress=callbacks.on_prepare
        )
    if dist_info.world > 1:
        torch.distributed.barrier()
    if cohort is None:
        cohort = load_cohort(config.manifest, settings, cache_dir=config.cache_dir)
    train_caches = [s.cache for s in cohort.splits["train"]]
    mean, std = channel_stats(train_caches)
    train_set = make_dataset(cohort, "train", config.tau, mean, std)
    val_set = make_dataset(cohort, "val", config.tau, mean, std)
    test_set = (
        make_dataset(cohort, "test", config.tau, mean, std) if "test" in cohort.splits else None
    )
    if len(train_set) == 0 or len(val_set) == 0:
        raise PatchwiseError(
            "the training or validation slides hold no whole patch",
            path=config.manifest,
            hint="use a smaller --patch-size",
        )
    method = make_method(
        config.method, TrainingGroups(train_set.labels, train_set.groups, config.tau), config
    )

    # -- model and optimiser (same initial weights on every rank)
    torch.manual_seed(config.seed)
    model = build_model(config.model, cohort.channels, weights=config.weights)
    use_channels_last = device.type == "cuda" and config.channels_last
    model = model.to(device)
    if use_channels_last:
        model = model.to(memory_format=torch.channels_last)
    method.to(device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    meta = {
        "model_name": config.model,
        "in_channels": int(cohort.channels),
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "tau": float(config.tau),
        "threshold": float(config.threshold),
        "patch_size": int(config.patch_size),
    }
    start_step = 0
    history: list[dict] = []
    best = {m: {"value": -math.inf, "step": -1} for m in SELECT_METRICS}
    pending: dict[str, float] = {}
    pending_n = 0
    if config.resume:
        ckpt, _ = load_checkpoint(last_path)
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            method.load_state_dict(ckpt["method"])
            method.to(device)
            if "scaler" in ckpt and ckpt["scaler"]:
                scaler.load_state_dict(ckpt["scaler"])
            start_step = int(ckpt["step"])
            history = list(ckpt["history"])
            best = {k: dict(v) for k, v in ckpt["best"].items()}
            pending, pending_n = dict(ckpt["pending"]), int(ckpt["pending_n"])
            torch.set_rng_state(ckpt["torch_rng"])
        except (KeyError, RuntimeError, TypeError, AttributeError) as exc:
            raise PatchwiseError(
                f"cannot resume from this checkpoint ({_first_line(exc)})",
                path=last_path,
                hint="the file is damaged or not a last.pt of this run; start a new run",
            ) from None
        if start_step > config.steps:
            raise PatchwiseError(
                f"the run already has {start_step} steps, more than --steps {config.steps}",
                path=out,
                hint=f"pass --steps above {start_step} to continue it",
            )
    if dist_info.main:
        with atomic_path(out / "config.json") as tmp:
            tmp.write_text(config.to_json())

    # BatchNorm layers kept in eval mode when frozen (running statistics fixed, affine
    # parameters still trained): the paper's choice for GERNE with a pretrained backbone,
    # whose running statistics are worth keeping (docs/methods.md, "BatchNorm").
    frozen_bn = (
        [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if config.freeze_bn
        else []
    )

    net = model
    if dist_info.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def checkpoint(step: int) -> dict:
        return {
            "model": _cpu_state(model),
            "optimizer": optimizer.state_dict(),
            "method": method.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else {},
            "step": step,
            "history": history,
            "best": best,
            "pending": pending,
            "pending_n": pending_n,
            "torch_rng": torch.get_rng_state(),
            "meta": meta,
        }

    def best_path(metric: str) -> Path:
        return out / ("best.pt" if metric == config.select else f"best_{metric}.pt")

    # -- training
    from torch.utils.data import DataLoader

    from .data import identity_collate

    sampler = method.make_sampler(config.batch_size, seed=config.seed * 1000 + dist_info.rank)
    loader = DataLoader(
        train_set,
        batch_sampler=_Requests(sampler, start_step, config.steps, config.augment),
        num_workers=config.num_workers,
        collate_fn=identity_collate,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    batches_iter = iter(loader)
    t0 = time.perf_counter()
    cancelled = False
    step = start_step
    for step in range(start_step + 1, config.steps + 1):
        model.train()
        for module in frozen_bn:
            module.eval()
        batches = []
        for _ in range(sampler.batches_per_step):
            x, y, g = next(batches_iter)
            x = x.to(device, non_blocking=True)
            if use_channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            batches.append((x, y.to(device, non_blocking=True), g.to(device, non_blocking=True)))
        with autocast():
            loss, logs = method.loss(net, batches)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        loss_value = float(logs["loss"])
        if not math.isfinite(loss_value):
            raise PatchwiseError(
                f"training diverged at step {step} (loss {loss_value})",
                path=out,
                hint="lower --lr (or --beta for GERNE)",
            )
        for k, v in logs.items():
            pending[k] = pending.get(k, 0.0) + float(v)
        pending_n += 1
        callbacks.on_step(step, config.steps, loss_value)
        if progress is not None:
            progress(step, config.steps)
        stop = bool(callbacks.should_stop())
        if dist_info.world > 1:
            flag = torch.tensor([float(stop)])
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())

        if step % config.eval_every == 0 or step == config.steps:
            prob = dataset_probabilities(
                model,
                val_set,
                device,
                batch_size=config.eval_batch_size,
                num_workers=config.num_workers,
                autocast=autocast,
            )
            evaluation = evaluate_split(val_set, prob, config.tau, config.threshold)
            train_logs = {k: v / max(pending_n, 1) for k, v in pending.items()}
            pending, pending_n = {}, 0
            row = _history_row(step, evaluation, train_logs, time.perf_counter() - t0)
            history.append(row)
            for metric in SELECT_METRICS:
                value = row[metric]
                value = -math.inf if value is None or not math.isfinite(value) else float(value)
                if value > best[metric]["value"] or best[metric]["step"] < 0:
                    best[metric] = {"value": value, "step": step}
                    if dist_info.main:
                        _save(
                            {
                                "model": _cpu_state(model),
                                "step": step,
                                "metric": metric,
                                "value": value,
                                **meta,
                            },
                            best_path(metric),
                        )
            if dist_info.main:
                _save(checkpoint(step), last_path)
                _write_history(history, out / "history.csv")
            callbacks.on_eval(step, row)
        if stop:
            cancelled = True
            if dist_info.main and step % config.eval_every != 0:
                _save(checkpoint(step), last_path)
            break
    del batches_iter

    if not cancelled and dist_info.main:
        _final_test(config, out, meta, best, test_set, device, autocast, best_path)
    if dist_info.world > 1:
        torch.distributed.barrier()
    return out


def _write_history(history: list[dict], path: Path) -> None:
    import pandas as pd

    with atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


def load_checkpoint_model(path: str | os.PathLike, device="cpu"):
    """Rebuild the model saved in a run or a ``best*.pt`` / ``last.pt`` file.

    Returns ``(model in eval mode, meta dict)``; see :func:`runs.load_model`.
    """
    from .runs import load_model

    return load_model(path, device)


def _final_test(config, out, meta, best, test_set, device, autocast, best_path) -> None:
    """Test metrics of the checkpoints selected by each metric; predictions of config.select's."""
    result: dict[str, Any] = {
        "selected_by": config.select,
        "method": config.method,
        "tau": config.tau,
        "seed": config.seed,
        "step": best[config.select]["step"],
        "val_value": best[config.select]["value"],
        "test": None,
        "by_selection": {},
    }
    if test_set is None or len(test_set) == 0:
        log.warning("no test slides: metrics.json holds no test metrics")
    for metric in SELECT_METRICS:
        entry: dict[str, Any] = {
            "step": best[metric]["step"],
            "val_value": best[metric]["value"],
            "test": None,
        }
        if test_set is not None and len(test_set):
            model, _ = load_checkpoint_model(best_path(metric), device)
            prob = dataset_probabilities(
                model, test_set, device, batch_size=config.eval_batch_size, autocast=autocast
            )
            evaluation = evaluate_split(test_set, prob, config.tau, config.threshold)
            entry["test"] = evaluation.to_dict()
            if metric == config.select:
                result["test"] = entry["test"]
                table = _test_table(config, test_set, prob)
                _write_table(table, out / "predictions.parquet")
        result["by_selection"][metric] = entry
    _write_json(out / "metrics.json", _json_clean(result))


def _test_table(config, test_set, prob) -> Any:
    """The test split's patch tables with ``prob`` and ``pred`` appended."""
    import pandas as pd

    tables = [pd.read_parquet(Path(c).with_suffix(".parquet")) for c in test_set.caches]
    table = pd.concat(tables, ignore_index=True)
    table["prob"] = prob.astype(np.float32)
    table["pred"] = (prob >= config.threshold).astype(np.int8)
    return table


def _write_table(table, path: Path) -> None:
    try:
        from .io.tables import write_table
    except ImportError:  # the tables module is optional here: plain atomic parquet
        with atomic_path(path) as tmp:
            table.to_parquet(tmp, index=False)
        return
    write_table(table, path)
