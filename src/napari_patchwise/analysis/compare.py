"""Compare two runs' predictions on the same patches: who is right where, and per group.

Two prediction tables of the same slide(s) and patch grid (rows keyed by ``slide, row,
col``, each with ``prob``) are paired with the patch table that holds the labels
(:func:`paired_predictions`). At a decision threshold (shared, or one per run) every
patch gets one comparison class (:func:`comparison_classes`):

====  ==============  =========================
code  name            meaning
====  ==============  =========================
0     both right      A and B predict the label
1     both wrong      neither does
2     only A right    B broke it ("broken by B")
3     only B right    B fixed it ("fixed by B")
-1    none            no label, or no prediction of A or B
====  ==============  =========================

:func:`compare_predictions` adds the class counts, both runs' per-group accuracy, WGA
and BCA (:mod:`napari_patchwise.analysis.metrics`, on the patches both runs scored) and the
lists of patches fixed and broken by B. :class:`PairEvaluator` gives both evaluations
in O(log N) per slider move (:mod:`napari_patchwise.analysis.incremental`), and :class:`ClassGrid`
the classes of a patch grid that follow the threshold, recomputing only the patches whose
class can have changed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from ..errors import PatchwiseError
from ..groups import DEFAULT_TAU, GROUP_NAMES
from ..schema import DEFAULT_THRESHOLD, PREDICTION_COLUMNS
from .incremental import SliderEvaluator
from .metrics import Evaluation, evaluate

BOTH_RIGHT, BOTH_WRONG, ONLY_A, ONLY_B = 0, 1, 2, 3
#: Class of a patch without a label or without a prediction of both runs.
NONE = -1
COMPARISON_NAMES: tuple[str, ...] = ("both right", "both wrong", "only A right", "only B right")
#: The two lists of changed patches: B right where A was wrong, and the reverse.
CHANGES: dict[str, int] = {"fixed": ONLY_B, "broken": ONLY_A}
# class of (2 * right_a + right_b)
_BY_RIGHTNESS = np.array([BOTH_WRONG, ONLY_B, ONLY_A, BOTH_RIGHT], dtype=np.int8)

Source = str | os.PathLike


def comparison_classes(
    label: ArrayLike,
    prob_a: ArrayLike,
    prob_b: ArrayLike,
    threshold: float = DEFAULT_THRESHOLD,
    threshold_b: float | None = None,
) -> np.ndarray:
    """Comparison class of every patch (see the module table), any array shape.

    Parameters
    ----------
    label : array_like of int
        0 non-tumor, 1 tumor; anything else (e.g. -1 for "no patch") gives :data:`NONE`.
    prob_a, prob_b : array_like of float
        Tumor probabilities of runs A and B; NaN (no prediction) gives :data:`NONE`.
    threshold : float
        Decision threshold of A (``pred = prob >= threshold``), and of B unless
        ``threshold_b`` is given.

    Returns
    -------
    ndarray of int8, the shape of ``label``

    Examples
    --------
    >>> comparison_classes([1, 1, 0, 0, -1], [0.9, 0.2, 0.8, 0.3, 0.5],
    ...                    [0.8, 0.7, 0.1, 0.6, 0.5]).tolist()
    [0, 3, 3, 2, -1]
    """
    y = np.asarray(label)
    pa = np.asarray(prob_a, dtype=np.float64)
    pb = np.asarray(prob_b, dtype=np.float64)
    tb = threshold if threshold_b is None else threshold_b
    _check_threshold(threshold)
    _check_threshold(tb)
    tumor = y == 1
    right_a = (pa >= threshold) == tumor
    right_b = (pb >= tb) == tumor
    classes = _BY_RIGHTNESS[2 * right_a.view(np.int8) + right_b.view(np.int8)]
    classes[~((y == 0) | tumor) | np.isnan(pa) | np.isnan(pb)] = NONE
    return classes


def class_counts(classes: ArrayLike) -> np.ndarray:
    """Patches per comparison class, shape (4,) int64 (:data:`NONE` not counted)."""
    c = np.asarray(classes).reshape(-1)
    return np.bincount(c[c >= 0], minlength=len(COMPARISON_NAMES)).astype(np.int64)


def changed_patches(
    classes: np.ndarray, prob_a: np.ndarray, prob_b: np.ndarray, which: str
) -> np.ndarray:
    """Positions of the patches ``which`` = "fixed" (A wrong, B right) or "broken" by B.

    The largest change of probability ``|prob_b - prob_a|`` comes first.
    """
    if which not in CHANGES:
        raise PatchwiseError(f"unknown change {which!r}: choose one of {', '.join(CHANGES)}")
    positions = np.flatnonzero(np.asarray(classes).reshape(-1) == CHANGES[which])
    delta = np.abs(np.asarray(prob_b)[positions] - np.asarray(prob_a)[positions])
    return positions[np.argsort(-delta, kind="stable")]


# -- pairing two tables ------------------------------------------------------------------
def _keys(table: pd.DataFrame, columns: list[str], source: Source) -> pd.MultiIndex:
    missing = [c for c in columns if c not in table]
    if missing:
        raise PatchwiseError(
            f"table has no {', '.join(missing)} column", path=source, hint="load a prediction table"
        )
    keys = pd.MultiIndex.from_frame(table[columns].astype(dict.fromkeys(columns[:-2], str)))
    if keys.has_duplicates:
        n = int(keys.duplicated().sum())
        raise PatchwiseError(
            f"{n:,} patches appear more than once ({', '.join(columns)})",
            path=source,
            hint="one row per patch",
        )
    return keys


def paired_predictions(
    table: pd.DataFrame | None,
    pred_a: pd.DataFrame,
    pred_b: pd.DataFrame,
    *,
    sources: tuple[Source, Source] = ("run A", "run B"),
) -> pd.DataFrame:
    """The patch table with both runs' probabilities as ``prob_a`` and ``prob_b``.

    Parameters
    ----------
    table : DataFrame or None
        The patch table holding ``label`` and ``tissue_ratio`` (``row, col``, and
        ``slide`` when the predictions name slides). None: ``pred_a`` is a complete table
        (``patchwise predict --mask`` output, a run's ``predictions.parquet``).
    pred_a, pred_b : DataFrame
        ``row, col, prob`` (and ``slide``), one row per patch.
    sources : (str, str)
        Where A and B came from (named in errors).

    Returns
    -------
    DataFrame
        Every row of ``table`` in its order (index reset), ``prob``/``pred`` dropped,
        ``prob_a`` and ``prob_b`` added (NaN for a patch neither table predicts).

    Raises
    ------
    PatchwiseError
        The two tables do not cover the same patches (the message says how many differ),
        a patch is listed twice, or predicted patches are not in the patch table.
    """
    base = pred_a if table is None else table
    for column in ("label", "tissue_ratio"):
        if column not in base:
            raise PatchwiseError(
                f"table has no {column!r} column, so the patches have no labels",
                path=sources[0] if table is None else "patch table",
                hint="compare complete patch tables ('patchwise predict --mask') or give the "
                "slide's patch table",
            )
    for pred, source in zip((pred_a, pred_b), sources, strict=True):
        if "prob" not in pred:
            raise PatchwiseError(
                "table has no 'prob' column", path=source, hint="load a prediction table"
            )
    columns = ["slide", "row", "col"]
    if not all("slide" in t for t in (pred_a, pred_b, base)):
        columns = ["row", "col"]
    keys_a = _keys(pred_a, columns, sources[0])
    keys_b = _keys(pred_b, columns, sources[1])
    only_a = int((~keys_a.isin(keys_b)).sum())
    only_b = int((~keys_b.isin(keys_a)).sum())
    if only_a or only_b:
        raise PatchwiseError(
            f"the two prediction tables cover different patches: {only_a:,} of A's "
            f"{len(keys_a):,} are not in B and {only_b:,} of B's {len(keys_b):,} are not in A",
            path=sources[1],
            hint="compare predictions of the same slides on the same patch grid",
        )
    keys = _keys(base, columns, "patch table")
    positions = keys.get_indexer(keys_a)
    if (positions < 0).any():
        raise PatchwiseError(
            f"{int((positions < 0).sum()):,} of {len(keys_a):,} predicted patches are not "
            "patches of the slide's table",
            path=sources[0],
            hint="compute the grid with the settings the predictions were made with",
        )
    for pred, keys_p, source in ((pred_a, keys_a, sources[0]), (pred_b, keys_b, sources[1])):
        _check_same_place(base, pred, keys.get_indexer(keys_p), source)
    out = base.drop(columns=[c for c in PREDICTION_COLUMNS if c in base]).reset_index(drop=True)
    for name, pred, keys_p in (("prob_a", pred_a, keys_a), ("prob_b", pred_b, keys_b)):
        prob = np.full(len(out), np.nan)
        prob[keys.get_indexer(keys_p)] = pred["prob"].to_numpy(dtype=np.float64)
        out[name] = prob
    return out


def _check_same_place(
    base: pd.DataFrame, pred: pd.DataFrame, positions: np.ndarray, source: Source
) -> None:
    """Predictions that carry ``y, x`` must put each patch where the patch table does,
    and those that carry labels must give each patch the table's label."""
    same = np.ones(positions.size, dtype=bool)
    for column in ("y", "x"):
        if column in base and column in pred:
            same &= base[column].to_numpy()[positions] == pred[column].to_numpy()
    if not same.all():
        raise PatchwiseError(
            f"{int((~same).sum()):,} of {same.size:,} predicted patches lie elsewhere on the "
            "slide than the patch table's (different patch size or stride?)",
            path=source,
            hint="compute the grid with the settings the predictions were made with",
        )
    if pred is base or "label" not in base or "label" not in pred:
        return
    # The labels come from the patch table (run A's): a B labelled otherwise (another
    # mask, mask map or slide) would be scored against labels it never saw.
    ours = pd.to_numeric(base["label"], errors="coerce").to_numpy(np.float64)[positions]
    theirs = pd.to_numeric(pred["label"], errors="coerce").to_numpy(np.float64)
    differ = (ours != theirs) & ~np.isnan(ours) & ~np.isnan(theirs)
    if differ.any():
        raise PatchwiseError(
            f"{int(differ.sum()):,} of {differ.size:,} matched patches have another label "
            "here than in the patch table (run A's)",
            path=source,
            hint="compare predictions made with the same mask and mask map",
        )


# -- the comparison ----------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """Two runs on the same patches at one tau and threshold(s).

    ``classes`` is per patch (table order); ``evaluation_a`` / ``evaluation_b`` are over
    the patches with a label and both predictions; ``fixed`` / ``broken`` are positions
    (largest probability change first).
    """

    names: tuple[str, str]
    classes: np.ndarray
    counts: np.ndarray
    evaluation_a: Evaluation
    evaluation_b: Evaluation
    fixed: np.ndarray
    broken: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (NaN becomes ``None``)."""
        a, b = self.evaluation_a.to_dict(), self.evaluation_b.to_dict()
        return {
            "names": list(self.names),
            "n": int(self.counts.sum()),
            "classes": dict(zip(COMPARISON_NAMES, map(int, self.counts), strict=True)),
            "fixed_by_b": int(self.fixed.size),
            "broken_by_b": int(self.broken.size),
            "A": a,
            "B": b,
        }


def compare_predictions(
    label: ArrayLike,
    tissue_ratio: ArrayLike,
    prob_a: ArrayLike,
    prob_b: ArrayLike,
    *,
    tau: float = DEFAULT_TAU,
    threshold: float = DEFAULT_THRESHOLD,
    threshold_b: float | None = None,
    names: tuple[str, str] = ("A", "B"),
) -> Comparison:
    """Compare runs A and B patch by patch and per group.

    Parameters
    ----------
    label, tissue_ratio : array_like, shape (N,)
        From the patch table (groups ``2 * label + (tissue_ratio >= tau)``).
    prob_a, prob_b : array_like of float, shape (N,)
        The runs' tumor probabilities (NaN: no prediction; such patches are left out).
    tau, threshold, threshold_b : float
        Group split and decision thresholds (``threshold_b`` defaults to ``threshold``).
    names : (str, str)
        The runs' names (reports).

    Returns
    -------
    Comparison
    """
    y = np.asarray(label).reshape(-1)
    ratio = np.asarray(tissue_ratio, dtype=np.float64).reshape(-1)
    pa = np.asarray(prob_a, dtype=np.float64).reshape(-1)
    pb = np.asarray(prob_b, dtype=np.float64).reshape(-1)
    if not (y.size == ratio.size == pa.size == pb.size):
        raise PatchwiseError(
            f"per-patch arrays have different lengths {sorted({y.size, ratio.size, pa.size})}"
        )
    tb = threshold if threshold_b is None else threshold_b
    classes = comparison_classes(y, pa, pb, threshold, tb)
    scored = classes != NONE
    ev_a = evaluate(y[scored], ratio[scored], prob=pa[scored], tau=tau, threshold=threshold)
    ev_b = evaluate(y[scored], ratio[scored], prob=pb[scored], tau=tau, threshold=tb)
    return Comparison(
        names=(str(names[0]), str(names[1])),
        classes=classes,
        counts=class_counts(classes),
        evaluation_a=ev_a,
        evaluation_b=ev_b,
        fixed=changed_patches(classes, pa, pb, "fixed"),
        broken=changed_patches(classes, pa, pb, "broken"),
    )


class ClassGrid:
    """Comparison classes on a patch grid that follow a moving threshold (shared by A, B).

    ``values`` holds ``class + 1`` per cell as uint8 (0: :data:`NONE`) and is updated in
    place, so a viewer layer can show it without a copy. A patch's class changes only
    where the threshold passes one of its two probabilities, so a move from ``t0`` to
    ``t1`` recomputes just the cells with ``prob_a`` or ``prob_b`` in ``[min, max)`` of
    the two (two binary searches in the probabilities sorted once) and updates
    ``counts`` from their old and new classes: O(k log k) for k changed cells instead of
    O(cells); a jump over more than a quarter of the cells recomputes all of them.

    Parameters
    ----------
    label, prob_a, prob_b : ndarray, shape (n_rows, n_cols)
        Label (anything but 0/1: no patch) and both runs' probabilities (NaN: none).
    threshold : float
    shown : ndarray of bool, shape (n_rows, n_cols), optional
        Cells drawn in ``values`` (default all). Hidden cells (empty glass) still count in
        ``counts``, like in every metric; they read 0 in ``values``, transparent.
    """

    def __init__(
        self,
        label: np.ndarray,
        prob_a: np.ndarray,
        prob_b: np.ndarray,
        threshold: float = DEFAULT_THRESHOLD,
        shown: np.ndarray | None = None,
    ) -> None:
        self._label = np.asarray(label).reshape(-1)
        self._pa = np.asarray(prob_a, dtype=np.float64).reshape(-1)
        self._pb = np.asarray(prob_b, dtype=np.float64).reshape(-1)
        self.shape = np.shape(label)
        valid = np.flatnonzero(
            ((self._label == 0) | (self._label == 1)) & ~np.isnan(self._pa) & ~np.isnan(self._pb)
        )
        self._orders = []
        for prob in (self._pa, self._pb):
            order = valid[np.argsort(prob[valid], kind="stable")]
            self._orders.append((order, prob[order]))
        self.values = np.zeros(self.shape, dtype=np.uint8)
        self._codes = np.zeros(self._label.size, dtype=np.uint8)  # every cell's class + 1
        self._shown = None if shown is None else np.asarray(shown, bool).reshape(-1)
        self.threshold = float(threshold)
        self._recompute_all()

    def _classes_at(self, cells: np.ndarray, threshold: float) -> np.ndarray:
        codes = comparison_classes(self._label[cells], self._pa[cells], self._pb[cells], threshold)
        codes += 1
        return codes.view(np.uint8)

    def _draw(self, cells) -> None:
        """``values`` of ``cells`` from their classes (0 where hidden)."""
        flat = self.values.reshape(-1)
        codes = self._codes[cells]
        flat[cells] = codes if self._shown is None else np.where(self._shown[cells], codes, 0)

    def _recompute_all(self) -> None:
        self._codes[:] = self._classes_at(slice(None), self.threshold)
        self._draw(slice(None))
        n = len(COMPARISON_NAMES) + 1
        self.counts = np.bincount(self._codes, minlength=n)[1:].astype(np.int64)

    def move_to(self, threshold: float) -> int:
        """Classes at ``threshold``; returns how many cells were recomputed."""
        threshold = float(threshold)
        _check_threshold(threshold)
        low, high = sorted((self.threshold, threshold))
        self.threshold = threshold
        if low == high:
            return 0
        parts = [
            order[np.searchsorted(sorted_p, low) : np.searchsorted(sorted_p, high)]
            for order, sorted_p in self._orders
        ]
        cells = np.concatenate(parts)  # predictions flip for prob in [low, high)
        if cells.size * 4 > self._label.size:
            self._recompute_all()
            return int(self._label.size)
        # a cell in both parts once (np.unique's hashing took 380 ms for 10^6 cells)
        cells.sort()
        cells = cells[np.concatenate(([True], cells[1:] != cells[:-1]))]
        n = len(COMPARISON_NAMES) + 1
        self.counts -= np.bincount(self._codes[cells], minlength=n)[1:]
        self._codes[cells] = self._classes_at(cells, threshold)
        self.counts += np.bincount(self._codes[cells], minlength=n)[1:]
        self._draw(cells)
        return int(cells.size)


class PairEvaluator:
    """Both runs' evaluations at any ``(tau, threshold)`` in O(log N) (slider moves).

    Built once from the patches both runs scored (:class:`SliderEvaluator` each).
    """

    def __init__(
        self, label: np.ndarray, tissue_ratio: np.ndarray, prob_a: np.ndarray, prob_b: np.ndarray
    ) -> None:
        y = np.asarray(label).reshape(-1)
        pa = np.asarray(prob_a, dtype=np.float64).reshape(-1)
        pb = np.asarray(prob_b, dtype=np.float64).reshape(-1)
        scored = ((y == 0) | (y == 1)) & ~np.isnan(pa) & ~np.isnan(pb)
        ratio = np.asarray(tissue_ratio, dtype=np.float64).reshape(-1)[scored]
        self.n = int(np.count_nonzero(scored))
        self.a = SliderEvaluator(y[scored], ratio, pa[scored])
        self.b = SliderEvaluator(y[scored], ratio, pb[scored])

    def evaluate(self, tau: float, threshold: float) -> tuple[Evaluation, Evaluation]:
        return self.a.evaluate(tau, threshold), self.b.evaluate(tau, threshold)


def side_by_side(ev_a: Evaluation, ev_b: Evaluation) -> list[tuple[str, int | None, float, float]]:
    """Rows ``(name, n, value of A, value of B)``: each group's accuracy, then the summaries."""
    rows: list[tuple[str, int | None, float, float]] = [
        (name, int(ev_a.group_counts[g]), ev_a.per_group_accuracy[g], ev_b.per_group_accuracy[g])
        for g, name in enumerate(GROUP_NAMES)
    ]
    for label, attr in (
        ("accuracy", "accuracy"),
        ("BCA", "bca"),
        ("WGA", "wga"),
        ("worst-class accuracy", "worst_class_accuracy"),
    ):
        rows.append((label, None, float(getattr(ev_a, attr)), float(getattr(ev_b, attr))))
    return [(n, c, float(a), float(b)) for n, c, a, b in rows]


def _check_threshold(threshold: float) -> None:
    if not (0.0 <= float(threshold) <= 1.0) or math.isnan(float(threshold)):
        raise PatchwiseError(f"decision threshold {threshold} is outside [0, 1]")
