"""Mask semantics are decided once for a cohort, and headless counting reads each mask once.

Regressions of two silent defects: a tumor-free slide of a 3-class cohort (mask values
{0, 1}) was guessed to be a binary tumor mask, so its healthy tissue was counted as tumor;
and ``patchwise stats`` wrote a display pyramid into the user's cache and decoded the mask
twice (once to check its values, once to count).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import tifffile

from napari_patchwise.cli.main import main
from napari_patchwise.io._tiles import TiffLevelView
from napari_patchwise.io.tables import read_table

P = 32  # patch size


def _three_class_mask() -> np.ndarray:
    mask = np.zeros((128, 128), np.uint8)
    mask[10:110, 5:105] = 1
    mask[40:70, 40:90] = 2
    return mask


def _tumor_free_mask() -> np.ndarray:
    mask = np.zeros((128, 128), np.uint8)
    mask[10:110, 5:105] = 1  # 10,000 healthy pixels and no tumor
    return mask


def _counts(mask: np.ndarray, value: int) -> list[int]:
    n = mask.shape[0] // P
    return (mask == value).reshape(n, P, n, P).sum(axis=(1, 3)).ravel().tolist()


def _write_cohort(folder, masks: dict[str, np.ndarray]):
    rng = np.random.default_rng(0)
    lines = ["image,mask,split"]
    for name, mask in masks.items():
        image = rng.integers(0, 40, (2, *mask.shape), dtype=np.uint8)
        image[:, mask > 0] += 150  # tissue is bright, for intensity tissue
        tifffile.imwrite(folder / f"{name}.tif", image, photometric="minisblack")
        tifffile.imwrite(folder / f"{name}_mask.tif", mask)
        lines.append(f"{name}.tif,{name}_mask.tif,test")
    manifest = folder / "cohort.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def _stats(manifest, out, *extra) -> int:
    return main(
        ["stats", str(manifest), "--patch-size", str(P), "--out", str(out), "--quiet", *extra]
    )


def test_tumor_free_slide_of_a_three_class_cohort_has_no_tumor(tmp_path, capsys):
    masks = {"a": _three_class_mask(), "free": _tumor_free_mask()}
    manifest = _write_cohort(tmp_path, masks)
    assert _stats(manifest, tmp_path / "t.csv") == 0
    assert "warning" not in capsys.readouterr().err
    table = read_table(tmp_path / "t.csv")
    for name, mask in masks.items():
        rows = table[table["slide"] == name]
        assert rows["n_tumor"].tolist() == _counts(mask, 2)
        assert rows["n_healthy"].tolist() == _counts(mask, 1)
    free = table[table["slide"] == "free"]
    assert int(free["label"].sum()) == 0 and int(free["n_healthy"].sum()) == 10_000


def test_binary_map_is_read_as_binary_only_when_said(tmp_path, capsys):
    tumor = np.zeros((128, 128), np.uint8)
    tumor[40:70, 40:90] = 1
    manifest = _write_cohort(tmp_path, {"b": tumor})
    assert _stats(manifest, tmp_path / "t.csv", "--mask-map", "binary") == 0
    table = read_table(tmp_path / "t.csv")
    assert table["n_tumor"].tolist() == _counts(tumor, 1)
    # Under the default map the same file means "healthy, no tumor": said on stderr.
    assert _stats(manifest, tmp_path / "u.csv") == 0
    err = capsys.readouterr().err
    assert (
        "warning: no tumor pixel in any slide under the mask map 0=background,1=healthy,2=tumor"
        in err
    )
    assert "--mask-map binary" in err
    assert int(read_table(tmp_path / "u.csv")["n_tumor"].sum()) == 0


def test_stats_writes_no_pyramid_and_decodes_each_mask_tile_once(tmp_path, monkeypatch):
    """A large single-level slide: nothing outside --out is written; one pass per mask tile."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("PATCHWISE_CACHE_DIR", str(cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    h, w = 4224, 256  # taller than the 4096 px display-pyramid threshold
    mask = np.zeros((h, w), np.uint8)
    mask[100:4000, 10:200] = 1
    mask[2000:2100, 50:150] = 2
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "big.tif", np.zeros((1, h, w), np.uint8), tile=(256, 256))
    tifffile.imwrite(folder / "big_mask.tif", mask, tile=(256, 256))
    decoded: Counter = Counter()
    original = TiffLevelView._segment

    def segment(view, page, index):
        decoded[(view._path, page, index)] += 1
        return original(view, page, index)

    monkeypatch.setattr(TiffLevelView, "_segment", segment)
    out = tmp_path / "out" / "t.parquet"
    rc = main(["stats", str(folder / "big.tif"), "--mask", str(folder / "big_mask.tif"),
               "--patch-size", "64", "--out", str(out), "--quiet"])  # fmt: skip
    assert rc == 0
    assert list(cache.rglob("*")) == []  # no display pyramid written
    assert sorted(p.name for p in folder.iterdir()) == ["big.tif", "big_mask.tif"]
    assert [p.name for p in out.parent.iterdir()] == ["t.parquet"]
    mask_tiles = {k: v for k, v in decoded.items() if k[0].endswith("big_mask.tif")}
    assert len(mask_tiles) == (h // 256 + 1) * 1  # every mask tile ...
    assert set(mask_tiles.values()) == {1}  # ... decoded exactly once
    table = read_table(out)
    assert int(table["n_tumor"].sum()) == 100 * 100


@pytest.mark.parametrize("spec", ["0=background,1=tumor,1=healthy", "0=bg,1=bone"])
def test_bad_mask_map_is_one_line_before_any_work(tmp_path, capsys, spec):
    manifest = _write_cohort(tmp_path, {"a": _three_class_mask()})
    assert _stats(manifest, tmp_path / "t.csv", "--mask-map", spec) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "mask map" in err
    assert not (tmp_path / "t.csv").exists()


def _cohort_with_splits(folder, masks: dict[str, tuple[np.ndarray, str]]):
    rng = np.random.default_rng(1)
    lines = ["image,mask,split"]
    for name, (mask, split) in masks.items():
        image = rng.integers(0, 40, (2, *mask.shape), dtype=np.uint8)
        tifffile.imwrite(folder / f"{name}.tif", image, photometric="minisblack")
        tifffile.imwrite(folder / f"{name}_mask.tif", mask)
        lines.append(f"{name}.tif,{name}_mask.tif,{split}")
    (folder / "cohort.csv").write_text("\n".join(lines) + "\n")
    return folder / "cohort.csv"


def test_training_data_use_the_cohort_map_and_refuse_a_tumor_free_training_split(tmp_path):
    from napari_patchwise import PatchwiseError
    from napari_patchwise.settings import PatchSettings
    from napari_patchwise.training.data import load_cohort

    tumor = np.zeros((128, 128), np.uint8)
    tumor[40:70, 40:90] = 1  # binary tumor masks
    manifest = _cohort_with_splits(
        tmp_path, {"t0": (tumor, "train"), "v0": (_tumor_free_mask(), "val")}
    )
    with pytest.raises(
        PatchwiseError,
        match=r"cohort\.csv: no tumor patch in any training slide under the mask map "
        r"0=background,1=healthy,2=tumor — if your masks mark tumor with 1",
    ):
        load_cohort(manifest, PatchSettings(patch_size=P))
    cohort = load_cohort(manifest, PatchSettings(patch_size=P, mask_map="binary"))
    assert cohort.table("train")["n_tumor"].tolist() == _counts(tumor, 1)
    # the same map for every slide: the val slide's 1s are tumor too, as the user said
    assert int(cohort.table("val")["n_tumor"].sum()) == 10_000
