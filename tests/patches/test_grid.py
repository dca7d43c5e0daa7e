"""Patch statistics against hand-computed counts on tiny masks."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from napari_patchwise.errors import PatchwiseError
from napari_patchwise.patches.grid import TABLE_COLUMNS, PatchGrid, block_class_counts, patch_stats
from napari_patchwise.slide import HEALTHY, TUMOR, Slide

# 0 background, 1 healthy, 2 tumor.
MASK = np.array(
    [
        [0, 1, 2, 2, 0, 0],
        [1, 1, 2, 0, 0, 0],
        [0, 0, 0, 1, 1, 1],
        [0, 0, 1, 1, 2, 0],
        [0, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 2],
    ],
    dtype=np.uint8,
)


def make_slide(mask, *, image=None, chunks=4, factor=1, kind="3class", level0=None):
    if image is None:
        h, w = level0 if level0 is not None else (mask.shape[0] * factor, mask.shape[1] * factor)
        image = np.zeros((1, h, w), dtype=np.uint8)
    levels = (da.from_array(image, chunks=(image.shape[0], chunks, chunks)),)
    names = tuple(f"c{i}" for i in range(image.shape[0]))
    return Slide(levels=levels, channel_names=names).with_mask(
        da.from_array(mask, chunks=chunks), factor=factor, kind=kind
    )


def counts(table):
    return table[["n_tumor", "n_healthy"]].to_numpy().tolist()


def test_columns_and_hand_counts_3x3():
    table = patch_stats(make_slide(MASK), PatchGrid(3))
    assert list(table.columns) == list(TABLE_COLUMNS)
    # Patches in raster order; counts read off MASK by hand.
    assert counts(table) == [[2, 3], [1, 3], [0, 2], [2, 1]]
    assert table["row"].tolist() == [0, 0, 1, 1]
    assert table["col"].tolist() == [0, 1, 0, 1]
    assert table["y"].tolist() == [0, 0, 3, 3]
    assert table["x"].tolist() == [0, 3, 0, 3]
    assert table["n_pixels"].tolist() == [9] * 4
    assert table["n_tissue"].tolist() == [5, 4, 2, 3]
    assert table["label"].tolist() == [1, 1, 0, 1]
    np.testing.assert_allclose(table["tumor_ratio"], [2 / 9, 1 / 9, 0, 2 / 9])
    np.testing.assert_allclose(table["tissue_ratio"], [5 / 9, 4 / 9, 2 / 9, 3 / 9])
    np.testing.assert_allclose(table["tumor_tissue_ratio"], [2 / 5, 1 / 4, 0, 2 / 3])
    assert (table["slide"] == "slide").all()


@pytest.mark.parametrize("chunks", [1, 2, 4, 5, 6])
def test_chunks_not_multiple_of_patch_size_give_same_counts(chunks):
    table = patch_stats(make_slide(MASK, chunks=chunks), PatchGrid(3))
    assert counts(table) == [[2, 3], [1, 3], [0, 2], [2, 1]]


def test_odd_size_drops_edges_by_default_and_keeps_them_on_request():
    # 6x6 mask, patch 4: only one full patch; keep_edges gives 2x2 with true sizes.
    dropped = patch_stats(make_slide(MASK, chunks=5), PatchGrid(4))
    assert len(dropped) == 1
    assert counts(dropped) == [[3, 6]]
    kept = patch_stats(make_slide(MASK, chunks=5), PatchGrid(4, keep_edges=True))
    assert counts(kept) == [[3, 6], [1, 2], [0, 1], [1, 0]]
    assert kept["height"].tolist() == [4, 4, 2, 2]
    assert kept["width"].tolist() == [4, 2, 4, 2]
    assert kept["n_pixels"].tolist() == [16, 8, 8, 4]
    np.testing.assert_allclose(kept["tissue_ratio"], [9 / 16, 3 / 8, 1 / 8, 1 / 4])


def test_origin_offset():
    # Grid starting at (1, 2): patches of 2 over rows 1..4, cols 2..5.
    table = patch_stats(make_slide(MASK, chunks=3), PatchGrid(2, origin=(1, 2)))
    # Patch rows: rows 1-2 / 3-4 ; cols 2-3 / 4-5.
    assert table[["y", "x"]].to_numpy().tolist() == [[1, 2], [1, 4], [3, 2], [3, 4]]
    assert counts(table) == [[1, 1], [0, 2], [0, 2], [1, 0]]


def test_overlapping_and_gapped_strides():
    overlap = patch_stats(make_slide(MASK, chunks=4), PatchGrid(3, stride=2))
    assert overlap[["y", "x"]].to_numpy().tolist() == [[0, 0], [0, 2], [2, 0], [2, 2]]
    # (0,2): rows 0-2 cols 2-4 = [2,2,0],[2,0,0],[0,1,1] -> tumor 3, healthy 2
    # (2,0): rows 2-4 cols 0-2 = [0,0,0],[0,0,1],[0,0,0] -> healthy 1
    # (2,2): rows 2-4 cols 2-4 = [0,1,1],[1,1,2],[0,0,0] -> tumor 1, healthy 4
    assert counts(overlap) == [[2, 3], [3, 2], [0, 1], [1, 4]]
    gapped = patch_stats(make_slide(MASK, chunks=4), PatchGrid(2, stride=4))
    # patches at (0,0), (0,4), (4,0), (4,4), each 2x2: [[0,1],[1,1]], 0s, [[0,0],[1,0]], [[0,0],[0,2]].
    assert counts(gapped) == [[0, 3], [0, 0], [0, 1], [1, 0]]


def test_mask_at_half_resolution_counts_level0_pixels():
    # Mask 3x3 at factor 2 -> level 0 is 6x6; each mask pixel is 4 level-0 pixels.
    small = np.array([[2, 0, 1], [1, 1, 0], [0, 2, 0]], dtype=np.uint8)
    slide = make_slide(small, factor=2, chunks=2)
    aligned = patch_stats(slide, PatchGrid(2))  # counted at mask resolution
    assert counts(aligned) == [
        [4, 0],
        [0, 0],
        [0, 4],
        [0, 4],
        [0, 4],
        [0, 0],
        [0, 0],
        [4, 0],
        [0, 0],
    ]
    # Patch 3 is not a multiple of 2: counted on the upsampled mask, still exact.
    odd = patch_stats(slide, PatchGrid(3))
    level0 = np.repeat(np.repeat(small, 2, 0), 2, 1)
    expected = [
        [
            int((level0[y : y + 3, x : x + 3] == 2).sum()),
            int((level0[y : y + 3, x : x + 3] == 1).sum()),
        ]
        for y in (0, 3)
        for x in (0, 3)
    ]
    assert counts(odd) == expected == [[4, 3], [0, 5], [2, 3], [2, 1]]


def test_floor_sized_downsampled_mask_with_kept_edges():
    # Level 0 is 7x7, mask factor 2 stored as 3x3 (floor): the last row/col has no mask.
    small = np.array([[2, 0, 1], [1, 1, 0], [0, 2, 2]], dtype=np.uint8)
    slide = make_slide(small, factor=2, chunks=2, level0=(7, 7))
    table = patch_stats(slide, PatchGrid(4, keep_edges=True))
    assert table["n_pixels"].tolist() == [16, 12, 12, 9]
    # Patch (0,0): mask pixels (0,0),(0,1),(1,0),(1,1) x4 -> tumor 4, healthy 8
    # Patch (0,1): level-0 cols 4-6 rows 0-3 -> mask col 2 (cols 4,5) rows 0-1 -> healthy 4
    # Patch (1,0): rows 4-6 -> mask row 2 (rows 4,5), cols 0-3 -> tumor 4 (col 1)
    # Patch (1,1): rows 4-6, cols 4-6 -> mask (2,2) -> tumor 4
    assert counts(table) == [[4, 8], [0, 4], [4, 0], [4, 0]]


@pytest.mark.parametrize("background", ["dark", "bright"])
def test_intensity_tissue_with_both_polarities(background):
    binary = np.where(MASK == 2, 2, 0).astype(np.uint8)  # a tumor-only mask, mapped
    bright = np.zeros((2, 6, 6), dtype=np.uint8)
    bright[:, :3, :] = 200  # top half bright
    bright[0, 4, 4] = 200  # mean (200 + 0) / 2 = 100: below the threshold
    image = bright if background == "dark" else 255 - bright
    slide = make_slide(binary, image=image, kind="binary")
    table = patch_stats(slide, PatchGrid(3), tissue_threshold=127.5, background=background)
    # Tissue = top three rows (18 px) plus tumor pixels below them (1 at (3, 4)).
    assert counts(table) == [[2, 7], [1, 8], [0, 0], [2, 0]]
    assert (table["n_tissue"] <= table["n_pixels"]).all()
    # "auto" on a binary mask means intensity.
    auto = patch_stats(
        slide, PatchGrid(3), tissue="auto", tissue_threshold=127.5, background=background
    )
    pd.testing.assert_frame_equal(auto, table)


def test_intensity_channels_by_name_and_otsu_default():
    binary = np.zeros((6, 6), dtype=np.uint8)
    image = np.zeros((2, 6, 6), dtype=np.uint16)
    image[1, :, :2] = 1000  # channel c1 shows tissue in the first two columns
    image[0] = 50  # channel c0 is flat
    slide = make_slide(binary, image=image, kind="binary")
    table = patch_stats(slide, PatchGrid(3), channels=["c1"])  # Otsu on c1 splits 0 / 1000
    assert table["n_healthy"].tolist() == [6, 0, 6, 0]
    by_index = patch_stats(slide, PatchGrid(3), channels=[1])
    pd.testing.assert_frame_equal(by_index, table)


def test_intensity_on_three_class_mask_ignores_mask_healthy():
    image = np.zeros((1, 6, 6), dtype=np.uint8)
    slide = make_slide(MASK, image=image)
    table = patch_stats(slide, PatchGrid(3), tissue="intensity", tissue_threshold=10)
    assert table["n_healthy"].tolist() == [0, 0, 0, 0]
    assert table["n_tumor"].tolist() == [2, 1, 0, 2]


def test_downsampled_mask_with_intensity_tissue():
    small = np.array([[2, 0], [0, 0]], dtype=np.uint8)
    image = np.zeros((1, 4, 4), dtype=np.uint8)
    image[0, 3, :] = 255
    slide = make_slide(small, image=image, factor=2, kind="binary", chunks=3)
    table = patch_stats(slide, PatchGrid(2), tissue_threshold=100)
    assert counts(table) == [[4, 0], [0, 0], [0, 2], [0, 2]]


def test_empty_grid_gives_empty_table_with_columns():
    table = patch_stats(make_slide(MASK), PatchGrid(7))
    assert len(table) == 0
    assert list(table.columns) == list(TABLE_COLUMNS)


def test_progress_is_reported():
    calls = []
    patch_stats(
        make_slide(MASK, chunks=2), PatchGrid(3), progress=lambda d, t: calls.append((d, t))
    )
    assert calls and calls[-1][0] == calls[-1][1] > 0
    calls.clear()
    patch_stats(
        make_slide(MASK), PatchGrid(3, stride=2), progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (2, 2)


def test_block_class_counts_by_hand():
    out = block_class_counts(MASK, 3)
    assert out.shape == (2, 2, 2)
    assert out[1].tolist() == [[2, 1], [0, 2]]
    assert out[0].tolist() == [[3, 3], [2, 1]]


def test_geometry():
    grid = PatchGrid(4, stride=3, origin=(1, 0))
    # Rows: available 9 px from y=1 -> starts 1, 4 (7 would end at 11 > 10).
    assert grid.grid_shape(10, 11) == (2, 3)
    ys, xs = grid.positions(10, 11)
    assert ys.tolist() == [1, 4] and xs.tolist() == [0, 3, 6]
    edges = PatchGrid(4, stride=3, origin=(1, 0), keep_edges=True)
    assert edges.grid_shape(10, 11) == (3, 4)  # row 7..9 and column 9..10 are partial
    assert edges.extents(10, 11)[0].tolist() == [4, 4, 3]
    assert edges.grid_shape(11, 11) == (3, 4)  # row 7..10 is full: no extra row needed
    assert edges.grid_shape(12, 11) == (4, 4)
    # Gapped: starts 0, 4, 8 (8..9 fits), never a start outside the image.
    assert PatchGrid(2, stride=4, keep_edges=True).grid_shape(11, 10) == (3, 3)
    assert PatchGrid(5).grid_shape(4, 100) == (0, 20)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"patch_size": 0},
        {"patch_size": 2.5},
        {"patch_size": 4, "stride": -1},
        {"patch_size": 4, "origin": (-1, 0)},
    ],
)
def test_bad_grid_is_a_clear_error(kwargs):
    with pytest.raises(PatchwiseError):
        PatchGrid(**kwargs)


def test_bad_inputs_are_clear_errors():
    no_mask = Slide(levels=(da.zeros((1, 6, 6)),), channel_names=("a",))
    with pytest.raises(PatchwiseError, match="no mask"):
        patch_stats(no_mask, PatchGrid(3))
    binary = make_slide(MASK, kind="binary")
    with pytest.raises(PatchwiseError, match="binary"):
        patch_stats(binary, PatchGrid(3), tissue="mask")
    with pytest.raises(PatchwiseError, match="no channel named"):
        patch_stats(binary, PatchGrid(3), channels=["nope"])
    with pytest.raises(PatchwiseError, match="does not match"):
        patch_stats(make_slide(MASK, level0=(9, 6)), PatchGrid(3))
    with pytest.raises(PatchwiseError, match="background"):
        patch_stats(binary, PatchGrid(3), background="grey")


def test_block_class_counts_counts_each_code():
    rng = np.random.default_rng(3)
    block = rng.integers(0, 3, (64, 96), dtype=np.uint8)
    with_others = block.copy()
    with_others[::7, ::5] = 9  # not a class code: counted as neither
    for codes in (block, with_others):
        counts = block_class_counts(codes, 32)
        blocks = codes.reshape(2, 32, 3, 32)
        np.testing.assert_array_equal(counts[0], (blocks == HEALTHY).sum(axis=(1, 3)))
        np.testing.assert_array_equal(counts[1], (blocks == TUMOR).sum(axis=(1, 3)))
