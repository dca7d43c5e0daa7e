"""DFR as the reference code (Kirichenko et al. 2022, ``dfr_evaluate_spurious.py``) does it.

Every C of the search is fitted on one group-balanced subset of half of the validation
split and scored on the other half; the search standardises with that subset's
statistics, the final head with the training split's; the final head averages fits on
balanced subsets of the whole split. ``dfr-train`` reads no validation label.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from napari_patchwise.training.methods import dfr
from napari_patchwise.training.methods.dfr import C_GRID, Split, fit_dfr


def _split(rng, counts, dim=5, shift=0.0):
    groups = np.repeat(np.arange(4), counts)
    y = groups // 2
    x = rng.normal(size=(len(y), dim)) * (1 + np.arange(dim)) + shift
    x[:, 0] += 1.5 * y  # the label's feature
    x[:, 1] += 2.0 * (groups % 2)  # the spurious one
    order = rng.permutation(len(y))  # groups interleaved, as in a real table
    return Split(x[order].astype(np.float32), y[order], groups[order])


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return _split(rng, [300, 40, 60, 250], shift=0.5), _split(rng, [90, 17, 23, 70])


def _evaluator(splits, calls):
    """An Evaluation-like (wga, bca) from the groups of ``splits[split]``; records calls."""

    def evaluate(split, rows, prob):
        calls.append((split, np.array(rows)))
        s = splits[split]
        right = (prob >= 0.5) == s.y[rows]
        g = s.groups[rows]
        acc = np.array([right[g == k].mean() for k in range(4)])
        bca = np.mean([right[s.y[rows] == k].mean() for k in range(2)])
        return SimpleNamespace(wga=float(acc.min()), bca=float(bca))

    return evaluate


def _recording(monkeypatch):
    fits = []
    real = dfr._fit

    def fit(x, y, c, seed):
        fits.append((np.array(x), np.array(y), c))
        return real(x, y, c, seed)

    monkeypatch.setattr(dfr, "_fit", fit)
    return fits


def _sklearn(x, y, c, seed=0):
    from sklearn.linear_model import LogisticRegression

    # scikit-learn >= 1.8 spells L1 as l1_ratio=1; both give liblinear's L1 fit
    try:
        model = LogisticRegression(C=c, solver="liblinear", l1_ratio=1.0, random_state=seed)
        return model.fit(x, y)
    except (TypeError, ValueError):  # pragma: no cover - older scikit-learn
        model = LogisticRegression(C=c, solver="liblinear", penalty="l1", random_state=seed)
        return model.fit(x, y)


def test_every_c_is_fitted_on_the_same_balanced_subset_and_scored_on_the_other_half(
    monkeypatch,
):
    from sklearn.preprocessing import StandardScaler

    train, val = _data()
    fits, calls = _recording(monkeypatch), []
    result = fit_dfr(train, val, _evaluator({"train": train, "val": val}, calls), seed=3)
    # the halves and the subset, drawn as the reference draws them (one permutation; the
    # first half scores, the second fits), by hand
    rng = np.random.default_rng(3)
    order = rng.permutation(len(val.y))
    half = len(val.y) // 2
    held_out, fit_half = np.sort(order[:half]), np.sort(order[half:])
    np.testing.assert_array_equal(result.held_out, held_out)
    members = [fit_half[val.groups[fit_half] == g] for g in range(4)]
    m = min(len(g) for g in members)
    expected = np.sort(np.concatenate([rng.choice(g, m, replace=False) for g in members]))
    np.testing.assert_array_equal(result.search_rows, expected)
    assert np.bincount(val.groups[result.search_rows]).tolist() == [m] * 4
    assert not set(result.search_rows) & set(result.held_out)
    # every C: the same rows, standardised with that subset's own statistics
    scaled = StandardScaler().fit_transform(val.x[expected].astype(np.float64))
    search = fits[: len(C_GRID)]
    assert [c for _, _, c in search] == list(C_GRID)
    for x, y, _ in search:
        np.testing.assert_allclose(x, scaled, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(y, val.y[expected])
    assert len(calls) == len(C_GRID)
    for split, rows in calls:
        assert split == "val"
        np.testing.assert_array_equal(rows, held_out)


def test_search_and_final_head_equal_scikit_learn_fitted_by_hand(monkeypatch):
    import torch
    from sklearn.preprocessing import StandardScaler

    train, val = _data(1)
    fits, calls = _recording(monkeypatch), []
    result = fit_dfr(
        train, val, _evaluator({"train": train, "val": val}, calls), seed=0, n_fits=5,
        select=("val_wga",),
    )  # fmt: skip
    # the search, by hand: one scaler fitted on the subset, every C scored on the half
    scaler = StandardScaler().fit(val.x[result.search_rows].astype(np.float64))
    z, zh = (
        scaler.transform(val.x[r].astype(np.float64)) for r in (result.search_rows, result.held_out)
    )
    wgas = []
    for c in C_GRID:
        pred = _sklearn(z, val.y[result.search_rows], c).predict(zh)
        right, g = pred == val.y[result.held_out], val.groups[result.held_out]
        wgas.append(min(right[g == k].mean() for k in range(4)))
    assert [ev.wga for ev in result.search] == pytest.approx(wgas, abs=1e-12)
    head = result.heads["val_wga"]
    best = int(np.argmax(wgas))
    assert head.c == C_GRID[best] and head.step == best + 1
    # the final head, by hand: the training split's scaler, the average of the fits
    final = StandardScaler().fit(train.x.astype(np.float64))
    assert len(result.final_rows) == 5
    m = np.bincount(val.groups).min()
    models = []
    for rows in result.final_rows:
        assert np.bincount(val.groups[rows], minlength=4).tolist() == [m] * 4
        assert len(np.unique(rows)) == 4 * m
        models.append(
            _sklearn(final.transform(val.x[rows].astype(np.float64)), val.y[rows], head.c)
        )
    for (x, _, c), rows in zip(fits[len(C_GRID) :], result.final_rows, strict=True):
        assert c == head.c
        np.testing.assert_allclose(x, final.transform(val.x[rows].astype(np.float64)), atol=1e-6)
    coef = np.mean([m.coef_[0] for m in models], axis=0)
    intercept = np.mean([m.intercept_[0] for m in models])
    expected = final.transform(val.x.astype(np.float64)) @ coef + intercept
    linear = torch.nn.Linear(5, 2).double()
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(head.weight.astype(np.float64)))
        linear.bias.copy_(torch.from_numpy(head.bias.astype(np.float64)))
        logits = linear(torch.from_numpy(val.x.astype(np.float64))).numpy()
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], expected, rtol=1e-4, atol=1e-4)


def test_dfr_train_reads_no_validation_label(monkeypatch):
    from sklearn.preprocessing import StandardScaler

    train, val = _data(2)
    fits = _recording(monkeypatch)
    rng = np.random.default_rng(9)
    shuffled = Split(val.x, rng.permutation(val.y), rng.permutation(val.groups))
    results = []
    for v in (val, shuffled):
        calls = []
        result = fit_dfr(
            train, v, _evaluator({"train": train, "val": v}, calls), fit_on="train", seed=1,
            n_fits=4,
        )  # fmt: skip
        results.append(result)
        # C is scored on the training split's held-out half; validation only reported
        assert [s for s, _ in calls] == ["train", "val"] * len(C_GRID)
        assert result.fit_on == "train"
    a, b = results
    np.testing.assert_array_equal(a.search_rows, b.search_rows)
    # the scaler of the reference's dfr_train_subset_tune / _eval: the training split's
    scaler = StandardScaler().fit(train.x.astype(np.float64))
    for x, _, _ in fits[: len(C_GRID)]:
        expected = scaler.transform(train.x[a.search_rows].astype(np.float64))
        np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-6)
    m = np.bincount(train.groups).min()
    for rows in a.final_rows:  # balanced subsets of the training split
        assert np.bincount(train.groups[rows], minlength=4).tolist() == [m] * 4
    for metric in ("val_wga", "val_bca"):
        assert a.heads[metric].c == b.heads[metric].c
        np.testing.assert_array_equal(a.heads[metric].weight, b.heads[metric].weight)
        np.testing.assert_array_equal(a.heads[metric].bias, b.heads[metric].bias)
    # ... while DFR on validation labels does change with them
    evaluate = _evaluator({"train": train, "val": val}, [])
    on_val = fit_dfr(train, val, evaluate, seed=1, n_fits=4)
    evaluate = _evaluator({"train": train, "val": shuffled}, [])
    on_shuffled = fit_dfr(train, shuffled, evaluate, seed=1, n_fits=4)
    assert not np.array_equal(on_val.heads["val_wga"].weight, on_shuffled.heads["val_wga"].weight)


@pytest.mark.torch
def test_runs_say_which_labels_dfr_was_fitted_on(tmp_path):
    pytest.importorskip("torch")
    from _cohort import make_cohort
    from napari_patchwise.cli.main import main
    from napari_patchwise.training.embed import EmbedSource, embed
    from napari_patchwise.training.methods import METHOD_LABELS

    manifest = make_cohort(tmp_path / "cohort")
    fast = ["--num-threads", "1", "--quiet"]
    run = tmp_path / "run"
    args = ["train", str(manifest), "--steps", "2", "--eval-every", "2", "--out", str(run)]
    assert main([*args, "--model", "smallcnn", "--patch-size", "16", *fast]) == 0
    store = tmp_path / "features.zarr"
    embed(manifest, store, EmbedSource(checkpoint=str(run)), device="cpu", chunk_rows=16)
    fitted = {}
    for method in ("dfr", "dfr-train"):
        out = tmp_path / method
        head = ["train", str(manifest), "--features", str(store), "--method", method]
        assert main([*head, "--out", str(out), *fast]) == 0
        fitted[method] = json.loads((out / "metrics.json").read_text())["fitted_on"]
        history = pd.read_csv(out / "history.csv")
        assert history["C"].tolist() == list(C_GRID)
        assert ("train_half_wga" in history) == (method == "dfr-train")
    assert fitted == {"dfr": "val labels", "dfr-train": "train"}
    assert (
        METHOD_LABELS["dfr"] == "DFR (val labels)" and METHOD_LABELS["dfr-train"] == "DFR (train)"
    )
