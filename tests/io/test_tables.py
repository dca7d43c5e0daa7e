"""Patch-table I/O: round trips, atomicity, clear errors and the QuPath GeoJSON export."""

from __future__ import annotations

import gzip
import json

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from napari_patchwise.errors import PatchwiseError
from napari_patchwise.io.tables import read_table, validate_table, write_geojson, write_table
from napari_patchwise.patches.grid import TABLE_COLUMNS, PatchGrid, patch_stats
from napari_patchwise.slide import Slide


@pytest.fixture
def table():
    mask = np.zeros((8, 12), dtype=np.uint8)
    mask[:4, :4] = 2
    mask[4:, 4:10] = 1
    slide = Slide(levels=(da.zeros((1, 8, 12), chunks=4),), channel_names=("a",), name="s1")
    slide = slide.with_mask(da.from_array(mask, chunks=4))
    df = patch_stats(slide, PatchGrid(4))
    df["prob"] = np.linspace(0, 1, len(df))
    df["pred"] = (df["prob"] >= 0.5).astype(np.int8)
    return df


@pytest.mark.parametrize("name", ["t.parquet", "t.csv", "t.csv.gz"])
def test_round_trip_keeps_values_and_dtypes(tmp_path, table, name):
    path = write_table(table, tmp_path / name)
    back = read_table(path)
    pd.testing.assert_frame_equal(back, table)
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind
    if name.endswith(".gz"):
        with gzip.open(path, "rt") as fh:
            assert fh.readline().startswith("slide,row,col")


def test_numeric_slide_names_stay_strings(tmp_path, table):
    table["slide"] = "007"
    back = read_table(write_table(table, tmp_path / "t.csv"))
    assert back["slide"].tolist() == ["007"] * len(table)


def test_unknown_extension_and_missing_file_and_columns(tmp_path, table):
    with pytest.raises(PatchwiseError, match=r"t\.xlsx: unknown table format — name the table"):
        write_table(table, tmp_path / "t.xlsx")
    with pytest.raises(PatchwiseError, match="no such table"):
        read_table(tmp_path / "missing.parquet")
    write_table(table.drop(columns=["label"]), tmp_path / "nolabel.csv")
    with pytest.raises(PatchwiseError, match=r"lacks column.*label"):
        read_table(tmp_path / "nolabel.csv")
    with pytest.raises(PatchwiseError, match="n_tumor"):
        validate_table(table.drop(columns=["n_tumor"]), required=TABLE_COLUMNS)
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(PatchwiseError, match="cannot read"):
        read_table(tmp_path / "broken.parquet")


def test_failed_write_leaves_previous_table(tmp_path, table):
    target = tmp_path / "t.parquet"
    write_table(table, target)
    before = target.read_bytes()

    class Boom(pd.DataFrame):
        def to_parquet(self, *args, **kwargs):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_table(Boom(table), target)
    assert target.read_bytes() == before
    assert list(tmp_path.iterdir()) == [target]


def test_geojson_is_a_qupath_feature_collection(tmp_path, table):
    path = write_geojson(table, tmp_path / "grid.geojson", pixel_size=(0.5, 0.5), chunk_rows=2)
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection"
    assert len(doc["features"]) == len(table) == 6
    first = doc["features"][0]
    assert first["type"] == "Feature"
    ring = first["geometry"]["coordinates"][0]
    assert first["geometry"]["type"] == "Polygon"
    assert ring == [[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]  # closed, (x, y) order
    props = first["properties"]
    assert props["objectType"] == "tile"
    assert props["classification"]["name"] == "tumor"
    assert len(props["classification"]["color"]) == 3
    assert props["measurements"]["n_tumor"] == 16
    assert props["measurements"]["area_um2"] == 4.0
    assert "tumor_tissue_ratio" in props["measurements"]
    # Patch (1, 0) has no tissue: its NaN tumor_tissue_ratio is left out, not written as NaN.
    empty = doc["features"][3]["properties"]
    assert empty["classification"]["name"] == "non-tumor"
    assert "tumor_tissue_ratio" not in empty["measurements"]
    second_row = doc["features"][4]["geometry"]["coordinates"][0]
    assert second_row[0] == [4, 4] and second_row[2] == [8, 8]


def test_geojson_by_group_and_annotation(tmp_path, table):
    path = write_geojson(table, tmp_path / "g.json", tau=0.5, object_type="annotation")
    names = [
        f["properties"]["classification"]["name"] for f in json.loads(path.read_text())["features"]
    ]
    # tissue ratios: 1, 0, 0 / 0, 1, 0.5 ; labels 1, 0, 0 / 0, 0, 0
    assert names == ["tumor/large", "non-tumor/small", "non-tumor/small",
                     "non-tumor/small", "non-tumor/large", "non-tumor/large"]  # fmt: skip
    assert json.loads(path.read_text())["features"][0]["properties"]["objectType"] == "annotation"


def test_geojson_of_empty_table(tmp_path, table):
    doc = json.loads(write_geojson(table.iloc[:0], tmp_path / "e.geojson").read_text())
    assert doc == {"type": "FeatureCollection", "features": []}


# -- values are checked as read, before any cast -------------------------------------------


def _metrics_table(tmp_path, name="t.csv", **columns):
    data = {"label": [0, 1, 1], "tissue_ratio": [0.5, 0.5, 0.05], "prob": [0.1, 0.9, 0.6]}
    data.update(columns)
    path = tmp_path / name
    if name.endswith(".csv"):
        pd.DataFrame(data).to_csv(path, index=False)
    else:
        pd.DataFrame(data).to_parquet(path, index=False)
    return path


@pytest.mark.parametrize(
    "name, column, values, message",
    [
        # Cast to int8 first, 257 became 1 and 0.5 became 0 without a word.
        ("t.parquet", "label", [0, 1, 257], "column 'label' must be 0 or 1; found 257"),
        ("t.csv", "label", [0, 0.5, 1], "column 'label' must be 0 or 1; found 0.5"),
        ("t.csv", "label", [0, -1, 1], "column 'label' must be 0 or 1; found -1"),
        ("t.csv", "label", [0, "tumor", 1], "column 'label' must be 0 or 1; found 'tumor'"),
        ("t.parquet", "pred", [0, 1, 2], "column 'pred' must be 0 or 1"),
        ("t.parquet", "prob", [0.1, np.inf, 0.2], "column 'prob' must be a number in [0, 1]; found inf"),
        ("t.csv", "prob", [0.1, 1.5, 0.2], "column 'prob' must be a number in [0, 1]; found 1.5"),
        ("t.csv", "row", [0, 1.5, 2], "column 'row' must hold whole numbers; found 1.5"),
    ],
)  # fmt: skip
def test_bad_values_are_named_not_cast(tmp_path, name, column, values, message):
    path = _metrics_table(tmp_path, name, **{column: values})
    with pytest.raises(PatchwiseError) as info:
        read_table(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_dock_gaps_read_back_but_metrics_need_every_prediction(tmp_path, capsys):
    from napari_patchwise.cli.main import main

    # As the dock saves them: patches without a prediction have prob NaN and pred -1.
    path = _metrics_table(tmp_path, prob=[0.1, np.nan, 0.6], pred=[0, -1, 1])
    table = read_table(path)
    assert table["pred"].tolist() == [0, -1, 1] and np.isnan(table["prob"][1])
    assert main(["metrics", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"patchwise metrics: error: {path}: column 'prob' must be a number in [0, 1] for every "
        "patch; found nan (1 bad value(s)) — use a table written by 'patchwise stats' or "
        "'patchwise predict'."
    ]
    # -1 is a gap marker only where prob is empty.
    with pytest.raises(PatchwiseError, match="column 'pred' must be 0 or 1"):
        read_table(_metrics_table(tmp_path, "u.csv", pred=[0, -1, 1]))


def test_metrics_cli_rejects_a_label_of_257(tmp_path, capsys):
    from napari_patchwise.cli.main import main

    path = _metrics_table(tmp_path, "t.parquet", label=np.array([0, 1, 257], dtype=np.int64))
    assert main(["metrics", str(path), "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "column 'label' must be 0 or 1; found 257" in err[0]
