"""Aperio SVS reads through the tifffile tile reader by default, with OpenSlide's pixels.

Every level, odd-sized edge regions, the metadata and the associated images are compared
with what :func:`napari_patchwise.io.wsi.read_openslide` gives for the same file; the
files tifffile would decode differently (a JFIF JPEG tagged RGB), files tifffile cannot
open and ``PATCHWISE_SVS_READER=openslide`` go to OpenSlide.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

openslide = pytest.importorskip("openslide")
imagecodecs = pytest.importorskip("imagecodecs")
import tifffile  # noqa: E402

sys.path.insert(0, str(Path(__file__).parents[1]))
import _wsi  # noqa: E402
from napari_patchwise.io import open_slide, svs  # noqa: E402
from napari_patchwise.io._tiles import TiffLevelView  # noqa: E402
from napari_patchwise.io.formats import load_image  # noqa: E402
from napari_patchwise.io.wsi import OpenSlideLevelView, read_openslide  # noqa: E402

DESC = _wsi.APERIO + "\n{w}x{h} [0,0 {w}x{h}] (256x256) JPEG/RGB Q=80|AppMag = 20|MPP = 0.4990"


def level_view(level):
    """The view a level's dask graph reads from (TiffLevelView or OpenSlideLevelView)."""
    views = [v for v in level.dask.values() if isinstance(v, TiffLevelView | OpenSlideLevelView)]
    assert len(views) == 1
    return views[0]


def textured(height: int, width: int) -> np.ndarray:
    """Brightfield with noise everywhere, so JPEG decoding differences would show."""
    rng = np.random.default_rng(3)
    noise = rng.integers(-40, 40, (height, width, 3))
    return np.clip(_wsi.brightfield(height, width).astype(int) + noise, 0, 255).astype(np.uint8)


def write_jpeg_svs(path: Path, image: np.ndarray, **compressionargs) -> None:
    """A two-level JPEG SVS (256 px tiles) with a stripped thumbnail, as tifffile writes it."""
    h, w = image.shape[:2]
    options = dict(photometric="rgb", metadata=None)
    args = {"level": 80, **compressionargs}
    desc = DESC.format(h=h, w=w)
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            image,
            tile=(256, 256),
            compression="jpeg",
            compressionargs=args,
            description=desc,
            **options,
        )
        tw.write(image[::8, ::8], description=f"{_wsi.APERIO}\n{w}x{h} -> thumbnail", **options)
        tw.write(
            np.ascontiguousarray(image[::4, ::4]),
            tile=(256, 256),
            compression="jpeg",
            compressionargs=args,
            description=desc,
            **options,
        )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("svs")
    zlib = folder / "zlib.svs"
    _wsi.write_svs(zlib, textured(700, 1100), tile=128, n_levels=3)
    ycc = folder / "ycc.svs"  # tifffile's JPEG: YCbCr, JFIF
    write_jpeg_svs(ycc, textured(1100, 1300))
    rgb = folder / "rgb.svs"  # Aperio's JPEG: RGB, no JFIF (Adobe marker)
    write_jpeg_svs(rgb, textured(700, 900), outcolorspace="RGB")
    aperio_tif = folder / "aperio.tif"
    _wsi.write_svs(aperio_tif, textured(300, 400), tile=128, n_levels=2)
    return {"zlib": zlib, "ycc": ycc, "rgb": rgb, "aperio_tif": aperio_tif}


def _same_as_openslide(path: Path) -> None:
    ours, theirs = load_image(path), read_openslide(path)
    assert [lvl.shape for lvl in ours.levels] == [lvl.shape for lvl in theirs.levels]
    for mine, other in zip(ours.levels, theirs.levels, strict=True):
        np.testing.assert_array_equal(mine.compute(), other.compute())
        _, h, w = mine.shape
        # Odd-sized regions across tile borders and at the ragged right and bottom edges.
        for ys, xs in [
            (slice(h - 37, h), slice(w - 129, w)),
            (slice(1, 258), slice(127, 130)),
            (slice(h // 3, h // 3 + 301), slice(w - 1, w)),
        ]:
            np.testing.assert_array_equal(mine[:, ys, xs].compute(), other[:, ys, xs].compute())
    assert ours.pixel_size == theirs.pixel_size
    assert ours.objective_power == theirs.objective_power
    assert ours.vendor == theirs.vendor == "aperio"
    assert ours.background == theirs.background == "bright"
    assert ours.channel_names == theirs.channel_names == ["R", "G", "B"]
    assert ours.contrast_limits == theirs.contrast_limits
    assert sorted(ours.associated) == sorted(theirs.associated)
    for name in ours.associated:
        np.testing.assert_array_equal(ours.associated[name](), theirs.associated[name]())


@pytest.mark.parametrize("name", ["zlib", "ycc", "rgb", "aperio_tif"])
def test_svs_reads_through_tifffile_with_openslides_pixels(files, name):
    path = files[name]
    slide = open_slide(path)
    assert all(isinstance(level_view(lvl), TiffLevelView) for lvl in slide.levels)
    _same_as_openslide(path)


def test_metadata_is_openslides(files):
    slide = open_slide(files["zlib"])
    assert slide.pixel_size == (0.25, 0.25) and slide.objective_power == 40.0
    assert sorted(slide.associated) == ["label", "macro", "thumbnail"]
    slide = open_slide(files["ycc"])
    assert slide.pixel_size == (0.499, 0.499) and slide.objective_power == 20.0
    assert sorted(slide.associated) == ["thumbnail"]


def test_jfif_jpeg_tagged_rgb_goes_to_openslide(tmp_path):
    # JFIF (YCbCr) tiles in a page tagged RGB: OpenSlide decodes them as RGB, tifffile
    # as YCbCr; only OpenSlide's reading is today's, so the file goes to OpenSlide.
    image = textured(512, 512)
    tiles = [
        imagecodecs.jpeg8_encode(np.ascontiguousarray(image[y : y + 256, x : x + 256]), level=80)
        for y in (0, 256)
        for x in (0, 256)
    ]
    assert tiles[0][6:10] == b"JFIF"
    path = tmp_path / "jfif.svs"
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            iter(tiles),
            shape=(512, 512, 3),
            dtype=np.uint8,
            tile=(256, 256),
            photometric="rgb",
            compression="jpeg",
            compressionargs={"outcolorspace": "RGB"},
            description=DESC.format(h=512, w=512),
            metadata=None,
        )
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].photometric == 2 and tif.pages[0].is_jfif
    with pytest.raises(svs.NotExact):
        svs.read_svs(path)
    slide = open_slide(path)
    assert isinstance(level_view(slide.levels[0]), OpenSlideLevelView)
    expected = np.asarray(openslide.OpenSlide(str(path)).read_region((0, 0), 0, (512, 512)))
    np.testing.assert_array_equal(slide.levels[0].compute(), expected[..., :3].transpose(2, 0, 1))


def test_empty_tiles_read_as_openslides_glass(tmp_path):
    image = np.full((256, 512, 3), 100, np.uint8)
    path = tmp_path / "sparse.svs"
    tiles = [imagecodecs.zlib_encode(np.ascontiguousarray(image[:, :256])), b""]
    desc = DESC.format(h=256, w=512)
    with tifffile.TiffWriter(path) as tw:
        tw.write(
            iter(tiles),
            shape=(256, 512, 3),
            dtype=np.uint8,
            tile=(256, 256),
            photometric="rgb",
            compression="zlib",
            description=desc,
            metadata=None,
        )
    slide = open_slide(path)
    assert isinstance(level_view(slide.levels[0]), TiffLevelView)
    pixels = slide.levels[0].compute()
    assert (pixels[:, :, :256] == 100).all() and (pixels[:, :, 256:] == 255).all()
    np.testing.assert_array_equal(pixels, read_openslide(path).levels[0].compute())
    # dask.distributed workers get the view pickled: it reopens with the same fill.
    clone = pickle.loads(pickle.dumps(level_view(slide.levels[0])))
    np.testing.assert_array_equal(clone[:, :, :], pixels)


def test_falls_back_to_openslide_when_tifffile_fails(files, monkeypatch):
    def broken(*args, **kwargs):
        raise tifffile.TiffFileError("not a TIFF as tifffile sees it")

    monkeypatch.setattr(tifffile, "TiffFile", broken)
    slide = open_slide(files["zlib"])
    assert isinstance(level_view(slide.levels[0]), OpenSlideLevelView)
    assert slide.pixel_size == (0.25, 0.25) and slide.objective_power == 40.0
    monkeypatch.undo()
    np.testing.assert_array_equal(
        slide.levels[1].compute(), open_slide(files["zlib"]).levels[1].compute()
    )


def test_environment_forces_openslide(files, monkeypatch):
    monkeypatch.setenv(svs.READER_ENV, "openslide")
    slide = open_slide(files["ycc"])
    assert all(isinstance(level_view(lvl), OpenSlideLevelView) for lvl in slide.levels)
    monkeypatch.setenv(svs.READER_ENV, "OpenSlide ")
    assert isinstance(level_view(open_slide(files["ycc"]).levels[0]), OpenSlideLevelView)


def test_other_vendors_stay_on_openslide(tmp_path, monkeypatch):
    # Only Aperio is routed to tifffile: read_svs is never asked for another format.
    calls = []
    monkeypatch.setattr(svs, "read_svs", lambda path: calls.append(path))
    path = tmp_path / "g.tif"
    _wsi.write_generic_tiff(path, _wsi.brightfield(64, 64))
    load_image(path)
    assert calls == []
