"""TIFF / OME-TIFF reading: layouts, dtypes, stored pyramids, metadata, laziness, errors."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import tifffile.zarr

from napari_patchwise import PatchwiseError
from napari_patchwise.io import open_slide


def _cyx(rng, shape=(3, 96, 80), dtype=np.uint16):
    if np.dtype(dtype).kind == "f":
        return rng.random(shape, dtype=np.float32)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)


def write_pyramid_ome(path, data, *, names=("CARS", "TPEF", "SHG"), pixel=0.5, tile=(32, 32)):
    """Pyramidal OME-TIFF with SubIFDs, levels by 2x striding (exact values known)."""
    levels = [data, data[:, ::2, ::2], data[:, ::4, ::4]]
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(
            levels[0],
            subifds=len(levels) - 1,
            tile=tile,
            compression="zlib",
            metadata={
                "axes": "CYX",
                "Channel": {"Name": list(names)},
                "PhysicalSizeX": pixel,
                "PhysicalSizeY": pixel * 2,
                "PhysicalSizeXUnit": "µm",
                "PhysicalSizeYUnit": "µm",
            },
        )
        for lvl in levels[1:]:
            tw.write(lvl, subfiletype=1, tile=tile, compression="zlib")
    return levels


def test_pyramidal_ome_tiff_uses_stored_levels_and_metadata(tmp_path, rng):
    data = _cyx(rng, (3, 256, 192))
    levels = write_pyramid_ome(tmp_path / "s.ome.tif", data)
    slide = open_slide(tmp_path / "s.ome.tif")
    assert slide.channel_names == ("CARS", "TPEF", "SHG")
    assert slide.pixel_size == (1.0, 0.5)
    assert slide.name == "s"
    assert [lvl.shape for lvl in slide.levels] == [(3, 256, 192), (3, 128, 96), (3, 64, 48)]
    assert slide.downsamples == (1, 2, 4)
    for got, want in zip(slide.levels, levels, strict=True):
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got.compute(), want)
    # Chunks group whole 32 px tiles and all channels.
    assert slide.levels[0].chunksize == (3, 256, 192)


def test_ome_pixel_size_units_are_converted_to_micrometres(tmp_path, rng):
    data = _cyx(rng, (2, 32, 32))
    tifffile.imwrite(
        tmp_path / "nm.ome.tif",
        data,
        metadata={
            "axes": "CYX",
            "PhysicalSizeX": 250,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 500,
            "PhysicalSizeYUnit": "nm",
        },
    )
    assert open_slide(tmp_path / "nm.ome.tif").pixel_size == pytest.approx((0.5, 0.25))


LAYOUTS = {
    # name: (writer kwargs, array as written, expected (C, Y, X), expected names)
    "ome-cyx-tiled-uint16": "cyx",
    "tiff-2d-float32-tiled": "yx",
    "tiff-rgb-uint8-striped": "rgb",
    "tiff-rgba-uint8": "rgba",
    "ome-yxc-4-channels-contig": "yxc",
    "ome-tczyx-singletons": "tczyx",
    "tiff-striped-compressed-uint8": "striped",
}


def _layout(kind, rng):
    if kind == "cyx":
        data = _cyx(rng, (3, 70, 90))
        return data, {"tile": (32, 32), "metadata": {"axes": "CYX"}}, data, None
    if kind == "yx":
        data = _cyx(rng, (70, 90), np.float32)
        return data, {"tile": (32, 32), "compression": "zlib"}, data[None], ("channel_0",)
    if kind == "rgb":
        data = _cyx(rng, (70, 90, 3), np.uint8)
        kw = {"photometric": "rgb", "rowsperstrip": 8, "compression": "zlib"}
        return data, kw, np.moveaxis(data, -1, 0), ("R", "G", "B")
    if kind == "rgba":
        data = _cyx(rng, (70, 90, 4), np.uint8)
        kw = {"photometric": "rgb", "extrasamples": ["unassalpha"]}
        return data, kw, np.moveaxis(data[..., :3], -1, 0), ("R", "G", "B")
    if kind == "yxc":
        data = _cyx(rng, (70, 90, 4), np.uint16)
        kw = {"photometric": "minisblack", "planarconfig": "contig", "metadata": {"axes": "YXC"}}
        return data, kw, np.moveaxis(data, -1, 0), None
    if kind == "tczyx":
        data = _cyx(rng, (1, 2, 1, 70, 90))
        return data, {"metadata": {"axes": "TCZYX"}}, data[0, :, 0], None
    if kind == "striped":
        data = _cyx(rng, (2, 70, 90), np.uint8)
        kw = {"photometric": "minisblack", "rowsperstrip": 4, "compression": "zlib"}
        return data, kw, data, None
    raise AssertionError(kind)


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layouts_read_as_cyx(tmp_path, rng, name):
    data, kwargs, expected, names = _layout(LAYOUTS[name], rng)
    path = tmp_path / (f"{name}.ome.tif" if name.startswith("ome") else f"{name}.tif")
    tifffile.imwrite(path, data, **kwargs)
    slide = open_slide(path)
    assert slide.levels[0].shape == expected.shape
    assert slide.dtype == expected.dtype
    np.testing.assert_array_equal(slide.levels[0].compute(), expected)
    if names is not None:
        assert slide.channel_names == names
    else:
        assert slide.channel_names == tuple(f"channel_{i}" for i in range(expected.shape[0]))
    # A single-level image gets a lazy 2x pyramid down to <= 256 px (already small here).
    assert len(slide.levels) == 1


def test_single_level_image_gets_lazy_block_mean_pyramid(tmp_path):
    data = np.zeros((2, 1100, 600), np.uint8)
    data[0, :2, :2] = [[1, 2], [3, 5]]  # mean 2.75 -> 3 (rounded, dtype kept)
    data[1] = 200
    tifffile.imwrite(tmp_path / "big.tif", data, tile=(128, 128), compression="zlib")
    slide = open_slide(tmp_path / "big.tif")
    shapes = [lvl.shape[1:] for lvl in slide.levels]
    assert shapes == [(1100, 600), (550, 300), (275, 150), (137, 75)]
    assert all(lvl.dtype == np.uint8 for lvl in slide.levels)
    level1 = slide.levels[1].compute()
    assert level1[0, 0, 0] == 3 and level1[0].sum() == 3
    assert (level1[1] == 200).all()


def test_uncompressed_single_strip_file_is_memory_mapped_not_read_whole(tmp_path, rng):
    data = _cyx(rng, (3, 300, 200))
    tifffile.imwrite(tmp_path / "raw.tif", data, photometric="minisblack")
    slide = open_slide(tmp_path / "raw.tif")
    level0 = slide.levels[0]
    assert level0.shape == (3, 300, 200)
    np.testing.assert_array_equal(level0[:, 10:20, 30:40].compute(), data[:, 10:20, 30:40])


def test_overrides_for_channel_names_and_pixel_size(tmp_path, rng):
    write_pyramid_ome(tmp_path / "s.ome.tif", _cyx(rng, (3, 64, 64)))
    slide = open_slide(tmp_path / "s.ome.tif", channel_names=["a", "b", "c"], pixel_size=0.25)
    assert slide.channel_names == ("a", "b", "c")
    assert slide.pixel_size == (0.25, 0.25)
    with pytest.raises(
        PatchwiseError, match=r"s\.ome\.tif: 2 channel names given for an image with 3 channels"
    ):
        open_slide(tmp_path / "s.ome.tif", channel_names=["a", "b"])


class _ChunkReads:
    """Record which tiles the direct TIFF reader decodes: (level height, "page.row.col")."""

    def __init__(self, monkeypatch):
        from napari_patchwise.io._tiles import TiffLevelView

        self.keys: list[tuple[int, str]] = []
        original = TiffLevelView._segment

        def segment(view, page, index):
            row, col = divmod(index, view._grid.grid[1])
            self.keys.append((view.shape[1], f"{page}.{row}.{col}"))
            return original(view, page, index)

        monkeypatch.setattr(TiffLevelView, "_segment", segment)

    def level(self, height: int) -> list[str]:
        return [k for h, k in self.keys if h == height]


def test_opening_reads_no_level0_chunk_and_a_region_reads_only_its_tiles(
    tmp_path, rng, monkeypatch
):
    data = _cyx(rng, (3, 512, 512), np.uint8)
    write_pyramid_ome(tmp_path / "s.ome.tif", data, tile=(64, 64))
    reads = _ChunkReads(monkeypatch)
    slide = open_slide(tmp_path / "s.ome.tif")
    slide.display_contrast_limits()  # reads the smallest level only
    assert reads.level(512) == [] and reads.level(256) == []
    assert len(reads.level(128)) == 3 * 2 * 2  # 128 x 128 level: 2 x 2 tiles x 3 channels
    reads.keys.clear()
    region = slide.levels[0][:, 64:128, 130:140].compute()
    np.testing.assert_array_equal(region, data[:, 64:128, 130:140])
    # One tile row (64..128) and one tile column (128..192), per channel: 3 tiles,
    # not the 8 x 8 x 3 = 192 tiles of level 0.
    assert sorted(reads.keys) == [(512, "0.1.2"), (512, "1.1.2"), (512, "2.1.2")]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.with_name("missing.tif"), r"missing\.tif: no such file or directory"),
        (
            lambda p: (p.with_name("notes.txt").write_text("x"), p.with_name("notes.txt"))[1],
            r"notes\.txt: unsupported file type '\.txt' — supported: OME-TIFF",
        ),
        (
            lambda p: (
                p.with_name("junk.tif").write_bytes(b"this is not a tiff" * 10),
                p.with_name("junk.tif"),
            )[1],
            r"junk\.tif: not a readable TIFF .* — the file may be truncated or corrupt",
        ),
        (
            lambda p: (p.with_name("folder").mkdir(), p.with_name("folder"))[1],
            r"folder: is a directory but not a zarr store",
        ),
    ],
    ids=["missing", "unknown-extension", "corrupt", "plain-directory"],
)
def test_bad_input_is_one_line_patchwise_error(tmp_path, make, message):
    path = make(tmp_path / "x.tif")
    with pytest.raises(PatchwiseError, match=message) as info:
        open_slide(path)
    assert "\n" not in str(info.value)


def test_truncated_tiff_fails_at_open_not_while_panning(tmp_path, rng):
    write_pyramid_ome(tmp_path / "s.ome.tif", _cyx(rng, (3, 256, 256)))
    whole = (tmp_path / "s.ome.tif").read_bytes()
    (tmp_path / "cut.ome.tif").write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(PatchwiseError, match=r"cut\.ome\.tif: not a readable TIFF .*truncated"):
        open_slide(tmp_path / "cut.ome.tif")


def test_opening_does_not_import_torch_or_napari():
    import subprocess
    import sys

    code = (
        "import sys, napari_patchwise.io as io; "
        "assert 'torch' not in sys.modules and 'napari' not in sys.modules "
        "and 'qtpy' not in sys.modules, sorted(m for m in sys.modules if m in ('torch','napari','qtpy'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_levels_and_masks_pickle_for_distributed_workers(tmp_path, rng):
    import pickle

    from napari_patchwise.io import read_mask

    data = _cyx(rng, (3, 128, 96), np.uint8)
    write_pyramid_ome(tmp_path / "s.ome.tif", data)
    tifffile.imwrite(tmp_path / "raw.tif", data, photometric="minisblack")  # memory-mapped
    labels = rng.integers(0, 3, (128, 96), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "m.tif", labels, tile=(32, 32))
    for path in ("s.ome.tif", "raw.tif"):
        level = open_slide(tmp_path / path).levels[0]
        copy = pickle.loads(pickle.dumps(level))  # reopens the file, no open handles sent
        np.testing.assert_array_equal(copy[:, 10:70, 5:50].compute(), data[:, 10:70, 5:50])
    mask, _, _ = read_mask(tmp_path / "m.tif", (128, 96))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(mask)).compute(), labels)


def test_dask_chunks_group_whole_tiles_and_whole_strips():
    from napari_patchwise.io._layout import TARGET_BYTES, yx_chunks

    assert yx_chunks((512, 512), (50_000, 50_000), 3) == (1024, 1024)
    assert yx_chunks((256, 256), (50_000, 50_000), 3) == (1024, 1024)
    assert yx_chunks((768, 768), (50_000, 50_000), 3) == (768, 768)  # never split a tile
    # About 4 MiB per chunk: a uint8 mask gets 2048 px, 3 x uint16 one 512 px tile.
    assert yx_chunks((512, 512), (50_000, 50_000), 1) == (2048, 2048)
    assert yx_chunks((256, 256), (50_000, 50_000), 6) == (768, 768)
    assert yx_chunks((512, 512), (50_000, 50_000), 6) == (512, 512)
    rows, cols = yx_chunks((16, 50_000), (50_000, 50_000), 3)  # strips span the width
    assert cols == 50_000 and rows % 16 == 0 and rows * 50_000 * 3 <= TARGET_BYTES
    assert (rows + 16) * 50_000 * 3 > TARGET_BYTES
    assert yx_chunks((16, 300), (2000, 300), 2) == (2000, 300)  # small: one chunk


def test_cyx_view_indexes_like_the_transposed_array(rng):
    from napari_patchwise.io._layout import CYXView

    yxs = rng.integers(0, 9, (5, 6, 3))
    view = CYXView(yxs, "YXS")
    want = np.moveaxis(yxs, -1, 0)
    assert view.shape == (3, 5, 6)
    for key in [
        (slice(None),),
        (1,),
        (slice(0, 2), 3),
        (2, slice(1, 4), 5),
        (slice(None), 0, slice(2, None)),
    ]:
        np.testing.assert_array_equal(view[key], want[key])
    gray = CYXView(rng.integers(0, 9, (1, 5, 6)), "ZYX")  # singleton z, no channel axis
    assert gray.shape == (1, 5, 6) and gray[0, 1:3].shape == (2, 6) and gray[:, 1].shape == (1, 6)


@pytest.mark.parametrize(
    ("dtype", "spec"),
    [
        (dtype, spec)
        for dtype in (np.uint8, np.uint16, np.int32)
        for spec in ("default", "binary", "0=background,7=healthy,300=tumor")
        if not (dtype == np.uint8 and spec.endswith("300=tumor"))  # 300 does not fit
    ],
)
def test_mask_value_mapping_matches_a_per_value_loop(rng, dtype, spec):
    """``map_values`` (identity / lookup table / searchsorted by dtype) is exact."""
    from napari_patchwise.io.mask import MaskMap, map_values

    mapping = MaskMap.parse(spec)
    keys, classes = mapping.table()
    labels = rng.choice(keys, size=(37, 41)).astype(dtype)
    want = np.zeros(labels.shape, np.uint8)
    for value, cls in mapping.classes.items():
        want[labels == value] = cls
    got = map_values(labels, keys, classes)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
