"""Extra per-patch attributes (intensity, border fraction, slide) and attribute grouping."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from napari_patchwise.errors import PatchwiseError
from napari_patchwise.groups import attribute_values, group_ids, table_group_ids
from napari_patchwise.patches.attributes import (
    attribute_columns,
    border_codes,
    parse_kinds,
    patch_attributes,
)
from napari_patchwise.patches.grid import PatchGrid, patch_stats
from napari_patchwise.slide import Slide


def random_slide(h=37, w=53, *, chunks=16, factor=1, dtype=np.uint8, seed=0):
    """Odd-sized two-channel slide, chunked so that patches straddle chunk boundaries."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    image = (rng.random((2, h, w)) * top).astype(dtype)
    # blobs of background so that borders exist inside the slide
    mh, mw = -(-h // factor), -(-w // factor)
    mask = rng.choice([1, 2], size=(mh, mw), p=[0.7, 0.3]).astype(np.uint8)
    mask[rng.random((mh, mw)) < 0.15] = 0
    mask[: mh // 3, : mw // 4] = 0
    slide = Slide(
        levels=(da.from_array(image, chunks=(2, chunks, chunks)),),
        channel_names=("CARS", "TPEF"),
        name="s",
    ).with_mask(da.from_array(mask, chunks=chunks), factor=factor)
    return slide, image, mask


def brute_force(image, codes, table, margin):
    """Mean, std and border fraction of each patch straight from the pixels."""
    h, w = codes.shape
    background = codes == 0
    near = np.zeros_like(background)
    for i in range(h):
        for j in range(w):
            window = background[
                max(0, i - margin) : i + margin + 1, max(0, j - margin) : j + margin + 1
            ]
            near[i, j] = window.any()
    tissue = ~background
    rows = []
    for y, x, ph, pw in table[["y", "x", "height", "width"]].to_numpy():
        sl = (slice(y, y + ph), slice(x, x + pw))
        pix = image[(slice(None), *sl)].astype(np.float64).reshape(image.shape[0], -1)
        n_t = tissue[sl].sum()
        frac = (tissue[sl] & near[sl]).sum() / n_t if n_t else np.nan
        rows.append([*pix.mean(axis=1), *pix.std(axis=1), frac])
    return np.array(rows)


@pytest.mark.parametrize(
    "grid",
    [
        PatchGrid(8),
        PatchGrid(8, stride=5, origin=(1, 2)),
        PatchGrid(7, keep_edges=True),
        PatchGrid(6, stride=9, origin=(3, 0), keep_edges=True),
    ],
    ids=["tiled", "overlapping", "edges", "gapped-edges"],
)
@pytest.mark.parametrize("margin", [1, 3, 20])  # 20 > the 16-pixel chunks
def test_intensity_and_border_equal_brute_force(grid, margin):
    slide, image, mask = random_slide()
    table = patch_stats(slide, grid)
    attrs = patch_attributes(slide, grid, border_margin=margin, slide_index=4)
    assert list(attrs.columns) == [
        "mean_CARS", "std_CARS", "mean_TPEF", "std_TPEF", "border_fraction", "slide_index",
    ]  # fmt: skip
    assert len(attrs) == len(table)
    expected = brute_force(image, mask, table, margin)
    np.testing.assert_allclose(attrs["mean_CARS"], expected[:, 0], rtol=1e-12)
    np.testing.assert_allclose(attrs["mean_TPEF"], expected[:, 1], rtol=1e-12)
    np.testing.assert_allclose(attrs["std_CARS"], expected[:, 2], rtol=1e-9)
    np.testing.assert_allclose(attrs["std_TPEF"], expected[:, 3], rtol=1e-9)
    np.testing.assert_array_equal(
        attrs["border_fraction"], expected[:, 4]
    )  # NaN in the same places
    assert (attrs["slide_index"] == 4).all() and attrs["slide_index"].dtype == np.int64
    # the border fraction's denominator is patch_stats' own tissue count
    has_tissue = table["n_tissue"].to_numpy() > 0
    assert np.array_equal(~np.isnan(attrs["border_fraction"].to_numpy()), has_tissue)


def test_half_resolution_mask_and_16_bit_image():
    slide, image, mask = random_slide(41, 30, factor=2, dtype=np.uint16, chunks=8, seed=3)
    grid = PatchGrid(6)
    attrs = patch_attributes(slide, grid, ["border", "intensity"], border_margin=2)
    assert list(attrs.columns) == [
        "border_fraction",
        *attribute_columns(["intensity"], slide.channel_names),
    ]
    level0 = np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1)[:41, :30]
    expected = brute_force(image, level0, patch_stats(slide, grid), 2)
    np.testing.assert_allclose(attrs["mean_CARS"], expected[:, 0], rtol=1e-12)
    np.testing.assert_allclose(attrs["std_TPEF"], expected[:, 3], rtol=1e-9)
    np.testing.assert_array_equal(attrs["border_fraction"], expected[:, 4])


def test_border_codes_by_hand():
    code = np.array(
        [
            [0, 1, 1, 1, 1],
            [1, 1, 1, 1, 1],
            [1, 1, 1, 1, 2],
        ],
        dtype=np.uint8,
    )
    # margin 1: the 3x3 squares around (0,0)'s neighbours hold background; the array edge
    # is not background, so (2, 4) stays interior
    assert border_codes(code, 1).tolist() == [[0, 2, 1, 1, 1], [2, 2, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert border_codes(code, 2)[2].tolist() == [2, 2, 2, 1, 1]


def test_bad_kinds_and_margin():
    with pytest.raises(PatchwiseError, match="unknown attribute kind 'colour'"):
        parse_kinds("intensity,colour")
    assert parse_kinds("slide, intensity,slide") == ("slide", "intensity")
    slide, _, _ = random_slide()
    with pytest.raises(PatchwiseError, match="border margin"):
        patch_attributes(slide, PatchGrid(8), ["border"], border_margin=0)


# -- grouping by any attribute ---------------------------------------------------------------
def test_tissue_ratio_attribute_equals_the_tau_grouping():
    rng = np.random.default_rng(1)
    table = pd.DataFrame(
        {"label": rng.integers(0, 2, 5000).astype(np.int8), "tissue_ratio": rng.random(5000)}
    )
    table.loc[::7, "tissue_ratio"] = 0.25  # ties at the threshold
    for tau in (0.0, 0.1, 0.25, 0.9, 1.0):
        expected = group_ids(table["label"], table["tissue_ratio"], tau)
        got = table_group_ids(table, "tissue_ratio", tau)
        assert got.dtype == np.int8 and np.array_equal(got, expected)
        assert np.array_equal(table_group_ids(table, threshold=tau), expected)  # the default


def test_any_numeric_attribute_groups_and_clear_errors():
    table = pd.DataFrame(
        {
            "label": [0, 0, 1, 1, 1],
            "mean_CARS": [10.0, 200.0, 50.0, 120.0, np.nan],
            "note": ["a", "b", "c", "d", "e"],
        }
    )
    assert table_group_ids(table, "mean_CARS", 100).tolist() == [0, 1, 2, 3, 2]  # NaN: low
    with pytest.raises(
        PatchwiseError, match=r"t\.csv: table has no attribute column 'mean_TPEF'.*mean_CARS"
    ):
        attribute_values(table, "mean_TPEF", path="t.csv")
    with pytest.raises(PatchwiseError, match="'note' is not numeric"):
        attribute_values(table, "note")
