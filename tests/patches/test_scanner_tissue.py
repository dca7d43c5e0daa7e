"""Intensity tissue on a scanner slide: the fast path (pixels read (Y, X, C) from the tile
reader, tissue told by the channel sum) counts exactly what numpy and the general path do.

The slide is a JPEG Aperio SVS written by tifffile (odd size: partial edge tiles), its
mask a half-resolution label image; the reference decodes the whole file with tifffile
and counts in numpy.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile

import _wsi
from napari_patchwise.io import open_slide
from napari_patchwise.io._tile_cache import PREFETCH
from napari_patchwise.io._tiles import TiffLevelView
from napari_patchwise.io.region import channels_last_reader
from napari_patchwise.patches.grid import (
    PatchGrid,
    patch_stats,
    sum_cut,
    tissue_by_sum,
)
from napari_patchwise.slide import TUMOR

H, W, P = 1000, 1300, 96


@pytest.fixture(scope="module")
def scanner(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scanner")
    rng = np.random.default_rng(7)
    # sums of the three channels around 600 (mean 200), so thresholds near it split pixels
    image = rng.integers(170, 231, (H, W, 3), dtype=np.uint8)
    image[: H // 3] = 255  # glass
    svs = folder / "slide.svs"
    _wsi.write_jpeg_svs(svs, image)
    mask = np.zeros((H // 2, W // 2), np.uint8)
    mask[300:420, 200:500] = TUMOR
    decoded = tifffile.imread(svs)  # the pixels every reader gives (same JPEG decoder)
    return svs, decoded, mask


def reference(rgb, mask, channels, threshold, bright):
    """Counts by hand: float32 mean brightness, tumor from the mask at level 0."""
    brightness = rgb[..., channels].astype(np.float32).mean(axis=-1, dtype=np.float32)
    tissue = brightness < threshold if bright else brightness > threshold
    code = tissue.astype(np.uint8)
    level0 = np.repeat(np.repeat(mask, 2, 0), 2, 1)[:H, :W]
    code[level0 == TUMOR] = TUMOR
    rows, cols = H // P, W // P
    blocks = code[: rows * P, : cols * P].reshape(rows, P, cols, P)
    return (blocks == TUMOR).sum(axis=(1, 3)).ravel(), (blocks == 1).sum(axis=(1, 3)).ravel()


@pytest.mark.parametrize("threshold", [200.0, 601 / 3, 199.5])  # ties at sums 600 and 601
@pytest.mark.parametrize("background", ["bright", "dark"])
@pytest.mark.parametrize("channels", [None, [0, 2], ["G"]])
def test_counts_equal_numpy_and_the_general_path(scanner, threshold, background, channels):
    svs, decoded, mask = scanner
    slide = open_slide(svs).with_mask(da.from_array(mask, chunks=200), factor=2)
    assert channels_last_reader(slide.levels[0]) is not None  # the fast path is taken
    kwargs = dict(tissue="intensity", tissue_threshold=threshold, background=background)
    names = list(slide.channel_names)
    if channels == ["G"]:  # a name, as --channels takes it
        channels = [names.index(n) for n in names if n.upper().startswith("G")][:1] or [1]
    fast = patch_stats(slide, PatchGrid(P), channels=channels, **kwargs)
    # level + 0 is no reader's own level: the general (C, Y, X) path
    general = slide.__class__(**{**vars(slide), "levels": (slide.levels[0] + 0,)})
    assert channels_last_reader(general.levels[0]) is None
    slow = patch_stats(general, PatchGrid(P), channels=channels, **kwargs)
    assert fast.equals(slow)
    tumor, healthy = reference(
        decoded, mask, channels or [0, 1, 2], threshold, background == "bright"
    )
    np.testing.assert_array_equal(fast["n_tumor"].to_numpy(), tumor)
    np.testing.assert_array_equal(fast["n_healthy"].to_numpy(), healthy)
    assert 0 < healthy.sum() < H * W  # the threshold splits the pixels


def test_tissue_by_sum_is_the_mean_test():
    tissue = tissue_by_sum(3, 200.0, bright_background=True)
    assert tissue.shape == (766,) and tissue[599] and not tissue[600]  # mean 200 is not < 200
    assert tissue_by_sum(3, 200.0, bright_background=False)[601]
    assert not tissue_by_sum(3, 200.0, bright_background=False)[600]
    single = tissue_by_sum(1, 10.5, bright_background=False)
    assert single.shape == (256,) and not single[10] and single[11]


def test_sum_cut_is_the_step_of_tissue_by_sum():
    sums = np.arange(766)
    for threshold, bright in [(200.0, True), (601 / 3, False), (0.0, True), (300.0, False)]:
        tissue = tissue_by_sum(3, threshold, bright)
        cut, dark_is_tissue = sum_cut(tissue)
        np.testing.assert_array_equal(tissue, sums < cut if dark_is_tissue else sums >= cut)
    assert sum_cut(np.array([True, False, True])) is None  # no step: the general path


def test_tiles_under_tumor_throughout_are_not_decoded(scanner, monkeypatch):
    """A tile the mask calls tumor everywhere keeps TUMOR codes undecoded; its edge
    neighbours are decoded and counted exactly as numpy counts."""
    svs, decoded, _ = scanner
    mask = np.zeros((H // 2, W // 2), np.uint8)
    mask[128:256, 0:256] = TUMOR  # level-0 rows 256..512, columns 0..512: two whole tiles
    mask[300:310, 300:310] = TUMOR  # part of one tile
    decodes = []
    original = TiffLevelView._decode

    def counting(self, page, i):
        if self._path == str(svs) and self._level == 0:  # not another test's prefetching
            decodes.append(i)
        return original(self, page, i)

    monkeypatch.setattr(TiffLevelView, "_decode", counting)
    monkeypatch.setattr(PREFETCH, "enabled", True)  # as in napari, once a slide is shown
    slide = open_slide(svs).with_mask(da.from_array(mask, chunks=(256, 256)), factor=2)
    kwargs = dict(tissue="intensity", tissue_threshold=200.0, background="bright")
    counts = patch_stats(slide, PatchGrid(P), **kwargs)
    PREFETCH.wait(timeout=30)
    n_tiles = -(-H // 256) * -(-W // 256)
    # blocks on the tile grid: each level-0 tile decoded once (no prefetching ring on a
    # one-pass read), but two
    assert sorted(decodes) == sorted(set(range(n_tiles)) - {1 * 6 + 0, 1 * 6 + 1})
    tumor, healthy = reference(decoded, mask, [0, 1, 2], 200.0, True)
    np.testing.assert_array_equal(counts["n_tumor"].to_numpy(), tumor)
    np.testing.assert_array_equal(counts["n_healthy"].to_numpy(), healthy)


@pytest.mark.parametrize("channels", [None, [2, 0]])
def test_planar_tiff_channels_from_separate_planes(tmp_path, channels):
    """An OME-TIFF with one plane per channel (tifffile, planar tiles): the channels come
    from different tiles, read as one region; counts equal the general path's."""
    rng = np.random.default_rng(11)
    image = rng.integers(150, 256, (3, 700, 900), dtype=np.uint8)
    path = tmp_path / "planar.ome.tif"
    tifffile.imwrite(
        path, image, tile=(128, 128), photometric="minisblack", metadata={"axes": "CYX"}
    )
    mask = np.zeros((700, 900), np.uint8)
    mask[100:300, 128:512] = TUMOR
    slide = open_slide(path).with_mask(da.from_array(mask, chunks=256), factor=1)
    assert channels_last_reader(slide.levels[0]) is not None
    kwargs = dict(tissue="intensity", tissue_threshold=200.0, background="bright")
    fast = patch_stats(slide, PatchGrid(64), channels=channels, **kwargs)
    general = slide.__class__(**{**vars(slide), "levels": (slide.levels[0] + 0,)})
    slow = patch_stats(general, PatchGrid(64), channels=channels, **kwargs)
    assert fast.equals(slow)
    assert fast["n_healthy"].sum() > 0 and fast["n_tumor"].sum() > 0


def test_tumor_free_slide_counts_tissue_only(scanner):
    """A tumor-free half-resolution mask: no tile is skipped, no tumor pixel is counted,
    and the healthy counts are numpy's."""
    svs, decoded, _ = scanner
    mask = np.zeros((H // 2, W // 2), np.uint8)
    slide = open_slide(svs).with_mask(da.from_array(mask, chunks=200), factor=2)
    counts = patch_stats(
        slide, PatchGrid(P), tissue="intensity", tissue_threshold=200.0, background="bright"
    )
    tumor, healthy = reference(decoded, mask, [0, 1, 2], 200.0, True)
    assert not tumor.any() and not counts["n_tumor"].any()
    np.testing.assert_array_equal(counts["n_healthy"].to_numpy(), healthy)
    assert 0 < healthy.sum() < len(healthy) * P * P  # glass and tissue both present
