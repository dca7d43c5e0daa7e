"""OME-TIFF and OME-Zarr writers: round trips, metadata, streaming and atomicity."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr

from napari_patchwise.errors import PatchwiseError
from napari_patchwise.io import formats, write
from napari_patchwise.io.formats import load_image
from napari_patchwise.io.write import staged_arrays, write_ome_tiff, write_ome_zarr

OME_NS = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"


@pytest.fixture
def pyramid(rng):
    """A 3-channel 100 x 130 image (odd tiles at the edges) and its 2x-reduced level."""
    a = rng.integers(0, 256, (3, 100, 130), dtype=np.uint8)
    level0 = da.from_array(a, chunks=(1, 40, 40))
    level1 = da.from_array(a[:, ::2, ::2].copy(), chunks=(1, 25, 25))
    return a, [level0, level1]


def test_ome_tiff_round_trip_levels_tiles_compression(tmp_path, pyramid):
    a, levels = pyramid
    out = tmp_path / "slide.ome.tif"
    calls = []
    write_ome_tiff(
        out,
        levels,
        channel_names=["CARS", "TPEF", "SHG"],
        pixel_size=(0.5, 0.25),
        tile=32,
        progress=lambda done, total: calls.append((done, total)),
    )
    with tifffile.TiffFile(out) as tif:
        series = tif.series[0]
        assert series.axes == "CYX"
        assert [lvl.shape for lvl in series.levels] == [(3, 100, 130), (3, 50, 65)]
        np.testing.assert_array_equal(series.levels[0].asarray(), a)
        np.testing.assert_array_equal(series.levels[1].asarray(), a[:, ::2, ::2])
        page = tif.pages[0]
        assert page.is_tiled and (page.tilelength, page.tilewidth) == (32, 32)
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        # The reduced level lives in the SubIFDs of each channel page.
        assert len(page.pages) == 1 and page.pages[0].shape == (50, 65)
        assert page.pages[0].subfiletype == 1
        pixels = ET.fromstring(tif.ome_metadata).find(f"{OME_NS}Image/{OME_NS}Pixels")
        names = [c.get("Name") for c in pixels.findall(f"{OME_NS}Channel")]
        assert names == ["CARS", "TPEF", "SHG"]
        assert float(pixels.get("PhysicalSizeY")) == 0.5
        assert float(pixels.get("PhysicalSizeX")) == 0.25
        assert pixels.get("PhysicalSizeXUnit") == "µm"
        # TIFF resolution: pixels per cm, x first; the reduced level is 2x coarser.
        assert page.tags["XResolution"].value == (40000, 1)
        assert page.pages[0].tags["YResolution"].value == (10000, 1)
    # 3 channels x (4 x 5 tiles at level 0 + 2 x 3 tiles at level 1)
    assert calls[-1] == (3 * (4 * 5 + 2 * 3),) * 2
    assert [d for d, _ in calls] == list(range(1, calls[-1][0] + 1))


def test_ome_tiff_mask_and_uint16(tmp_path, rng):
    mask = rng.integers(0, 3, (70, 50), dtype=np.uint8)
    write_ome_tiff(tmp_path / "mask.tif", [da.from_array(mask), da.from_array(mask[::2, ::2])])
    with tifffile.TiffFile(tmp_path / "mask.tif") as tif:
        assert tif.series[0].axes == "YX"
        np.testing.assert_array_equal(tif.series[0].asarray(), mask)
        assert tif.series[0].levels[1].shape == (35, 25)
    img = rng.integers(0, 65536, (2, 40, 40), dtype=np.uint16)
    write_ome_tiff(tmp_path / "u16.ome.tif", da.from_array(img), compression=None, tile=16)
    with tifffile.TiffFile(tmp_path / "u16.ome.tif") as tif:
        np.testing.assert_array_equal(tif.series[0].asarray(), img)
        assert len(tif.series[0].levels) == 1
        assert tif.pages[0].compression == tifffile.COMPRESSION.NONE


def test_ome_tiff_computes_one_row_of_tiles_at_a_time(tmp_path):
    """Streaming: every computation covers at most one row of tiles of one channel."""
    seen = []

    def record(block, block_info=None):
        seen.append(block.shape)
        return block

    level = da.zeros((2, 256, 256), dtype=np.uint8, chunks=(1, 32, 256)).map_blocks(
        record, meta=np.empty((0, 0, 0), np.uint8)
    )
    write_ome_tiff(tmp_path / "s.ome.tif", level, tile=32)
    assert len(seen) == 2 * 8  # every chunk computed exactly once
    assert all(shape == (1, 32, 256) for shape in seen)


def test_ome_tiff_failure_mid_write_leaves_nothing(tmp_path):
    def explode(block, block_info=None):
        if block_info[0]["chunk-location"][1] == 3:
            raise RuntimeError("disk on fire")
        return block

    level = da.zeros((1, 256, 64), dtype=np.uint8, chunks=(1, 32, 64)).map_blocks(
        explode, meta=np.empty((0, 0, 0), np.uint8)
    )
    out = tmp_path / "broken.ome.tif"
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_ome_tiff(out, level, tile=32)
    assert list(tmp_path.iterdir()) == []


def test_ome_tiff_bad_arguments(tmp_path, pyramid):
    _, levels = pyramid
    with pytest.raises(PatchwiseError, match="multiple of 16"):
        write_ome_tiff(tmp_path / "x.tif", levels, tile=100)
    with pytest.raises(PatchwiseError, match="not a TIFF"):
        write_ome_tiff(tmp_path / "x.png", levels)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["unnamed.ome.tif", "unnamed.ome.zarr"])
def test_unnamed_channels_are_written_as_a_reader_names_them(tmp_path, rng, name):
    """One home for default channel names: a written file reads back as an unnamed one.

    The writers used to name channels ``channel 0`` while readers default to
    ``channel_0``, so the same slide had other names once converted.
    """
    img = da.from_array(rng.integers(0, 256, (2, 32, 32), dtype=np.uint8))
    out = tmp_path / name
    if name.endswith(".zarr"):
        write_ome_zarr(out, img, chunk=16, contrast_limits=[(0, 255)] * 2)
        attrs = json.loads((out / "zarr.json").read_text())["attributes"]
        labels = [c["label"] for c in attrs["ome"]["omero"]["channels"]]
    else:
        write_ome_tiff(out, img, tile=16)
        with tifffile.TiffFile(out) as tif:
            pixels = ET.fromstring(tif.ome_metadata).find(f"{OME_NS}Image/{OME_NS}Pixels")
        labels = [c.get("Name") for c in pixels.findall(f"{OME_NS}Channel")]
    assert labels == ["channel_0", "channel_1"]
    assert load_image(out).channel_names == ["channel_0", "channel_1"]


def test_writers_take_file_types_from_io_formats():
    assert write.TIFF_SUFFIXES is formats.TIFF_SUFFIXES
    assert write.ZARR_SUFFIXES is formats.ZARR_SUFFIXES


@pytest.mark.parametrize("name", ["x.ome.tif", "x.ome.zarr"])
def test_both_writers_check_channel_names_alike(tmp_path, pyramid, rng, name):
    _, levels = pyramid
    writer = write_ome_zarr if name.endswith(".zarr") else write_ome_tiff
    with pytest.raises(ValueError, match=r"^2 channel names for 3 channels$"):
        writer(tmp_path / name, levels, channel_names=["a", "b"], pixel_size=0.5)
    assert list(tmp_path.iterdir()) == []
    # A mask has no channels: names are not checked, and none are written.
    mask = da.from_array(rng.integers(0, 3, (32, 32), dtype=np.uint8))
    writer(tmp_path / name, mask, channel_names=["a", "b"])
    assert load_image(tmp_path / name).channel_names is None


@pytest.mark.parametrize("version", ["0.5", "0.4"])
def test_ome_zarr_round_trip_and_metadata(tmp_path, pyramid, version):
    a, levels = pyramid
    out = tmp_path / "slide.ome.zarr"
    write_ome_zarr(
        out,
        levels,
        channel_names=["CARS", "TPEF", "SHG"],
        pixel_size=0.5,
        chunk=32,
        version=version,
        contrast_limits=[(0, 200), (10, 250), (5, 100)],
    )
    root = zarr.open_group(out, mode="r")
    if version == "0.5":
        assert root.metadata.zarr_format == 3
        meta = json.loads((out / "zarr.json").read_text())["attributes"]["ome"]
        assert meta["version"] == "0.5"
        assert "version" not in meta["multiscales"][0]
        assert root["0"].metadata.dimension_names == ("c", "y", "x")
    else:
        assert root.metadata.zarr_format == 2
        meta = json.loads((out / ".zattrs").read_text())
        assert meta["multiscales"][0]["version"] == "0.4"
        assert (out / "0" / "0" / "0" / "0").is_file()  # "/" dimension separator
    ms = meta["multiscales"][0]
    assert [ax["name"] for ax in ms["axes"]] == ["c", "y", "x"]
    assert [ax["type"] for ax in ms["axes"]] == ["channel", "space", "space"]
    assert [d["path"] for d in ms["datasets"]] == ["0", "1"]
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales == [[1.0, 0.5, 0.5], [1.0, 1.0, 1.0]]
    channels = meta["omero"]["channels"]
    assert [c["label"] for c in channels] == ["CARS", "TPEF", "SHG"]
    assert channels[1]["window"] == {"min": 0.0, "max": 255.0, "start": 10.0, "end": 250.0}
    np.testing.assert_array_equal(root["0"][:], a)
    np.testing.assert_array_equal(root["1"][:], a[:, ::2, ::2])
    assert root["0"].chunks == (1, 32, 32)


def test_ome_zarr_mask_and_failure(tmp_path, rng):
    mask = rng.integers(0, 3, (64, 48), dtype=np.uint8)
    write_ome_zarr(tmp_path / "mask.ome.zarr", da.from_array(mask), chunk=16)
    meta = json.loads((tmp_path / "mask.ome.zarr" / "zarr.json").read_text())["attributes"]
    assert [ax["name"] for ax in meta["ome"]["multiscales"][0]["axes"]] == ["y", "x"]
    assert "omero" not in meta["ome"]
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "mask.ome.zarr" / "0")[:], mask)

    def explode(block):
        raise RuntimeError("boom")

    bad = da.zeros((1, 64, 64), dtype=np.uint8, chunks=(1, 16, 16)).map_blocks(
        explode, meta=np.empty((0, 0, 0), np.uint8)
    )
    with pytest.raises(RuntimeError, match="boom"):
        write_ome_zarr(tmp_path / "bad.ome.zarr", bad, contrast_limits=[(0, 1)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.ome.zarr"]


def test_staged_arrays_compute_shared_work_once(tmp_path):
    calls = []

    def make(block_info=None):
        calls.append(block_info[None]["chunk-location"])
        return np.ones(block_info[None]["chunk-shape"], dtype=np.uint8)

    both = da.map_blocks(
        make, chunks=((2,), (16, 16), (16, 16)), meta=np.empty((0, 0, 0), np.uint8)
    )
    with staged_arrays([both[:1], both[1]], workdir=tmp_path, chunk=16) as (img, mask):
        assert img.shape == (1, 32, 32) and mask.shape == (32, 32)
        assert int(img.sum().compute()) == 32 * 32 and int(mask.sum().compute()) == 32 * 32
        assert len(calls) == 4  # one call per block, shared by both outputs
    assert list(tmp_path.iterdir()) == []  # scratch removed
