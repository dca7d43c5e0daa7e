"""Run directories and checkpoints: the one place that knows their layout.

A run directory written by :func:`train.train` holds ``config.json`` and three kinds of
checkpoint (see ``docs/architecture.md``):

* ``best.pt`` (selected by ``config.select``) and ``best_val_wga.pt`` /
  ``best_val_bca.pt`` (selected by the other metric): ``{"model", "step", "metric",
  "value", **meta}``, the meta keys at the top level;
* ``last.pt``: the model plus optimiser, method, RNG and history state for resuming,
  with the meta under ``"meta"``.

Everything that accepts "a run or a checkpoint" (``patchwise predict``, the dock's
predict box, :func:`predict.predict_table`) goes through :func:`resolve_checkpoint` and
:func:`load_checkpoint`, so every file kind works everywhere and every bad file is one
:class:`~napari_patchwise.errors.PatchwiseError` naming it. Checkpoints are read with
``torch.load(..., weights_only=True)`` (no code runs while unpickling) and without
``mmap`` (a memory-mapped load skips a record-size check of the plain load).

:func:`run_lock` keeps two training processes out of one run directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from .._atomic import (
    OutputKind,
    exclusive_lock,
    folder_problem,
    held_by_another,
    read_json_object,
    write_json,
)
from ..cohort.manifest import read_manifest
from ..errors import PatchwiseError, first_line
from ..groups import DEFAULT_ATTRIBUTE, group_names
from ..io.tables import read_table
from ..settings import PatchSettings
from .config import TrainConfig
from .methods import METHOD_LABELS
from .models import MODEL_NAMES, build_architecture, is_model_name

if TYPE_CHECKING:
    import pandas as pd

    from ..settings import PatchSettings
    from .config import TrainConfig

BEST = "best.pt"
LAST = "last.pt"
CONFIG = "config.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
PREDICTIONS = "predictions.parquet"
LOCK = ".patchwise-train.lock"
INPUTS = "inputs.json"
INPUTS_VERSION = 1

log = logging.getLogger(__name__)

META_KEYS: tuple[str, ...] = ("model_name", "in_channels", "mean", "std", "patch_size")
CHECKPOINT_HINT = (
    "give a run directory written by `patchwise train`, or its best.pt, best_val_*.pt or last.pt"
)

# TrainConfig fields a resumed run may change: the step count, and settings that only
# change how fast the same computation runs (every batch is a pure function of seed and
# step, whatever the threads or loader workers).
RESUMABLE_CHANGES: frozenset[str] = frozenset(
    {"steps", "resume", "out", "num_threads", "num_workers"}
)
#: Options that are paths: ``config.json`` holds them absolute, so that a resume from
#: another folder finds the same files; a run's identity (:func:`run_identity`) leaves
#: them out, the fingerprints of the data they lead to stand for them.
PATH_OPTIONS: tuple[str, ...] = ("manifest", "weights", "cache_dir", "features")
#: Words the run lock holds after the pid: a sweep's worker process sets its sweep's pid
#: here (``"sweep 1234"``), so that a rerun of the sweep can tell an orphan's run.
lock_note = ""


# -- resolving and reading ---------------------------------------------------------------------
def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint file a user-given path means.

    Parameters
    ----------
    path : path-like
        A run directory (its ``best.pt``) or a checkpoint file (``best.pt``,
        ``best_val_*.pt``, ``last.pt`` or a copy of one).

    Returns
    -------
    pathlib.Path
        An existing file; its content is checked by :func:`load_checkpoint`.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / BEST).is_file() and (path / LAST).is_file():
            raise PatchwiseError(
                "no checkpoint (best.pt) yet: the run stopped before its first evaluation",
                path=path,
                hint=f"give {path / LAST} explicitly, or resume the run with --resume",
                dock_hint=f"choose {path / LAST}, or resume the run (Train, then Resume run)",
            )
        if not (path / BEST).is_file():
            raise PatchwiseError(
                "no checkpoint (best.pt) in this folder", path=path, hint=CHECKPOINT_HINT
            )
        return path / BEST
    if not path.is_file():
        hint = CHECKPOINT_HINT
        if path.name.startswith("best_val_") and (path.parent / BEST).is_file():
            # best_<metric>.pt exists only for the metric the run did not select by
            hint = f"{path.parent / BEST} is the checkpoint of the run's own selection metric"
        raise PatchwiseError("no checkpoint: no such file or folder", path=path, hint=hint)
    return path


def run_files(path: str | os.PathLike) -> list[Path]:
    """The files of the run a run directory or checkpoint belongs to.

    Outputs of other commands must never replace them (``report RUN --out RUN/config.json``
    would damage the run); a new file beside them is fine.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if not (folder / CONFIG).is_file():
        return [path] if path.is_file() else []
    return sorted(p for p in folder.iterdir() if p.is_file())


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a checkpoint file (weights_only) and check it is one of ours.

    Parameters
    ----------
    path : path-like
        A run directory or checkpoint file (see :func:`resolve_checkpoint`).

    Returns
    -------
    (dict, dict)
        The whole checkpoint (``"model"`` is the state dict; ``last.pt`` has more) and
        its meta: ``model_name``, ``in_channels``, ``mean``, ``std``, ``patch_size``, and
        ``threshold`` and ``tau`` when the run saved them.

    Raises
    ------
    PatchwiseError
        Not a file, not a PyTorch file, truncated, or without the model and meta that
        ``patchwise train`` writes.
    """
    import torch

    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the unpickler and the zip reader raise many kinds
        raise PatchwiseError(
            f"not a readable PyTorch checkpoint ({first_line(exc)})",
            path=path,
            hint=CHECKPOINT_HINT,
        ) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise PatchwiseError(
            "not a patchwise checkpoint (no model weights)", path=path, hint=CHECKPOINT_HINT
        )
    # best*.pt keep the meta at the top level, last.pt under "meta"
    meta = ckpt["meta"] if isinstance(ckpt.get("meta"), dict) else ckpt
    _check_meta(meta, path)
    return ckpt, meta


def checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The meta of a run's or file's checkpoint (see :func:`load_checkpoint`)."""
    return load_checkpoint(path)[1]


def load_model(path: str | os.PathLike, device: Any = "cpu") -> tuple[Any, dict[str, Any]]:
    """Rebuild the model a checkpoint holds, in eval mode on ``device``.

    Returns
    -------
    (torch.nn.Module, dict)
        The model and the checkpoint's meta (see :func:`load_checkpoint`).
    """

    path = resolve_checkpoint(path)
    ckpt, meta = load_checkpoint(path)
    model = build_architecture(
        meta["model_name"], int(meta["in_channels"]), encoder=meta.get("encoder")
    )
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise PatchwiseError(
            f"the weights do not fit a {meta['model_name']} with {meta['in_channels']} "
            f"channels ({first_line(exc)})",
            path=path,
            hint=CHECKPOINT_HINT,
        ) from None
    return model.to(device).eval(), meta


def best_checkpoint_path(out: str | os.PathLike, metric: str, select: str) -> Path:
    """Where a run keeps its best checkpoint by ``metric``.

    ``best.pt`` for the run's own selection metric ``select``, ``best_<metric>.pt`` for
    the other one (``best_val_bca.pt`` or ``best_val_wga.pt``).
    """
    return Path(out) / (BEST if metric == select else f"best_{metric}.pt")


def run_config_path(path: str | os.PathLike) -> Path:
    """``config.json`` of a run directory, or the one beside a checkpoint file."""
    path = Path(path)
    return (path if path.is_dir() else path.parent) / CONFIG


def read_run_config(path: str | os.PathLike, *, required: bool = True) -> TrainConfig | None:
    """The :class:`~napari_patchwise.training.loop.TrainConfig` a run was trained with.

    Parameters
    ----------
    path : path-like
        A run directory, or a checkpoint file (its folder's ``config.json``).
    required : bool
        If False, a missing ``config.json`` (a checkpoint copied out of its run) gives
        None; a malformed one is an error either way.

    Raises
    ------
    PatchwiseError
        Missing (when required), not JSON, truncated, unknown keys or invalid values.
    """

    file = run_config_path(path)
    if not file.is_file():
        if not required:
            return None
        raise PatchwiseError(
            "no config.json: not a run directory", path=file.parent, hint=CHECKPOINT_HINT
        )
    data = read_json_object(
        file, what="the run configuration", hint="the run folder is damaged; train again"
    )
    try:
        config = TrainConfig.from_json(json.dumps(data))
        config.validate()
    except (PatchwiseError, TypeError, ValueError) as exc:
        raise PatchwiseError(
            f"invalid run configuration: {str(exc).rstrip('.')}",
            path=file,
            hint="the run folder is damaged or from another version; train again",
        ) from None
    return config


def run_patch_settings(path: str | os.PathLike) -> PatchSettings:
    """How the run of a run directory or checkpoint cut its slides into patches.

    A checkpoint copied out of its run has no ``config.json``: the defaults of
    :class:`~napari_patchwise.settings.PatchSettings` apply then (the patch size itself is
    in every checkpoint's meta). A damaged ``config.json`` is an error (see
    :func:`read_run_config`).
    """

    config = read_run_config(path, required=False)
    return PatchSettings() if config is None else config.patch


# -- resuming ----------------------------------------------------------------------------------
def absolute_paths(config: TrainConfig) -> TrainConfig:
    """``config`` with its path options (:data:`PATH_OPTIONS`) made absolute.

    A run stores them so: a relative name would mean another file when the run is
    resumed (or its sweep rerun) from another folder.
    """
    paths = {n: os.path.abspath(v) for n in PATH_OPTIONS if (v := getattr(config, n)) is not None}
    return dataclasses.replace(config, **paths)


def config_changes(
    saved: TrainConfig, new: TrainConfig, saved_inputs: dict[str, Any] | None = None
) -> list[str]:
    """``"name old -> new"`` for every setting a resume would change, except the allowed.

    Settings are named as their flags and ``config.json`` keys (``patch_size``, not
    ``patch``). Allowed are :data:`RESUMABLE_CHANGES`; a path counts as unchanged when
    both names lead to the same file, and the manifest also when its content is the one
    ``saved_inputs`` (the run's ``inputs.json``) recorded. A relative saved path (a run
    written before paths were stored absolute) is read from the current folder.
    """
    changes = []
    new_options = new.to_options()
    for name, old in saved.to_options().items():
        value = new_options[name]
        if name in RESUMABLE_CHANGES or _same(old, value):
            continue
        same_file = name in PATH_OPTIONS and old and value
        if same_file and Path(old).resolve() == Path(value).resolve():
            continue
        if name == "manifest" and _same_manifest(value, saved_inputs):
            continue
        changes.append(f"{name} {old!r} -> {value!r}")
    return changes


def _same_manifest(path: str | None, saved_inputs: dict[str, Any] | None) -> bool:
    """Whether ``path`` holds the manifest bytes the run recorded (another name for it)."""
    if not saved_inputs or not path or not Path(path).is_file():
        return False
    return file_sha256(path) == saved_inputs.get("manifest_sha256")


def run_inputs(config: TrainConfig) -> dict[str, Any]:
    """What a run's data is (``inputs.json``): the manifest and every slide's fingerprints.

    The manifest's absolute path and content hash; per slide (manifest order) its id,
    split, image and mask paths and their :func:`~.io.fingerprint.fingerprint` (a
    replaced, edited, touched or moved file changes it); the feature store's path and
    fingerprint for a head run. Costs a ``stat`` per file, no read of a slide.
    """
    from ..io.fingerprint import fingerprint

    manifest = Path(config.manifest)
    slides = [
        {
            "slide": e.slide,
            "split": e.split,
            "image": str(e.image),
            "mask": str(e.mask),
            "fingerprint": [fingerprint(e.image), fingerprint(e.mask)],
        }
        for e in read_manifest(manifest)
    ]
    inputs: dict[str, Any] = {
        "version": INPUTS_VERSION,
        "manifest": os.path.abspath(manifest),
        "manifest_sha256": file_sha256(manifest),
        "slides": slides,
        "features": None,
    }
    if config.features is not None:
        store = Path(config.features)
        inputs["features"] = {"path": os.path.abspath(store), "fingerprint": fingerprint(store)}
    return inputs


def read_inputs(out: str | os.PathLike) -> dict[str, Any] | None:
    """A run's ``inputs.json``; None when it has none (written by an older patchwise).

    Raises
    ------
    PatchwiseError
        The file is there but damaged.
    """
    file = Path(out) / INPUTS
    if not file.is_file():
        return None
    hint = "the run folder is damaged; train again"
    data = read_json_object(file, what="the record of the run's data", hint=hint)
    if not isinstance(data.get("slides"), list):
        raise PatchwiseError("the record of the run's data lists no slides", path=file, hint=hint)
    return data


def write_inputs(out: str | os.PathLike, inputs: dict[str, Any]) -> None:
    """Write ``inputs.json`` atomically."""
    write_json(Path(out) / INPUTS, inputs, indent=1, allow_nan=True)


def inputs_changes(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between a run's recorded data and the data now, one phrase each."""
    old = {s["slide"]: s for s in saved.get("slides", [])}
    new = {s["slide"]: s for s in now["slides"]}
    changes = [f"slide {name} added" for name in new if name not in old]
    changes += [f"slide {name} removed" for name in old if name not in new]
    for name in (n for n in new if n in old):
        before, after = old[name], new[name]
        if before.get("split") != after["split"]:
            changes.append(f"slide {name} moved from {before.get('split')} to {after['split']}")
        for i, what in enumerate(("image", "mask")):
            if list(before.get("fingerprint") or [None, None])[i] != after["fingerprint"][i]:
                was = "" if before.get(what) == after[what] else f" (was {before.get(what)})"
                changes.append(f"slide {name}: {what} {after[what]} changed{was}")
    if not changes and list(old) != list(new):
        changes.append("the manifest lists the slides in another order")
    store_before, store_now = saved.get("features"), now.get("features")
    if (store_before or {}).get("fingerprint") != (store_now or {}).get("fingerprint"):
        changes.append(f"feature store {(store_now or {}).get('path')} changed")
    return changes


def _data_digest(inputs: dict[str, Any]) -> str:
    """Hash of the data part of :func:`run_inputs`: slides, splits, order, fingerprints."""
    slides = [[s["slide"], s["split"], s["fingerprint"]] for s in inputs["slides"]]
    store = (inputs.get("features") or {}).get("fingerprint")
    payload = json.dumps({"slides": slides, "features": store}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def run_identity(config: TrainConfig, inputs: dict[str, Any]) -> dict[str, Any]:
    """What ``last.pt`` records of its run (``"run"``): the settings a resume may not
    change, and a digest of the data's fingerprints."""
    options = config.to_options()
    skip = RESUMABLE_CHANGES | set(PATH_OPTIONS)
    return {
        "config": {k: v for k, v in options.items() if k not in skip},
        "data": _data_digest(inputs),
    }


def _changes_message(changes: list[str], limit: int = 3) -> str:
    more = f"; and {len(changes) - limit} more" if len(changes) > limit else ""
    return "; ".join(changes[:limit]) + more


def check_resume(
    out: str | os.PathLike, config: TrainConfig, inputs: dict[str, Any] | None = None
) -> bool:
    """Refuse to resume the run in ``out`` with settings or data other than its own.

    Only the step count (and the speed-only settings of :data:`RESUMABLE_CHANGES`) may
    change: anything else would continue one run under another's name and make its
    ``config.json`` describe a run that never happened. ``inputs`` (:func:`run_inputs`
    of ``config``) must match the run's ``inputs.json``: a replaced, added or removed
    slide is named. A run written by an older patchwise (no ``inputs.json``) resumes
    with a one-line warning.

    Returns
    -------
    bool
        Whether the data was checked (the folder has an ``inputs.json``).
    """
    saved = read_run_config(out)
    saved_inputs = read_inputs(out)
    changes = config_changes(saved, config, saved_inputs)
    if changes:
        raise PatchwiseError(
            "cannot resume with different settings: " + "; ".join(changes),
            path=out,
            hint="resume with the run's own settings (only --steps may change), "
            "or start a new run with another --out",
            dock_hint="set the fields back to the run's settings (only steps may change), "
            "or train in a new run folder",
        )
    if saved_inputs is None:
        log.warning(
            "patchwise: warning: %s was written by an older patchwise (no %s): its data "
            "cannot be checked; resuming on %s as it is now",
            out,
            INPUTS,
            config.manifest,
        )
        return False
    data = inputs_changes(saved_inputs, inputs if inputs is not None else run_inputs(config))
    if data:
        raise PatchwiseError(
            "cannot resume: the data changed since the run started: " + _changes_message(data),
            path=out,
            hint="put the run's slides back, or start a new run with another --out",
            dock_hint="put the run's slides back, or train in a new run folder",
        )
    return True


def check_last_identity(
    ckpt: dict[str, Any], identity: dict[str, Any], last: Path, *, strict: bool
) -> None:
    """Refuse a ``last.pt`` that another run wrote (copied in from elsewhere).

    ``identity`` is :func:`run_identity` of the run being resumed. A ``last.pt`` without
    one was written by an older patchwise: refused when ``strict`` (the folder records
    its data, so its own ``last.pt`` has an identity), accepted otherwise.
    """
    hint = "put this run's own last.pt back, or start a new run with another --out"
    dock_hint = "put this run's own last.pt back, or train in a new run folder"
    stored = ckpt.get("run")
    if not isinstance(stored, dict):
        if strict:
            raise PatchwiseError(
                "last.pt carries no run identity: it was not written by this run",
                path=last,
                hint=hint,
                dock_hint=dock_hint,
            )
        return
    theirs, ours = stored.get("config") or {}, identity["config"]
    diffs = [
        f"{k} {theirs.get(k)!r} (last.pt) vs {v!r} (config.json)"
        for k, v in ours.items()
        if not _same(theirs.get(k), v)
    ]
    if not diffs and stored.get("data") != identity["data"]:
        diffs = ["it was trained on other slides or files"]
    if diffs:
        raise PatchwiseError(
            "last.pt belongs to another run: " + _changes_message(diffs),
            path=last,
            hint=hint,
            dock_hint=dock_hint,
        )


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex): a content identity that survives a copy."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: The files ``patchwise train`` writes into a run directory (and ``best_<metric>.pt``).
RUN_FILES: frozenset[str] = frozenset({CONFIG, BEST, LAST, HISTORY, METRICS, PREDICTIONS, INPUTS})


def is_run_file(name: str) -> bool:
    """Whether ``name`` is a file ``patchwise train`` writes (the lock included)."""
    is_best = name.startswith("best_") and name.endswith(".pt")
    return name in RUN_FILES or name == LOCK or is_best


def _run_dir_owns(folder: Path, name: str) -> bool:
    return (folder / name).is_file() and is_run_file(name)


#: The subfolder in which a two-stage method (JTT, gerne-inferred) trains its first
#: model: a run directory of its own, replaced by the next run.
FIRST_STAGE = "first_stage"


def _run_dir_holds(folder: Path, name: str) -> bool:
    """A run file, or the first-stage run's folder (not removed by --overwrite: the next
    first stage replaces it)."""
    stage = folder / name
    return _run_dir_owns(folder, name) or (
        name == FIRST_STAGE and stage.is_dir() and (stage / CONFIG).is_file()
    )


#: A run directory: recognised by its ``config.json``, holding only run files.
RUN_DIR = OutputKind(
    "a run directory",
    folder=True,
    recognise=lambda folder: (folder / CONFIG).is_file(),
    owns=_run_dir_holds,
)


def check_new_run_dir(out: str | os.PathLike, *, resume: bool, overwrite: bool) -> list[Path]:
    """Refuse a run directory a new run would mix with files already there.

    A new run (not ``resume``) starts only in a folder without any run file (e.g. a
    stray ``history.csv`` would be replaced, a finished run without ``last.pt`` would
    lose its ``best.pt`` and metrics). With ``overwrite`` a folder that is recognisably
    a run (:data:`RUN_DIR`: its ``config.json``, nothing but run files) is accepted.

    Returns
    -------
    list of pathlib.Path
        The old run's files that ``overwrite`` replaces: remove them once every other
        check has passed (empty when there is nothing to replace).
    """

    out = Path(out)
    if resume and overwrite:
        raise PatchwiseError("give --resume or --overwrite, not both", path=out)
    if resume or not out.is_dir():
        return []
    found = sorted(p.name for p in out.iterdir() if p.name != LOCK and _run_dir_owns(out, p.name))
    if not found:
        return []
    problem = folder_problem(out, RUN_DIR)
    if problem is not None:
        if not (out / CONFIG).is_file():
            problem = (
                f"holds {', '.join(found)} but no {CONFIG}: not a run directory, and a new "
                "run would replace what it did not write"
            )
        raise PatchwiseError(
            f"{problem}; it was left as it is and nothing was written",
            path=out,
            hint="choose another --out (a new or empty folder)",
            dock_hint="choose another run folder (a new or empty one)",
        )
    if not overwrite:
        resume_hint = "pass --resume to continue it, " if (out / LAST).is_file() else ""
        raise PatchwiseError(
            f"run directory already holds a run ({', '.join(found)})",
            path=out,
            hint=f"{resume_hint}pass --overwrite to replace it, or choose another --out",
            dock_hint=("resume it, " if (out / LAST).is_file() else "")
            + "or train in a new run folder",
        )
    return [out / name for name in found]


def next_run_dir(out: str | os.PathLike) -> Path:
    """A fresh run folder next to ``out``: ``run`` -> ``run-2``, ``run-2`` -> ``run-3``.

    The first such name that does not exist yet (the dock's "New run folder" when the
    chosen one already holds a run). A trailing ``-N`` of up to three digits is counted
    on; a longer one (a time stamp) is kept and ``-2`` is added.
    """
    out = Path(out)
    match = re.fullmatch(r"(.+)-(\d{1,3})", out.name)
    stem, number = (match[1], int(match[2])) if match else (out.name, 1)
    while True:
        number += 1
        candidate = out.with_name(f"{stem}-{number}")
        if not candidate.exists():
            return candidate


def check_output_dir(out: str | os.PathLike) -> None:
    """Refuse an ``--out`` that is, or lies inside, an existing file."""
    out = Path(out)
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                raise PatchwiseError(
                    "a file is in the way of the run directory",
                    path=path,
                    hint="choose a folder path for --out",
                    dock_hint="choose a folder for the run",
                )
            return


# -- finished runs (what reports read) -------------------------------------------------
@dataclass
class Run:
    """A finished run directory's results: config, metrics and validation history."""

    path: Path
    config: dict
    metrics: dict
    history: pd.DataFrame

    @property
    def method_label(self) -> str:
        """The method's display name (``ERM (class-balanced)``)."""

        label = METHOD_LABELS.get(self.config["method"], self.config["method"])
        if self.config["method"] == "erm" and self.config.get("class_balanced"):
            label += " (class-balanced)"
        return label


def load_run(path: str | os.PathLike) -> Run:
    """Read a finished run directory.

    Raises
    ------
    PatchwiseError
        One line naming the file, if the directory is not a finished run or one of its
        files is unreadable or lacks what the report needs.
    """
    path = Path(path)
    if not path.is_dir():
        raise PatchwiseError(
            "not a run directory", path=path, hint="give directories written by `patchwise train`"
        )
    for name in (CONFIG, METRICS, HISTORY):
        if not (path / name).is_file():
            raise PatchwiseError(
                f"not a finished run directory (no {name})",
                path=path,
                hint="give directories written by `patchwise train` that ran to the end",
            )
    config = read_json_object(path / CONFIG, hint=DAMAGED_RUN)
    _require(config, ("method", "tau", "seed"), path / CONFIG)
    _check_config(config, path / CONFIG)
    metrics = read_json_object(path / METRICS, hint=DAMAGED_RUN)
    _require(metrics, ("selected_by", "by_selection"), path / METRICS)
    _check_metrics(metrics, path / METRICS, run_attribute(config))
    history = _read_history(path / HISTORY)
    if has_test(metrics) and not (path / PREDICTIONS).is_file():
        raise PatchwiseError(
            "run has test metrics but no predictions.parquet",
            path=path,
            hint="the run folder is incomplete; rerun `patchwise train` or leave it out",
        )
    return Run(path, config, metrics, history)


#: What to do about a damaged file of a finished run (a report can leave the run out).
DAMAGED_RUN = "the run folder is damaged; rerun `patchwise train` or leave it out"


def _bad_file(path: Path, what: str) -> PatchwiseError:
    return PatchwiseError(what, path=path, hint=DAMAGED_RUN)


def _require(data: dict, keys: Sequence[str], path: Path) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise _bad_file(path, f"lacks {', '.join(missing)}")


def _check_config(config: dict, path: Path) -> None:
    if not isinstance(config["method"], str):
        raise _bad_file(path, f"'method' is {config['method']!r}, not a name")
    for key in ("tau", "seed", "threshold"):
        value = config.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad_file(path, f"{key!r} is {value!r}, not a number")
        if not math.isfinite(value):
            raise _bad_file(path, f"{key!r} is {value!r}, not a finite number")


def _check_metrics(metrics: dict, path: Path, attribute: str = DEFAULT_ATTRIBUTE) -> None:
    """The structure :func:`result_rows` and the figures read, checked up front."""
    by_selection = metrics["by_selection"]
    if not isinstance(by_selection, dict):
        raise _bad_file(path, "'by_selection' is not an object")
    for select, entry in by_selection.items():
        test = entry.get("test") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or "step" not in entry:
            raise _bad_file(path, f"'by_selection.{select}' lacks 'step'")
        if test is None:
            continue
        try:
            for key in ("wga", "bca", "accuracy"):
                _number_or_none(test[key])
            for name in group_names(attribute):
                _number_or_none(test["groups"][name]["accuracy"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad_file(
                path, f"'by_selection.{select}.test' is incomplete or not numeric ({exc!s})"
            ) from exc


def _number_or_none(value) -> None:
    if value is not None and not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")


def read_metrics(out: str | os.PathLike) -> dict:
    """``metrics.json`` of the run in ``out`` (one-line error when missing or damaged)."""
    return read_json_object(Path(out) / METRICS, hint=DAMAGED_RUN)


def has_test(metrics: dict) -> bool:
    entry = metrics["by_selection"].get(metrics["selected_by"])
    return isinstance(entry, dict) and entry.get("test") is not None


def _read_history(path: Path) -> pd.DataFrame:
    try:
        history = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _bad_file(path, f"cannot read the CSV ({first})") from exc
    missing = [c for c in ("step", "val_wga", "val_bca") if c not in history]
    if missing:
        raise _bad_file(path, f"lacks column(s) {', '.join(missing)}")
    for column in ("step", "val_wga", "val_bca", "loss"):
        if column in history and not pd.api.types.is_numeric_dtype(history[column]):
            raise _bad_file(path, f"column {column!r} is not numeric")
    return history


def read_predictions(path: Path) -> pd.DataFrame:

    # read_table names the file in every error (unreadable, missing columns, bad values).
    return read_table(path, required=("label", "tumor_ratio", "tumor_tissue_ratio", "tissue_ratio"))


def run_attribute(config: dict) -> str:
    """The attribute a run's groups were formed by (older runs: tissue_ratio)."""
    return str(config.get("attribute") or DEFAULT_ATTRIBUTE)


# -- locking ---------------------------------------------------------------------------------
@contextlib.contextmanager
def run_lock(out: str | os.PathLike) -> Iterator[None]:
    """Hold the run directory ``out`` exclusively (creating it), or raise at once.

    ``out/.patchwise-train.lock`` through :func:`._atomic.exclusive_lock` (a killed run
    leaves no stale lock). A sweep's worker process writes its sweep's pid after its own
    (:data:`lock_note`), so that a rerun of the sweep can tell a run held by an orphan.
    """
    out = Path(out)
    created = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    try:
        busy = held_by_another("train", "is writing this run directory", out)
        with exclusive_lock(out / LOCK, busy, note=lock_note):
            yield
    finally:
        # a run refused under the lock leaves nothing behind: remove the folders this
        # call created if they are still empty (rmdir refuses a non-empty one)
        for path in created:
            try:
                path.rmdir()
            except OSError:
                break


# -- helpers -----------------------------------------------------------------------------------
def _check_meta(meta: dict[str, Any], path: Path) -> None:
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise PatchwiseError(
            f"not a patchwise checkpoint (no {', '.join(missing)})",
            path=path,
            hint=CHECKPOINT_HINT,
        )
    problem = None
    channels, patch = meta["in_channels"], meta["patch_size"]
    if not is_model_name(meta["model_name"]):
        problem = f"unknown model {meta['model_name']!r}"
    elif meta["model_name"] not in MODEL_NAMES and not isinstance(meta.get("encoder"), dict):
        problem = f"model {meta['model_name']!r} without its encoder spec"
    elif not _positive_int(channels) or not _positive_int(patch):
        problem = f"in_channels {channels!r} / patch_size {patch!r} are not positive integers"
    elif not all(_finite_list(meta[k], channels) for k in ("mean", "std")) or not all(
        s > 0 for s in meta["std"]
    ):
        problem = f"mean / std are not {channels} finite numbers (std > 0)"
    elif "threshold" in meta and not (_finite(meta["threshold"]) and 0 <= meta["threshold"] <= 1):
        problem = f"threshold {meta['threshold']!r} is not in [0, 1]"
    if problem:
        raise PatchwiseError(
            f"damaged patchwise checkpoint: {problem}", path=path, hint=CHECKPOINT_HINT
        )


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _finite_list(values: Any, n: int) -> bool:
    return isinstance(values, list | tuple) and len(values) == n and all(map(_finite, values))


def _same(a: Any, b: Any) -> bool:
    # validate() refuses NaN, so plain equality is exact here (1 == 1.0 after a JSON trip)
    return a == b
