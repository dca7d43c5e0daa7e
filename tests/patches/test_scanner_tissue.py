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
from napari_patchwise.io.region import channels_last_reader
from napari_patchwise.patches.grid import PatchGrid, patch_stats, tissue_by_sum
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
