"""`patchwise stats / train / predict` on vendor slides (SVS, DICOM WSI) unchanged.

A brightfield cohort: white glass, pink healthy and purple tumor cells, tumor-only
(binary) masks, so tissue comes from intensity with the slides' bright background.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

pytest.importorskip("openslide")
pytest.importorskip("wsidicom")

import _wsi
from napari_patchwise.cli.main import main

CELLS, PATCH = 8, 16
GLASS, HEALTHY, TUMOR = (255, 255, 255), (225, 150, 200), (90, 40, 130)


def brightfield_slide(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image ``(Y, X, 3)``, binary tumor mask and the cell kinds (0 glass, 1, 2)."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, 3, (CELLS, CELLS))
    kinds[0, :3] = (0, 1, 2)  # every kind at least once
    size = CELLS * PATCH
    image = np.empty((size, size, 3), np.uint8)
    colours = np.array([GLASS, HEALTHY, TUMOR], np.int16)
    for r in range(CELLS):
        for c in range(CELLS):
            cell = colours[kinds[r, c]] + rng.integers(-12, 1, (PATCH, PATCH, 3))
            image[r * PATCH : (r + 1) * PATCH, c * PATCH : (c + 1) * PATCH] = cell
    mask = np.kron(kinds == 2, np.ones((PATCH, PATCH), np.uint8)).astype(np.uint8)
    return image, mask, kinds


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bf")
    rows, kinds = ["image,mask,split"], {}
    for i, split in enumerate(("train", "train", "val", "test")):
        image, mask, kind = brightfield_slide(10 + i)
        if split == "val":
            name = f"d{i}"
            _wsi.write_dicom_wsi(folder / name, image, tile=64)
        else:
            name = f"s{i}.svs"
            _wsi.write_svs(folder / name, image, tile=64)
        tifffile.imwrite(folder / f"m{i}.tif", mask)
        rows.append(f"{name},m{i}.tif,{split}")
        kinds[name] = kind
    (folder / "cohort.csv").write_text("\n".join(rows) + "\n")
    return folder, kinds


def test_stats_on_svs_and_dicom_uses_the_bright_background(cohort, tmp_path, capsys):
    folder, kinds = cohort
    out = tmp_path / "t.csv"
    images = [str(folder / "s0.svs"), str(folder / "d2")]
    masks = [str(folder / "m0.tif"), str(folder / "m2.tif")]
    argv = ["stats", *images, "--mask", *masks, "--mask-map", "binary", "--patch-size"]
    code = main([*argv, str(PATCH), "--tissue-threshold", "240", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(out)
    assert list(table["slide"].unique()) == ["s0", "d2"]
    for slide, name in (("s0", "s0.svs"), ("d2", "d2")):
        rows = table[table["slide"] == slide].sort_values(["row", "col"])
        kind = kinds[name].ravel()
        np.testing.assert_array_equal(rows["n_tissue"], np.where(kind > 0, PATCH * PATCH, 0))
        np.testing.assert_array_equal(rows["label"], (kind == 2).astype(int))


@pytest.mark.torch
def test_train_and_predict_on_vendor_slides(cohort, tmp_path, capsys):
    pytest.importorskip("torch")
    folder, kinds = cohort
    run = tmp_path / "run"
    fast = ["--model", "smallcnn", "--patch-size", str(PATCH), "--batch-size", "16"]
    fast += ["--num-threads", "1", "--steps", "4", "--eval-every", "2", "--quiet"]
    manifest = str(folder / "cohort.csv")
    # Glass ~250, pink ~185, purple ~85: Otsu would split purple from the rest.
    tissue = ["--mask-map", "binary", "--tissue-threshold", "240"]
    code = main(["train", manifest, *tissue, "--out", str(run), *fast])
    assert code == 0, capsys.readouterr().err
    for image, mask in (("s3.svs", "m3.tif"), ("d2", "m2.tif")):
        out = tmp_path / f"{image}.parquet"
        argv = ["predict", str(folder / image), "--checkpoint", str(run), "--quiet"]
        argv += ["--mask", str(folder / mask), "--mask-map", "binary", "--out", str(out)]
        assert main(argv) == 0, capsys.readouterr().err
        table = pd.read_parquet(out).sort_values(["row", "col"])
        assert len(table) == CELLS * CELLS and table["prob"].between(0, 1).all()
        kind = kinds[image].ravel()
        # Glass is no tissue (bright background), every pink or purple cell is.
        np.testing.assert_array_equal(table["tissue_ratio"], (kind > 0).astype(float))
        np.testing.assert_array_equal(table["label"], (kind == 2).astype(int))
