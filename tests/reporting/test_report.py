"""Figure 1 numbers against hand counts, row selection, group tables, and a drawn figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _runs import make_run
from napari_patchwise.cli.main import main
from napari_patchwise.errors import PatchwiseError
from napari_patchwise.reporting.figures import (
    bin_indices,
    figure1,
    figure1_data,
    figure1_rows,
    group_count_table,
)


@pytest.fixture
def table():
    # Six tumor patches, four non-tumor patches; bins of width 0.25 (bins=4).
    return pd.DataFrame(
        {
            "label": [1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
            "tumor_ratio": [0.1, 0.3, 0.3, 0.6, 1.0, 0.0, 0, 0, 0, 0],
            "tumor_tissue_ratio": [0.2, 0.5, np.nan, 0.9, 1.0, 0.3, np.nan, np.nan, 0, np.nan],
            "tissue_ratio": [0.5, 0.6, 0.3, 0.7, 1.0, 0.05, 0.0, 0.24, 0.25, 0.99],
            "prob": [0.9, 0.2, 0.8, 0.7, 0.95, 0.1, 0.1, 0.6, 0.3, 0.7],
            "split": ["train"] * 5 + ["test"] * 5,
        }
    )


def test_bin_indices_edges():
    assert bin_indices(np.array([0, 0.2499, 0.25, 0.999, 1.0, np.nan]), 4).tolist() == [
        0, 0, 1, 3, 3, -1,
    ]  # fmt: skip


def test_figure1_counts_by_hand(table):
    data = figure1_data(table, tau=0.1, threshold=0.5, bins=4)
    tumor, ttr, tissue = data.panels
    # correct = prob >= 0.5 agrees with label: [T, F, T, T, T, F, T, F, T, F]
    # tumor_ratio | y=1 : bins 0:[0.1 T, 0.0 F] 1:[0.3 F, 0.3 T] 2:[0.6 T] 3:[1.0 T]
    assert tumor.correct.tolist() == [1, 1, 1, 1]
    assert tumor.incorrect.tolist() == [1, 1, 0, 0]
    assert tumor.n == 6
    np.testing.assert_allclose(tumor.fraction_correct + tumor.fraction_incorrect,
                               [2 / 6, 2 / 6, 1 / 6, 1 / 6])  # fmt: skip
    # tumor_tissue_ratio | y=1 (NaN dropped): 0.2 T (bin 0), 0.5 F (bin 2), 0.9 T, 1.0 T, 0.3 F (bin 1)
    assert ttr.correct.tolist() == [1, 0, 0, 2]
    assert ttr.incorrect.tolist() == [0, 1, 1, 0]
    assert ttr.n == 5
    # tissue_ratio | y=0: 0.0 T, 0.24 F, 0.25 T, 0.99 F
    assert tissue.correct.tolist() == [1, 1, 0, 0]
    assert tissue.incorrect.tolist() == [1, 0, 0, 1]
    assert data.has_predictions and data.tau == 0.1
    np.testing.assert_allclose(tumor.edges, [0, 0.25, 0.5, 0.75, 1])


def test_figure1_threshold_moves_patches_between_correct_and_incorrect(table):
    data = figure1_data(table, threshold=0.05, bins=4)  # everything predicted tumor
    assert data.panels[0].incorrect.sum() == 0
    assert data.panels[2].correct.sum() == 0


def test_figure1_without_predictions_counts_everything(table):
    data = figure1_data(table.drop(columns=["prob"]), bins=4)
    assert not data.has_predictions
    assert data.panels[0].correct.tolist() == [2, 2, 1, 1]
    assert data.panels[0].incorrect.sum() == 0


def test_figure1_rows_select_the_bin(table):
    assert figure1_rows(table, 0, 1, bins=4).tolist() == [1, 2]
    assert figure1_rows(table, 0, 1, bins=4, which="incorrect").tolist() == [1]
    assert figure1_rows(table, 2, 0, bins=4, which="correct").tolist() == [6]
    assert figure1_rows(table, 1, 2, bins=4).tolist() == [1]
    assert figure1_rows(table, 2, 2, bins=4).tolist() == []
    with pytest.raises(PatchwiseError):
        figure1_rows(table, 3, 0)
    with pytest.raises(PatchwiseError, match="no predictions"):
        figure1_rows(table.drop(columns=["prob"]), 0, 0, which="correct")
    # Every panel's bins partition the class (minus NaN) exactly.
    data = figure1_data(table, bins=4)
    for p, panel in enumerate(data.panels):
        sizes = [len(figure1_rows(table, p, b, bins=4)) for b in range(4)]
        assert sizes == panel.counts.tolist()


def test_group_count_table(table):
    counts = group_count_table(table, tau=0.1, by="split")
    # train: tumor ratios 0.5 0.6 0.3 0.7 1.0 -> tumor/large x5
    # test: tumor 0.05 -> tumor/small; non-tumor 0.0, 0.24, 0.25, 0.99 -> small 1, large 3
    assert counts.loc["train"].tolist() == [0, 0, 0, 5, 5]
    assert counts.loc["test"].tolist() == [1, 3, 1, 0, 5]
    assert counts.loc["total"].tolist() == [1, 3, 1, 5, 10]
    assert list(counts.columns)[-1] == "total"
    single = group_count_table(table.drop(columns=["split"]), tau=0.1)
    assert single.index.tolist() == ["all"]
    assert single.loc["all"].tolist() == [1, 3, 1, 5, 10]


def test_figure_has_three_panels_with_stacked_bars_and_tau(table, tmp_path):
    fig = figure1(table, tau=0.1, bins=4, title="test")
    axes = fig.axes
    assert len(axes) == 3
    # Two bar containers (correct, incorrect) of 4 bars each on every panel.
    assert all(len(ax.patches) == 8 for ax in axes)
    tau_lines = [line for line in axes[2].lines if list(line.get_xdata()) == [0.1, 0.1]]
    assert len(tau_lines) == 1
    out = tmp_path / "f.png"
    fig.savefig(out, dpi=50)
    import matplotlib.image

    pixels = matplotlib.image.imread(out)
    # Both bar colours appear: the figure really drew correct and incorrect bars.
    rgb = (pixels[..., :3] * 255).round().astype(int).reshape(-1, 3)
    colours = {tuple(c) for c in np.unique(rgb, axis=0)}
    from napari_patchwise.palette import CORRECT_COLOR, INCORRECT_COLOR, rgb255

    assert rgb255(CORRECT_COLOR) in colours and rgb255(INCORRECT_COLOR) in colours


def test_missing_columns_is_a_clear_error(table):
    with pytest.raises(PatchwiseError, match="tumor_tissue_ratio"):
        figure1_data(table.drop(columns=["tumor_tissue_ratio"]))


# -- the HTML run report: malformed run files are one-line errors naming the file ---------------


def _corrupt(run, name, content):
    path = run / name
    if content is None:
        path.unlink()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("config.json", "{not json", "cannot read the JSON"),
        ("config.json", "[1, 2]", "holds a JSON list, not an object"),
        ("config.json", '{"method": "erm", "seed": 0}', "lacks tau"),
        ("config.json", '{"method": "erm", "tau": "x", "seed": 0}', "'tau' is 'x', not a number"),
        ("metrics.json", b"\xff\xfe\x00garbage", "cannot read the JSON"),
        ("metrics.json", '{"selected_by": "val_wga"}', "lacks by_selection"),
        (
            "metrics.json",
            '{"selected_by": "val_wga", "by_selection": {"val_wga": {"step": 1, "test": {"wga": 1}}}}',
            "'by_selection.val_wga.test' is incomplete",
        ),
        ("history.csv", "step,loss\n1,0.5\n", "lacks column(s) val_wga, val_bca"),
        ("history.csv", b"\x00\x01\x02\xff", "cannot read the CSV"),
        ("history.csv", "step,val_wga,val_bca\n1,a,b\n", "column 'val_wga' is not numeric"),
        ("predictions.parquet", b"PAR1 truncated", "cannot read the parquet table"),
        ("predictions.parquet", None, "run has test metrics but no predictions.parquet"),
    ],
)  # fmt: skip
def test_report_names_the_malformed_run_file(tmp_path, capsys, name, content, message):
    run = make_run(tmp_path / "run")
    out = tmp_path / "report.html"
    assert main(["report", str(run), "--out", str(out)]) == 0  # the intact run reports
    capsys.readouterr()
    path = _corrupt(run, name, content)
    assert main(["report", str(run), "--out", str(tmp_path / "again.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no traceback
    named = run if content is None else path
    assert err[0].startswith(f"patchwise report: error: {named}: ") and message in err[0]
    assert not (tmp_path / "again.html").exists()


def test_report_names_predictions_with_bad_values(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    pd.DataFrame(
        {"label": [0, 7], "tumor_ratio": [0, 1.0], "tumor_tissue_ratio": [0, 1.0],
         "tissue_ratio": [0.1, 0.9], "prob": [0.1, 0.9]}
    ).to_parquet(run / "predictions.parquet")  # fmt: skip
    assert main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"patchwise report: error: {run / 'predictions.parquet'}: column 'label' must be 0 or 1; "
        "found 7 (1 bad value(s)) — use a table written by 'patchwise stats' or "
        "'patchwise predict'."
    ]
