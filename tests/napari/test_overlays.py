"""Overlay geometry and colour encoding (napari layers without a viewer, plus one screenshot)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from napari.layers import Image
from napari.utils.colormaps.colormap_utils import _napari_cmap_to_vispy

from napari_patchwise._napari.canvas.overlays import (
    CORRECTNESS_COLORS,
    GROUP_COLORS,
    PatchRaster,
    encode_by_class,
    expected_step_class,
    overlay_transform,
    step_colormap,
    step_contrast_limits,
)


@pytest.mark.parametrize(
    ("origin", "stride", "pixel_size", "image_translate"),
    [((0, 0), 16, (1.0, 1.0), (0.0, 0.0)), ((3, 5), 8, (0.5, 0.25), (10.0, -4.0))],
)
def test_overlay_cell_covers_exactly_its_patch_pixels(origin, stride, pixel_size, image_translate):
    image = Image(np.zeros((64, 80)), scale=pixel_size, translate=image_translate)
    n_rows, n_cols = (64 - origin[0]) // stride, (80 - origin[1]) // stride
    scale, translate = overlay_transform(
        origin, stride, image_scale=pixel_size, image_translate=image_translate
    )
    cell_ids = np.arange(n_rows * n_cols, dtype=np.float32).reshape(n_rows, n_cols)
    overlay = Image(cell_ids, scale=scale, translate=translate)

    for y in range(origin[0], origin[0] + n_rows * stride):
        for x in range(origin[1], origin[1] + n_cols * stride, 3):
            expected = (y - origin[0]) // stride * n_cols + (x - origin[1]) // stride
            # the pixel's centre and points just inside its edges fall in the same cell
            for dy, dx in ((0, 0), (-0.49, -0.49), (0.49, 0.49)):
                world = image.data_to_world((y + dy, x + dx))
                assert overlay.get_value(world, world=True) == expected, (y, x, dy, dx)
    # the pixel just outside the grid's first cell is not in it
    world = image.data_to_world((origin[0] - 1, origin[1]))
    assert overlay.get_value(world, world=True) is None


def test_raster_paints_and_looks_up_table_rows():
    table = pd.DataFrame({"row": [0, 0, 2, 1], "col": [0, 3, 1, 2]})
    raster = PatchRaster.from_table(table)
    assert raster.shape == (3, 4)
    painted = raster.paint(np.array([10.0, 11.0, 12.0, 13.0]))
    assert painted[0, 3] == 11.0 and painted[2, 1] == 12.0 and painted[1, 2] == 13.0
    assert np.isnan(painted).sum() == 12 - 4
    assert raster.lookup(2, 1) == 2 and raster.lookup(1, 1) == -1 and raster.lookup(5, 0) == -1


def _shader_colour_index(colormap, values, limits):
    """Which colormap colour the GPU shows: vispy's 1024-texel LUT, nearest lookup."""
    lut = _napari_cmap_to_vispy(colormap).texture_map_data[:, 0, :]
    t = np.clip((np.asarray(values, np.float32) - limits[0]) / (limits[1] - limits[0]), 0, 1)
    texel = np.minimum((t * lut.shape[0]).astype(int), lut.shape[0] - 1)
    rgba = lut[texel]
    palette = np.array([colormap.colors[i] for i in range(4)], dtype=np.float32)
    return np.argmin(np.abs(rgba[:, None, :] - palette[None]).sum(-1), axis=1)


@pytest.mark.parametrize("threshold", [0.0, 0.03, 0.1, 0.25, 0.5, 0.731, 1.0])
def test_step_colormap_splits_each_class_exactly_at_the_threshold(threshold):
    cmap = step_colormap(GROUP_COLORS, "groups")
    x = np.unique(np.concatenate([np.linspace(0, 1, 4097), [threshold]]))
    # stay clear of the documented display tolerance just below the threshold
    x = x[(x >= threshold) | (x < threshold - 5e-5)]
    for label in (0, 1):
        values = encode_by_class(np.full(x.size, label), x)
        shown = _shader_colour_index(cmap, values, step_contrast_limits(threshold))
        expected = 2 * label + (x >= threshold)
        np.testing.assert_array_equal(shown, expected)
        np.testing.assert_array_equal(expected_step_class(values, threshold), expected)


def test_correctness_colormap_has_four_distinct_colours():
    cmap = step_colormap(CORRECTNESS_COLORS, "correctness")
    assert len({tuple(np.round(c, 3)) for c in cmap.colors}) == 4
