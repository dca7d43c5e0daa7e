"""Rank candidate spurious attributes by the worst-group accuracy gap of predictions.

Every numeric attribute column of a patch table (``groups.numeric_attribute_columns``:
``tissue_ratio``, the ``patchwise stats --attributes`` columns, any numeric column a user
added) is a candidate. For each, the four groups ``2 * label + (attribute >= t)`` are
formed at every threshold ``t`` and the model's accuracy measured per group; the
attribute's score is its **worst-group accuracy gap** at the threshold where it is
largest:

    gap(t) = max over classes y of [ acc(y) - min(acc(y, low), acc(y, high)) ]

how far the worse of a class's two attribute groups falls below that class's accuracy.
A model that does not use the attribute has gaps near 0 at every threshold; one that
predicts through it fails the class's minority side (docs/attributes.md). Thresholds
whose groups are tiny would make noise look like a gap (one wrong patch alone is a group
at 0 %), so only thresholds where every group holds at least ``min_share`` of its class
are searched.

How: the patches are sorted once per attribute; "high" is then a suffix of that order,
so the group sizes and correct counts at *every* distinct value are differences of three
cumulative sums (``label``, ``correct``, ``correct & label``), as in
:mod:`.slider_eval`: O(N log N) per attribute for all thresholds together, never
O(N) per threshold. The counts become groups by the same inclusion-exclusion as
:func:`groups.counts_from_totals`, and the result at the chosen threshold equals
:func:`metrics.evaluate` there (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .groups import (
    N_GROUPS,
    attribute_values,
    counts_from_totals,
    group_names,
    numeric_attribute_columns,
)
from .metrics import Evaluator

#: Each group must hold at least this share of its class at a searched threshold.
DEFAULT_MIN_SHARE = 0.02


@dataclass(frozen=True)
class AttributeRank:
    """One attribute's best (largest-gap) threshold and the groups there."""

    attribute: str
    threshold: float  # NaN when no threshold qualified
    gap: float  # NaN when no threshold qualified
    wga: float
    group_counts: tuple[int, ...]
    group_accuracy: tuple[float, ...]

    @property
    def worst_group(self) -> str | None:
        acc = np.asarray(self.group_accuracy, dtype=np.float64)
        if np.all(np.isnan(acc)):
            return None
        return group_names(self.attribute)[int(np.nanargmin(acc))]

    def to_dict(self) -> dict[str, Any]:
        names = group_names(self.attribute)

        def num(v: float) -> float | None:
            return None if math.isnan(v) else float(v)

        return {
            "attribute": self.attribute,
            "threshold": num(self.threshold),
            "gap": num(self.gap),
            "wga": num(self.wga),
            "worst_group": self.worst_group,
            "groups": {
                name: {"n": int(n), "accuracy": num(a)}
                for name, n, a in zip(names, self.group_counts, self.group_accuracy, strict=True)
            },
        }


def rank_attributes(
    table: pd.DataFrame,
    attributes: list[str] | None = None,
    *,
    threshold: float = 0.5,
    min_share: float = DEFAULT_MIN_SHARE,
    path: Any = None,
) -> list[AttributeRank]:
    """Candidate attributes, largest worst-group accuracy gap first.

    Parameters
    ----------
    table : DataFrame
        Patch table with ``label`` and ``prob`` (or ``pred``) of one run.
    attributes : list of str, optional
        Columns to rank; default every numeric attribute column.
    threshold : float
        Decision threshold on ``prob``.
    min_share : float
        Smallest share of its class a group may hold at a searched threshold.
    path : path-like, optional
        The table's file, named in errors.

    Returns
    -------
    list of AttributeRank
        Sorted by gap, largest first; attributes with no qualifying threshold last.
    """
    from .errors import PatchwiseError

    if "prob" not in table and "pred" not in table:
        raise PatchwiseError(
            "ranking attributes needs a run's predictions; the table has no prob or pred column",
            path=path,
            hint="use a table from 'patchwise predict' or a run's predictions.parquet",
        )
    names = numeric_attribute_columns(table) if attributes is None else list(attributes)
    if not names:
        raise PatchwiseError(
            "the table has no numeric attribute column to rank",
            path=path,
            hint="add some with 'patchwise stats --attributes intensity,border,slide'",
        )
    label = table["label"].to_numpy()
    evaluator = Evaluator(
        label,
        np.zeros(len(table)),
        prob=table["prob"].to_numpy() if "prob" in table else None,
        pred=table["pred"].to_numpy() if "pred" in table else None,
    )
    right = evaluator.predicted(threshold) == evaluator.label
    ranks = [
        best_threshold(evaluator.label, right, attribute_values(table, n, path=path), n, min_share)
        for n in names
    ]
    return sorted(ranks, key=lambda r: math.inf if math.isnan(r.gap) else -r.gap)


def best_threshold(
    label: np.ndarray, right: np.ndarray, values: np.ndarray, attribute: str, min_share: float
) -> AttributeRank:
    """The threshold of ``values`` with the largest gap (see the module notes)."""
    counts, correct, thresholds = split_counts(label, right, values)
    class_n = counts.reshape(2, 2, -1).sum(axis=1)  # (2, K)
    class_right = correct.reshape(2, 2, -1).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = correct / counts  # (4, K), NaN where empty
        class_acc = class_right / class_n
    need = np.maximum(1, min_share * np.repeat(class_n, 2, axis=0))
    ok = np.all(counts >= need, axis=0) & np.isfinite(thresholds)
    if not ok.any():
        return _empty(attribute)
    worse = np.minimum(acc[0::2], acc[1::2])  # (2, K): worse side of each class
    gap = np.max(class_acc - worse, axis=0)
    gap[~ok] = -np.inf
    k = int(np.argmax(gap))
    return AttributeRank(
        attribute=attribute,
        threshold=float(thresholds[k]),
        gap=float(gap[k]),
        wga=float(np.min(acc[:, k])),
        group_counts=tuple(int(c) for c in counts[:, k]),
        group_accuracy=tuple(float(a) for a in acc[:, k]),
    )


def split_counts(
    label: np.ndarray, right: np.ndarray, values: np.ndarray, order: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group sizes and correct counts at every distinct value as the threshold.

    ``order`` is ``values``' argsort (NaN as -inf) when the caller keeps it across calls
    (:mod:`.threshold_curve`: one sort per attribute, one O(N) pass per decision threshold).

    Returns
    -------
    counts, correct : ndarray of int64, shape (4, K)
        Per group id (``2 * label + high``) at each candidate threshold.
    thresholds : ndarray of float64, shape (K,)
        The distinct values above the smallest (NaN counts as below every threshold).
    """
    v = np.where(np.isnan(values), -np.inf, values)
    order = (
        np.argsort(v) if order is None else order
    )  # ties may come in any order: splits fall between distinct values
    v = v[order]
    y = label[order].astype(bool)
    r = right[order].astype(bool)
    k = np.flatnonzero(v[1:] != v[:-1]) + 1  # first index of each larger value
    cum = [np.concatenate([[0], np.cumsum(a, dtype=np.int64)]) for a in (y, r, r & y)]
    n = v.size
    totals = [int(c[-1]) for c in cum]
    # suffix (high) totals at each split: n_high, tumor & high, right & high, right & tumor & high
    n_high = n - k
    y_high, r_high, ry_high = (c[-1] - c[k] for c in cum)
    # counts_from_totals is element-wise: arrays of splits give (4, K)
    counts = counts_from_totals(n, totals[0], n_high, y_high).reshape(N_GROUPS, -1)
    correct = counts_from_totals(totals[1], totals[2], r_high, ry_high).reshape(N_GROUPS, -1)
    return counts, correct, v[k]


def _empty(attribute: str) -> AttributeRank:
    nan = math.nan
    return AttributeRank(attribute, nan, nan, nan, (0,) * N_GROUPS, (nan,) * N_GROUPS)


def format_ranking(
    ranks: list[AttributeRank], *, decision_threshold: float, min_share: float
) -> str:
    """Plain-text table of a ranking (``patchwise metrics --rank-attributes``)."""
    lines = [
        f"attributes ranked by worst-group accuracy gap (decision threshold "
        f"{decision_threshold:g}; every group >= {100 * min_share:g}% of its class)",
        "",
        f"{'rank':>4}  {'attribute':<24}{'threshold':>12}{'gap':>9}{'WGA':>9}  worst group",
    ]
    for i, r in enumerate(ranks, start=1):
        if math.isnan(r.gap):
            lines.append(
                f"{i:>4}  {r.attribute:<24}{'-':>12}{'-':>9}{'-':>9}  (no threshold with large enough groups)"
            )
            continue
        lines.append(
            f"{i:>4}  {r.attribute:<24}{r.threshold:>12.4g}{100 * r.gap:>8.2f}%"
            f"{100 * r.wga:>8.2f}%  {r.worst_group}"
        )
    return "\n".join(lines)
