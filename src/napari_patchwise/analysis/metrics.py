"""Classification and group-robustness metrics (docs/methods.md, "Metrics").

Everything is computed from boolean arrays with ``np.count_nonzero`` and one
``np.bincount`` (no pandas), so a million patches are re-evaluated in a few milliseconds
whenever the viewer's tau or threshold slider moves. :class:`Evaluator` keeps what does not
depend on tau or the threshold (the label as bool, the calibration bins) so that repeated
calls only redo the cheap part; :func:`evaluate` is the one-shot form.

Conventions
-----------
* Prediction: ``pred = prob >= threshold``. When both ``prob`` and ``pred`` are given,
  ``prob`` wins (the threshold is applied), so a table that holds the ``pred`` of a
  default threshold can be re-evaluated at any other.
* Empty groups or classes have accuracy NaN ("empty", never 0 or 1) and are left out of
  the worst-group, worst-class, balanced-class and group-balanced accuracies; those are
  NaN only when nothing is left.
* BCA is the mean recall over the classes present in ``label`` — the same value as
  ``sklearn.metrics.balanced_accuracy_score`` (which also drops an absent class, with a
  warning).
* ECE uses **positive-class calibration**: 10 equal-width bins over the tumor probability
  ``prob`` in [0, 1] (bin ``b`` holds ``b/10 <= prob < (b+1)/10``, the last bin also holds
  ``prob == 1``); ``ECE = sum_b n_b / N * |mean(label in b) - mean(prob in b)|``. It does not
  depend on tau or on the decision threshold. NaN when only ``pred`` is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import PatchwiseError
from ..groups import (
    DEFAULT_ATTRIBUTE,
    DEFAULT_TAU,
    N_ATTRIBUTES,
    N_CLASSES,
    N_GROUPS,
    as_label,
    check_same_length,
    check_threshold_value,
    counts_from_totals,
    group_names,
)
from ..schema import DEFAULT_THRESHOLD

ECE_BINS = 10
CLASS_NAMES: tuple[str, str] = ("non-tumor", "tumor")
# Codes of :func:`correctness` (2 * label + pred).
TN, FP, FN, TP = 0, 1, 2, 3
CORRECTNESS_NAMES: tuple[str, ...] = ("TN", "FP", "FN", "TP")


@dataclass(frozen=True)
class Evaluation:
    """Metrics of one split at one ``tau`` and decision ``threshold``.

    Accuracies are fractions in [0, 1]; NaN means "no samples" (see module notes).
    Arrays over groups are indexed by group id (:data:`napari_patchwise.groups.GROUP_NAMES`),
    arrays over classes by label (non-tumor, tumor). ``tau`` is the attribute threshold
    of the groups; ``attribute`` names the attribute (``tissue_ratio`` by default, when
    ``tau`` is the paper's tau).
    """

    n: int
    tau: float
    threshold: float
    group_counts: np.ndarray  # (4,) int64
    group_correct: np.ndarray  # (4,) int64, nan-free; 0 where the group is empty
    per_group_accuracy: np.ndarray  # (4,) float64, NaN where empty
    per_class_accuracy: np.ndarray  # (2,) float64 recall per class, NaN where absent
    accuracy: float
    wga: float
    bca: float
    worst_class_accuracy: float
    group_balanced_accuracy: float
    confusion: tuple[int, int, int, int]  # (tn, fp, fn, tp)
    ece: float
    has_predictions: bool
    attribute: str = DEFAULT_ATTRIBUTE

    @property
    def group_names(self) -> tuple[str, ...]:
        """Names of the four groups (:func:`~napari_patchwise.groups.group_names`)."""
        return group_names(self.attribute)

    @property
    def class_counts(self) -> np.ndarray:
        """Patches per class ``(non-tumor, tumor)``."""
        return self.group_counts.reshape(N_CLASSES, N_ATTRIBUTES).sum(axis=1)

    @property
    def worst_group(self) -> str | None:
        """Name of the group with the lowest accuracy (``None`` if no group has samples)."""
        acc = self.per_group_accuracy
        if np.all(np.isnan(acc)):
            return None
        return self.group_names[int(np.nanargmin(acc))]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: NaN becomes ``None``; groups and classes keyed by name."""
        groups = {
            name: {
                "n": int(self.group_counts[g]),
                "correct": int(self.group_correct[g]) if self.has_predictions else None,
                "accuracy": _json_float(self.per_group_accuracy[g]),
            }
            for g, name in enumerate(self.group_names)
        }
        tn, fp, fn, tp = self.confusion
        return {
            "n": self.n,
            "attribute": self.attribute,
            "tau": float(self.tau),
            "threshold": float(self.threshold),
            "has_predictions": self.has_predictions,
            "accuracy": _json_float(self.accuracy),
            "wga": _json_float(self.wga),
            "bca": _json_float(self.bca),
            "worst_class_accuracy": _json_float(self.worst_class_accuracy),
            "group_balanced_accuracy": _json_float(self.group_balanced_accuracy),
            "ece": _json_float(self.ece),
            "worst_group": self.worst_group,
            "groups": groups,
            "classes": {
                name: {
                    "n": int(self.class_counts[c]),
                    "accuracy": _json_float(self.per_class_accuracy[c]),
                }
                for c, name in enumerate(CLASS_NAMES)
            },
            "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        }


class Evaluator:
    """Precomputed per-patch arrays for fast re-evaluation at any tau and threshold.

    Validation, the bool conversion of ``label`` and the calibration error (which depends
    on neither tau nor the threshold) are done once here; :meth:`evaluate` then costs a few
    vectorised passes over N booleans.

    Parameters
    ----------
    label : array_like of {0, 1} or bool, shape (N,)
    tissue_ratio : array_like of float, shape (N,)
    prob : array_like of float in [0, 1], shape (N,), optional
        Predicted tumor probability.
    pred : array_like of {0, 1} or bool, shape (N,), optional
        Predicted label; used only when ``prob`` is not given.
    attribute : str
        Name of the attribute ``tissue_ratio`` holds (only names the groups): any numeric
        per-patch attribute can stand in for the tissue ratio.
    """

    def __init__(
        self,
        label: ArrayLike,
        tissue_ratio: ArrayLike,
        *,
        prob: ArrayLike | None = None,
        pred: ArrayLike | None = None,
        attribute: str = DEFAULT_ATTRIBUTE,
    ) -> None:
        self.attribute = str(attribute)
        self.label = as_label(label)
        self.tissue_ratio = np.asarray(tissue_ratio, dtype=np.float64).reshape(-1)
        self.prob = None if prob is None else _as_prob(prob)
        self.pred = None if (pred is None or prob is not None) else as_label(pred)
        arrays = [self.label, self.tissue_ratio]
        arrays += [a for a in (self.prob, self.pred) if a is not None]
        check_same_length(*arrays)
        self.n = int(self.label.shape[0])
        self.n_tumor = int(np.count_nonzero(self.label))
        self.ece = (
            math.nan if self.prob is None else expected_calibration_error(self.label, self.prob)
        )

    @property
    def has_predictions(self) -> bool:
        return self.prob is not None or self.pred is not None

    def predicted(self, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray | None:
        """Predicted labels (bool) at ``threshold``, or ``None`` without predictions."""
        if self.prob is not None:
            return self.prob >= threshold
        return self.pred

    def evaluate(
        self, tau: float = DEFAULT_TAU, threshold: float = DEFAULT_THRESHOLD
    ) -> Evaluation:
        """All metrics at this ``tau`` (attribute threshold) and decision ``threshold``."""
        check_threshold_value(tau)
        _check_threshold(threshold)
        y = self.label
        large = self.tissue_ratio >= tau
        n, n_y = self.n, self.n_tumor
        # Group sizes by inclusion-exclusion over two boolean masks: count_nonzero on bools
        # is several times cheaper than a bincount over int group ids.
        n_yz = int(np.count_nonzero(y & large))
        n_z = int(np.count_nonzero(large))
        counts = counts_from_totals(n, n_y, n_z, n_yz)

        pred = self.predicted(threshold)
        if pred is None:
            correct = np.zeros(N_GROUPS, dtype=np.int64)
        else:
            # Per group: correct = agreeing predictions; same inclusion-exclusion on `right`.
            right = pred == y
            r = int(np.count_nonzero(right))
            r_y = int(np.count_nonzero(right & y))
            right_z = right & large
            r_z = int(np.count_nonzero(right_z))
            r_yz = int(np.count_nonzero(right_z & y))
            correct = counts_from_totals(r, r_y, r_z, r_yz)
        return evaluation_from_counts(
            counts,
            correct,
            tau=tau,
            threshold=threshold,
            ece=self.ece,
            has_predictions=self.has_predictions,
            attribute=self.attribute,
        )


def evaluate(
    label: ArrayLike,
    tissue_ratio: ArrayLike,
    *,
    prob: ArrayLike | None = None,
    pred: ArrayLike | None = None,
    tau: float = DEFAULT_TAU,
    threshold: float = DEFAULT_THRESHOLD,
    attribute: str = DEFAULT_ATTRIBUTE,
) -> Evaluation:
    """Metrics of one split: per-group/class accuracy, WGA, BCA, confusion, ECE.

    Parameters
    ----------
    label : array_like of {0, 1} or bool, shape (N,)
        True patch labels.
    tissue_ratio : array_like of float, shape (N,)
        Tissue share of each patch (defines the groups with ``tau``).
    prob : array_like of float, shape (N,), optional
        Predicted tumor probability; ``pred = prob >= threshold``.
    pred : array_like of {0, 1}, shape (N,), optional
        Predicted labels, used when ``prob`` is absent (then ECE is NaN).
    tau : float
        Tissue-size threshold of the groups (the attribute threshold when
        ``tissue_ratio`` holds another attribute).
    threshold : float
        Decision threshold on ``prob``.
    attribute : str
        Name of the attribute in ``tissue_ratio`` (names the groups in the result).

    Returns
    -------
    Evaluation
        Without ``prob`` and ``pred`` only the group counts are meaningful; every
        accuracy is NaN.

    Examples
    --------
    >>> ev = evaluate([0, 1, 1], [0.5, 0.05, 0.5], prob=[0.2, 0.4, 0.9])
    >>> ev.group_counts.tolist(), ev.accuracy
    ([0, 1, 1, 1], 0.6666666666666666)
    """
    evaluator = Evaluator(label, tissue_ratio, prob=prob, pred=pred, attribute=attribute)
    return evaluator.evaluate(tau, threshold)


def predict(prob: ArrayLike, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Predicted labels ``prob >= threshold`` as int8 0/1."""
    _check_threshold(threshold)
    return (_as_prob(prob) >= threshold).view(np.int8)


def correctness(label: ArrayLike, pred: ArrayLike) -> np.ndarray:
    """Outcome code of every patch: ``TN=0, FP=1, FN=2, TP=3`` (``2 * label + pred``).

    Returns
    -------
    codes : ndarray of int8, shape (N,)
    """
    y = as_label(label)
    p = as_label(pred)
    check_same_length(y, p)
    codes = y.view(np.int8) * np.int8(2)
    codes += p
    return codes


def expected_calibration_error(label: ArrayLike, prob: ArrayLike, n_bins: int = ECE_BINS) -> float:
    """Positive-class expected calibration error over ``n_bins`` equal-width bins.

    ``sum_b n_b / N * |mean(label in b) - mean(prob in b)|`` with bin ``b`` holding
    ``b / n_bins <= prob < (b + 1) / n_bins`` (``prob == 1`` in the last bin). NaN for N = 0.
    """
    y = as_label(label)
    p = _as_prob(prob)
    check_same_length(y, p)
    if p.size == 0:
        return math.nan
    bins = (p * n_bins).astype(np.intp)
    bins[bins == n_bins] = n_bins - 1  # prob == 1.0 belongs to the last bin
    # One integer bincount gives per-bin sizes and positives (offset by n_bins for y=1).
    both = np.bincount(bins + n_bins * y, minlength=2 * n_bins)
    positives = both[n_bins:]
    sizes = both[:n_bins] + positives
    prob_sums = np.bincount(bins, weights=p, minlength=n_bins)
    # n_b/N * |acc_b - conf_b| = |positives_b - prob_sum_b| / N
    return float(np.abs(positives - prob_sums).sum() / p.size) if sizes.sum() else math.nan


#: Groups with fewer patches than this get a warning (``--min-group-size``).
DEFAULT_MIN_GROUP_SIZE = 20


def group_size_warnings(
    counts: ArrayLike,
    names: tuple[str, ...] | None = None,
    min_size: int = DEFAULT_MIN_GROUP_SIZE,
) -> list[str]:
    """One sentence per empty or tiny group: what WGA then means.

    WGA stays the minimum over the non-empty groups (module notes); these warnings say
    when that minimum leaves a group out, or rests on a handful of patches.

    Parameters
    ----------
    counts : array_like of int, shape (4,)
        Patches per group (``Evaluation.group_counts``).
    names : tuple of str, optional
        Group names (default: the tissue-size groups).
    min_size : int
        Groups with fewer patches (but at least one) are "tiny".

    Examples
    --------
    >>> group_size_warnings([1, 2, 0, 30], min_size=20)[0]
    'group tumor/small is empty: WGA is the minimum over the 3 other groups'
    """
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    names = group_names() if names is None else tuple(names)
    empty = [names[g] for g in range(len(counts)) if counts[g] == 0]
    present = len(counts) - len(empty)
    lines = [
        f"group {name} is empty: WGA is the minimum over the {present} other groups"
        for name in empty
    ]
    lines += [
        f"group {names[g]} has only {int(counts[g])} patch{'es' if counts[g] != 1 else ''} "
        f"(< {min_size}): its accuracy, and WGA if it is the worst, rests on few patches"
        for g in range(len(counts))
        if 0 < counts[g] < min_size
    ]
    return lines


# -- helpers ---------------------------------------------------------------------------
def evaluation_from_counts(
    counts: np.ndarray,
    correct: np.ndarray,
    *,
    tau: float,
    threshold: float,
    ece: float,
    has_predictions: bool,
    attribute: str = DEFAULT_ATTRIBUTE,
) -> Evaluation:
    """Every summary metric from per-group sizes and correct counts (4 + 4 integers).

    The shared last step of :func:`evaluate` and of callers that count groups their own
    faster way (the viewer's slider evaluator), so both report identical metrics.
    """
    n = int(counts.sum())
    class_counts = counts.reshape(N_CLASSES, N_ATTRIBUTES).sum(axis=1)
    class_correct = correct.reshape(N_CLASSES, N_ATTRIBUTES).sum(axis=1)
    if has_predictions:
        with np.errstate(invalid="ignore", divide="ignore"):
            per_group = np.where(counts > 0, correct / np.maximum(counts, 1), np.nan)
            per_class = np.where(
                class_counts > 0, class_correct / np.maximum(class_counts, 1), np.nan
            )
        accuracy = correct.sum() / n if n else math.nan
        wga = _nan_reduce(np.min, per_group)
        worst_class = _nan_reduce(np.min, per_class)
        bca = _nan_reduce(np.mean, per_class)
        gba = _nan_reduce(np.mean, per_group)
    else:
        per_group = np.full(N_GROUPS, np.nan)
        per_class = np.full(N_CLASSES, np.nan)
        accuracy = wga = worst_class = bca = gba = math.nan
    tn = int(class_correct[0])
    fp = int(class_counts[0] - class_correct[0])
    tp = int(class_correct[1])
    fn = int(class_counts[1] - class_correct[1])
    if not has_predictions:
        tn = fp = fn = tp = 0
    return Evaluation(
        n=n,
        tau=float(tau),
        threshold=float(threshold),
        group_counts=counts,
        group_correct=correct,
        per_group_accuracy=per_group,
        per_class_accuracy=per_class,
        accuracy=float(accuracy),
        wga=wga,
        bca=bca,
        worst_class_accuracy=worst_class,
        group_balanced_accuracy=gba,
        confusion=(tn, fp, fn, tp),
        ece=float(ece),
        has_predictions=has_predictions,
        attribute=str(attribute),
    )


def _nan_reduce(reduce, values: np.ndarray) -> float:
    present = values[~np.isnan(values)]
    return float(reduce(present)) if present.size else math.nan


def _as_prob(prob: ArrayLike) -> np.ndarray:
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    if p.size and not (p.min() >= 0.0 and p.max() <= 1.0):  # also catches NaN
        raise PatchwiseError(
            "probabilities must lie in [0, 1] and not be NaN",
            hint="check the table's 'prob' column",
        )
    return p


def _check_threshold(threshold: float) -> None:
    if not (0.0 <= float(threshold) <= 1.0):
        raise PatchwiseError(f"decision threshold {threshold} is outside [0, 1]")


def _json_float(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value
