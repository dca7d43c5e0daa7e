"""Extra per-patch attributes: candidates for the spurious attribute (docs/attributes.md).

The paper's spurious attribute is tissue size (``tissue_ratio``). These are others a model
may rely on instead of the tumor itself; :func:`patch_attributes` computes them for the
same grid and in the same raster order as :func:`~napari_patchwise.patches.grid.patch_stats`:

* ``intensity``: ``mean_<channel>`` and ``std_<channel>`` of every channel over the
  patch's pixels inside the image (population standard deviation, ``ddof=0``).
* ``border``: ``border_fraction``, the share of the patch's tissue pixels that lie within
  ``border_margin`` level-0 pixels (Chebyshev distance: a ``2m+1`` square) of a
  background pixel. Pixels outside the image are not background. NaN for a patch
  without tissue (it counts as below every threshold).
* ``slide``: ``slide_index``, the slide's 0-based position in the command line or the
  cohort manifest.

Like the counts in :mod:`.grid`, everything is computed lazily, chunk by chunk: per-patch
sums of pixel values, squared values and border indicators are reduced per chunk
(reshape-and-sum when the stride is the patch size, column sums of strips otherwise),
so memory is bounded by a few chunks. Sums are float64; for 8- and 16-bit images every
sum is an exact integer (below 2**53 for patches up to 1024 x 1024 pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import dask
import dask.array as da
import numpy as np
import pandas as pd

from .._progress import ProgressCallback, dask_progress
from ..errors import PatchwiseError
from ..schema import (
    ATTRIBUTE_KINDS,
    BORDER_COLUMN,
    DEFAULT_BORDER_MARGIN,
    NOT_ATTRIBUTES,
    SLIDE_INDEX_COLUMN,
    TABLE_COLUMNS,
    intensity_columns,
)
from ..slide import BACKGROUND, Slide
from .grid import TARGET_CHUNK, PatchGrid, aligned_chunks, level0_class_codes

#: Largest border margin (level-0 pixels): the margin is also the chunk overlap.
MAX_BORDER_MARGIN = 1024


def parse_kinds(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"intensity,border"`` (or a list) -> checked attribute kinds, in the given order."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    kinds = []
    for item in (i.strip() for i in items):
        if item not in ATTRIBUTE_KINDS:
            raise PatchwiseError(
                f"unknown attribute kind {item!r}", hint=f"one of {', '.join(ATTRIBUTE_KINDS)}"
            )
        if item not in kinds:
            kinds.append(item)
    return tuple(kinds)


def attribute_columns(kinds: Sequence[str], channel_names: Sequence[str]) -> tuple[str, ...]:
    """The columns :func:`patch_attributes` writes for ``kinds`` on such channels."""
    columns: list[str] = []
    for kind in kinds:
        if kind == "intensity":
            columns += intensity_columns(channel_names)
        elif kind == "border":
            columns.append(BORDER_COLUMN)
        else:
            columns.append(SLIDE_INDEX_COLUMN)
    return tuple(columns)


def patch_attributes(
    slide: Slide,
    grid: PatchGrid,
    kinds: Sequence[str] = ATTRIBUTE_KINDS,
    *,
    tissue: str = "auto",
    tissue_threshold: float | None = None,
    background: str | None = None,
    channels: Sequence[int | str] | None = None,
    border_margin: int = DEFAULT_BORDER_MARGIN,
    slide_index: int = 0,
    progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """Extra attributes of every patch, rows in the raster order of ``patch_stats``.

    Parameters
    ----------
    slide : Slide
        Needs a mask for ``"border"`` (tissue comes from it or from intensity, as in
        :func:`~napari_patchwise.patches.grid.patch_stats`).
    grid : PatchGrid
    kinds : sequence of {"intensity", "border", "slide"}
    tissue, tissue_threshold, background, channels
        Where tissue is, as for ``patch_stats`` (used by ``"border"`` only; ``background``
        None: the slide's own).
    border_margin : int
        Margin of the border fraction in level-0 pixels (default 16).
    slide_index : int
        The value of ``slide_index``.
    progress : callable, optional
        ``progress(done, total)``.

    Returns
    -------
    pandas.DataFrame
        The columns :func:`attribute_columns` names, one row per patch.
    """
    kinds = parse_kinds(kinds)
    if not (
        isinstance(border_margin, (int, np.integer)) and 1 <= border_margin <= MAX_BORDER_MARGIN
    ):
        raise PatchwiseError(
            f"border margin must be a whole number of pixels in 1..{MAX_BORDER_MARGIN}, "
            f"got {border_margin!r}"
        )
    _, height, width = slide.shape
    n_rows, n_cols = grid.grid_shape(height, width)
    hs, ws = grid.extents(height, width)
    n_pixels = (hs[:, None] * ws[None, :]).ravel().astype(np.float64)
    columns: dict[str, np.ndarray] = {}
    for kind in kinds:
        if kind == "intensity":
            columns.update(_intensity(slide, grid, n_rows, n_cols, n_pixels, progress))
        elif kind == "border":
            options = dict(
                tissue=tissue,
                tissue_threshold=tissue_threshold,
                background=background,
                channels=channels,
            )
            columns[BORDER_COLUMN] = _border(
                slide, grid, n_rows, n_cols, border_margin, options, progress
            )
        else:
            columns[SLIDE_INDEX_COLUMN] = np.full(n_rows * n_cols, int(slide_index), np.int64)
    return pd.DataFrame(columns, columns=list(attribute_columns(kinds, slide.channel_names)))


def _intensity(slide, grid, n_rows, n_cols, n_pixels, progress) -> dict[str, np.ndarray]:
    image = slide.levels[0]
    oy, ox = grid.origin
    sums = window_sums(image[:, oy:, ox:], grid, n_rows, n_cols, squares=True, progress=progress)
    n_channels = image.shape[0]
    out = {}
    for k, name in enumerate(slide.channel_names):
        total = sums[k].ravel()
        mean = total / n_pixels
        # population variance from the two sums; clipped: rounding can leave -1e-13
        var = np.maximum(sums[n_channels + k].ravel() / n_pixels - mean * mean, 0.0)
        out[f"mean_{name}"] = mean
        out[f"std_{name}"] = np.sqrt(var)
    return out


def _border(slide, grid, n_rows, n_cols, margin, options, progress) -> np.ndarray:
    codes = level0_class_codes(slide, **options)
    near = codes.map_overlap(
        partial(border_codes, margin=int(margin)),
        depth=int(margin),
        boundary="none",
        dtype=np.uint8,
    )
    oy, ox = grid.origin
    near = near[oy:, ox:]
    indicators = da.stack([near == 2, near > 0]).astype(np.uint8)
    sums = window_sums(indicators, grid, n_rows, n_cols, progress=progress)
    n_near, n_tissue = sums[0].ravel(), sums[1].ravel()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_tissue > 0, n_near / np.maximum(n_tissue, 1), np.nan)


def border_codes(code: np.ndarray, margin: int) -> np.ndarray:
    """0 background, 1 tissue, 2 tissue within ``margin`` pixels of background.

    Chebyshev distance: a background pixel in the ``(2 margin + 1)`` square around the
    pixel. Beyond the array's edge there is no background (``map_overlap`` hands each
    chunk its neighbours' pixels, so only the slide's own edge is such an edge).
    """
    from scipy.ndimage import maximum_filter1d

    size = 2 * int(margin) + 1
    bg = (code == BACKGROUND).view(np.uint8)
    near = maximum_filter1d(bg, size, axis=0, mode="constant", cval=0)
    near = maximum_filter1d(near, size, axis=1, mode="constant", cval=0)
    tissue = code != BACKGROUND
    out = tissue.view(np.uint8).copy()
    out[tissue & (near != 0)] = 2
    return out


# -- per-patch sums ------------------------------------------------------------------------
def block_sums(block: np.ndarray, patch_size: int, squares: bool = False) -> np.ndarray:
    """Per-channel sums (and sums of squares) of every ``patch_size`` square of a block.

    Parameters
    ----------
    block : ndarray, shape (K, R * patch_size, C * patch_size)
    patch_size : int
    squares : bool
        Also return the sums of squared values (after the plain sums).

    Returns
    -------
    ndarray of float64, shape (K * (1 + squares), R, C)
    """
    p = patch_size
    k, y, x = block.shape
    r, c = y // p, x // p
    out = np.empty(((1 + squares) * k, r, c), dtype=np.float64)
    for i in range(k):
        values = block[i].astype(np.float64)
        out[i] = values.reshape(r, p, c * p).sum(axis=1).reshape(r, c, p).sum(axis=2)
        if squares:
            values *= values
            out[k + i] = values.reshape(r, p, c * p).sum(axis=1).reshape(r, c, p).sum(axis=2)
    return out


def window_sums(
    values: da.Array,
    grid: PatchGrid,
    n_rows: int,
    n_cols: int,
    *,
    squares: bool = False,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Per-patch sums of a ``(K, Y, X)`` array whose ``(0, 0)`` is the grid's origin.

    Pixels past the image's edge (kept edge patches) count as 0. Returns float64
    ``(K * (1 + squares), n_rows, n_cols)``.
    """
    p, s = grid.patch_size, grid.step
    k = values.shape[0]
    extent_y, extent_x = (n_rows - 1) * s + p, (n_cols - 1) * s + p
    if n_rows == 0 or n_cols == 0:
        return np.zeros(((1 + squares) * k, n_rows, n_cols))
    region = _zero_padded(values, extent_y, extent_x)
    if p == s:
        return _tiled_sums(region, p, n_rows, n_cols, squares, progress)
    return _strided_sums(region, p, s, n_rows, n_cols, squares, progress)


def _zero_padded(values: da.Array, rows: int, cols: int) -> da.Array:
    region = values[:, :rows, :cols]
    pad = [(0, 0), (0, rows - region.shape[1]), (0, cols - region.shape[2])]
    if pad[1][1] or pad[2][1]:
        region = da.pad(region, pad, mode="constant", constant_values=0)
    return region


def _tiled_sums(region, p, n_rows, n_cols, squares, progress) -> np.ndarray:
    k = region.shape[0]
    region = region.rechunk(
        (
            (k,),
            aligned_chunks(region.chunks[1], n_rows * p, p),
            aligned_chunks(region.chunks[2], n_cols * p, p),
        )
    )
    sums = da.map_blocks(
        block_sums,
        region,
        patch_size=p,
        squares=squares,
        chunks=(
            ((1 + squares) * k,),
            tuple(c // p for c in region.chunks[1]),
            tuple(c // p for c in region.chunks[2]),
        ),
        dtype=np.float64,
    )
    with dask_progress(progress):
        return np.asarray(sums.compute())


def _strided_sums(region, p, s, n_rows, n_cols, squares, progress) -> np.ndarray:
    """Any stride: per row of patches, column sums of its strip, then window sums."""
    k, _, extent_x = region.shape
    xs = s * np.arange(n_cols)
    # Running sums along a whole strip: int64 keeps them exact for integer images (a
    # float64 running sum of 16-bit squares passes 2**53 on a wide slide).
    exact = np.issubdtype(region.dtype, np.integer) or region.dtype == np.bool_
    acc = np.int64 if exact else np.float64
    out = np.empty(((1 + squares) * k, n_rows, n_cols), dtype=np.float64)
    rows_per_band = max(1, (4 * max(max(region.chunks[1]), TARGET_CHUNK)) // max(s, p))
    for start in range(0, n_rows, rows_per_band):
        stop = min(n_rows, start + rows_per_band)
        strips = [region[:, i * s : i * s + p].astype(acc) for i in range(start, stop)]
        parts = [[st.sum(axis=1)] + ([(st * st).sum(axis=1)] if squares else []) for st in strips]
        column_sums = dask.compute(*[da.concatenate(part, axis=0) for part in parts])
        for i, col in zip(range(start, stop), column_sums, strict=True):
            cum = np.zeros((col.shape[0], extent_x + 1), dtype=acc)
            np.cumsum(col, axis=1, out=cum[:, 1:])
            out[:, i, :] = cum[:, xs + p] - cum[:, xs]
        if progress is not None:
            progress(stop, n_rows)
    return out


# -- which attribute a column is -------------------------------------------------------------
def column_kind(column: str, channel_names: Sequence[str] = ()) -> str | None:
    """The kind whose computation gives ``column``; ``None`` for a ``patch_stats`` column.

    Raises
    ------
    PatchwiseError
        For a column that is neither (with ``channel_names`` given: also a ``mean_``/
        ``std_`` column of a channel the slide does not have).
    """

    if column in TABLE_COLUMNS and column not in NOT_ATTRIBUTES and column != "slide":
        return None
    if column == BORDER_COLUMN:
        return "border"
    if column == SLIDE_INDEX_COLUMN:
        return "slide"
    stat, _, channel = column.partition("_")
    if stat in ("mean", "std") and channel and (not channel_names or channel in channel_names):
        return "intensity"
    known = f"channels {', '.join(channel_names)}" if channel_names else "a channel name"
    raise PatchwiseError(
        f"{column!r} is not a per-patch attribute patchwise can compute",
        hint=f"use tissue_ratio, {BORDER_COLUMN}, {SLIDE_INDEX_COLUMN}, or mean_<channel> / "
        f"std_<channel> with {known} (docs/attributes.md)",
    )
