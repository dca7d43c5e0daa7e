"""The attribute ranking's noise floor (a seeded permutation null per attribute) and the
training split's tumor-rate gap beside the model's gap."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_patchwise.analysis.attribute_ranking import (
    NOISE_QUANTILE,
    best_threshold,
    noise_floors,
    rank_attributes,
)
from napari_patchwise.cli.main import main
from napari_patchwise.io.tables import write_table


def _table(n=2000, seed=2):
    """A model that errs 8 points more often on one side of a binary attribute, and a
    random attribute with a distinct value per patch that the model ignores."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    planted = rng.integers(0, 2, n).astype(float)  # two values
    noise = rng.random(n)  # n distinct values, unrelated to anything
    wrong = rng.random(n) < np.where(planted == 1, 0.16, 0.08)
    pred = np.where(wrong, 1 - label, label)
    return pd.DataFrame({"label": label, "planted": planted, "noise": noise, "pred": pred})


def test_a_many_valued_random_attribute_is_not_above_its_floor_a_planted_one_is():
    table = _table()
    old = rank_attributes(table, ["planted", "noise"], permutations=0)
    # the largest gap alone favours the attribute with many values: the old ranking's order
    assert [r.attribute for r in old] == ["noise", "planted"]
    ranks = {r.attribute: r for r in rank_attributes(table, ["planted", "noise"], seed=1)}
    noise, planted = ranks["noise"], ranks["planted"]
    assert noise.gap > planted.gap  # a larger raw gap, found by chance...
    assert not noise.above_noise and noise.gap <= noise.noise_floor  # ...and below its floor
    assert planted.above_noise and planted.gap > planted.noise_floor
    assert planted.noise_floor < noise.noise_floor  # two values: few chances to find a gap
    assert noise.permutations == planted.permutations == 100
    ranked = rank_attributes(table, ["planted", "noise"], seed=1)
    assert [r.attribute for r in ranked] == ["planted", "noise"]  # by excess over the floor


def test_the_floor_is_the_quantile_of_the_largest_gap_over_seeded_shuffles():
    table = _table(600, seed=3)
    label, right = table["label"].to_numpy(), (table["pred"] == table["label"]).to_numpy()
    values = np.round(table["noise"].to_numpy(), 2)  # ties too
    values[::17] = np.nan
    floor = noise_floors(label, right, [values], 0.02, 40, seed=7)[0]
    # by hand: each shuffle puts the (label, correct) pairs in a random order along the
    # attribute's sorted values, i.e. the attribute shuffled within the table
    rng = np.random.default_rng(7)
    code = (2 * label + right).astype(np.int8)
    sorted_values = np.sort(np.where(np.isnan(values), -np.inf, values))
    sorted_values[np.isinf(sorted_values)] = np.nan
    maxima = []
    for _ in range(40):
        rng.shuffle(code)  # each shuffle of the last shuffle: uniform and independent
        r = best_threshold(code >= 2, (code & 1).astype(bool), sorted_values, "a", 0.02)
        maxima.append(r.gap)
    assert floor == pytest.approx(np.quantile(maxima, NOISE_QUANTILE), abs=1e-12)
    # seeded: the same floor again; one attribute's floor does not depend on the others
    again = noise_floors(label, right, [table["planted"].to_numpy(), values], 0.02, 40, seed=7)
    assert again[1] == floor


def test_the_training_tumor_rate_gap_is_computed_by_hand():
    table = _table()
    rng = np.random.default_rng(4)
    train = pd.DataFrame({"planted": rng.integers(0, 2, 5000).astype(float)})
    train["label"] = (rng.random(5000) < np.where(train["planted"] == 1, 0.7, 0.3)).astype(int)
    ranks = {r.attribute: r for r in rank_attributes(table, ["planted", "noise"], train=train)}
    high = train["planted"] >= ranks["planted"].threshold
    expected = train["label"][high].mean() - train["label"][~high].mean()
    assert ranks["planted"].train_tumor_rate_gap == pytest.approx(expected, abs=1e-12)
    assert np.isnan(ranks["noise"].train_tumor_rate_gap)  # not a column of the training table


def test_cli_reports_the_floor_and_the_training_association(tmp_path, capsys):
    table = _table()
    path, train_path = tmp_path / "pred.parquet", tmp_path / "train.parquet"
    write_table(table, path)
    write_table(table.drop(columns="pred"), train_path)
    args = ["metrics", str(path), "--rank-attributes", "--permutations", "50"]
    assert main([*args, "--train-table", str(train_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["permutations"] == 50 and out["noise_quantile"] == NOISE_QUANTILE
    ranking = {r["attribute"]: r for r in out["ranking"]}
    assert ranking["planted"]["above_noise"] and not ranking["noise"]["above_noise"]
    assert ranking["planted"]["noise_floor"] < ranking["planted"]["gap"]
    assert ranking["planted"]["train_tumor_rate_gap"] is not None
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "floor" in text.splitlines()[2] and "yes" in text.splitlines()[3]
    # the ranking's flags alone are refused
    assert main(["metrics", str(path), "--permutations", "5"]) == 2
    assert "--permutations applies to --rank-attributes only" in capsys.readouterr().err
    missing = ["metrics", str(path), "--rank-attributes", "--train-table", str(tmp_path / "x.csv")]
    assert main(missing) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x.csv" in err[0]


@pytest.mark.gui
def test_the_debias_tab_shows_the_noise_floor(make_napari_viewer, qtbot):
    pytest.importorskip("torch")
    from napari_patchwise._napari.debias_tab.ranking_table import COLUMNS
    from napari_patchwise._napari.dock.widget import PatchwiseWidget

    viewer = make_napari_viewer()
    widget = PatchwiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Patchwise")
    ranking = widget.debias.ranking
    ranks = rank_attributes(_table(), ["planted", "noise"], seed=1)
    ranking.show_ranks(ranks)
    header = [ranking.table.horizontalHeaderItem(j).text() for j in range(len(COLUMNS))]
    assert header[:5] == ["attribute", "threshold", "gap", "noise floor", "above noise"]
    rows = {
        ranking.table.item(i, 0).text(): [ranking.table.item(i, j).text() for j in range(5)]
        for i in range(ranking.table.rowCount())
    }
    for r in ranks:
        assert rows[r.attribute][3] == f"{100 * r.noise_floor:.1f}%"
    assert rows["planted"][4] == "yes" and rows["noise"][4] == "no"
    assert "1 above their noise floor" in ranking.label.text()
