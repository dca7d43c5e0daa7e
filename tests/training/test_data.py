"""Manifest validation, the patch cache and the patch dataset, against hand-built slides."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from _cohort import make_cohort  # noqa: E402
from napari_patchwise import PatchwiseError  # noqa: E402
from napari_patchwise.cohort.manifest import read_manifest  # noqa: E402
from napari_patchwise.settings import PatchSettings  # noqa: E402
from napari_patchwise.training.data import (  # noqa: E402
    PatchDataset,
    augment,
    channel_stats,
    load_cohort,
    make_dataset,
)


@pytest.fixture
def cohort_dir(tmp_path):
    make_cohort(tmp_path, splits=("train", "val", "test"), cells=4, patch=8)
    return tmp_path


def write_manifest(folder, text):
    path = folder / "m.csv"
    path.write_text(text)
    return path


# -- manifest ------------------------------------------------------------------------
def test_manifest_paths_are_relative_and_slide_defaults_to_stem(cohort_dir):
    entries = read_manifest(cohort_dir / "cohort.csv")
    assert [(e.slide, e.split) for e in entries] == [("s0", "train"), ("s1", "val"), ("s2", "test")]
    assert entries[0].image == (cohort_dir / "s0.ome.tif").resolve()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image,split\ns0.ome.tif,train\n", r"lacks column\(s\) mask"),
        ("image,mask,split\nnope.tif,s0_mask.tif,train\n", r"line 2: image 'nope.tif' not found"),
        (
            "image,mask,split\ns0.ome.tif,s0_mask.tif,train\ns1.ome.tif,gone.tif,val\n",
            r"line 3: mask 'gone.tif' not found",
        ),
        (
            "image,mask,split\ns0.ome.tif,s0_mask.tif,training\n",
            r"line 2: unknown split 'training'",
        ),
        (
            "image,mask,split\ns0.ome.tif,s0_mask.tif,train\ns2.ome.tif,s2_mask.tif,test\n",
            "no validation slides",
        ),
        ("image,mask,split\ns1.ome.tif,s1_mask.tif,val\n", "no training slides"),
        (
            "image,mask,split,slide\ns0.ome.tif,s0_mask.tif,train,a\ns1.ome.tif,s1_mask.tif,val,a\n",
            r"line 3: slide 'a' already listed on line 2",
        ),
    ],
)
def test_bad_manifests_give_one_clear_line(cohort_dir, text, message):
    path = write_manifest(cohort_dir, text)
    with pytest.raises(PatchwiseError, match=message) as err:
        read_manifest(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_missing_manifest(tmp_path):
    with pytest.raises(PatchwiseError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv")


# -- patch cache ---------------------------------------------------------------------
def test_cache_holds_the_exact_patches_and_is_reused_then_rebuilt(cohort_dir):
    settings = PatchSettings(patch_size=8)
    calls = []
    cohort = load_cohort(
        cohort_dir / "cohort.csv", settings, progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1][0] == calls[-1][1]
    train = cohort.splits["train"][0]
    image = tifffile.imread(cohort_dir / "s0.ome.tif")  # (2, 32, 32)
    patches = np.load(train.cache)
    assert patches.shape == (16, 2, 8, 8) and patches.dtype == np.uint8
    for i, (y, x) in enumerate(zip(train.table["y"], train.table["x"], strict=True)):
        assert np.array_equal(patches[i], image[:, y : y + 8, x : x + 8])

    # a second load reuses both files
    stamp = os.stat(train.cache).st_mtime_ns
    again = load_cohort(cohort_dir / "cohort.csv", settings).splits["train"][0]
    assert again.cache == train.cache and os.stat(again.cache).st_mtime_ns == stamp
    # other grid settings -> another cache
    other = load_cohort(cohort_dir / "cohort.csv", PatchSettings(patch_size=16)).splits["train"][0]
    assert other.cache != train.cache and np.load(other.cache).shape == (4, 2, 16, 16)
    # a rewritten slide -> rebuilt
    image[0, :8, :8] = 7
    tifffile.imwrite(cohort_dir / "s0.ome.tif", image, metadata={"axes": "CYX"}, ome=True)
    rebuilt = load_cohort(cohort_dir / "cohort.csv", settings).splits["train"][0]
    assert rebuilt.cache != train.cache
    assert (np.load(rebuilt.cache)[0, 0] == 7).all()


# -- dataset -------------------------------------------------------------------------
def test_dataset_items_are_normalised_patches_with_label_and_group(cohort_dir):
    cohort = load_cohort(cohort_dir / "cohort.csv", PatchSettings(patch_size=8))
    caches = [s.cache for s in cohort.splits["train"]]
    mean, std = channel_stats(caches)
    raw = np.load(caches[0]).astype(np.float64)
    np.testing.assert_allclose(mean, raw.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(std, raw.std(axis=(0, 2, 3)), rtol=1e-5)

    ds = make_dataset(cohort, "train", 0.1, mean, std)
    table = cohort.table("train")
    x, y, g = ds[5]
    expected = (raw[5] - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert y == table["label"].iat[5]
    assert g == 2 * table["label"].iat[5] + int(table["tissue_ratio"].iat[5] >= 0.1)

    xb, _yb, _gb = ds.__getitems__(np.array([[3, 0], [5, 1], [3, 4]]))
    assert xb.shape == (3, 2, 8, 8) and xb.dtype == torch.float32
    np.testing.assert_allclose(
        xb[1].numpy(), np.rot90(expected, 1, axes=(1, 2)), rtol=1e-5, atol=1e-5
    )
    assert torch.equal(xb[2], torch.flip(xb[0], dims=(2,)))


def test_augmentation_codes_are_the_eight_orientations():
    patch = np.arange(9, dtype=np.uint8).reshape(1, 1, 3, 3)
    outs = augment(np.repeat(patch, 8, axis=0), np.arange(8))
    assert len({o.tobytes() for o in outs}) == 8
    assert np.array_equal(outs[0], patch[0])
    assert np.array_equal(outs[4, 0], patch[0, 0, :, ::-1])


def test_dataset_pickles_without_its_memory_maps(cohort_dir):
    import pickle

    cohort = load_cohort(cohort_dir / "cohort.csv", PatchSettings(patch_size=8))
    ds = make_dataset(cohort, "val", 0.1, [0, 0], [1, 1])
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert isinstance(clone, PatchDataset) and clone._arrays is None
    assert torch.equal(clone[3][0], ds[3][0])
