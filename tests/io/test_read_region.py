"""``io.read_region``: the pixels of a dask slice (and of OpenSlide), without its task graph.

Files written by tifffile (a JPEG Aperio SVS, a zlib generic tiled TIFF, odd sizes) and
zarr; regions inside one tile, across tiles, clipped at the edges and empty; levels that
are a reader's own and levels derived from one (read through dask).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import dask.array as da
import numpy as np
import pytest

import _wsi
from napari_patchwise.io import open_slide, read_region, region
from napari_patchwise.io._layout import level_source
from napari_patchwise.io._tile_cache import TILES

H, W = 1000, 1300  # odd sizes: partial tiles on the right and bottom edges
REGIONS = [
    ((10, 60), (20, 90)),  # inside one tile
    ((200, 712), (240, 752)),  # across 3 x 3 tiles (256 px)
    ((900, 1200), (1100, 1400)),  # clipped at the bottom and right edges
    ((0, 1000), (0, 1300)),  # the whole level: more chunks than the direct path takes
    ((500, 500), (10, 20)),  # empty
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("region")
    image = np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)
    svs = folder / "jpeg.svs"
    _wsi.write_jpeg_svs(svs, image)
    generic = folder / "generic.tif"
    _wsi.write_generic_tiff(generic, image, tile=128, n_levels=2)
    return {"svs": svs, "tif": generic, "image": image}


@pytest.mark.parametrize("name", ["svs", "tif"])
@pytest.mark.parametrize(("ys", "xs"), REGIONS)
def test_same_pixels_as_the_dask_slice(files, name, ys, xs):
    TILES.clear()
    level = open_slide(files[name]).levels[0]
    expected = np.asarray(level[:, ys[0] : ys[1], xs[0] : xs[1]].compute())
    got = read_region(level, ys, xs)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(
        read_region(level, ys, xs, channels_last=True), expected.transpose(1, 2, 0)
    )
    if name == "tif":  # lossless: the written pixels
        np.testing.assert_array_equal(
            got, files["image"][slice(*ys), slice(*xs)].transpose(2, 0, 1)
        )


def test_same_pixels_as_openslide(files):
    openslide = pytest.importorskip("openslide")
    TILES.clear()
    level = open_slide(files["svs"]).levels[0]
    with openslide.OpenSlide(str(files["svs"])) as handle:
        for y, x in [(0, 0), (300, 517), (488, 788)]:
            theirs = np.asarray(handle.read_region((x, y), 0, (512, 512)))[..., :3]
            ours = read_region(level, (y, y + 512), (x, x + 512), channels_last=True)
            np.testing.assert_array_equal(ours, theirs)


def test_small_regions_build_no_task_graph_large_ones_use_every_core(files, monkeypatch):
    level = open_slide(files["svs"]).levels[0]
    computed: list[str] = []
    real = da.Array.compute
    monkeypatch.setattr(
        da.Array,
        "compute",
        lambda self, **kw: computed.append(kw.get("scheduler")) or real(self, **kw),
    )
    read_region(level, (200, 712), (240, 752))
    assert computed == []
    # this small file's level is 2 chunks; a scanner slide's fit-to-window read is dozens
    assert region._chunks_touched(level, 0, H, 0, W) == 2
    monkeypatch.setattr(region, "DIRECT_MAX_CHUNKS", 1)
    np.testing.assert_array_equal(read_region(level, (0, H), (0, W)), level.compute())
    assert computed[0] == "threads"
    assert region._chunks_touched(level, 0, 1, 0, 1) == 1
    assert region._chunks_touched(level, 5, 5, 0, 1) == 0


def test_a_derived_level_is_read_through_dask(files):
    level = open_slide(files["tif"]).levels[0]
    derived = level // 2  # not a reader's own pixels: no source to read directly
    assert level_source(derived) is None
    np.testing.assert_array_equal(
        read_region(derived, (100, 400), (50, 300)),
        files["image"][100:400, 50:300].transpose(2, 0, 1) // 2,
    )
    in_memory = da.from_array(files["image"].transpose(2, 0, 1).copy(), chunks=(3, 256, 256))
    np.testing.assert_array_equal(
        read_region(in_memory, (7, 9), (0, 5)), files["image"][7:9, :5].transpose(2, 0, 1)
    )


def test_eight_threads_read_the_serial_pixels(files):
    level = open_slide(files["svs"]).levels[0]
    rng = np.random.default_rng(0)
    corners = [(int(rng.integers(0, H - 300)), int(rng.integers(0, W - 300))) for _ in range(32)]

    def read(corner):
        y, x = corner
        return read_region(level, (y, y + 300), (x, x + 300))

    TILES.clear()
    serial = [read(c) for c in corners]
    TILES.clear()
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(read, corners))
    for a, b in zip(serial, together, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_level_that_is_not_c_y_x_is_refused():
    with pytest.raises(ValueError, match=r"\(C, Y, X\) level; got shape \(4, 4\)"):
        read_region(da.zeros((4, 4)), (0, 2), (0, 2))
