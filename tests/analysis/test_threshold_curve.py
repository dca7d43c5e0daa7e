"""The WGA / BCA curve against the attribute threshold equals metrics.evaluate point by point."""

from __future__ import annotations

import numpy as np
import pytest

from napari_patchwise.analysis.metrics import evaluate
from napari_patchwise.analysis.threshold_curve import ThresholdCurve


def _data(n=500, seed=0):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    values = rng.integers(0, 40, n) / 40.0  # ties: many patches per distinct value
    values[:7] = np.nan
    prob = np.clip(0.6 * label + 0.5 * values + rng.normal(0, 0.2, n), 0, 1)
    prob[np.isnan(prob)] = 0.0
    return label, values, prob


@pytest.mark.parametrize("decision", [0.3, 0.5, 0.8])
def test_curve_points_equal_metrics_evaluate(decision):
    label, values, prob = _data()
    points = ThresholdCurve(label, values, prob).points(decision)
    # NaN counts as below every value: every finite value is a split
    np.testing.assert_array_equal(points.thresholds, np.unique(values[~np.isnan(values)]))
    for k in (0, 5, 17, len(points.thresholds) - 1):
        t = points.thresholds[k]
        ev = evaluate(label, values, prob=prob, tau=t, threshold=decision)
        assert points.wga[k] == pytest.approx(ev.wga)
        assert points.gba[k] == pytest.approx(ev.group_balanced_accuracy)
        assert points.bca == pytest.approx(ev.bca)
        np.testing.assert_array_equal(points.group_counts[:, k], ev.group_counts)
        # any threshold between two values makes the same split
        assert points.at(t - 1e-9) == k


def test_curve_with_an_empty_group_leaves_it_out_of_wga():
    label = np.array([0, 0, 0, 1, 1, 1])
    values = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])  # tumor only high above 0.35
    prob = np.array([0.1, 0.9, 0.1, 0.9, 0.9, 0.2])
    points = ThresholdCurve(label, values, prob).points(0.5)
    for k, t in enumerate(points.thresholds):
        ev = evaluate(label, values, prob=prob, tau=t)
        assert points.wga[k] == pytest.approx(ev.wga)
    assert points.at(0.65) is None


def test_display_thins_a_long_curve():
    rng = np.random.default_rng(1)
    n = 5000
    points = ThresholdCurve(rng.integers(0, 2, n), rng.random(n), rng.random(n)).points()
    x, wga, gba = points.display(300)
    assert len(x) <= 300 and x[0] == points.thresholds[0] and x[-1] == points.thresholds[-1]
    assert len(wga) == len(gba) == len(x)
