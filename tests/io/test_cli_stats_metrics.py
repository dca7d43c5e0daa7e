"""`patchwise stats` and `patchwise metrics` end to end on small TIFF files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_patchwise.cli.main import main
from napari_patchwise.io.tables import read_table, write_table
from napari_patchwise.patches.grid import TABLE_COLUMNS


def _write_pair(folder, name, seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((64, 96), dtype=np.uint8)
    mask[8:40, 10:70] = 1
    mask[20:30, 30:50] = 2
    mask[50:60, 80:90] = 2
    image = rng.integers(0, 255, size=(3, 64, 96), dtype=np.uint8)
    image_path, mask_path = folder / f"{name}.tif", folder / f"{name}_mask.tif"
    tifffile.imwrite(image_path, image, photometric="minisblack", tile=(32, 32))
    tifffile.imwrite(mask_path, mask)
    return image_path, mask_path, mask


@pytest.fixture
def pairs(tmp_path):
    return [_write_pair(tmp_path, f"s{i}", i) for i in range(2)]


def test_stats_two_slides_exact_counts(tmp_path, pairs, capsys):
    out = tmp_path / "patches.parquet"
    images = [str(p[0]) for p in pairs]
    masks = [str(p[1]) for p in pairs]
    rc = main(
        ["stats", *images, "--mask", *masks, "--patch-size", "16", "--out", str(out), "--quiet"]
    )
    assert rc == 0
    assert "48 patches from 2 slides" in capsys.readouterr().out
    table = read_table(out)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert table["slide"].unique().tolist() == ["s0", "s1"]
    mask = pairs[0][2]
    s0 = table[table["slide"] == "s0"]
    expected_tumor = (mask == 2).reshape(4, 16, 6, 16).sum(axis=(1, 3)).ravel()
    expected_healthy = (mask == 1).reshape(4, 16, 6, 16).sum(axis=(1, 3)).ravel()
    assert s0["n_tumor"].tolist() == expected_tumor.tolist()
    assert s0["n_healthy"].tolist() == expected_healthy.tolist()


def test_metrics_text_and_json(tmp_path, pairs, capsys):
    out = tmp_path / "p.csv"
    main(["stats", str(pairs[0][0]), "--mask", str(pairs[0][1]), "--patch-size", "16",
          "--out", str(out), "--quiet"])  # fmt: skip
    capsys.readouterr()
    assert main(["metrics", str(out)]) == 0
    text = capsys.readouterr().out
    assert "counts only" in text and "tumor/large" in text and "WGA" not in text
    table = read_table(out)
    table["prob"] = np.where(table["tissue_ratio"] > 0.3, 0.9, 0.1)  # a tissue-size rule
    write_table(table, out)
    assert main(["metrics", str(out), "--tau", "0.2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    pred = (table["prob"] >= 0.5).astype(int)
    assert result["accuracy"] == pytest.approx((pred == table["label"]).mean())
    assert set(result["groups"]) == {
        "non-tumor/small",
        "non-tumor/large",
        "tumor/small",
        "tumor/large",
    }
    assert main(["metrics", str(out), "--threshold", "0.95"]) == 0
    text = capsys.readouterr().out
    assert "worst-group accuracy" in text and "balanced-class accuracy" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["stats", "{img}", "--patch-size", "16", "--out", "{tmp}/t.parquet"], "mask"),
        (
            ["stats", "{img}", "--mask", "{mask}", "--patch-size", "16", "--out", "{tmp}/t.xlsx"],
            "unknown table format",
        ),
        (
            ["stats", "{img}", "--mask", "{mask}", "--patch-size", "0", "--out", "{tmp}/t.csv"],
            "argument --patch-size: 0 is too small",
        ),
        (
            [
                "stats",
                "{img}",
                "--mask",
                "{mask}",
                "{mask}",
                "--patch-size",
                "8",
                "--out",
                "{tmp}/t.csv",
            ],
            "1 image(s) but 2 mask(s)",
        ),
        (
            [
                "stats",
                "{img}",
                "--mask",
                "{mask}",
                "--patch-size",
                "8",
                "--tissue",
                "intensity",
                "--channels",
                "nope",
                "--out",
                "{tmp}/t.csv",
            ],
            "no channel named",
        ),
        (["metrics", "{tmp}/missing.parquet"], "no such table"),
        (["metrics", "{mask}"], "unknown table format"),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path, pairs, capsys, argv, message):
    subs = {"img": str(pairs[0][0]), "mask": str(pairs[0][1]), "tmp": str(tmp_path)}
    quiet = ["--quiet"] if argv[0] == "stats" else []
    rc = main([a.format(**subs) for a in argv] + quiet)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("patchwise ")
    assert message in err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("t.*"))  # nothing half-written


def test_manifest_keeps_slide_ids_and_splits(tmp_path, pairs):
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(
        "image,mask,split,slide\n"
        f"{pairs[0][0].name},{pairs[0][1].name},train,patient-a\n"
        f"{pairs[1][0].name},{pairs[1][1].name},val,patient-b\n"
    )
    out = tmp_path / "cohort.parquet"
    assert main(["stats", str(manifest), "--patch-size", "32", "--out", str(out), "--quiet"]) == 0
    table = read_table(out)
    assert table.groupby("slide")["split"].first().to_dict() == {
        "patient-a": "train",
        "patient-b": "val",
    }
    assert len(table) == 2 * 2 * 3


def test_manifest_of_test_slides_only_is_enough_for_stats(tmp_path, pairs):
    # Patch statistics describe any cohort; only training needs train and val slides.
    manifest = tmp_path / "test-cohort.csv"
    manifest.write_text(f"image,mask,split\n{pairs[0][0].name},{pairs[0][1].name},test\n")
    out = tmp_path / "test.csv"
    assert main(["stats", str(manifest), "--patch-size", "32", "--out", str(out), "--quiet"]) == 0
    table = read_table(out)
    assert set(table["split"]) == {"test"} and len(table) == 2 * 3


def test_workers_give_the_same_table_as_threads(tmp_path, pairs):
    images = [str(p[0]) for p in pairs]
    masks = [str(p[1]) for p in pairs]
    common = ["stats", *images, "--mask", *masks, "--patch-size", "12", "--stride", "10",
              "--tissue", "intensity", "--quiet"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "threads.parquet")]) == 0
    assert main([*common, "--workers", "2", "--out", str(tmp_path / "procs.parquet")]) == 0
    threads = read_table(tmp_path / "threads.parquet")
    procs = read_table(tmp_path / "procs.parquet")
    pd.testing.assert_frame_equal(threads, procs)
    assert threads["n_healthy"].sum() > 0


def test_geojson_export_from_cli(tmp_path, pairs):
    geo = tmp_path / "grid.geojson"
    assert main(["stats", str(pairs[0][0]), "--mask", str(pairs[0][1]), "--patch-size", "32",
                 "--out", str(tmp_path / "t.csv"), "--geojson", str(geo), "--quiet"]) == 0  # fmt: skip
    assert len(json.loads(geo.read_text())["features"]) == 6
