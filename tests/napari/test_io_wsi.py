"""Vendor whole-slide formats: OpenSlide (Aperio SVS, vendor TIFF) and DICOM WSI (wsidicom).

Files are written to each format's published structure (``_wsi.py``) and opened through
``open_slide``; pixels, levels, microns per pixel, objective power and associated images
are checked against what was written.
"""

from __future__ import annotations

import pickle
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

openslide = pytest.importorskip("openslide")
pytest.importorskip("wsidicom")

import _wsi  # noqa: E402
from napari_patchwise import PatchwiseError  # noqa: E402
from napari_patchwise.io import open_slide  # noqa: E402
from napari_patchwise.io.formats import image_format  # noqa: E402
from napari_patchwise.io.wsi import _flatten_rgba  # noqa: E402
from napari_patchwise.patches.grid import PatchGrid, patch_stats  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wsi")
    level0 = _wsi.brightfield(600, 1000)
    return {
        "svs": (folder / "a.svs", _wsi.write_svs(folder / "a.svs", level0)),
        "svs_tif": (folder / "b.tif", _wsi.write_svs(folder / "b.tif", level0, mpp=0.5, mag=20)),
        "generic": (folder / "g.tif", _wsi.write_generic_tiff(folder / "g.tif", level0)),
        "dicom": (folder / "case7", _wsi.write_dicom_wsi(folder / "case7", level0[:300, :500])),
    }


def _cyx(level: np.ndarray) -> np.ndarray:
    return level.transpose(2, 0, 1)


def test_aperio_svs_pixels_levels_and_metadata(files):
    path, levels = files["svs"]
    assert openslide.OpenSlide.detect_format(str(path)) == "aperio"
    assert image_format(path) == "openslide"
    slide = open_slide(path)
    assert slide.vendor == "aperio" and slide.name == "a"
    assert slide.channel_names == ("R", "G", "B") and slide.dtype == np.uint8
    assert slide.pixel_size == (0.25, 0.25) and slide.objective_power == 40.0
    assert slide.background == "bright"
    assert slide.display_contrast_limits() == ((0.0, 255.0),) * 3
    assert [lvl.shape for lvl in slide.levels] == [(3, 600, 1000), (3, 300, 500), (3, 150, 250)]
    assert slide.downsamples == (1, 2, 4)
    for lvl, written in zip(slide.levels, levels, strict=True):
        np.testing.assert_array_equal(lvl.compute(), _cyx(written))
    # A region across tile borders, and one channel of a coarse level.
    np.testing.assert_array_equal(
        slide.levels[0][:, 100:300, 120:260].compute(), _cyx(levels[0][100:300, 120:260])
    )
    np.testing.assert_array_equal(slide.levels[2][1, 7:90].compute(), levels[2][7:90, :, 1])
    # Chunks are whole 128 px tiles (grouped), never a tile cut in two.
    for axis in (1, 2):
        assert all(c % 128 == 0 for c in slide.levels[0].chunks[axis][:-1])
    assert sorted(slide.associated) == ["label", "macro", "thumbnail"]
    np.testing.assert_array_equal(slide.associated["label"](), _wsi.label_image())
    assert slide.associated["macro"]().shape == (60, 160, 3)
    assert slide.associated["thumbnail"]().shape == levels[-1].shape


def test_vendor_tif_goes_to_openslide_and_generic_tiff_stays_on_tifffile(files):
    path, levels = files["svs_tif"]
    assert image_format(path) == "openslide"
    slide = open_slide(path)
    assert slide.vendor == "aperio" and slide.pixel_size == (0.5, 0.5)
    assert slide.objective_power == 20.0
    np.testing.assert_array_equal(slide.levels[1].compute(), _cyx(levels[1]))

    path, levels = files["generic"]
    assert openslide.OpenSlide.detect_format(str(path)) == "generic-tiff"
    assert image_format(path) == "tiff"
    slide = open_slide(path)
    assert slide.vendor is None and slide.pixel_size == (1.0, 1.0)
    # 8-bit RGB read by tifffile is brightfield too: R, G, B and a bright background.
    assert slide.channel_names == ("R", "G", "B") and slide.background == "bright"
    reference = openslide.OpenSlide(str(path))
    for i, lvl in enumerate(slide.levels):
        np.testing.assert_array_equal(lvl.compute(), _cyx(levels[i]))
        ours = np.asarray(reference.read_region((0, 0), i, reference.level_dimensions[i]))
        np.testing.assert_array_equal(lvl.compute(), _cyx(ours[..., :3]))


def test_dicom_wsi_folder_and_one_of_its_files(files):
    folder, levels = files["dicom"]
    instance = sorted(folder.glob("*.dcm"))[0]
    for path in (folder, instance):
        assert image_format(path) == "dicom"
        slide = open_slide(path)
        assert slide.name == "case7" and slide.vendor == "dicom"
        assert slide.channel_names == ("R", "G", "B") and slide.background == "bright"
        assert slide.pixel_size == pytest.approx((0.5, 0.5))
        assert [lvl.shape for lvl in slide.levels] == [(3, 300, 500), (3, 150, 250)]
        for lvl, written in zip(slide.levels, levels, strict=True):
            np.testing.assert_array_equal(lvl.compute(), _cyx(written))
        np.testing.assert_array_equal(
            slide.levels[1][:, 30:140, 100:240].compute(), _cyx(levels[1][30:140, 100:240])
        )
    label = slide.associated["label"]()  # a JPEG instance: close, not exact
    assert label.shape == (40, 64, 3)
    assert np.abs(label.astype(int) - _wsi.label_image()).mean() < 4


@pytest.mark.parametrize("kind", ["svs", "dicom"])
def test_concurrent_region_reads_equal_sequential_ones(files, kind):
    # One handle serves every dask thread without a lock: reads must not interfere.
    path, levels = files[kind]
    level = open_slide(path).levels[0]
    rng = np.random.default_rng(1)
    h, w = level.shape[1:]
    boxes = []
    for _ in range(48):
        y, x = int(rng.integers(0, h - 64)), int(rng.integers(0, w - 64))
        boxes.append((y, x, int(rng.integers(16, 64)), int(rng.integers(16, 64))))

    def read(box):
        y, x, dy, dx = box
        return level[:, y : y + dy, x : x + dx].compute(scheduler="sync")

    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(read, boxes))
    for (y, x, dy, dx), region in zip(boxes, together, strict=True):
        np.testing.assert_array_equal(region, _cyx(levels[0][y : y + dy, x : x + dx]))
    # Whole level with dask's threaded scheduler, chunk reads running in parallel.
    np.testing.assert_array_equal(level.compute(scheduler="threads"), _cyx(levels[0]))


@pytest.mark.parametrize("kind", ["svs", "dicom"])
def test_levels_pickle_by_reopening_the_file(files, kind):
    # dask.distributed ships graphs to workers: views reopen the slide there.
    path, levels = files[kind]
    level = pickle.loads(pickle.dumps(open_slide(path).levels[1]))
    np.testing.assert_array_equal(level.compute(), _cyx(levels[1]))


def test_alpha_is_composited_onto_the_background_colour():
    # OpenSlide gives premultiplied RGBA: transparent pixels (outside the scan) are 0.
    rgba = np.array([[[10, 20, 30, 255], [0, 0, 0, 0], [50, 40, 30, 128]]], np.uint8)
    out = _flatten_rgba(rgba, (255, 255, 255))
    np.testing.assert_array_equal(out, [[[10, 20, 30], [255, 255, 255], [177, 167, 157]]])
    out = _flatten_rgba(rgba, (240, 0, 16))
    np.testing.assert_array_equal(out[0, 1], [240, 0, 16])
    opaque = rgba[:, :1]
    assert _flatten_rgba(opaque, (255, 255, 255)).base is not None  # no copy needed


def test_brightfield_intensity_tissue_defaults_to_a_bright_background(files, tmp_path):
    import tifffile

    path, levels = files["svs"]
    # Binary mask: tumor in the top-left quarter of the tissue block, tissue from
    # intensity. Tissue is the dark block [150:450, 250:750]; glass is white.
    mask = np.zeros((600, 1000), np.uint8)
    mask[150:300, 250:500] = 1
    tifffile.imwrite(tmp_path / "m.tif", mask)
    slide = open_slide(path, mask=tmp_path / "m.tif", mask_map="binary")
    table = patch_stats(slide, PatchGrid(50), tissue="intensity", tissue_threshold=200)
    tissue = (levels[0].mean(axis=-1) < 200) | (mask == 1)
    expected = tissue.reshape(12, 50, 20, 50).sum(axis=(1, 3)).ravel()
    np.testing.assert_array_equal(table["n_tissue"].to_numpy(), expected)
    assert table["n_tissue"].sum() == 300 * 500
    dark = patch_stats(slide, PatchGrid(50), tissue_threshold=200, background="dark")
    assert dark["n_tissue"].sum() == 600 * 1000 - 300 * 500 + 150 * 250  # glass + tumor


def test_missing_extra_is_one_line_naming_it(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "openslide", None)  # import openslide -> ImportError
    # An exact Aperio SVS opens through tifffile, with its metadata, without OpenSlide ...
    assert open_slide(files["svs"][0]).pixel_size == (0.25, 0.25)
    # ... and needs it where OpenSlide must read it (here: forced by the environment).
    monkeypatch.setenv("PATCHWISE_SVS_READER", "openslide")
    with pytest.raises(PatchwiseError) as err:
        open_slide(files["svs"][0])
    message = str(err.value)
    assert "\n" not in message and "needs OpenSlide" in message
    assert "pip install 'napari-patchwise[wsi]'" in message
    # A scanner TIFF still opens, through tifffile (without its vendor metadata).
    assert image_format(files["svs_tif"][0]) == "tiff"
    assert open_slide(files["svs_tif"][0]).shape == (3, 600, 1000)

    monkeypatch.setitem(sys.modules, "wsidicom", None)
    with pytest.raises(PatchwiseError, match=r"needs wsidicom.*napari-patchwise\[wsi\]"):
        open_slide(files["dicom"][0])


def test_unreadable_vendor_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"II*\x00" + b"\x00" * 64)
    with pytest.raises(PatchwiseError, match="OpenSlide cannot read this slide") as err:
        open_slide(bad)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)
    folder = tmp_path / "notwsi"
    folder.mkdir()
    (folder / "x.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 32)
    with pytest.raises(PatchwiseError, match="not a readable DICOM WSI"):
        open_slide(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PatchwiseError, match="nor a DICOM WSI folder"):
        open_slide(tmp_path / "empty")


def test_napari_reader_takes_vendor_files_and_dicom_folders(files, tmp_path):
    from npe2 import PluginManifest

    from napari_patchwise._napari.reader import layers as reader_module
    from napari_patchwise._napari.reader.layers import napari_get_reader

    manifest = PluginManifest.from_distribution("napari-patchwise")
    patterns = {p for r in manifest.contributions.readers for p in r.filename_patterns}
    for ext in ("svs", "ndpi", "mrxs", "scn", "bif", "vms", "vmu", "svslide", "dcm"):
        assert f"*.{ext}" in patterns and f"*.{ext.upper()}" in patterns
        assert napari_get_reader(str(tmp_path / f"x.{ext}")) is reader_module.read_layers
    assert "*.svs" in reader_module.PREFERRED_PATTERNS
    assert napari_get_reader(str(files["dicom"][0])) is reader_module.read_layers
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("not a slide")
    assert napari_get_reader(str(tmp_path / "plain")) is None
    layers = reader_module.read_layers(str(files["svs"][0]))
    assert [kw["name"] for _, kw, _ in layers] == ["a"]  # brightfield: one RGB layer
    assert [kw["rgb"] for _, kw, _ in layers] == [True]
