"""Comparing two runs (napari_patchwise.analysis.compare) and ``patchwise metrics --compare``.

Hand-built arrays with every outcome spelled out; per-group accuracy against
scikit-learn's ``accuracy_score`` on each group's patches.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from napari_patchwise.analysis.compare import (
    BOTH_RIGHT,
    BOTH_WRONG,
    NONE,
    ONLY_A,
    ONLY_B,
    ClassGrid,
    PairEvaluator,
    changed_patches,
    class_counts,
    compare_predictions,
    comparison_classes,
    paired_predictions,
)
from napari_patchwise.cli.main import main
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.groups import group_ids

# label, prob A, prob B and the class at threshold 0.5 (and at 0.75)
CASES = [
    (1, 0.9, 0.8, BOTH_RIGHT, BOTH_RIGHT),
    (1, 0.6, 0.9, BOTH_RIGHT, ONLY_B),  # at 0.75 A misses it
    (1, 0.2, 0.75, ONLY_B, ONLY_B),
    (1, 0.7, 0.3, ONLY_A, BOTH_WRONG),
    (1, 0.1, 0.4, BOTH_WRONG, BOTH_WRONG),
    (0, 0.1, 0.2, BOTH_RIGHT, BOTH_RIGHT),
    (0, 0.8, 0.3, ONLY_B, ONLY_B),
    (0, 0.4, 0.6, ONLY_A, BOTH_RIGHT),
    (0, 0.9, 0.7, BOTH_WRONG, ONLY_B),
    (0, 0.5, 0.5, BOTH_WRONG, BOTH_RIGHT),  # prob == threshold predicts tumor
    (-1, 0.5, 0.5, NONE, NONE),  # no label
    (1, np.nan, 0.9, NONE, NONE),  # A did not predict it
    (0, 0.3, np.nan, NONE, NONE),
]
LABEL = np.array([c[0] for c in CASES])
PA = np.array([c[1] for c in CASES])
PB = np.array([c[2] for c in CASES])


@pytest.mark.parametrize("threshold, column", [(0.5, 3), (0.75, 4)])
def test_classes_and_counts_by_hand(threshold, column):
    expected = np.array([c[column] for c in CASES])
    classes = comparison_classes(LABEL, PA, PB, threshold)
    assert classes.dtype == np.int8
    np.testing.assert_array_equal(classes, expected)
    counts = class_counts(classes)
    assert counts.tolist() == [int((expected == k).sum()) for k in range(4)]
    assert counts.sum() == 10


def test_classes_keep_the_raster_shape_and_accept_one_threshold_per_run():
    grid = comparison_classes(
        LABEL[:10].reshape(2, 5), PA[:10].reshape(2, 5), PB[:10].reshape(2, 5)
    )
    assert grid.shape == (2, 5)
    # A at 0.5, B at 0.75: patch 1 stays both right, patch 9 (0.5, 0.5) becomes only B right
    classes = comparison_classes(LABEL, PA, PB, 0.5, threshold_b=0.75)
    assert classes[[0, 1, 2, 3, 9]].tolist() == [BOTH_RIGHT, BOTH_RIGHT, ONLY_B, ONLY_A, ONLY_B]


def test_fixed_and_broken_lists_largest_change_first():
    classes = comparison_classes(LABEL, PA, PB, 0.5)
    fixed = changed_patches(classes, PA, PB, "fixed")
    broken = changed_patches(classes, PA, PB, "broken")
    assert fixed.tolist() == [2, 6]  # |0.75 - 0.2| before |0.3 - 0.8|
    assert broken.tolist() == [3, 7]  # 0.4 before 0.2
    with pytest.raises(PatchwiseError, match="unknown change"):
        changed_patches(classes, PA, PB, "both")


def random_run(rng, n):
    label = rng.integers(0, 2, n)
    ratio = rng.random(n)
    prob_a = rng.random(n)
    prob_b = np.clip(prob_a + rng.normal(0, 0.3, n), 0, 1)
    prob_a[rng.random(n) < 0.05] = np.nan
    return label, ratio, prob_a, prob_b


@pytest.mark.parametrize("tau, threshold", [(0.1, 0.5), (0.6, 0.3)])
def test_per_group_accuracy_matches_sklearn(rng, tau, threshold):
    label, ratio, prob_a, prob_b = random_run(rng, 3000)
    result = compare_predictions(
        label, ratio, prob_a, prob_b, tau=tau, threshold=threshold, names=("ERM", "GERNE")
    )
    scored = ~np.isnan(prob_a)
    assert result.evaluation_a.n == result.evaluation_b.n == int(scored.sum())
    assert result.counts.sum() == int(scored.sum())
    groups = group_ids(label, ratio, tau)
    for ev, prob in ((result.evaluation_a, prob_a), (result.evaluation_b, prob_b)):
        pred = (prob >= threshold).astype(int)
        for g in range(4):
            members = scored & (groups == g)
            assert ev.group_counts[g] == members.sum()
            assert ev.per_group_accuracy[g] == pytest.approx(
                accuracy_score(label[members], pred[members])
            )
        assert ev.bca == pytest.approx(balanced_accuracy_score(label[scored], pred[scored]))
    # both right + only A right = A's correct patches; likewise for B
    a_right = int(np.sum(result.evaluation_a.group_correct))
    b_right = int(np.sum(result.evaluation_b.group_correct))
    assert result.counts[BOTH_RIGHT] + result.counts[ONLY_A] == a_right
    assert result.counts[BOTH_RIGHT] + result.counts[ONLY_B] == b_right
    assert result.fixed.size == result.counts[ONLY_B]
    assert result.broken.size == result.counts[ONLY_A]
    summary = result.to_dict()
    json.dumps(summary, allow_nan=False)
    assert summary["names"] == ["ERM", "GERNE"]
    assert summary["classes"]["only B right"] == result.counts[ONLY_B]


def test_pair_evaluator_equals_the_one_shot_comparison(rng):
    label, ratio, prob_a, prob_b = random_run(rng, 2000)
    pair = PairEvaluator(label, ratio, prob_a, prob_b)
    for tau, threshold in ((0.1, 0.5), (0.1, 0.2), (0.7, 0.2), (0.7, 0.9)):
        ev_a, ev_b = pair.evaluate(tau, threshold)
        ref = compare_predictions(label, ratio, prob_a, prob_b, tau=tau, threshold=threshold)
        np.testing.assert_array_equal(ev_a.group_correct, ref.evaluation_a.group_correct)
        np.testing.assert_array_equal(ev_b.group_correct, ref.evaluation_b.group_correct)
        np.testing.assert_array_equal(ev_b.group_counts, ref.evaluation_b.group_counts)


def test_class_grid_follows_the_threshold_recomputing_only_what_can_change(rng):
    shape = (40, 50)
    label = rng.integers(0, 2, shape).astype(np.int8)
    label[rng.random(shape) < 0.1] = -1  # no patch
    prob_a = np.round(rng.random(shape), 2)  # ties with the thresholds below
    prob_b = np.round(rng.random(shape), 2)
    prob_b[rng.random(shape) < 0.05] = np.nan
    grid = ClassGrid(label, prob_a, prob_b, 0.5)
    values = grid.values
    for threshold in (0.5, 0.51, 0.49, 0.3, 0.3, 0.95, 0.0, 1.0, 0.62):
        recomputed = grid.move_to(threshold)
        expected = comparison_classes(label, prob_a, prob_b, threshold)
        np.testing.assert_array_equal(grid.values.astype(int) - 1, expected)
        assert grid.values is values  # in place: the layer's array
        assert grid.counts.tolist() == class_counts(expected).tolist()
        if threshold == 0.51:  # [0.50, 0.51): about 2 x 1% of the cells, not all of them
            assert 0 < recomputed < 0.1 * label.size
    assert grid.move_to(0.62) == 0


# -- pairing tables ----------------------------------------------------------------------
def tables(n=12):
    rows, cols = np.divmod(np.arange(n), 4)
    table = pd.DataFrame(
        {
            "slide": "s1",
            "row": rows,
            "col": cols,
            "label": np.arange(n) % 2,
            "tissue_ratio": np.linspace(0, 1, n),
        }
    )
    a = table[["slide", "row", "col"]].assign(prob=np.linspace(0.05, 0.95, n))
    b = a.sample(frac=1.0, random_state=0).assign(prob=lambda d: 1.0 - d["prob"])
    return table, a, b


def test_paired_predictions_aligns_b_by_key_not_by_order():
    table, a, b = tables()
    paired = paired_predictions(table, a, b)
    assert list(paired["label"]) == list(table["label"])
    np.testing.assert_allclose(paired["prob_a"], a["prob"])
    np.testing.assert_allclose(paired["prob_b"], 1.0 - a["prob"])
    # a complete table A holds the labels itself
    complete = table.assign(prob=a["prob"])
    again = paired_predictions(None, complete, b)
    np.testing.assert_allclose(again["prob_b"], paired["prob_b"])
    # predictions of part of the slide leave NaN elsewhere
    part = paired_predictions(table, a.iloc[:5], b[b["row"] * 4 + b["col"] < 5])
    assert part["prob_a"].isna().sum() == 7


def test_tables_covering_different_patches_say_how_many():
    table, a, b = tables()
    with pytest.raises(PatchwiseError, match=r"2 of A's 12 are not in B and 0 of B's 10") as err:
        paired_predictions(table, a, b.iloc[2:], sources=("erm.parquet", "gerne.parquet"))
    assert str(err.value).startswith("gerne.parquet: the two prediction tables cover different")
    assert "\n" not in str(err.value)
    other_slide = b.assign(slide="s2")
    with pytest.raises(PatchwiseError, match="12 of A's 12 are not in B and 12 of B's 12"):
        paired_predictions(table, a, other_slide)
    with pytest.raises(PatchwiseError, match="1 patches appear more than once"):
        paired_predictions(table, pd.concat([a, a.iloc[:1]]), b)
    with pytest.raises(PatchwiseError, match="not patches of the slide's table"):
        paired_predictions(table.iloc[:6], a, b)
    moved = b.assign(y=b["row"] * 64, x=b["col"] * 64 + (b["row"] == 1))
    with pytest.raises(PatchwiseError, match="4 of 12 predicted patches lie elsewhere"):
        paired_predictions(table.assign(y=table["row"] * 64, x=table["col"] * 64), a, moved)
    with pytest.raises(PatchwiseError, match="no 'label' column"):
        paired_predictions(None, a, b)
    with pytest.raises(PatchwiseError, match="no 'prob' column"):
        paired_predictions(table, a, b.drop(columns="prob"))


# -- the CLI -----------------------------------------------------------------------------
def test_cli_compare_text_and_json(tmp_path, capsys, rng):
    label, ratio, prob_a, prob_b = random_run(rng, 400)
    prob_a = np.nan_to_num(prob_a, nan=0.5)
    rows, cols = np.divmod(np.arange(400), 20)
    table = pd.DataFrame(
        {"slide": "s", "row": rows, "col": cols, "label": label, "tissue_ratio": ratio}
    )
    table.assign(prob=prob_a).to_parquet(tmp_path / "erm.parquet")
    table[["slide", "row", "col"]].assign(prob=prob_b).to_csv(tmp_path / "gerne.csv", index=False)
    args = ["metrics", str(tmp_path / "erm.parquet"), "--compare", str(tmp_path / "gerne.csv")]
    assert main([*args, "--names", "ERM", "GERNE", "--tau", "0.3"]) == 0
    out = capsys.readouterr().out
    ref = compare_predictions(label, ratio, prob_a, prob_b, tau=0.3)
    assert f"fixed by GERNE: {ref.fixed.size}  ·  broken by GERNE: {ref.broken.size}" in out
    assert f"only ERM right {ref.counts[ONLY_A]}" in out
    assert main([*args, "--json", "--threshold-b", "0.3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    ref = compare_predictions(label, ratio, prob_a, prob_b, threshold_b=0.3)
    assert summary["classes"] == dict(
        zip(
            ("both right", "both wrong", "only A right", "only B right"),
            ref.counts.tolist(),
            strict=True,
        )
    )
    assert summary["B"]["threshold"] == 0.3
    assert summary["B"]["wga"] == pytest.approx(ref.evaluation_b.wga)


def test_cli_compare_refuses_other_patches(tmp_path, capsys):
    table, a, b = tables()
    table.assign(prob=a["prob"]).to_parquet(tmp_path / "a.parquet")
    b.iloc[1:].to_parquet(tmp_path / "b.parquet")
    code = main(["metrics", str(tmp_path / "a.parquet"), "--compare", str(tmp_path / "b.parquet")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "1 of A's 12 are not in B" in err


# -- docs/compare.md ---------------------------------------------------------------------
DOC = Path(__file__).resolve().parents[2] / "docs" / "compare.md"


def doc_blocks(language: str) -> list[str]:
    """The fenced code blocks of docs/compare.md in ``language``."""
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def write_runs(folder: Path, rng, n: int = 300) -> None:
    """``erm/predictions.parquet`` (complete) and ``gerne/predictions.parquet`` (prob only)."""
    label, ratio, prob_a, prob_b = random_run(rng, n)
    rows, cols = np.divmod(np.arange(n), 20)
    table = pd.DataFrame(
        {"slide": "s", "row": rows, "col": cols, "label": label, "tissue_ratio": ratio}
    )
    for name in ("erm", "gerne"):
        (folder / name).mkdir()
    table.assign(prob=np.nan_to_num(prob_a, nan=0.5)).to_parquet(folder / "erm/predictions.parquet")
    table[["slide", "row", "col"]].assign(prob=prob_b).to_parquet(
        folder / "gerne/predictions.parquet"
    )


def test_docs_command_and_python_blocks_run_as_written(tmp_path, monkeypatch, capsys, rng):
    monkeypatch.chdir(tmp_path)
    write_runs(tmp_path, rng)
    (command,) = doc_blocks("bash")
    argv = shlex.split(command)
    assert argv[:2] == ["patchwise", "metrics"]
    assert main(argv[1:]) == 0
    out = capsys.readouterr().out
    assert "fixed by GERNE:" in out and "worst-class accuracy" in out
    scripts = [block for block in doc_blocks("python") if "widget" not in block]
    assert len(scripts) == 1
    exec(compile(scripts[0], str(DOC), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("[") and len(printed) >= 3
