"""Metrics against scikit-learn and hand computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix

from napari_patchwise.analysis.metrics import (
    FN,
    FP,
    TN,
    TP,
    Evaluator,
    correctness,
    evaluate,
    expected_calibration_error,
    predict,
)
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.groups import GROUP_NAMES, group_ids


def _random_split(rng, n=5000):
    label = (rng.random(n) < 0.3).astype(np.int64)
    ratio = rng.random(n) ** np.where(label == 1, 0.7, 2.0)  # every group non-empty
    # A biased model: tumor probability rises with tissue size.
    prob = np.clip(0.6 * label + 0.5 * ratio - 0.1 + rng.normal(0, 0.2, n), 0, 1)
    return label, ratio, prob


@pytest.mark.parametrize("tau, threshold", [(0.1, 0.5), (0.03, 0.3), (0.5, 0.72)])
def test_agrees_with_sklearn(rng, tau, threshold):
    label, ratio, prob = _random_split(rng)
    ev = evaluate(label, ratio, prob=prob, tau=tau, threshold=threshold)
    pred = (prob >= threshold).astype(int)
    assert ev.accuracy == pytest.approx(accuracy_score(label, pred))
    assert ev.bca == pytest.approx(balanced_accuracy_score(label, pred))
    tn, fp, fn, tp = confusion_matrix(label, pred, labels=[0, 1]).ravel()
    assert ev.confusion == (tn, fp, fn, tp)
    groups = group_ids(label, ratio, tau)
    expected = [accuracy_score(label[groups == g], pred[groups == g]) for g in range(4)]
    np.testing.assert_allclose(ev.per_group_accuracy, expected)
    assert ev.group_counts.tolist() == np.bincount(groups, minlength=4).tolist()
    assert ev.group_correct.tolist() == [int((pred == label)[groups == g].sum()) for g in range(4)]
    assert ev.wga == pytest.approx(min(expected))
    assert ev.group_balanced_accuracy == pytest.approx(np.mean(expected))
    recalls = [accuracy_score(label[label == c], pred[label == c]) for c in (0, 1)]
    np.testing.assert_allclose(ev.per_class_accuracy, recalls)
    assert ev.worst_class_accuracy == pytest.approx(min(recalls))
    assert ev.worst_group == GROUP_NAMES[int(np.argmin(expected))]


def test_pred_only_matches_prob_and_has_no_ece(rng):
    label, ratio, prob = _random_split(rng, 300)
    pred = predict(prob, 0.5)
    from_pred = evaluate(label, ratio, pred=pred)
    from_prob = evaluate(label, ratio, prob=prob)
    assert from_pred.per_group_accuracy.tolist() == from_prob.per_group_accuracy.tolist()
    assert math.isnan(from_pred.ece)
    assert not math.isnan(from_prob.ece)
    # prob wins over a stale pred: the threshold is applied.
    assert evaluate(label, ratio, prob=prob, pred=1 - pred, threshold=0.5).accuracy == (
        from_prob.accuracy
    )


def test_empty_groups_are_nan_and_excluded_from_wga():
    # Group ids: 1, 1, 3, 3 — groups 0 and 2 (small tissue) are empty.
    label = [0, 0, 1, 1]
    ratio = [0.5, 0.6, 0.7, 0.8]
    ev = evaluate(label, ratio, pred=[0, 1, 1, 1], tau=0.1)
    assert ev.group_counts.tolist() == [0, 2, 0, 2]
    assert np.isnan(ev.per_group_accuracy[[0, 2]]).all()
    assert ev.per_group_accuracy[[1, 3]].tolist() == [0.5, 1.0]
    assert ev.wga == 0.5
    assert ev.group_balanced_accuracy == 0.75
    d = ev.to_dict()
    assert d["groups"]["non-tumor/small"] == {"n": 0, "correct": 0, "accuracy": None}
    assert d["groups"]["non-tumor/large"]["accuracy"] == 0.5
    json.dumps(d, allow_nan=False)


def test_absent_class_bca_is_mean_over_present_classes():
    label = np.array([0, 0, 0, 0])
    pred = np.array([0, 1, 0, 0])
    ev = evaluate(label, [0.0, 0.2, 0.4, 0.6], pred=pred)
    assert np.isnan(ev.per_class_accuracy[1])
    assert ev.bca == 0.75 == ev.worst_class_accuracy
    with pytest.warns(UserWarning):
        assert balanced_accuracy_score(label, pred) == ev.bca


def test_no_samples_and_no_predictions():
    ev = evaluate([], [], prob=[])
    assert ev.n == 0
    assert ev.group_counts.tolist() == [0, 0, 0, 0]
    assert all(math.isnan(v) for v in (ev.accuracy, ev.wga, ev.bca, ev.ece))
    assert ev.worst_group is None
    counts_only = evaluate([0, 1, 1], [0.5, 0.05, 0.5])
    assert counts_only.group_counts.tolist() == [0, 1, 1, 1]
    assert not counts_only.has_predictions
    assert math.isnan(counts_only.accuracy) and math.isnan(counts_only.wga)
    d = counts_only.to_dict()
    assert d["groups"]["tumor/large"] == {"n": 1, "correct": None, "accuracy": None}
    json.dumps(d, allow_nan=False)


def test_ece_by_hand():
    # Bins: 0.05 -> 0, 0.15 -> 1, 0.15 -> 1, 0.95 -> 9, 1.0 -> 9 (last bin closed).
    label = [0, 1, 0, 1, 1]
    prob = [0.05, 0.15, 0.15, 0.95, 1.0]
    # bin 0: n=1 acc 0 conf .05 -> .05 ; bin 1: n=2 acc .5 conf .15 -> .35 ;
    # bin 9: n=2 acc 1 conf .975 -> .025.  ECE = (1*.05 + 2*.35 + 2*.025) / 5 = 0.16
    assert expected_calibration_error(label, prob) == pytest.approx(0.16)
    assert evaluate(label, [0.5] * 5, prob=prob).ece == pytest.approx(0.16)
    # Boundary: 0.1 falls in bin 1, not bin 0.
    assert expected_calibration_error([1, 0], [0.1, 0.0999]) == pytest.approx(
        (abs(1 - 0.1) + abs(0 - 0.0999)) / 2
    )


def test_ece_against_explicit_loop(rng):
    label, _, prob = _random_split(rng, 2000)
    total = 0.0
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        inside = (prob >= lo) & ((prob < hi) if b < 9 else (prob <= hi))
        if inside.any():
            total += inside.sum() / prob.size * abs(label[inside].mean() - prob[inside].mean())
    assert expected_calibration_error(label, prob) == pytest.approx(total)


def test_evaluator_reuse_matches_one_shot(rng):
    label, ratio, prob = _random_split(rng, 1000)
    ev = Evaluator(label, ratio, prob=prob)
    for tau, thr in [(0.1, 0.5), (0.03, 0.2), (0.9, 0.9), (0.0, 0.0), (1.0, 1.0)]:
        a = ev.evaluate(tau, thr)
        b = evaluate(label, ratio, prob=prob, tau=tau, threshold=thr)
        assert a.to_dict() == b.to_dict()


def test_correctness_codes_and_predict():
    codes = correctness([0, 0, 1, 1], [0, 1, 0, 1])
    assert codes.tolist() == [TN, FP, FN, TP] == [0, 1, 2, 3]
    assert codes.dtype == np.int8
    assert predict([0.1, 0.5, 0.49, 1.0], 0.5).tolist() == [0, 1, 0, 1]


def test_bad_inputs():
    with pytest.raises(PatchwiseError, match="probabilities"):
        evaluate([0, 1], [0.1, 0.2], prob=[0.2, 1.5])
    with pytest.raises(PatchwiseError, match="probabilities"):
        evaluate([0, 1], [0.1, 0.2], prob=[0.2, np.nan])
    with pytest.raises(PatchwiseError, match="threshold"):
        evaluate([0, 1], [0.1, 0.2], prob=[0.2, 0.3], threshold=2)
    with pytest.raises(PatchwiseError, match="different lengths"):
        evaluate([0, 1], [0.1, 0.2], prob=[0.2])


def test_fast_on_a_million_patches(rng):
    """The viewer re-evaluates on every slider move: keep it well under a frame."""
    import time

    n = 1_000_000
    label, ratio, prob = _random_split(rng, n)
    ev = Evaluator(label, ratio, prob=prob)
    times = []
    for i in range(7):
        t0 = time.perf_counter()
        ev.evaluate(0.05 + 0.01 * i, 0.5)
        times.append(time.perf_counter() - t0)
    # Budget is 16 ms (docs/benchmarks.md, "Budgets"); generous slack for a loaded shared CI machine.
    assert np.median(times) < 0.05
