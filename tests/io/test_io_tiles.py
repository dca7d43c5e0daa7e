"""Direct tile/strip reader (``io._tiles.TiffLevelView``) against ``tifffile.imread``.

Every layout is compared pixel for pixel with tifffile's own whole-image decode, for the
whole level and for regions that cut through tiles and strips (steps, integers, negative
indices, channel lists), and the tiles decoded for a region are counted exactly.
"""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_patchwise.io import open_slide
from napari_patchwise.io._tiles import TiffLevelView, UnsupportedLayout, segment_grid


def _cyx(array: np.ndarray, axes: str) -> np.ndarray:
    """``array`` stored as ``axes`` in (C, Y, X) order."""
    if axes == "YX":
        return array[None]
    if axes in ("YXS", "YXC"):
        return np.moveaxis(array, -1, 0)
    return array


def _data(rng, shape, dtype):
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)


# name: (shape, dtype, writer keyword arguments, stored axes). Sizes are not multiples
# of the tile or strip so edge segments are partial.
LAYOUTS = {
    "tiled-contig-rgb-uint8-zlib": (
        (70, 90, 3),
        np.uint8,
        {"tile": (32, 32), "photometric": "rgb", "compression": "zlib"},
        "YXS",
    ),
    "tiled-separate-rgb-uint16-lzw-predictor": (
        (3, 70, 90),
        np.uint16,
        {
            "tile": (16, 48),
            "photometric": "rgb",
            "planarconfig": "separate",
            "compression": "lzw",
            "predictor": True,
        },
        "SYX",
    ),
    "tiled-gray-float32-uncompressed": ((70, 90), np.float32, {"tile": (32, 16)}, "YX"),
    "striped-gray-float32-zlib-floatpredictor": (
        (70, 90),
        np.float32,
        {"rowsperstrip": 5, "compression": "zlib", "predictor": 3},
        "YX",
    ),
    "striped-separate-uint16-zlib": (
        (2, 70, 90),
        np.uint16,
        {
            "rowsperstrip": 8,
            "photometric": "minisblack",
            "planarconfig": "separate",
            "compression": "zlib",
        },
        "SYX",
    ),
    "striped-contig-4-samples-uint8-uncompressed": (
        (70, 90, 4),
        np.uint8,
        {"rowsperstrip": 9, "photometric": "minisblack", "planarconfig": "contig"},
        "YXS",
    ),
    "tiled-rgb-uint8-jpeg": (
        (70, 90, 3),
        np.uint8,
        {"tile": (32, 32), "photometric": "rgb", "compression": "jpeg"},
        "YXS",
    ),
}


@pytest.fixture(params=list(LAYOUTS))
def layout_file(request, tmp_path, rng):
    shape, dtype, kwargs, axes = LAYOUTS[request.param]
    path = tmp_path / f"{request.param}.tif"
    tifffile.imwrite(path, _data(rng, shape, dtype), **kwargs)
    # JPEG is lossy: the reference is tifffile's own decode of the file.
    return path, _cyx(tifffile.imread(path), axes), request.param


REGIONS = [
    (slice(None),),
    (slice(None), slice(10, 47), slice(31, 33)),  # cuts through tile/strip borders
    (slice(None), slice(60, 70), slice(80, 90)),  # bottom-right partial segment
    (slice(None), 5),
    (slice(None), -1, slice(None, None, 7)),
    (slice(None), slice(3, 65, 9), slice(88, 2, -13)),
    (slice(0, 1), slice(33, 34), slice(0, 90)),
    (-1, slice(20, 40), 45),
    ([1, 0], slice(0, 5), slice(0, 5)),
    (slice(None), slice(20, 20), slice(0, 5)),  # empty
]


def test_regions_match_tifffile_for_every_layout(layout_file):
    path, want, _ = layout_file
    view = TiffLevelView(path)
    assert view.shape == want.shape and view.dtype == want.dtype
    for key in REGIONS:
        if isinstance(key[0], list) and want.shape[0] < 2:
            continue
        got = view[key]
        np.testing.assert_array_equal(got, want[key], err_msg=str(key))
        assert got.dtype == want.dtype


def test_open_slide_reads_compressed_layouts_through_the_direct_reader(layout_file):
    path, want, name = layout_file
    level = open_slide(path).levels[0]
    # Uncompressed contiguous strips are memory-mapped instead (reads exactly the slice).
    memmapped = name.startswith("striped") and name.endswith("uncompressed")
    assert bool(_views(level)) != memmapped
    np.testing.assert_array_equal(level.compute(), want)
    np.testing.assert_array_equal(level[:, 17:51, 30:77].compute(), want[:, 17:51, 30:77])


def _views(array) -> list[TiffLevelView]:
    graph = array.__dask_graph__()
    values = [getattr(task, "value", task) for task in graph.values()]
    return [v for v in values if isinstance(v, TiffLevelView)]


def test_ome_pyramid_levels_map_pages_and_subifds_to_channels(tmp_path, rng):
    data = _data(rng, (3, 200, 150), np.uint16)
    levels = [data, data[:, ::2, ::2], data[:, ::4, ::4]]
    with tifffile.TiffWriter(tmp_path / "p.ome.tif", ome=True) as tw:
        tw.write(levels[0], subifds=2, tile=(32, 32), compression="zlib", metadata={"axes": "CYX"})
        for lvl in levels[1:]:
            tw.write(lvl, subfiletype=1, tile=(32, 32), compression="zlib")
    for i, want in enumerate(levels):
        view = TiffLevelView(tmp_path / "p.ome.tif", level=i)
        np.testing.assert_array_equal(view[:], want)
        np.testing.assert_array_equal(view[1:, 7:40, 33:35], want[1:, 7:40, 33:35])


class _Decoded:
    """Record the segments a view decodes as (page, segment index)."""

    def __init__(self, monkeypatch):
        self.segments: list[tuple[int, int]] = []
        original = TiffLevelView._segment

        def segment(view, page, index):
            self.segments.append((page, index))
            return original(view, page, index)

        monkeypatch.setattr(TiffLevelView, "_segment", segment)


def test_region_decodes_exactly_the_tiles_under_it(tmp_path, rng, monkeypatch):
    # 3 pages (OME channels) of 100 x 130 in 32 px tiles: 4 rows x 5 cols per page.
    data = _data(rng, (3, 100, 130), np.uint8)
    tifffile.imwrite(
        tmp_path / "t.ome.tif", data, tile=(32, 32), compression="zlib", metadata={"axes": "CYX"}
    )
    view = TiffLevelView(tmp_path / "t.ome.tif")
    decoded = _Decoded(monkeypatch)
    assert view[:, 0:0, 0:0].shape == (3, 0, 0) and decoded.segments == []
    np.testing.assert_array_equal(view[2, 31:33, 64:96], data[2, 31:33, 64:96])
    # Rows 0 and 1 (31 and 32 straddle a border), column 2 only, page 2 only.
    assert sorted(decoded.segments) == [(2, 0 * 5 + 2), (2, 1 * 5 + 2)]
    decoded.segments.clear()
    np.testing.assert_array_equal(view[:, 99, 129], data[:, 99, 129])  # last partial tile
    assert sorted(decoded.segments) == [(0, 19), (1, 19), (2, 19)]


def test_strip_region_decodes_only_its_strips(tmp_path, rng, monkeypatch):
    data = _data(rng, (70, 90, 3), np.uint8)
    tifffile.imwrite(
        tmp_path / "s.tif", data, photometric="rgb", rowsperstrip=8, compression="zlib"
    )
    view = TiffLevelView(tmp_path / "s.tif")
    assert view.block == (8, 90) and segment_grid(view._tif.pages[0]).grid == (9, 1)
    decoded = _Decoded(monkeypatch)
    np.testing.assert_array_equal(view[1, 15:17, 3:4], data[15:17, 3:4, 1])
    assert decoded.segments == [(0, 1), (0, 2)]


def test_empty_segments_read_as_the_fill_value(tmp_path, rng):
    data = _data(rng, (64, 64), np.uint16) | 1  # no zeros anywhere
    tifffile.imwrite(tmp_path / "e.tif", data, tile=(32, 32), compression="zlib")
    view = TiffLevelView(tmp_path / "e.tif")
    view._counts[0][1] = 0  # as a writer that skipped an empty tile would store it
    got = view[0]
    want = data.copy()
    want[:32, 32:] = 0
    np.testing.assert_array_equal(got, want)


def test_view_pickles_by_reopening_and_reads_from_many_threads(tmp_path, rng):
    data = _data(rng, (3, 256, 256), np.uint8)
    tifffile.imwrite(
        tmp_path / "t.ome.tif", data, tile=(32, 32), compression="zlib", metadata={"axes": "CYX"}
    )
    view = pickle.loads(pickle.dumps(TiffLevelView(tmp_path / "t.ome.tif")))
    boxes = [(y, x) for y in range(0, 256, 40) for x in range(0, 256, 56)]
    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(lambda b: view[:, b[0] : b[0] + 50, b[1] : b[1] + 70], boxes))
    for (y, x), part in zip(boxes, parts, strict=True):
        np.testing.assert_array_equal(part, data[:, y : y + 50, x : x + 70])


def test_unsupported_layouts_fall_back_to_tifffiles_zarr_store(tmp_path, rng):
    volume = _data(rng, (4, 40, 48), np.uint8)
    tifffile.imwrite(
        tmp_path / "v.tif",
        volume,
        tile=(2, 16, 16),
        volumetric=True,
        photometric="minisblack",
        compression="zlib",
    )
    with pytest.raises(UnsupportedLayout, match="depth"):
        TiffLevelView(tmp_path / "v.tif")
    level = open_slide(tmp_path / "v.tif").levels[0]
    assert not _views(level)
    np.testing.assert_array_equal(level.compute(), volume)


def test_a_file_cut_inside_a_tile_is_a_clear_error(tmp_path, rng):
    tifffile.imwrite(tmp_path / "t.tif", _data(rng, (64, 64), np.uint8), tile=(32, 32))
    view = TiffLevelView(tmp_path / "t.tif")
    last = int(view._offsets[0][-1])
    with open(tmp_path / "t.tif", "r+b") as f:
        f.truncate(last + 10)
    assert view[0, :32, :32].shape == (32, 32)  # the intact tiles still read
    with pytest.raises(ValueError, match=r"t\.tif: file ends inside a tile or strip"):
        view[0, 40:, 40:]


@pytest.fixture(scope="module")
def striped_and_tiled(tmp_path_factory):
    rng = np.random.default_rng(7)
    data = _data(rng, (2, 53, 61), np.uint16)
    folder = tmp_path_factory.mktemp("hyp")
    tifffile.imwrite(
        folder / "tiled.tif",
        data,
        tile=(16, 16),
        compression="zlib",
        photometric="minisblack",
        planarconfig="separate",
    )
    tifffile.imwrite(
        folder / "striped.tif",
        np.moveaxis(data, 0, -1),
        rowsperstrip=3,
        photometric="minisblack",
        planarconfig="contig",
    )
    return data, TiffLevelView(folder / "tiled.tif"), TiffLevelView(folder / "striped.tif")


def _index(n):
    return st.one_of(
        st.integers(-n, n - 1),
        st.builds(
            slice,
            st.integers(-n - 2, n + 2) | st.none(),
            st.integers(-n - 2, n + 2) | st.none(),
            st.sampled_from([None, 1, 2, 5, -1, -3]),
        ),
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_basic_index_matches_numpy(striped_and_tiled, data):
    want, tiled, striped = striped_and_tiled
    key = tuple(data.draw(_index(n)) for n in want.shape)
    for view in (tiled, striped):
        np.testing.assert_array_equal(view[key], want[key])
