"""Any attribute as the spurious one, end to end: stats, metrics, ranking, train, report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_patchwise.analysis.attribute_ranking import rank_attributes, split_counts
from napari_patchwise.analysis.metrics import evaluate
from napari_patchwise.cli.main import main
from napari_patchwise.groups import group_ids, table_group_ids
from napari_patchwise.io.tables import read_table, write_table

CELL = 16


def write_planted_slide(folder, name, *, cells, seed):
    """Cells of tissue (or background); tumor cells are usually bright in channel "SHG".

    The label is the mask's; the planted attribute is mean_SHG: 85 % of tumor cells and
    15 % of non-tumor cells get bright SHG, the others dark. Tissue sizes vary
    independently of the label, so tissue_ratio carries no signal.
    """
    rng = np.random.default_rng(seed)
    size = cells * CELL
    image = np.zeros((3, size, size), dtype=np.uint8)
    mask = np.zeros((size, size), dtype=np.uint8)
    for r in range(cells):
        for c in range(cells):
            if rng.random() < 0.2:
                continue  # background cell
            tumor = rng.random() < 0.4
            extent = int(rng.integers(4, CELL + 1))
            ys, xs = r * CELL, c * CELL
            mask[ys : ys + extent, xs : xs + extent] = 2 if tumor else 1
            image[0, ys : ys + extent, xs : xs + extent] = rng.integers(80, 200, (extent, extent))
            bright = rng.random() < (0.85 if tumor else 0.15)
            level = (150, 250) if bright else (0, 100)  # equal spread: only the mean differs
            image[2, ys : ys + CELL, xs : xs + CELL] = rng.integers(*level, (CELL, CELL))
            image[1, ys : ys + CELL, xs : xs + CELL] = rng.integers(0, 255, (CELL, CELL))
    image_path, mask_path = folder / f"{name}.ome.tif", folder / f"{name}_mask.tif"
    tifffile.imwrite(
        image_path,
        image,
        ome=True,
        metadata={"axes": "CYX", "Channel": {"Name": ["CARS", "TPEF", "SHG"]}},
    )
    tifffile.imwrite(mask_path, mask)
    return image_path, mask_path


@pytest.fixture(scope="module")
def planted_table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    pairs = [write_planted_slide(folder, f"p{i}", cells=12, seed=i) for i in range(2)]
    out = folder / "patches.parquet"
    argv = ["stats", *(str(p[0]) for p in pairs), "--mask", *(str(p[1]) for p in pairs)]
    argv += ["--patch-size", str(CELL), "--attributes", "intensity,border,slide", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    return out


def test_stats_writes_the_attribute_columns(planted_table):
    table = read_table(planted_table)
    for column in ("mean_CARS", "std_CARS", "mean_TPEF", "std_TPEF", "mean_SHG", "std_SHG"):
        assert column in table and table[column].dtype == np.float64
    assert table.groupby("slide")["slide_index"].unique().to_dict() == {"p0": [0], "p1": [1]}
    frac = table["border_fraction"]
    assert frac.isna().equals(table["n_tissue"] == 0) and frac.dropna().between(0, 1).all()


def rule_predictions(table, column, threshold):
    """A "model" that predicts tumor from one attribute alone (what the ranking must find)."""
    rng = np.random.default_rng(0)
    high = table[column].to_numpy() >= threshold
    return np.clip(np.where(high, 0.8, 0.2) + rng.normal(0, 0.05, len(table)), 0, 1)


def test_rank_attributes_puts_the_planted_attribute_first(planted_table, tmp_path, capsys):
    table = read_table(planted_table)
    table["prob"] = rule_predictions(table, "mean_SHG", 125)
    path = tmp_path / "pred.parquet"
    write_table(table, path)
    assert main(["metrics", str(path), "--rank-attributes", "--json"]) == 0
    ranking = json.loads(capsys.readouterr().out)["ranking"]
    assert ranking[0]["attribute"] == "mean_SHG"
    assert ranking[0]["gap"] > 2 * ranking[1]["gap"]
    assert {r["attribute"] for r in ranking} >= {"tissue_ratio", "border_fraction", "slide_index"}
    assert "label" not in {r["attribute"] for r in ranking}  # never a candidate
    # the same cohort, a model relying on tissue size instead: tissue_ratio comes first
    table["prob"] = rule_predictions(table, "tissue_ratio", 0.5)
    write_table(table, path)
    assert main(["metrics", str(path), "--rank-attributes"]) == 0
    text = capsys.readouterr().out
    first = text.splitlines()[3].split()
    assert first[:2] == ["1", "tissue_ratio"], text


def test_ranking_counts_equal_the_metrics_at_the_chosen_threshold():
    rng = np.random.default_rng(5)
    n = 3000
    label = rng.integers(0, 2, n)
    values = np.round(rng.normal(size=n), 1)  # many ties
    values[::13] = np.nan
    prob = rng.random(n)
    table = pd.DataFrame({"label": label, "a": values, "prob": prob})
    right = (prob >= 0.5) == (label == 1)
    counts, correct, thresholds = split_counts(label, right, values)
    for k in (0, 7, len(thresholds) - 1):
        ev = evaluate(label, values, prob=prob, tau=thresholds[k])
        assert counts[:, k].tolist() == ev.group_counts.tolist()
        assert correct[:, k].tolist() == ev.group_correct.tolist()
    best = rank_attributes(table, ["a"], min_share=0.05)[0]
    ev = evaluate(label, values, prob=prob, tau=best.threshold)
    assert list(best.group_counts) == ev.group_counts.tolist()
    np.testing.assert_array_equal(best.group_accuracy, ev.per_group_accuracy)
    assert best.wga == ev.wga
    # every threshold whose groups are large enough has a gap no larger than the best's
    class_n = np.bincount(label, minlength=2)
    for t in np.unique(values[~np.isnan(values)])[1:]:
        e = evaluate(label, values, prob=prob, tau=t)
        if np.all(e.group_counts >= 0.05 * np.repeat(class_n, 2)):
            acc = e.per_group_accuracy.reshape(2, 2)
            gap = np.max(e.per_class_accuracy - acc.min(axis=1))
            assert gap <= best.gap + 1e-12


def test_metrics_attribute_flags(planted_table, capsys):
    table = read_table(planted_table)
    assert (
        main(
            [
                "metrics",
                str(planted_table),
                "--attribute",
                "mean_SHG",
                "--attribute-threshold",
                "125",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    expected = np.bincount(table_group_ids(table, "mean_SHG", 125), minlength=4)
    assert result["attribute"] == "mean_SHG" and result["tau"] == 125
    assert [g["n"] for g in result["groups"].values()] == expected.tolist()
    assert list(result["groups"]) == ["non-tumor/low", "non-tumor/high", "tumor/low", "tumor/high"]
    # tissue_ratio as the attribute is the tau grouping, exactly
    assert (
        main(
            [
                "metrics",
                str(planted_table),
                "--attribute",
                "tissue_ratio",
                "--attribute-threshold",
                "0.3",
                "--json",
            ]
        )
        == 0
    )
    by_attribute = json.loads(capsys.readouterr().out)
    assert main(["metrics", str(planted_table), "--tau", "0.3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == by_attribute


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--attribute", "mean_SHG"], "--attribute mean_SHG needs --attribute-threshold T"),
        (
            ["--attribute", "mean_XYZ", "--attribute-threshold", "1"],
            "no attribute column 'mean_XYZ'",
        ),
        (["--attribute", "slide", "--attribute-threshold", "1"], "'slide' is not numeric"),
        (
            ["--attribute", "mean_SHG", "--attribute-threshold", "1", "--tau", "0.2"],
            "--tau is the threshold of tissue_ratio",
        ),
        (["--tau", "0.2", "--attribute-threshold", "0.3"], "disagrees with --tau 0.2"),
        (["--rank-attributes"], "needs a run's predictions"),
        (["--rank-attributes", "--attribute", "mean_SHG"], "searches every attribute"),
    ],
)
def test_metrics_attribute_errors_are_one_line(planted_table, capsys, flags, message):
    assert main(["metrics", str(planted_table), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_stats_refuses_unknown_kinds(planted_table, capsys):
    folder = planted_table.parent
    argv = ["stats", str(folder / "p0.ome.tif"), "--mask", str(folder / "p0_mask.tif")]
    argv += [
        "--patch-size",
        "16",
        "--attributes",
        "intensity,colour",
        "--out",
        str(folder / "x.csv"),
    ]
    assert main(argv) == 2
    assert "unknown attribute kind 'colour'" in capsys.readouterr().err
    assert not (folder / "x.csv").exists()


# -- training with an attribute --------------------------------------------------------------
torch = pytest.importorskip("torch")

FAST = ["--model", "smallcnn", "--patch-size", "16", "--batch-size", "16", "--num-threads", "1"]
FAST += ["--steps", "4", "--eval-every", "2", "--quiet"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from _cohort import make_cohort

    return make_cohort(tmp_path_factory.mktemp("cohort"))


@pytest.mark.torch
def test_train_metrics_report_with_an_attribute(manifest, tmp_path, capsys):
    from napari_patchwise.io import open_slide
    from napari_patchwise.patches.attributes import patch_attributes
    from napari_patchwise.patches.grid import PatchGrid, patch_stats

    out = tmp_path / "run"
    attribute = ["--attribute", "mean_channel_0", "--attribute-threshold", "50"]
    assert main(["train", str(manifest), "--out", str(out), *FAST, *attribute]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["attribute"], config["attribute_threshold"]) == ("mean_channel_0", 50.0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["attribute"], metrics["attribute_threshold"]) == ("mean_channel_0", 50.0)
    # the test groups are those computed directly from the test slide's pixels
    folder = manifest.parent
    slide = open_slide(folder / "s3.ome.tif", mask=folder / "s3_mask.tif")
    table = patch_stats(slide, PatchGrid(16))
    table["mean_channel_0"] = patch_attributes(slide, PatchGrid(16), ["intensity"])[
        "mean_channel_0"
    ]
    expected = np.bincount(table_group_ids(table, "mean_channel_0", 50), minlength=4)
    groups = metrics["test"]["groups"]
    assert list(groups) == ["non-tumor/low", "non-tumor/high", "tumor/low", "tumor/high"]
    assert [g["n"] for g in groups.values()] == expected.tolist()
    assert expected[2] > 0 and expected[3] > 0  # small and large tumor cells on both sides
    predictions = read_table(out / "predictions.parquet")
    np.testing.assert_allclose(predictions["mean_channel_0"], table["mean_channel_0"])
    # metrics on the run's predictions give the run's own test metrics
    capsys.readouterr()
    args = ["metrics", str(out / "predictions.parquet"), *attribute, "--json"]
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["wga"] == pytest.approx(metrics["test"]["wga"], abs=1e-6)  # prob stored as float32
    # report: the run's own groups, and regrouped by tissue_ratio
    report = tmp_path / "r.html"
    assert main(["report", str(out), "--out", str(report)]) == 0
    text = report.read_text()
    assert "ERM [mean_channel_0]" in text and "<td>mean_channel_0 &gt;= 50</td>" in text
    assert (
        main(
            [
                "report",
                str(out),
                "--out",
                str(report),
                "--attribute",
                "tissue_ratio",
                "--tau",
                "0.3",
            ]
        )
        == 0
    )
    text = report.read_text()
    assert "<td>tau=0.3</td>" in text and "tumor/small" in text
    # predict --attributes writes a table ready for the ranking
    pred = tmp_path / "p.parquet"
    argv = ["predict", str(folder / "s3.ome.tif"), "--checkpoint", str(out), "--quiet"]
    argv += ["--mask", str(folder / "s3_mask.tif"), "--attributes", "intensity,border"]
    assert main([*argv, "--out", str(pred)]) == 0
    predicted = read_table(pred)
    expected_attrs = patch_attributes(slide, PatchGrid(16), ["intensity", "border"])
    pd.testing.assert_frame_equal(predicted[list(expected_attrs.columns)], expected_attrs)
    capsys.readouterr()
    assert main(["metrics", str(pred), "--rank-attributes", "--json"]) == 0
    ranked = {r["attribute"] for r in json.loads(capsys.readouterr().out)["ranking"]}
    assert ranked == {"tissue_ratio", *expected_attrs.columns}
    # a resume is the same recipe: another threshold is refused
    argv = ["train", str(manifest), "--out", str(out), *FAST, "--resume", "--steps", "6"]
    assert main([*argv, "--attribute", "mean_channel_0", "--attribute-threshold", "60"]) == 2
    assert "attribute_threshold 50.0 -> 60.0" in capsys.readouterr().err


@pytest.mark.torch
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--attribute", "border_fraction"],
            "--attribute border_fraction needs --attribute-threshold",
        ),
        (
            ["--attribute", "label", "--attribute-threshold", "1"],
            "'label' is not a per-patch attribute",
        ),
        (
            ["--attribute", "mean_CARS", "--attribute-threshold", "1"],
            "channels channel_0, channel_1",
        ),
        (["--attribute-threshold", "0.3"], "disagrees with --tau 0.1"),
        (
            ["--method", "gerne", "--attribute", "mean_channel_0", "--attribute-threshold", "50"],
            "group non-tumor/high has no training patches at mean_channel_0 >= 50",
        ),
    ],
)
def test_train_attribute_errors(manifest, tmp_path, capsys, flags, message):
    out = tmp_path / "r"
    assert main(["train", str(manifest), "--out", str(out), *FAST, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_tissue_ratio_training_groups_equal_the_tau_groups(manifest):
    """The training datasets' groups with the default attribute are the tau groups."""
    from napari_patchwise.settings import PatchSettings
    from napari_patchwise.training.data import load_cohort, make_dataset

    cohort = load_cohort(manifest, PatchSettings(patch_size=16))
    table = cohort.table("train")
    ds = make_dataset(cohort, "train", 0.3, [0, 0], [1, 1])
    expected = group_ids(table["label"], table["tissue_ratio"], 0.3)
    assert np.array_equal(ds.groups, expected) and ds.attribute == "tissue_ratio"
