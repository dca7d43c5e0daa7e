"""Patch-table I/O: round trips, atomicity, clear errors and the QuPath GeoJSON export."""

from __future__ import annotations

import gzip
import json

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from napari_patchwise.errors import PatchwiseError
from napari_patchwise.grid import TABLE_COLUMNS, PatchGrid, patch_stats
from napari_patchwise.io.tables import read_table, validate_table, write_geojson, write_table
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
    with pytest.raises(PatchwiseError, match="lacks column.*label"):
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
