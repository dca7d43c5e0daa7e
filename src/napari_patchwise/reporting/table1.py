"""Table 1 keyed by configuration: which runs are seeds of one setting, and their intervals.

A Table-1 row averages runs that are **seeds of one configuration**: runs whose resolved
``config.json`` values agree on everything but :data:`RUNTIME_FIELDS` (the seed, where
the run was written, and settings that change speed but no number) and
:data:`COLUMN_FIELDS` (the group threshold, which is Table 1's own ``tau`` column).
Runs that differ in anything else (GERNE's ``beta`` or ``c``, head-only training on a
feature store, the learning rate, the cohort...) are separate rows, never pooled as if
they were seeds. Options a run's ``config.json`` lacks (older runs) take
:class:`~napari_patchwise.training.config.TrainConfig`'s defaults, so an old and a new run of
one setting still match.

A row's label is the method and what differs between that method's rows
(:func:`config_labels`): ``GERNE beta=1`` / ``GERNE beta=3``, ``GERNE head`` (trained on
a feature store), ``DFR head (val labels)``; a method with one configuration is just
its name.

:func:`table1_frame` is the long table (``table1.csv``, :data:`CSV_COLUMNS`): one row per
(configuration, selection metric, tau) with the mean and sample std over seeds, the
seed-averaged slide-bootstrap interval of WGA (:func:`napari_patchwise.analysis.intervals.
seed_averaged_ci`) and the smallest test group. :func:`table1` is the same grouping in
the wide form (taus side by side) the HTML and the benchmarks print.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.intervals import DEFAULT_N_BOOT, seed_averaged_ci
from ..errors import PatchwiseError
from ..training.config import TrainConfig
from ..training.methods import METHOD_LABELS

#: Options that change no number of a run (or only which files it writes, or where):
#: left out of the configuration key. ``select`` only picks which checkpoint
#: ``predictions.parquet`` holds: every run is tested at both selections (Table 1's
#: ``select`` column); ``preset`` only names where the (resolved, compared) values came
#: from; ``eval_batch_size`` and ``channels_last`` change speed, not results.
RUNTIME_FIELDS: frozenset[str] = frozenset(
    {
        "seed", "out", "num_workers", "num_threads", "device", "cache_dir", "resume",
        "eval_batch_size", "channels_last", "preset", "select",
    }
)  # fmt: skip
#: Options that are Table 1 columns rather than part of a row's key.
COLUMN_FIELDS: frozenset[str] = frozenset({"tau", "attribute_threshold"})
#: Options already spelt out by the method label (``ERM (class-balanced)``,
#: ``ERM [mean_CARS]``), so not repeated in a row's label.
IN_METHOD_LABEL: frozenset[str] = frozenset({"method", "class_balanced", "attribute"})
#: The columns of ``table1.csv``, in order.
CSV_COLUMNS: tuple[str, ...] = (
    "method", "config", "select", "tau", "n_seeds", "wga_mean", "wga_std",
    "wga_ci_low", "wga_ci_high", "bca_mean", "bca_std", "min_group_n",
)  # fmt: skip
#: Table-1 cells whose smallest test group holds fewer patches are marked.
MIN_GROUP_N = 20


def resolved_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's flat options with :class:`TrainConfig` defaults for any key it lacks."""

    options: dict[str, Any] = {}
    for field in TrainConfig.option_fields():
        if field.default is not dataclasses.MISSING:  # manifest and out have none
            options[field.name] = field.default
    options.update(config)
    return options


def config_key(config: Mapping[str, Any]) -> str:
    """The configuration of a run as a canonical JSON string (what a Table-1 row keys on).

    Every resolved option but :data:`RUNTIME_FIELDS` and :data:`COLUMN_FIELDS`; numbers
    compare by value (``1`` and ``1.0`` are the same ``beta``).
    """
    options = resolved_options(config)
    kept = {
        k: _canonical(v)
        for k, v in options.items()
        if k not in RUNTIME_FIELDS and k not in COLUMN_FIELDS
    }
    return json.dumps(kept, sort_keys=True)


def config_labels(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """What tells each run's configuration apart from the other ones of its method.

    Returns one text per config (``""`` when its method has one configuration):
    ``"head"`` (``"head (val labels)"`` for DFR, which fits on the validation split) for
    a run on a feature store, then ``name=value`` for every option whose value differs
    between the configurations of the same method and kind (head-only or full), in
    flag order.
    """
    resolved = [resolved_options(c) for c in configs]
    keys = [config_key(c) for c in configs]
    families: dict[tuple[str, bool], set[str]] = {}
    for options, key in zip(resolved, keys, strict=True):
        families.setdefault(_family(options), set()).add(key)
    labels = []
    for options in resolved:
        method, head = _family(options)
        parts = ["head (val labels)" if method == "dfr" else "head"] if head else []
        siblings = [json.loads(k) for k in families[(method, head)]]
        for name in options:
            if name in RUNTIME_FIELDS or name in COLUMN_FIELDS or name in IN_METHOD_LABEL:
                continue
            if len({json.dumps(s.get(name)) for s in siblings}) > 1:
                parts.append(f"{name}={_text(options[name])}")
        labels.append(" ".join(parts))
    return labels


def _family(options: Mapping[str, Any]) -> tuple[str, bool]:
    """Runs compared for a label: one method, and head-only or full training (a head run's
    model, steps and batches are its own, so they are not listed against a full run's)."""
    method = str(options.get("method"))
    return method, method == "dfr" or bool(options.get("features"))


def row_label(method: str, config: str) -> str:
    """``"GERNE beta=1"``: the method, then what tells its configuration apart."""
    return f"{method} {config}".strip()


def table1(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (over seeds, ddof=1) of WGA and BCA per (configuration, selection, tau).

    ``rows``: :func:`napari_patchwise.reporting.html.result_rows` (a ``config`` column, else
    every row of a method is one configuration). Returns a frame indexed by (label,
    select), label from :func:`row_label`, with columns ``(tau, metric, stat)``: metric
    ``wga``/``bca`` with stat ``mean``, ``std``, ``n``, and ``("groups", "min_n")``, the
    smallest test group over the row's runs.
    """
    if rows.empty:
        return pd.DataFrame()
    rows = _with_config(rows)
    rows = rows.assign(
        label=[row_label(m, c) for m, c in zip(rows["method"], rows["config"], strict=True)]
    )
    grouped = rows.groupby(["label", "select", "tau"])
    stats = grouped[["wga", "bca"]].agg(["mean", "std", "count"])
    stats = stats.rename(columns={"count": "n"}, level=1)
    stats[("groups", "min_n")] = grouped["min_group_n"].min()
    wide = stats.unstack("tau")  # columns: (metric, stat, tau)
    wide = wide.reorder_levels([2, 0, 1], axis=1).sort_index(axis=1, level=0, ascending=False)
    return wide.loc[sorted(wide.index, key=_row_order)]


def table1_frame(
    rows: pd.DataFrame,
    intervals: Mapping[tuple, tuple[float, float] | str] | None = None,
) -> pd.DataFrame:
    """The long Table 1 (``table1.csv``): one row per (configuration, selection, tau).

    Parameters
    ----------
    rows : DataFrame
        :func:`napari_patchwise.reporting.html.result_rows`.
    intervals : mapping, optional
        ``(method, config, select, tau) -> (low, high)`` in percent, or a reason (str)
        why the row has none; rows not in it get empty interval cells.

    Returns
    -------
    DataFrame
        Columns :data:`CSV_COLUMNS`; WGA/BCA in percent; std NaN for one seed.
    """
    if rows.empty:
        return pd.DataFrame(columns=list(CSV_COLUMNS))
    rows = _with_config(rows)
    out = []
    for key, part in rows.groupby(["method", "config", "select", "tau"], sort=False):
        ci = (intervals or {}).get(key)
        low, high = ci if isinstance(ci, tuple) else (math.nan, math.nan)
        out.append(
            dict(
                zip(CSV_COLUMNS[:4], key, strict=True),
                n_seeds=len(part),
                wga_mean=part["wga"].mean(),
                wga_std=part["wga"].std(ddof=1) if len(part) > 1 else math.nan,
                wga_ci_low=low,
                wga_ci_high=high,
                bca_mean=part["bca"].mean(),
                bca_std=part["bca"].std(ddof=1) if len(part) > 1 else math.nan,
                min_group_n=part["min_group_n"].min(),
            )
        )
    frame = pd.DataFrame(out, columns=list(CSV_COLUMNS))
    order = sorted(range(len(frame)), key=lambda i: _long_order(frame.iloc[i]))
    return frame.iloc[order].reset_index(drop=True)


def seed_interval(
    counts: Sequence[Any], *, n_boot: int | None = None, seed: int = 0
) -> tuple[float, float] | str:
    """The seed-averaged slide-bootstrap WGA interval (percent) of one row's runs, or why
    there is none (fewer than two test slides, different slides)."""

    try:
        result = seed_averaged_ci(counts, n_boot=n_boot or DEFAULT_N_BOOT, seed=seed)
    except PatchwiseError as exc:
        return str(exc)
    return 100.0 * result.wga.low, 100.0 * result.wga.high


def write_table1_csv(frame: pd.DataFrame, path) -> None:
    """``frame`` (:func:`table1_frame`) as CSV at ``path`` (no index; empty for NaN)."""
    frame.to_csv(path, index=False, float_format="%.4f")


# -- helpers ---------------------------------------------------------------------------
def _with_config(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.copy()
    if "config" not in rows:
        rows["config"] = ""
    if "min_group_n" not in rows:
        rows["min_group_n"] = np.nan
    rows["config"] = rows["config"].fillna("")
    return rows


def _row_order(key: tuple) -> tuple:
    label, select = key
    order = {name: i for i, name in enumerate(METHOD_LABELS.values())}
    return (order.get(label.split(" ")[0], 99), label, {"val_bca": 0, "val_wga": 1}.get(select, 9))


def _long_order(row: pd.Series) -> tuple:
    return (*_row_order((row_label(row["method"], row["config"]), row["select"])), -row["tau"])


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    return value


def _text(value: Any) -> str:
    if isinstance(value, float) and not isinstance(value, bool):
        return f"{value:g}"
    return str(value)
