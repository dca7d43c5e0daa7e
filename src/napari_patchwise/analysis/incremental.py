"""Exact evaluations while a slider is dragged: O(log N) per move instead of O(N).

``metrics.Evaluator.evaluate`` makes a few boolean passes over all patches (about 3 ms
for a million). While one slider is dragged the other value is fixed, so the patches can
be sorted once (in the worker) and cumulative counts prepared once per drag:

* **tau moves** (threshold fixed): patches sorted by ``tissue_ratio``; "large" is a
  suffix of that order, so the group sizes and correct counts are differences of
  cumulative sums of ``label`` and ``correct`` (the latter rebuilt, O(N), only when the
  threshold has changed since the last tau move).
* **threshold moves** (tau fixed): patches sorted by ``prob``; "predicted tumor" is a
  suffix, and the correct counts per group follow from cumulative sums of ``label`` and
  ``label & large`` in that order (rebuilt only when tau has changed).

Each query is one binary search plus a handful of lookups. Four totals become the group
counts by :func:`~napari_patchwise.groups.counts_from_totals` and the counts an
:class:`~napari_patchwise.analysis.metrics.Evaluation` by the metrics module itself, so the group
layout and every metric are defined in one place; the tests check equality with
``Evaluator.evaluate``.
"""

from __future__ import annotations

import numpy as np

from ..groups import DEFAULT_ATTRIBUTE, DEFAULT_TAU, counts_from_totals
from ..schema import DEFAULT_THRESHOLD
from .metrics import Evaluation, evaluation_from_counts, expected_calibration_error


def _cumsum0(values: np.ndarray) -> np.ndarray:
    out = np.zeros(values.size + 1, dtype=np.int64)
    np.cumsum(values, out=out[1:])
    return out


class SliderEvaluator:
    """Evaluations at any ``(tau, threshold)``; fast when only one of them changes.

    Parameters
    ----------
    label : array of {0, 1}, shape (N,)
    tissue_ratio : array of float, shape (N,)
    prob : array of float in [0, 1], shape (N,), optional
        Without it only the group counts are meaningful (as for ``Evaluator``).
    attribute : str
        Name of the attribute ``tissue_ratio`` holds (any numeric per-patch attribute can;
        it names the groups of the evaluations).
    """

    def __init__(
        self,
        label: np.ndarray,
        tissue_ratio: np.ndarray,
        prob: np.ndarray | None = None,
        *,
        attribute: str = DEFAULT_ATTRIBUTE,
    ) -> None:
        self.attribute = str(attribute)
        y = np.asarray(label) != 0
        ratio = np.asarray(tissue_ratio, dtype=np.float64)
        ratio = np.where(np.isnan(ratio), -np.inf, ratio)  # NaN counts as small, as in groups
        self.n = int(y.size)
        self.n_y = int(np.count_nonzero(y))
        self._y = y
        self._by_ratio = np.argsort(ratio, kind="stable")
        self._ratio_sorted = ratio[self._by_ratio]
        self._y_cum_r = _cumsum0(y[self._by_ratio])
        self.has_predictions = prob is not None
        self.ece = float("nan")
        if prob is not None:
            prob = np.asarray(prob, dtype=np.float64)
            self._prob = prob
            self._by_prob = np.argsort(prob, kind="stable")
            self._prob_sorted = prob[self._by_prob]
            self._y_cum_p = _cumsum0(y[self._by_prob])
            self._ratio_by_prob = ratio[self._by_prob]
            self.ece = expected_calibration_error(y, prob)
        self._ratio_cache: tuple[float, np.ndarray, np.ndarray] | None = None  # threshold
        self._prob_cache: tuple[float, np.ndarray, np.ndarray] | None = None  # tau
        self._last: tuple[float, float] | None = None

    def evaluate(
        self, tau: float = DEFAULT_TAU, threshold: float = DEFAULT_THRESHOLD
    ) -> Evaluation:
        """Same result as ``metrics.evaluate(label, tissue_ratio, prob=..., tau, threshold)``."""
        tau, threshold = float(tau), float(threshold)
        n, n_y = self.n, self.n_y
        k = int(np.searchsorted(self._ratio_sorted, tau, side="left"))  # ratio < tau
        n_z = n - k
        n_yz = int(self._y_cum_r[n] - self._y_cum_r[k])
        counts = counts_from_totals(n, n_y, n_z, n_yz)
        if not self.has_predictions:
            correct = np.zeros(4, dtype=np.int64)
        else:
            threshold_moved = self._last is not None and self._last[1] != threshold
            use_prob_order = (self._prob_cache is not None and self._prob_cache[0] == tau) or (
                threshold_moved and not self._ratio_ready(threshold)
            )
            if use_prob_order:
                correct = self._correct_by_prob(tau, threshold)
            else:
                correct = self._correct_by_ratio(k, threshold)
        self._last = (tau, threshold)
        return evaluation_from_counts(
            counts,
            correct,
            tau=tau,
            threshold=threshold,
            ece=self.ece,
            has_predictions=self.has_predictions,
            attribute=self.attribute,
        )

    # tau moves: ratio order, cumulative counts of correct (and correct & tumor) -----------
    def _ratio_ready(self, threshold: float) -> bool:
        return self._ratio_cache is not None and self._ratio_cache[0] == threshold

    def _correct_by_ratio(self, k: int, threshold: float) -> np.ndarray:
        if not self._ratio_ready(threshold):
            right = (self._prob >= threshold) == self._y
            right_sorted = right[self._by_ratio]
            self._ratio_cache = (
                threshold,
                _cumsum0(right_sorted),
                _cumsum0(right_sorted & self._y[self._by_ratio]),
            )
        _, r_cum, ry_cum = self._ratio_cache
        n = self.n
        r, r_y = int(r_cum[n]), int(ry_cum[n])
        r_z = int(r_cum[n] - r_cum[k])
        r_yz = int(ry_cum[n] - ry_cum[k])
        return counts_from_totals(r, r_y, r_z, r_yz)

    # threshold moves: prob order, cumulative counts of large (and large & tumor) ----------
    def _correct_by_prob(self, tau: float, threshold: float) -> np.ndarray:
        if self._prob_cache is None or self._prob_cache[0] != tau:
            large = self._ratio_by_prob >= tau
            y = self._y[self._by_prob]
            self._prob_cache = (tau, _cumsum0(large), _cumsum0(large & y))
        _, l_cum, ly_cum = self._prob_cache
        n = self.n
        j = int(np.searchsorted(self._prob_sorted, threshold, side="left"))  # prob < t
        y_cum = self._y_cum_p
        # tumor patches are right in the suffix (predicted tumor), non-tumor in the prefix
        r_y = int(y_cum[n] - y_cum[j])
        r_not_y = j - int(y_cum[j])
        r_yz = int(ly_cum[n] - ly_cum[j])
        r_not_y_z = int(l_cum[j] - ly_cum[j])
        return counts_from_totals(r_not_y + r_y, r_y, r_not_y_z + r_yz, r_yz)
