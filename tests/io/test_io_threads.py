"""Concurrent region reads: the same pixels as serial reads, no per-read file opens, and
the shared decoded-tile cache within its byte bound (``io/_tile_cache.py``); OME-Zarr
chunks read directly (``io/_zarr_direct.py``) equal zarr's own reads."""

from __future__ import annotations

import os
import pickle
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zarr

sys.path.insert(0, str(Path(__file__).parents[1]))
import _wsi
from napari_patchwise.io import _tile_cache
from napari_patchwise.io._tiles import TiffLevelView
from napari_patchwise.io._zarr_direct import DirectChunks
from napari_patchwise.io.formats import load_image
from napari_patchwise.io.write import write_ome_zarr

THREADS = 8


@pytest.fixture
def cache():
    """The shared tile cache, emptied, with its bound restored afterwards.

    Prefetching is off meanwhile: an earlier test that opened a slide in napari turned it
    on for the process, and its background decodes would count as reads here.
    """
    bound, prefetch = _tile_cache.TILES.max_bytes, _tile_cache.PREFETCH.enabled
    _tile_cache.PREFETCH.enable(False)
    _tile_cache.TILES.clear()
    yield _tile_cache.TILES
    _tile_cache.PREFETCH.enable(prefetch)
    _tile_cache.TILES.resize(bound)
    _tile_cache.TILES.clear()


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    folder = tmp_path_factory.mktemp("threads")
    image = textured(1000, 1300)
    svs = folder / "a.svs"
    _wsi.write_jpeg_svs(svs, image)
    store = folder / "a.ome.zarr"
    write_ome_zarr(store, [image.transpose(2, 0, 1)], pixel_size=0.25)
    return {"svs": svs, "zarr": store, "image": image}


def _regions(shape, n=48, side=300, seed=1):
    rng = np.random.default_rng(seed)
    h, w = shape
    return [
        (int(rng.integers(0, h - side)), int(rng.integers(0, w - side)), side) for _ in range(n)
    ]


@pytest.mark.parametrize("name", ["svs", "zarr"])
@pytest.mark.parametrize("cache_mb", [0, 64])
def test_eight_threads_read_the_serial_pixels(slides, name, cache_mb, cache):
    cache.resize(cache_mb * 2**20)
    level = load_image(slides[name]).levels[0]
    regions = _regions(level.shape[1:])

    def read(region):
        y, x, s = region
        return np.asarray(level[:, y : y + s, x : x + s].compute(scheduler="sync"))

    serial = [read(r) for r in regions]
    cache.clear()
    with ThreadPoolExecutor(THREADS) as pool:
        together = list(pool.map(read, regions))
    for a, b in zip(serial, together, strict=True):
        np.testing.assert_array_equal(a, b)
    if name == "zarr":  # lossless: the written pixels
        y, x, s = regions[0]
        expected = slides["image"][y : y + s, x : x + s].transpose(2, 0, 1)
        np.testing.assert_array_equal(serial[0], expected)


def test_tiff_reads_open_no_file(slides, monkeypatch):
    view = TiffLevelView(slides["svs"], 0)
    opened = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    with ThreadPoolExecutor(THREADS) as pool:
        list(
            pool.map(
                lambda r: view[:, r[0] : r[0] + r[2], r[1] : r[1] + r[2]], _regions(view.shape[1:])
            )
        )
    assert opened == []


def test_tile_cache_keeps_within_its_bound_oldest_out_first():
    tile = np.zeros((10, 10), np.uint8)  # 100 bytes
    cache = _tile_cache.TileCache(350)
    for i in range(10):
        cache.put(i, tile.copy())
        assert cache.nbytes <= 350
    assert sorted(cache._items) == [7, 8, 9] and cache.nbytes == 300
    assert cache.get(7) is not None  # 7 is now the newest: 8 goes next
    cache.put(10, tile.copy())
    assert 8 not in cache and 7 in cache and 9 in cache
    cache.put("big", np.zeros(351, np.uint8))  # larger than the bound: not kept
    assert "big" not in cache and cache.nbytes == 300
    assert not cache.get(7).flags.writeable  # shared arrays cannot be changed by a reader
    cache.resize(100)
    assert len(cache) == 1 and cache.nbytes == 100


def test_reading_a_whole_level_stays_within_the_bound(slides, cache):
    bound = 5 * 256 * 256 * 3  # five decoded tiles
    cache.resize(bound)
    level = load_image(slides["svs"]).levels[0]
    level.compute(scheduler="threads")
    assert 0 < cache.nbytes <= bound


def test_three_channel_layers_decode_each_tile_once(slides, cache, monkeypatch):
    # napari shows R, G and B as three layers, each slicing its own channel.
    decoded = []
    real = TiffLevelView._decode
    monkeypatch.setattr(
        TiffLevelView,
        "_decode",
        lambda self, page, index: decoded.append(index) or real(self, page, index),
    )
    level = load_image(slides["svs"]).levels[0]
    for c in range(3):
        level[c, 100:700, 200:900].compute()
    assert sorted(decoded) == sorted(set(decoded))  # no tile twice
    assert len(decoded) == 3 * 4  # rows 0-2, columns 0-3 of 256 px tiles


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_direct_chunks_equal_zarr(tmp_path, zarr_format, dtype):
    data = (np.random.default_rng(2).random((3, 130, 170)) * 1000).astype(dtype)
    array = zarr.create_array(
        tmp_path / "a.zarr",
        shape=data.shape,
        chunks=(1, 64, 48),
        dtype=dtype,
        zarr_format=zarr_format,
        fill_value=7,
    )
    array[:, :, :100] = data[:, :, :100]  # chunks right of x=144 are never written
    direct = DirectChunks.for_array(zarr.open_array(tmp_path / "a.zarr", mode="r"))
    assert direct is not None
    for key in [
        (slice(None), slice(None), slice(None)),
        (1, slice(5, 129), slice(33, 170)),
        (slice(0, 3, 2), slice(None, None, 3), 99),
        (2, 0, slice(140, 170)),
    ]:
        np.testing.assert_array_equal(direct[key], array[key])
    clone = pickle.loads(pickle.dumps(direct))
    assert clone._owner != direct._owner  # an unpickled copy never reads another's cache
    np.testing.assert_array_equal(clone[1, 3:9, 160:170], array[1, 3:9, 160:170])


def test_direct_chunks_leave_sharded_arrays_to_zarr(tmp_path):
    array = zarr.create_array(
        tmp_path / "s.zarr", shape=(64, 64), chunks=(16, 16), shards=(32, 32), dtype="u1"
    )
    assert DirectChunks.for_array(array) is None


def test_prefetch_decodes_the_ring_around_a_read(slides, cache, monkeypatch):
    monkeypatch.setattr(_tile_cache.PREFETCH, "enabled", True)
    level = load_image(slides["svs"]).levels[0]
    level[:, 300:500, 300:500].compute(scheduler="sync")  # tiles (1, 1): row 1, column 1
    _tile_cache.PREFETCH.wait(timeout=60)
    assert len(cache) == 9  # the tile read and its eight neighbours
    decoded = []
    real = TiffLevelView._decode
    monkeypatch.setattr(_tile_cache.PREFETCH, "enabled", False)
    monkeypatch.setattr(
        TiffLevelView,
        "_decode",
        lambda self, page, index: decoded.append(index) or real(self, page, index),
    )
    # A pan by less than a tile: every tile it shows is decoded already.
    panned = level[:, 450:650, 420:700].compute(scheduler="sync")
    assert decoded == []
    np.testing.assert_array_equal(panned, TiffLevelView(slides["svs"], 0)[:, 450:650, 420:700])


def test_prefetch_is_off_by_default_and_bounded(slides, cache):
    assert not _tile_cache.Prefetcher().enabled  # headless reads decode every tile once
    cache.resize(2 * 256 * 256 * 3)
    prefetch = _tile_cache.Prefetcher(max_pending=3)
    prefetch.enable()
    level_view = TiffLevelView(slides["svs"], 0)
    for index in range(10):
        prefetch.submit(("t", index), lambda i=index: level_view._decode(0, i))
    prefetch.wait(timeout=60)
    assert cache.nbytes <= 2 * 256 * 256 * 3 and len(cache) <= 2
