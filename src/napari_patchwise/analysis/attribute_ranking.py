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

**Noise floor.** The largest gap over all thresholds is a maximum over many tries: an
attribute with many distinct values (a random number per patch) finds a sizeable gap by
chance, one with two values cannot. So each attribute's gap is set beside a permutation
null: the attribute shuffled within the table (``permutations`` times, seeded), the same
search run on each shuffle, and the ``quantile`` (95 %) of those maximum gaps is its
**noise floor**; ``above_noise`` is ``gap > noise_floor``. A shuffle only moves the
(label, correct) pairs along the attribute's sorted order, so one shuffled pair sequence
serves every attribute (each at its own split positions): per shuffle one O(N)
permutation and three cumulative sums, then O(K) per attribute. The ranking is by the
gap's excess over the floor.

**Training association.** With a training table (``train=``), each attribute's
``train_tumor_rate_gap`` is the training split's tumor rate among patches with
``attribute >= threshold`` minus the rate among the others, at the threshold the model's
gap chose: how strongly the label and the attribute go together where the model learnt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from ..errors import PatchwiseError
from ..groups import (
    N_GROUPS,
    attribute_values,
    counts_from_totals,
    group_names,
    numeric_attribute_columns,
)
from ..schema import DEFAULT_THRESHOLD
from .metrics import Evaluator

#: Each group must hold at least this share of its class at a searched threshold.
DEFAULT_MIN_SHARE = 0.02
#: Shuffles of each attribute for its noise floor (``--permutations``).
DEFAULT_PERMUTATIONS = 100
#: The noise floor is this quantile of the shuffled maximum gaps.
NOISE_QUANTILE = 0.95


@dataclass(frozen=True)
class AttributeRank:
    """One attribute's best (largest-gap) threshold and the groups there."""

    attribute: str
    threshold: float  # NaN when no threshold qualified
    gap: float  # NaN when no threshold qualified
    wga: float
    group_counts: tuple[int, ...]
    group_accuracy: tuple[float, ...]
    noise_floor: float = math.nan  # NOISE_QUANTILE of the shuffled maximum gaps
    permutations: int = 0
    train_tumor_rate_gap: float = math.nan  # P(tumor | high) - P(tumor | low), training split

    @property
    def above_noise(self) -> bool:
        """The gap exceeds its noise floor (False when either is unknown)."""
        return bool(self.gap > self.noise_floor)  # NaN compares False

    @property
    def excess(self) -> float:
        """``gap - noise_floor`` (the gap itself without a floor): the ranking's key."""
        return self.gap if math.isnan(self.noise_floor) else self.gap - self.noise_floor

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
            "noise_floor": num(self.noise_floor),
            "permutations": self.permutations,
            "above_noise": self.above_noise,
            "train_tumor_rate_gap": num(self.train_tumor_rate_gap),
            "groups": {
                name: {"n": int(n), "accuracy": num(a)}
                for name, n, a in zip(names, self.group_counts, self.group_accuracy, strict=True)
            },
        }


def rank_attributes(
    table: pd.DataFrame,
    attributes: list[str] | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_share: float = DEFAULT_MIN_SHARE,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    train: pd.DataFrame | None = None,
    path: Any = None,
) -> list[AttributeRank]:
    """Candidate attributes, largest gap above their noise floor first.

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
    permutations : int
        Shuffles of each attribute for its noise floor (0: no floor).
    seed : int
        Seed of the shuffles.
    train : DataFrame, optional
        The training split's patch table (``label`` and the attribute columns): each
        attribute's ``train_tumor_rate_gap`` at its chosen threshold.
    path : path-like, optional
        The table's file, named in errors.

    Returns
    -------
    list of AttributeRank
        Sorted by ``gap - noise_floor``, largest first; attributes with no qualifying
        threshold last.
    """

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
    values = [attribute_values(table, n, path=path) for n in names]
    ranks = [
        best_threshold(evaluator.label, right, v, n, min_share)
        for v, n in zip(values, names, strict=True)
    ]
    if permutations > 0:
        floors = noise_floors(evaluator.label, right, values, min_share, permutations, seed)
        ranks = [
            replace(r, noise_floor=float(f), permutations=permutations)
            for r, f in zip(ranks, floors, strict=True)
        ]
    if train is not None:
        ranks = [replace(r, train_tumor_rate_gap=tumor_rate_gap(train, r)) for r in ranks]
    return sorted(ranks, key=lambda r: math.inf if math.isnan(r.gap) else -r.excess)


def tumor_rate_gap(train: pd.DataFrame, rank: AttributeRank) -> float:
    """The training split's tumor rate with ``attribute >= threshold`` minus the rate below
    (NaN without the column, a threshold or patches on both sides; NaN values are below,
    as in the groups)."""
    if math.isnan(rank.threshold) or rank.attribute not in train:
        return math.nan
    values = pd.to_numeric(train[rank.attribute], errors="coerce").to_numpy(np.float64)
    high = values >= rank.threshold  # NaN >= t is False: low, as groups.group_ids counts it
    label = train["label"].to_numpy() == 1
    if high.all() or not high.any():
        return math.nan
    return float(label[high].mean() - label[~high].mean())


def best_threshold(
    label: np.ndarray, right: np.ndarray, values: np.ndarray, attribute: str, min_share: float
) -> AttributeRank:
    """The threshold of ``values`` with the largest gap (see the module notes)."""
    counts, correct, thresholds = split_counts(label, right, values)
    gap, acc = _gap_curve(counts, correct, min_share, np.isfinite(thresholds))
    if not np.isfinite(gap).any():
        return _empty(attribute)
    k = int(np.argmax(gap))
    return AttributeRank(
        attribute=attribute,
        threshold=float(thresholds[k]),
        gap=float(gap[k]),
        wga=float(np.min(acc[:, k])),
        group_counts=tuple(int(c) for c in counts[:, k]),
        group_accuracy=tuple(float(a) for a in acc[:, k]),
    )


def _gap_curve(
    counts: np.ndarray, correct: np.ndarray, min_share: float, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The gap at each candidate threshold (-inf where a group is too small or the
    threshold is not ``valid``) and the (4, K) group accuracies."""
    class_n = counts.reshape(2, 2, -1).sum(axis=1)  # (2, K)
    class_right = correct.reshape(2, 2, -1).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = correct / counts  # (4, K), NaN where empty
        class_acc = class_right / class_n
    need = np.maximum(1, min_share * np.repeat(class_n, 2, axis=0))
    ok = np.all(counts >= need, axis=0) & valid
    worse = np.minimum(acc[0::2], acc[1::2])  # (2, K): worse side of each class
    with np.errstate(invalid="ignore"):
        gap = np.max(class_acc - worse, axis=0)
    gap[~ok] = -np.inf
    return gap, acc


def noise_floors(
    label: np.ndarray,
    right: np.ndarray,
    values: list[np.ndarray],
    min_share: float,
    permutations: int,
    seed: int,
    quantile: float = NOISE_QUANTILE,
) -> np.ndarray:
    """Each attribute's ``quantile`` of the maximum gap over ``permutations`` shuffles of
    the attribute within the table (NaN where no shuffle had a qualifying threshold).

    Shuffling an attribute puts a uniformly random arrangement of the (label, correct)
    pairs along its sorted order; the split positions (between distinct values) are the
    attribute's own. One arrangement per shuffle therefore serves every attribute.
    """
    splits = []
    for v in values:
        v = np.sort(np.where(np.isnan(v), -np.inf, v))
        k = np.flatnonzero(v[1:] != v[:-1]) + 1
        splits.append((k, np.isfinite(v[k])))
    label, right = np.asarray(label).astype(bool), np.asarray(right).astype(bool)
    code = (2 * label + right).astype(np.int8)  # shuffled in place below
    # the class sizes and accuracies do not change under a shuffle of the attribute
    class_n = np.array([np.sum(~label), np.sum(label)])
    class_right = np.array([np.sum(right & ~label), np.sum(right & label)])
    maxima = np.full((len(values), permutations), np.nan)
    rng = np.random.default_rng(seed)
    if class_n.min() == 0:
        return np.full(len(values), np.nan)
    # int32 sums into reused buffers: half the time of fresh int64 ones at 10^6 patches
    dtype = np.int32 if code.size < 2**31 else np.int64
    cum = [np.zeros(code.size + 1, dtype) for _ in range(3)]
    for p in range(permutations):
        rng.shuffle(code)  # a uniform shuffle of any order is a uniform, independent one
        tumor, right_now = code >= 2, (code & 1).astype(bool)
        for buffer, part in zip(cum, (tumor, right_now, tumor & right_now), strict=True):
            np.cumsum(part, dtype=dtype, out=buffer[1:])
        for a, (k, valid) in enumerate(splits):
            maxima[a, p] = _max_gap(cum, k, valid, class_n, class_right, min_share)
    out = np.full(len(values), np.nan)
    seen = np.isfinite(maxima).any(axis=1)
    out[seen] = np.nanquantile(maxima[seen], quantile, axis=1)
    return out


def _max_gap(cum, k, valid, class_n, class_right, min_share) -> float:
    """The largest qualifying gap of :func:`_gap_curve`, computed on the qualifying splits
    only (the null's inner loop: ~3x fewer array passes at 10^6 splits)."""
    tumor, right, right_tumor = cum
    n = int(class_n.sum())
    y_high = int(tumor[-1]) - tumor[k]  # tumor patches at or above each split
    n_high = (n - k) - y_high  # non-tumor ones
    need = np.maximum(1, min_share * class_n)
    ok = valid & (y_high >= need[1]) & (class_n[1] - y_high >= need[1])
    ok &= (n_high >= need[0]) & (class_n[0] - n_high >= need[0])
    if not ok.any():
        return np.nan
    k, y_high, n_high = k[ok], y_high[ok], n_high[ok]
    ry_high = int(right_tumor[-1]) - right_tumor[k]
    rn_high = (int(right[-1]) - right[k]) - ry_high
    # max over splits of [acc(y) - min(acc(y, low), acc(y, high))] is acc(y) minus the
    # smallest side accuracy over the splits: no element-wise minimum needed
    worst = [
        min((r_high / c_high).min(), ((class_right[c] - r_high) / (class_n[c] - c_high)).min())
        for c, r_high, c_high in ((0, rn_high, n_high), (1, ry_high, y_high))
    ]
    return float(max(class_right[c] / class_n[c] - worst[c] for c in (0, 1)))


def _cumsums(y: np.ndarray, r: np.ndarray) -> list[np.ndarray]:
    """Cumulative sums (with a leading 0) of tumor, correct and correct tumor, in order."""
    return [np.concatenate([[0], np.cumsum(a, dtype=np.int64)]) for a in (y, r, r & y)]


def _counts_at(cum: list[np.ndarray], k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Group sizes and correct counts (4, K) with the rows from ``k`` on as "high"."""
    totals = [int(c[-1]) for c in cum]
    # suffix (high) totals at each split: n_high, tumor & high, right & high, right & tumor & high
    n_high = n - k
    y_high, r_high, ry_high = (c[-1] - c[k] for c in cum)
    # counts_from_totals is element-wise: arrays of splits give (4, K)
    counts = counts_from_totals(n, totals[0], n_high, y_high).reshape(N_GROUPS, -1)
    correct = counts_from_totals(totals[1], totals[2], r_high, ry_high).reshape(N_GROUPS, -1)
    return counts, correct


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
    k = np.flatnonzero(v[1:] != v[:-1]) + 1  # first index of each larger value
    cum = _cumsums(label[order].astype(bool), right[order].astype(bool))
    counts, correct = _counts_at(cum, k, v.size)
    return counts, correct, v[k]


def _empty(attribute: str) -> AttributeRank:
    nan = math.nan
    return AttributeRank(attribute, nan, nan, nan, (0,) * N_GROUPS, (nan,) * N_GROUPS)


def format_ranking(
    ranks: list[AttributeRank], *, decision_threshold: float, min_share: float
) -> str:
    """Plain-text table of a ranking (``patchwise metrics --rank-attributes``)."""
    train = any(not math.isnan(r.train_tumor_rate_gap) for r in ranks)
    n_perm = max((r.permutations for r in ranks), default=0)
    lines = [
        f"attributes ranked by worst-group accuracy gap above its noise floor (decision "
        f"threshold {decision_threshold:g}; every group >= {100 * min_share:g}% of its class; "
        f"floor: {100 * NOISE_QUANTILE:g}th percentile of the largest gap over {n_perm} "
        "shuffles of the attribute)",
        "",
        f"{'rank':>4}  {'attribute':<24}{'threshold':>12}{'gap':>9}{'floor':>9}  {'above':<6}"
        f"{'WGA':>9}  " + ("train tumor-rate gap  " if train else "") + "worst group",
    ]

    def pct(v: float) -> str:
        return "-" if math.isnan(v) else f"{100 * v:.2f}%"

    for i, r in enumerate(ranks, start=1):
        if math.isnan(r.gap):
            lines.append(
                f"{i:>4}  {r.attribute:<24}{'-':>12}{'-':>9}{'-':>9}  {'-':<6}{'-':>9}  "
                "(no threshold with large enough groups)"
            )
            continue
        above = "-" if math.isnan(r.noise_floor) else ("yes" if r.above_noise else "no")
        extra = f"{pct(r.train_tumor_rate_gap):>20}  " if train else ""
        lines.append(
            f"{i:>4}  {r.attribute:<24}{r.threshold:>12.4g}{pct(r.gap):>9}"
            f"{pct(r.noise_floor):>9}  {above:<6}{pct(r.wga):>9}  {extra}{r.worst_group}"
        )
    return "\n".join(lines)
