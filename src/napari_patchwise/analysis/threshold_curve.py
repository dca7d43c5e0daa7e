"""Worst-group and balanced accuracy of predictions at every threshold of the attribute.

The dock's "Debias" tab draws how a run's worst-group accuracy (WGA) moves as the groups'
attribute threshold (tau for ``tissue_ratio``) moves, so one sees at once where the
groups are hardest for the model. Every distinct attribute value is a threshold; the
curve comes from :func:`.attribute_rank.split_counts` — the patches sorted by the
attribute **once** (kept in :class:`ThresholdCurve`), then three cumulative sums per
decision threshold — so a whole curve costs O(N) after an O(N log N) sort, never O(N)
per threshold. Each point equals :func:`.metrics.evaluate` at that threshold (tested):
same groups (``2 * label + (attribute >= t)``), empty groups left out of WGA.

BCA (mean recall over the classes) does not depend on the grouping at all: it is one
number per decision threshold, drawn as a flat reference line. The group-balanced
accuracy (mean over the four groups) does, and is drawn too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..groups import DEFAULT_ATTRIBUTE, N_GROUPS
from ..schema import DEFAULT_THRESHOLD
from .attribute_ranking import split_counts


@dataclass(frozen=True)
class CurvePoints:
    """The metrics at every attribute threshold, for one decision threshold.

    Attributes
    ----------
    thresholds : float64 array (K,)
        The attribute's distinct values above its smallest, increasing; at
        ``thresholds[k]`` the high groups are the patches with ``attribute >= thresholds[k]``
        (the same split holds for any threshold in ``(thresholds[k-1], thresholds[k]]``).
    wga, gba : float64 arrays (K,)
        Worst-group and group-balanced accuracy (NaN only when every group is empty).
    bca : float
        Balanced (mean per-class) accuracy, the same at every attribute threshold.
    group_counts : int64 array (4, K)
        Patches per group id at each threshold.
    decision_threshold : float
    """

    thresholds: np.ndarray
    wga: np.ndarray
    gba: np.ndarray
    bca: float
    group_counts: np.ndarray
    decision_threshold: float

    def at(self, threshold: float) -> int | None:
        """Index of the point whose split ``attribute >= threshold`` makes (None: outside)."""
        k = int(np.searchsorted(self.thresholds, float(threshold), side="left"))
        return k if k < self.thresholds.size else None

    def display(self, max_points: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(thresholds, wga, gba)`` thinned to at most ``max_points`` evenly spaced points
        (a million-patch curve has as many points as distinct values)."""
        k = self.thresholds.size
        if k <= max_points:
            return self.thresholds, self.wga, self.gba
        keep = np.unique(np.linspace(0, k - 1, max_points).round().astype(np.intp))
        return self.thresholds[keep], self.wga[keep], self.gba[keep]


class ThresholdCurve:
    """A run's predictions on patches whose attribute is sorted once.

    Parameters
    ----------
    label : array of {0, 1}, shape (N,)
    values : array of float, shape (N,)
        The attribute (NaN counts as below every threshold, as in :mod:`.groups`).
    prob : array of float in [0, 1], shape (N,)
        Predicted tumor probability (patches without a prediction left out beforehand).
    attribute : str
        The attribute's name (for the caller's labels).
    """

    def __init__(
        self,
        label: np.ndarray,
        values: np.ndarray,
        prob: np.ndarray,
        *,
        attribute: str = DEFAULT_ATTRIBUTE,
    ) -> None:
        self.label = np.asarray(label) != 0
        self.values = np.asarray(values, dtype=np.float64)
        self.prob = np.asarray(prob, dtype=np.float64)
        if not (self.label.shape == self.values.shape == self.prob.shape):
            raise ValueError("label, values and prob must have the same length")
        self.attribute = str(attribute)
        self._order = np.argsort(np.where(np.isnan(self.values), -np.inf, self.values))

    def points(self, decision_threshold: float = DEFAULT_THRESHOLD) -> CurvePoints:
        """Every threshold's WGA and group-balanced accuracy at ``decision_threshold``."""
        t = float(decision_threshold)
        right = (self.prob >= t) == self.label
        counts, correct, thresholds = split_counts(self.label, right, self.values, self._order)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_group = np.where(counts > 0, correct / np.maximum(counts, 1), np.nan)
        present = counts > 0
        n_present = present.sum(axis=0)
        wga = np.where(present, per_group, np.inf).min(axis=0)
        gba = np.where(present, per_group, 0.0).sum(axis=0) / np.maximum(n_present, 1)
        empty = n_present == 0
        wga[empty] = np.nan
        gba[empty] = np.nan
        return CurvePoints(
            thresholds=thresholds,
            wga=wga,
            gba=gba,
            bca=balanced_accuracy(self.label, right),
            group_counts=counts.reshape(N_GROUPS, -1),
            decision_threshold=t,
        )


def balanced_accuracy(label: np.ndarray, right: np.ndarray) -> float:
    """Mean recall over the classes present (``metrics``' BCA; NaN without patches)."""
    recalls = [
        np.count_nonzero(right[label == y]) / n
        for y in (False, True)
        if (n := np.count_nonzero(label == y))
    ]
    return float(np.mean(recalls)) if recalls else float("nan")
