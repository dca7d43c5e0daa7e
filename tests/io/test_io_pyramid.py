"""Display pyramids: lazy block-mean / nearest levels, and the once-written cache."""

from __future__ import annotations

import os
import re
import time

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_patchwise.io import build_pyramid, open_slide
from napari_patchwise.io import pyramid_cache as cache_module
from napari_patchwise.io.pyramid import block_mean


def test_levels_halve_with_floor_until_min_size():
    level0 = da.zeros((2, 1000, 601), dtype=np.uint16, chunks=(2, 300, 300))
    levels = build_pyramid(level0, min_size=100)
    assert [lvl.shape for lvl in levels] == [
        (2, 1000, 601),
        (2, 500, 300),
        (2, 250, 150),
        (2, 125, 75),
        (2, 62, 37),
    ]
    assert all(lvl.dtype == np.uint16 for lvl in levels)
    small = level0[:, :100, :100]
    (only,) = build_pyramid(small, min_size=256)
    assert only is small


def test_block_mean_values_rounding_and_dtypes():
    x = np.array([[[1, 2, 9], [3, 5, 9], [7, 7, 9]]], dtype=np.uint8)  # odd edge trimmed
    level1 = build_pyramid(da.from_array(x, chunks=(1, 3, 3)), min_size=1)[1].compute()
    assert level1.dtype == np.uint8 and level1.tolist() == [[[3]]]  # 2.75 rounds to 3
    assert block_mean(np.array([[254, 255], [255, 255]], np.uint8)).dtype == np.uint8
    f = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    level1 = build_pyramid(da.from_array(f, chunks=(1, 3, 3)), min_size=1)[1].compute()
    assert level1.dtype == np.float32
    np.testing.assert_allclose(level1[0], [[2.5, 4.5], [10.5, 12.5]])


def test_nearest_keeps_label_values():
    labels = np.array([[[0, 2, 1, 1], [2, 2, 1, 1], [0, 0, 2, 0]]], dtype=np.uint8)
    level1 = build_pyramid(da.from_array(labels), min_size=1, method="nearest")[1].compute()
    assert level1.tolist() == [[[0, 1]]]


@pytest.fixture
def small_cache_threshold(monkeypatch):
    monkeypatch.setattr(cache_module, "CACHE_MIN_SIDE", 300)


def test_big_single_level_image_writes_pyramid_once_and_reuses_it(
    tmp_path, rng, small_cache_threshold, monkeypatch
):
    data = rng.integers(0, 255, size=(2, 700, 520), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", data, tile=(64, 64), compression="zlib")
    cache = tmp_path / "cache"
    calls = []
    slide = open_slide(
        tmp_path / "big.tif", pyramid_cache=cache, progress=lambda d, t: calls.append((d, t))
    )
    files = list(cache.iterdir())
    assert (
        len(files) == 1
        and files[0].name.startswith("big.tif-")
        and files[0].suffixes[-2:] == [".ome", ".tif"]
    )
    assert calls and calls[-1][0] == calls[-1][1]  # progress reached its total
    assert [lvl.shape[1:] for lvl in slide.levels] == [(700, 520), (350, 260), (175, 130)]
    lazy = build_pyramid(da.from_array(data, chunks=(2, 128, 128)))
    for got, want in zip(slide.levels, lazy, strict=True):
        np.testing.assert_array_equal(got.compute(), want.compute())
    # Levels >= 1 are read from the cache file, level 0 from the image.
    assert tifffile.TiffFile(files[0]).series[0].shape == (2, 350, 260)

    def fail(*args, **kwargs):
        raise AssertionError("the pyramid was written again")

    monkeypatch.setattr(cache_module, "write_pyramid", fail)
    again = open_slide(tmp_path / "big.tif", pyramid_cache=cache)
    assert len(again.levels) == 3 and list(cache.iterdir()) == files


def test_cache_beside_the_image_and_disabled(tmp_path, rng, small_cache_threshold):
    tifffile.imwrite(tmp_path / "big.tif", rng.integers(0, 9, (1, 400, 310), dtype=np.uint16))
    open_slide(tmp_path / "big.tif", pyramid_cache="beside")
    (beside,) = [p for p in tmp_path.iterdir() if p.name != "big.tif"]
    assert re.fullmatch(r"big\.tif\.pyramid-[0-9a-f]{16}\.ome\.tif", beside.name)
    assert beside == cache_module.cache_file(tmp_path / "big.tif", "beside")
    beside.unlink()
    slide = open_slide(tmp_path / "big.tif", pyramid_cache=False)
    assert len(slide.levels) == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["big.tif"]


def _edit_keeping_size_and_mtime(path, values):
    """Rewrite the pixels of an uncompressed single-strip TIFF in place; restore its mtime."""
    before = os.stat(path)
    time.sleep(0.05)  # the status-change time ticks at the kernel clock's resolution
    with tifffile.TiffFile(path) as tif:
        offset = int(tif.pages[0].dataoffsets[0])
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(np.ascontiguousarray(values).tobytes())
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def test_changed_image_gets_a_new_cache_entry(tmp_path, rng, small_cache_threshold):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((1, 400, 310), np.uint8))
    first = cache_module.cache_file(path, tmp_path / "c")
    tifffile.imwrite(path, np.ones((1, 400, 312), np.uint8))
    assert cache_module.cache_file(path, tmp_path / "c") != first
    # edited in place with size and modification time kept
    second = cache_module.cache_file(path, tmp_path / "c")
    _edit_keeping_size_and_mtime(path, np.full((400, 312), 5, np.uint8))
    assert cache_module.cache_file(path, tmp_path / "c") != second


@pytest.mark.parametrize("cache", ["beside", "folder"])
def test_image_edited_in_place_never_gets_the_old_pyramid(tmp_path, small_cache_threshold, cache):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((400, 310), np.uint8))
    option = "beside" if cache == "beside" else tmp_path / "cache"
    (tmp_path / "big.tif.pyramid-notes.txt").write_text("a user's file")  # not a cache entry
    assert open_slide(path, pyramid_cache=option).levels[1].max().compute() == 0

    _edit_keeping_size_and_mtime(path, np.full((400, 310), 200, np.uint8))
    slide = open_slide(path, pyramid_cache=option)
    assert len(slide.levels) == 2 and (slide.levels[1].compute() == 200).all()
    if cache == "beside":  # the old version's pyramid is gone, the user's file is not
        names = sorted(p.name for p in tmp_path.iterdir())
        assert names == sorted(["big.tif", "big.tif.pyramid-notes.txt", slide_cache_name(path)])


def slide_cache_name(path):
    return cache_module.cache_file(path, "beside").name


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_pyramid_cache_is_rewritten(tmp_path, rng, small_cache_threshold, damage):
    data = rng.integers(0, 255, size=(2, 400, 330), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", data, tile=(64, 64), compression="zlib")
    cache = tmp_path / "cache"
    open_slide(tmp_path / "big.tif", pyramid_cache=cache)
    (entry,) = cache.iterdir()
    good = entry.read_bytes()
    broken = {"garbage": os.urandom(len(good)), "truncated": good[: len(good) // 2], "empty": b""}
    entry.write_bytes(broken[damage])

    slide = open_slide(tmp_path / "big.tif", pyramid_cache=cache)
    assert list(cache.iterdir()) == [entry]
    with tifffile.TiffFile(entry) as tif:  # a whole pyramid again (not byte-equal: OME UUID)
        assert tif.series[0].shape == (2, 200, 165) and len(tif.series[0].levels) == 1
    want = build_pyramid(da.from_array(data, chunks=(2, 128, 128)))
    np.testing.assert_array_equal(slide.levels[1].compute(), want[1].compute())


def test_default_cache_folder_honours_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PATCHWISE_CACHE_DIR", str(tmp_path / "pw"))
    assert cache_module.default_cache_dir() == tmp_path / "pw"
    monkeypatch.delenv("PATCHWISE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_module.default_cache_dir() == tmp_path / "xdg" / "napari-patchwise" / "pyramids"
