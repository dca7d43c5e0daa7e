"""Slide-level bootstrap intervals (intervals.py) against a plain brute-force bootstrap."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score

from napari_patchwise.analysis import intervals
from napari_patchwise.analysis.metrics import evaluate, evaluation_from_counts
from napari_patchwise.errors import PatchwiseError


def _table(n_slides: int = 5, per_slide: int = 60, seed: int = 0) -> pd.DataFrame:
    """Slides of different difficulty: each slide's predictions flip with its own rate."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(n_slides):
        label = rng.integers(0, 2, per_slide)
        tissue = rng.uniform(0, 1, per_slide)
        flip = rng.uniform(0, 1, per_slide) < rng.uniform(0.05, 0.45)
        prob = np.where(
            label ^ flip, rng.uniform(0.55, 1, per_slide), rng.uniform(0, 0.45, per_slide)
        )
        parts.append(
            pd.DataFrame({"slide": f"s{s}", "label": label, "tissue_ratio": tissue, "prob": prob})
        )
    return pd.concat(parts, ignore_index=True)


def brute_force(table: pd.DataFrame, picks: np.ndarray, tau: float = 0.1):
    """Concatenate the drawn slides of each draw; WGA by metrics.evaluate, BCA by sklearn."""
    names = sorted(table["slide"].unique())
    columns = ("label", "tissue_ratio", "prob")
    by_slide = [
        [table.loc[table["slide"] == name, c].to_numpy() for c in columns] for name in names
    ]
    wga, bca = [], []
    for row in picks:
        label, tissue, prob = (np.concatenate([by_slide[i][k] for i in row]) for k in range(3))
        wga.append(evaluate(label, tissue, prob=prob, tau=tau).wga)
        bca.append(balanced_accuracy_score(label, (prob >= 0.5).astype(int)))
    return np.array(wga), np.array(bca)


def _ci(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def test_same_draws_give_exactly_the_brute_force_interval():
    table = _table()
    counts = intervals.table_slide_counts(table)
    n_boot = 300
    rng = np.random.default_rng(7)
    picks = rng.integers(0, counts.n_slides, size=(n_boot, counts.n_slides))
    wga, bca = brute_force(table, picks)
    result = intervals.slide_bootstrap_ci(counts, n_boot=n_boot, seed=7)
    assert (result.wga.low, result.wga.high) == pytest.approx(_ci(wga), abs=1e-12)
    assert (result.bca.low, result.bca.high) == pytest.approx(_ci(bca), abs=1e-12)
    whole = evaluate(table["label"], table["tissue_ratio"], prob=table["prob"])
    assert result.wga.estimate == pytest.approx(whole.wga)
    assert result.bca.estimate == pytest.approx(whole.bca)
    assert result.wga.n_slides == 5 and result.wga.n_boot == n_boot


def test_interval_matches_an_independent_brute_force_within_monte_carlo_error():
    table = _table(n_slides=8, per_slide=40, seed=3)
    counts = intervals.table_slide_counts(table)
    picks = np.random.default_rng(123).integers(0, 8, size=(1000, 8))
    wga, bca = brute_force(table, picks)
    result = intervals.slide_bootstrap_ci(counts, n_boot=2000, seed=0)
    # percentiles of 1,000-2,000 draws: Monte-Carlo error well under 0.03 here
    assert result.wga.low == pytest.approx(_ci(wga)[0], abs=0.03)
    assert result.wga.high == pytest.approx(_ci(wga)[1], abs=0.03)
    assert result.bca.low == pytest.approx(_ci(bca)[0], abs=0.03)
    assert result.bca.high == pytest.approx(_ci(bca)[1], abs=0.03)


def test_draws_are_seeded_and_sum_to_the_slide_count():
    a = intervals.bootstrap_draws(4, n_boot=50, seed=1)
    assert a.shape == (50, 4) and (a.sum(axis=1) == 4).all()
    assert (a == intervals.bootstrap_draws(4, n_boot=50, seed=1)).all()
    assert not (a == intervals.bootstrap_draws(4, n_boot=50, seed=2)).all()


def test_metrics_of_counts_follow_evaluation_from_counts():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 4, size=(400, 4))  # many empty groups and absent classes
    correct = (counts * rng.uniform(0, 1, size=counts.shape)).astype(np.int64)
    wga, bca = intervals.metrics_of_counts(counts, correct)
    for i in range(len(counts)):
        ev = evaluation_from_counts(
            counts[i], correct[i], tau=0.1, threshold=0.5, ece=np.nan, has_predictions=True
        )
        np.testing.assert_equal([wga[i], bca[i]], [ev.wga, ev.bca])


def test_one_slide_is_refused_with_one_line():
    table = _table(n_slides=1)
    counts = intervals.table_slide_counts(table)
    with pytest.raises(PatchwiseError, match="at least 2 test slides") as info:
        intervals.slide_bootstrap_ci(counts, path="t.parquet")
    assert "\n" not in str(info.value) and "t.parquet" in str(info.value)
    with pytest.raises(PatchwiseError, match="at least 2"):
        intervals.paired_wga_difference_ci(counts, counts)


def test_paired_difference_uses_the_same_slides_for_both_runs():
    table = _table(n_slides=6, seed=5)
    better = table.assign(prob=np.where(table["label"] == 1, 0.9, 0.1))  # every patch right
    a = intervals.table_slide_counts(table)
    b = intervals.table_slide_counts(better)
    n_boot = 200
    picks = np.random.default_rng(4).integers(0, 6, size=(n_boot, 6))
    wga_a, _ = brute_force(table, picks)
    wga_b, _ = brute_force(better, picks)
    diff = intervals.paired_wga_difference_ci(a, b, n_boot=n_boot, seed=4)
    assert (diff.low, diff.high) == pytest.approx(_ci(wga_b - wga_a), abs=1e-12)
    assert diff.estimate == pytest.approx(1.0 - intervals.slide_bootstrap_ci(a).wga.estimate)
    # the same run against itself: zero difference in every draw
    same = intervals.paired_wga_difference_ci(a, a, n_boot=50)
    assert (same.low, same.high, same.estimate) == (0.0, 0.0, 0.0)
    other = intervals.table_slide_counts(_table(n_slides=5))
    with pytest.raises(PatchwiseError, match="different slides"):
        intervals.paired_wga_difference_ci(a, other)


def test_seed_average_resamples_the_slides_once_for_all_runs():
    runs = [_table(n_slides=4, seed=s).assign(slide=lambda t: t["slide"]) for s in (1, 2, 3)]
    # the same slides, different predictions (one table per seed)
    runs = [r.assign(slide=[f"s{i // 60}" for i in range(len(r))]) for r in runs]
    counts = [intervals.table_slide_counts(r) for r in runs]
    n_boot = 200
    picks = np.random.default_rng(9).integers(0, 4, size=(n_boot, 4))
    mean_wga = np.mean([brute_force(r, picks)[0] for r in runs], axis=0)
    result = intervals.seed_averaged_ci(counts, n_boot=n_boot, seed=9)
    assert (result.wga.low, result.wga.high) == pytest.approx(_ci(mean_wga), abs=1e-12)
    singles = [intervals.slide_bootstrap_ci(c).wga.estimate for c in counts]
    assert result.wga.estimate == pytest.approx(np.mean(singles))


def test_table_without_slides_or_predictions_is_refused():
    table = _table(n_slides=2)
    with pytest.raises(PatchwiseError, match="no 'slide' column"):
        intervals.table_slide_counts(table.drop(columns="slide"))
    with pytest.raises(PatchwiseError, match="no 'prob' or 'pred'"):
        intervals.table_slide_counts(table.drop(columns="prob"))


def test_two_thousand_draws_over_a_hundred_slides_are_fast():
    import time

    table = _table(n_slides=100, per_slide=200, seed=2)
    counts = intervals.table_slide_counts(table)
    start = time.perf_counter()
    result = intervals.slide_bootstrap_ci(counts)
    assert time.perf_counter() - start < 1.0
    assert result.wga.low <= result.wga.estimate <= result.wga.high
    assert json.dumps(result.wga.as_list())


# -- the command ---------------------------------------------------------------------------
def _run_cli(argv, capsys):
    from napari_patchwise.cli.main import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_metrics_ci_equals_the_brute_force_bootstrap(tmp_path, capsys):
    table = _table(n_slides=3, per_slide=80, seed=11)
    path = tmp_path / "pred.parquet"
    table.to_parquet(path, index=False)
    code, out, _ = _run_cli(
        ["metrics", path, "--ci", "--json", "--n-boot", 400, "--ci-seed", 5], capsys
    )
    assert code == 0
    result = json.loads(out)
    picks = np.random.default_rng(5).integers(0, 3, size=(400, 3))
    wga, bca = brute_force(table, picks)
    assert result["wga_ci"] == pytest.approx(list(_ci(wga)), abs=1e-12)
    assert result["bca_ci"] == pytest.approx(list(_ci(bca)), abs=1e-12)
    assert result["ci"]["n_slides"] == 3 and result["ci"]["n_boot"] == 400
    # another seed and the default 2,000 draws: the same interval within Monte-Carlo error
    code, out, _ = _run_cli(["metrics", path, "--ci", "--json"], capsys)
    assert json.loads(out)["wga_ci"] == pytest.approx(list(_ci(wga)), abs=0.03)
    code, out, _ = _run_cli(["metrics", path, "--ci", "--n-boot", 400, "--ci-seed", 5], capsys)
    assert code == 0
    assert f"[{100 * _ci(wga)[0]:.2f}%, {100 * _ci(wga)[1]:.2f}%]" in out
    assert "3 slides, 400 draws" in out


def test_metrics_ci_refuses_one_slide_with_one_line(tmp_path, capsys):
    path = tmp_path / "one.parquet"
    _table(n_slides=1).to_parquet(path, index=False)
    code, out, err = _run_cli(["metrics", path, "--ci"], capsys)
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "at least 2 test slides" in err and str(path) in err
    code, _, err = _run_cli(["metrics", path, "--n-boot", 10], capsys)
    assert code != 0 and "--ci only" in err


def test_metrics_compare_ci_gives_the_paired_wga_difference(tmp_path, capsys):
    table = _table(n_slides=4, per_slide=50, seed=8)
    table["row"] = np.arange(len(table)) % 50
    table["col"] = np.arange(len(table)) // 50
    better = table.assign(prob=np.where(table["label"] == 1, 0.8, 0.3))
    path_a, path_b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    table.to_parquet(path_a, index=False)
    better[["slide", "row", "col", "prob"]].to_parquet(path_b, index=False)
    argv = ["metrics", path_a, "--compare", path_b, "--ci", "--n-boot", 300, "--ci-seed", 2]
    code, out, _ = _run_cli([*argv, "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    picks = np.random.default_rng(2).integers(0, 4, size=(300, 4))
    diff = brute_force(better, picks)[0] - brute_force(table, picks)[0]
    assert result["wga_diff_ci"] == pytest.approx(list(_ci(diff)), abs=1e-12)
    code, out, _ = _run_cli(argv, capsys)
    assert "paired slide-bootstrap interval" in out


# -- empty and tiny groups -----------------------------------------------------------------
def test_group_size_warnings_name_empty_and_tiny_groups():
    from napari_patchwise.analysis.metrics import group_size_warnings

    lines = group_size_warnings([1, 2, 0, 30], min_size=20)
    assert lines == [
        "group tumor/small is empty: WGA is the minimum over the 3 other groups",
        "group non-tumor/small has only 1 patch (< 20): its accuracy, and WGA if it is the "
        "worst, rests on few patches",
        "group non-tumor/large has only 2 patches (< 20): its accuracy, and WGA if it is the "
        "worst, rests on few patches",
    ]
    assert group_size_warnings([20, 20, 20, 20]) == []
    assert group_size_warnings([1, 2, 0, 3], min_size=0)[1:] == []


def test_metrics_warns_about_empty_and_tiny_groups(tmp_path, capsys):
    # counts [1, 2, 0, 3]: no small tumor patch
    table = pd.DataFrame(
        {
            "slide": ["a"] * 6,
            "label": [0, 0, 0, 1, 1, 1],
            "tissue_ratio": [0.05, 0.5, 0.5, 0.5, 0.5, 0.5],
            "prob": [0.1, 0.2, 0.9, 0.8, 0.7, 0.1],
        }
    )
    path = tmp_path / "t.csv"
    table.to_csv(path, index=False)
    code, out, _ = _run_cli(["metrics", path], capsys)
    assert code == 0
    assert "warning: group tumor/small is empty: WGA is the minimum over the 3 other groups" in out
    assert "warning: group tumor/large has only 3 patches (< 20)" in out
    code, out, _ = _run_cli(["metrics", path, "--json", "--min-group-size", 3], capsys)
    result = json.loads(out)
    assert [g["n"] for g in result["groups"].values()] == [1, 2, 0, 3]
    assert len(result["warnings"]) == 3  # empty, 1 and 2 patches; 3 is not below 3
    code, out, _ = _run_cli(["metrics", path, "--min-group-size", 0], capsys)
    assert out.count("warning:") == 1
