"""The viewer's incremental evaluator gives exactly ``metrics.evaluate``'s results."""

from __future__ import annotations

import numpy as np
import pytest

from napari_patchwise.analysis.incremental import SliderEvaluator
from napari_patchwise.analysis.metrics import evaluate


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.group_counts, b.group_counts)
    np.testing.assert_array_equal(a.group_correct, b.group_correct)
    assert a.confusion == b.confusion
    for name in ("accuracy", "wga", "bca", "worst_class_accuracy", "ece"):
        np.testing.assert_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.per_group_accuracy, b.per_group_accuracy)


@pytest.mark.parametrize("with_prob", [True, False])
def test_every_move_of_either_slider_matches_metrics_evaluate(with_prob):
    rng = np.random.default_rng(3)
    n = 5000
    label = rng.integers(0, 2, n)
    # quantised values so that many patches sit exactly on the slider values
    ratio = rng.integers(0, 41, n) / 40
    prob = rng.integers(0, 21, n) / 20 if with_prob else None
    fast = SliderEvaluator(label, ratio, prob)
    tau, threshold = 0.1, 0.5
    for step in range(300):
        # drag one slider for a while, then the other, sometimes jump both
        if (step // 25) % 2 == 0:
            tau = float(rng.choice([rng.integers(0, 41) / 40, rng.random()]))
        else:
            threshold = float(rng.choice([rng.integers(0, 21) / 20, rng.random()]))
        if step % 97 == 0:
            tau, threshold = float(rng.random()), float(rng.random())
        _same(
            fast.evaluate(tau, threshold),
            evaluate(label, ratio, prob=prob, tau=tau, threshold=threshold),
        )


def test_extreme_values_and_empty_groups():
    label = np.array([0, 0, 1, 1])
    ratio = np.array([0.0, 1.0, 0.0, 1.0])
    prob = np.array([0.0, 1.0, 0.0, 1.0])
    fast = SliderEvaluator(label, ratio, prob)
    for tau, threshold in [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.5, 0.5)]:
        _same(
            fast.evaluate(tau, threshold),
            evaluate(label, ratio, prob=prob, tau=tau, threshold=threshold),
        )
