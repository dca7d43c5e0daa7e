"""Patch-grid geometry and exact per-patch statistics, computed chunk by chunk with dask.

A slide is cut into ``patch_size`` squares placed every ``stride`` pixels from ``origin``
(level-0 pixel coordinates). For every patch :func:`patch_stats` counts, exactly, its
pixels, tumor pixels and healthy-tissue pixels, and derives the label and the three
ratios described in ``docs/numbers.md``.

How the counts are made
-----------------------
Every pixel first gets a class code (0 background, 1 healthy tissue, 2 tumor) — straight
from a 3-class mask, or from a tumor mask plus the image's brightness. Then:

* ``stride == patch_size`` (the default): the code array is cropped to the grid, rechunked
  so that chunk boundaries fall on patch boundaries, and each chunk is reduced to its
  patches' counts by a reshape-and-sum (:func:`block_class_counts`). The result is a
  patch-resolution array; memory is bounded by a few chunks.
* any other stride (overlapping or gapped patches): each row of patches is a horizontal
  strip whose column sums dask computes chunk by chunk; window sums over the column sums
  give the patches. Strips are computed a band at a time, so memory stays bounded.

Masks stored at ``1/f`` of level 0 are counted at mask resolution and multiplied by
``f * f`` when the patch size, stride and origin are multiples of ``f`` (exact); otherwise
(and whenever tissue comes from level-0 intensity) each mask chunk is upsampled by
repetition and counted at level 0, which is exact for any geometry.

All functions handed to dask are module-level (picklable), so the computation runs
unchanged on a ``dask.distributed`` cluster.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import dask
import dask.array as da
import numpy as np
import pandas as pd

from .._progress import ProgressCallback, dask_progress
from ..errors import PatchwiseError
from ..io.region import channels_last_reader
from ..schema import BACKGROUNDS, TABLE_COLUMNS, TISSUE_MODES
from ..slide import BACKGROUND, HEALTHY, TUMOR, Slide

# Target side of the chunks the counting works on: big enough to keep dask's per-task
# overhead small, small enough that a few chunks fit comfortably in memory.
TARGET_CHUNK = 2048
_BAND_PIXELS = 65536  # pixels whose tissue is told at once: one 256 px tile
# The automatic threshold reads at most this many pixels of the smallest level.
OTSU_MAX_PIXELS = 4_000_000
# Patch size, stride and origin bound (pixels): beyond any slide (BigTIFF sides stop at
# 2**32 - 1, scanners write under 2**20), and positions stay exact in int64.
MAX_GRID_PIXELS = 2**31 - 1


@dataclass(frozen=True)
class PatchGrid:
    """Where patches lie on a slide (level-0 pixel units).

    Parameters
    ----------
    patch_size : int
        Side of the square patches.
    stride : int, optional
        Distance between the top-left corners of neighbouring patches; defaults to
        ``patch_size`` (non-overlapping, no gaps).
    origin : (int, int)
        ``(y, x)`` of the first patch's top-left corner.
    keep_edges : bool
        Also keep patches that run past the image's bottom or right edge (their
        ``height``/``width``/``n_pixels`` are the part inside the image). By default they
        are dropped.
    """

    patch_size: int
    stride: int | None = None
    origin: tuple[int, int] = (0, 0)
    keep_edges: bool = False

    def __post_init__(self) -> None:
        if not _is_positive_int(self.patch_size):
            raise PatchwiseError(f"patch size must be a positive integer, got {self.patch_size!r}")
        if self.stride is not None and not _is_positive_int(self.stride):
            raise PatchwiseError(f"stride must be a positive integer, got {self.stride!r}")
        origin = tuple(self.origin)
        if len(origin) != 2 or not all(isinstance(o, (int, np.integer)) and o >= 0 for o in origin):
            raise PatchwiseError(f"origin must be two non-negative integers, got {self.origin!r}")
        # Larger values are no slide's geometry, and would overflow the int64 positions.
        for what, value in (("patch size", self.patch_size), ("stride", self.stride)):
            if value is not None and value > MAX_GRID_PIXELS:
                raise PatchwiseError(
                    f"{what} {value} is larger than any slide",
                    hint=f"use at most {MAX_GRID_PIXELS} pixels",
                )
        if max(origin) > MAX_GRID_PIXELS:
            raise PatchwiseError(
                f"origin {tuple(map(int, origin))} lies outside any slide",
                hint=f"use at most {MAX_GRID_PIXELS} pixels",
            )
        object.__setattr__(self, "origin", (int(origin[0]), int(origin[1])))

    def check_fits(
        self, height: int, width: int, *, path: str | os.PathLike | None = None
    ) -> tuple[int, int]:
        """Refuse a grid with no patch on a ``height x width`` slide, or a patch larger than it.

        Call it before counting: an empty grid would give an empty table that looks like
        a result, and a patch larger than the slide (kept as an edge patch) would make the
        counting pad the slide to the patch's size, allocating memory by the patch's area.

        Parameters
        ----------
        height, width : int
            Level-0 size of the slide.
        path : path-like, optional
            The slide, named in the error.

        Returns
        -------
        (int, int)
            :meth:`grid_shape`, both at least 1.

        Raises
        ------
        PatchwiseError
            When the patch is larger than the slide along an axis (also with
            ``keep_edges``: edge patches are partial patches after whole ones), or no
            patch fits between the origin and the slide's edge.
        """
        height, width = int(height), int(width)
        p = self.patch_size
        if p > height or p > width:
            hint = f"use a patch size of at most {min(height, width)}"
            if self.keep_edges:
                hint += "; keeping edges keeps partial patches after whole ones, never a patch "
                hint += "larger than the slide"
            raise PatchwiseError(
                f"patch size {p} is larger than the slide ({height} x {width} pixels)",
                path=path,
                hint=hint,
            )
        shape = self.grid_shape(height, width)
        if 0 in shape:
            oy, ox = self.origin
            raise PatchwiseError(
                f"no {p} x {p} patch fits between origin ({oy}, {ox}) and the edge of the "
                f"{height} x {width} slide",
                path=path,
                hint="use a smaller patch size or origin",
            )
        return shape

    @property
    def step(self) -> int:
        """The stride actually used."""
        return int(self.patch_size if self.stride is None else self.stride)

    def _count(self, extent: int, start: int) -> int:
        available = extent - start
        p, s = self.patch_size, self.step
        if available <= 0:
            return 0
        if not self.keep_edges:
            return 0 if available < p else (available - p) // s + 1
        # Enough patches to reach the last pixel, but none starting outside the image.
        return min(math.ceil(max(available - p, 0) / s) + 1, math.ceil(available / s))

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        """Number of patch rows and columns on a ``height x width`` level-0 image."""
        return self._count(int(height), self.origin[0]), self._count(int(width), self.origin[1])

    def positions(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-left ``y`` of each patch row and ``x`` of each patch column (int64)."""
        n_rows, n_cols = self.grid_shape(height, width)
        ys = self.origin[0] + self.step * np.arange(n_rows, dtype=np.int64)
        xs = self.origin[1] + self.step * np.arange(n_cols, dtype=np.int64)
        return ys, xs

    def extents(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Height of each patch row and width of each patch column inside the image."""
        ys, xs = self.positions(height, width)
        return (
            np.minimum(self.patch_size, height - ys),
            np.minimum(self.patch_size, width - xs),
        )


def patch_stats(
    slide: Slide,
    grid: PatchGrid,
    *,
    tissue: str = "auto",
    tissue_threshold: float | None = None,
    background: str | None = None,
    channels: Sequence[int | str] | None = None,
    progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """Exact per-patch counts, label and ratios of one slide (docs/numbers.md).

    Parameters
    ----------
    slide : Slide
        Must carry a mask (labels come from it).
    grid : PatchGrid
        Patch geometry.
    tissue : {"auto", "mask", "intensity"}
        Where tissue comes from. ``"mask"``: the 3-class mask's healthy and tumor pixels.
        ``"intensity"``: tumor pixels from the mask plus every pixel whose brightness
        passes ``tissue_threshold``. ``"auto"``: the mask for a 3-class mask, intensity for
        a binary (tumor-only) mask.
    tissue_threshold : float, optional
        Brightness threshold (image units) for intensity tissue; default: Otsu's threshold
        of the smallest pyramid level.
    background : {"dark", "bright"}, optional
        ``"dark"``: background is black, tissue is brighter than the threshold
        (fluorescence, nonlinear microscopy). ``"bright"``: brightfield, tissue is darker.
        Default: the slide's own (``Slide.background``: bright for brightfield
        whole-slide images read through OpenSlide or wsidicom, else dark).
    channels : sequence of int or str, optional
        Channels (indices or names) whose mean is the brightness; default all.
    progress : callable, optional
        ``progress(done, total)`` as dask tasks or strips finish.

    Returns
    -------
    pandas.DataFrame
        One row per patch in raster order with the columns :data:`TABLE_COLUMNS`.
    """
    if slide.mask is None:
        raise PatchwiseError(
            "slide has no mask; patch labels need a tumor mask",
            path=slide.path,
            hint="pass --mask (or open the slide with mask=...)",
        )
    mode = _resolve_tissue_mode(slide, tissue)
    background = slide.background if background is None else background
    if background not in BACKGROUNDS:
        raise PatchwiseError(f"background must be 'dark' or 'bright', got {background!r}")
    _, height, width = slide.shape
    n_rows, n_cols = grid.grid_shape(height, width)
    if n_rows == 0 or n_cols == 0:
        counts = np.zeros((2, n_rows, n_cols), dtype=np.int64)
    else:
        code, unit = _class_codes(slide, grid, mode, tissue_threshold, background, channels)
        p, s = grid.patch_size // unit, grid.step // unit
        if p == s:
            counts = _tiled_counts(code, p, n_rows, n_cols, progress)
        else:
            counts = _strided_counts(code, p, s, n_rows, n_cols, progress)
        counts *= unit * unit
    return _table(slide.name, grid, height, width, counts)


# -- the class-code array ----------------------------------------------------------------
def _resolve_tissue_mode(slide: Slide, tissue: str) -> str:
    if tissue not in TISSUE_MODES:
        raise PatchwiseError(f"tissue must be 'auto', 'mask' or 'intensity', got {tissue!r}")
    if tissue == "auto":
        return "mask" if slide.mask_kind == "3class" else "intensity"
    if tissue == "mask" and slide.mask_kind != "3class":
        raise PatchwiseError(
            "the mask is binary (tumor / non-tumor), so it does not say where tissue is",
            path=slide.mask_path,
            hint="use tissue='intensity' (--tissue intensity) or a 3-class mask",
        )
    return tissue


def _class_codes(
    slide: Slide,
    grid: PatchGrid,
    mode: str,
    tissue_threshold: float | None,
    background: str,
    channels: Sequence[int | str] | None,
) -> tuple[da.Array, int]:
    """Lazy per-pixel class codes, shifted so the grid's origin is (0, 0), and their unit.

    ``unit`` is how many level-0 pixels one code pixel spans along each axis: the mask
    factor when counting at mask resolution is exact, else 1.
    """
    _, height, width = slide.shape
    f = int(slide.mask_factor)
    mask = _checked_mask(slide)
    oy, ox = grid.origin
    aligned = all(v % f == 0 for v in (grid.patch_size, grid.step, oy, ox))
    partial_edge = grid.keep_edges and (height % f or width % f)
    if mode == "mask" and f > 1 and aligned and not partial_edge:
        # Every patch covers whole mask pixels, all inside the image: count mask pixels.
        return mask[oy // f :, ox // f :], f
    code = _level0_codes(slide, mask, mode, tissue_threshold, background, channels)
    return code[oy:, ox:], 1


def level0_class_codes(
    slide: Slide,
    *,
    tissue: str = "auto",
    tissue_threshold: float | None = None,
    background: str | None = None,
    channels: Sequence[int | str] | None = None,
) -> da.Array:
    """Lazy level-0 class codes (0 background, 1 healthy, 2 tumor) of the whole slide.

    The same codes :func:`patch_stats` counts, at level-0 resolution (a ``1/f`` mask
    upsampled chunk by chunk): for statistics that need every pixel's class at its
    place, such as the border fraction (:mod:`.attributes`). Options as in
    :func:`patch_stats`.
    """
    if slide.mask is None:
        raise PatchwiseError(
            "slide has no mask; patch labels need a tumor mask",
            path=slide.path,
            hint="pass --mask (or open the slide with mask=...)",
        )
    mode = _resolve_tissue_mode(slide, tissue)
    background = slide.background if background is None else background  # as patch_stats
    if background not in BACKGROUNDS:
        raise PatchwiseError(f"background must be 'dark' or 'bright', got {background!r}")
    return _level0_codes(slide, _checked_mask(slide), mode, tissue_threshold, background, channels)


def _level0_codes(
    slide: Slide,
    mask: da.Array,
    mode: str,
    tissue_threshold: float | None,
    background: str,
    channels: Sequence[int | str] | None,
) -> da.Array:
    _, height, width = slide.shape
    f = int(slide.mask_factor)
    level0_mask = _upsample(mask, f, height, width) if f > 1 else mask
    if mode == "mask":
        return level0_mask
    image = slide.levels[0]
    channel_idx = _channel_indices(slide, channels)
    if tissue_threshold is None:
        tissue_threshold = auto_tissue_threshold(slide, channels=channel_idx, background=background)
    reader = channels_last_reader(image)
    rule = sum_cut(tissue_by_sum(len(channel_idx), float(tissue_threshold), background == "bright"))
    if reader is not None and image.dtype == np.uint8 and rule is not None:
        # A scanner slide: each mask block classifies the (Y, X, C) tiles of the tile reader
        # as they are decoded — no (C, Y, X) transposing copy, no rechunking of the image
        # to the mask's blocks, no block-sized image.
        return level0_mask.map_blocks(
            _codes_from_reader,
            reader=reader,
            channels=np.asarray(channel_idx),
            cut=rule[0],
            dark_is_tissue=rule[1],
            dtype=np.uint8,
        )
    image = image[list(channel_idx)].rechunk({0: -1})
    return da.blockwise(
        partial(
            intensity_class_codes,
            threshold=float(tissue_threshold),
            bright_background=background == "bright",
        ),
        "yx",
        image,
        "cyx",
        level0_mask,
        "yx",
        dtype=np.uint8,
        concatenate=True,
    )


def intensity_class_codes(
    image: np.ndarray, mask: np.ndarray, *, threshold: float, bright_background: bool
) -> np.ndarray:
    """Class codes of one chunk: tumor from the mask, tissue from brightness.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X)
        The channels whose mean is the brightness.
    mask : ndarray, shape (Y, X)
        Mapped mask; only ``TUMOR`` is used.
    threshold : float
        Brightness threshold.
    bright_background : bool
        Tissue is darker than ``threshold`` (brightfield) instead of brighter.

    Returns
    -------
    ndarray of uint8, shape (Y, X)
        ``TUMOR`` where the mask says tumor, else ``HEALTHY`` where the brightness passes
        the threshold, else ``BACKGROUND``.
    """
    brightness = image.mean(axis=0, dtype=np.float32) if image.shape[0] > 1 else image[0]
    tissue = brightness < threshold if bright_background else brightness > threshold
    code = tissue.astype(np.uint8)  # HEALTHY == 1
    code[mask == TUMOR] = TUMOR
    return code


def tissue_by_sum(n_channels: int, threshold: float, bright_background: bool) -> np.ndarray:
    """Which sums of ``n_channels`` uint8 values :func:`intensity_class_codes` calls tissue.

    Built by running that function on one pixel per possible sum, so a uint8 pixel's
    class from its channel sum (``tissue[sum]``) is the function's, float32 rounding of
    the mean included.
    """
    sums = np.arange(255 * n_channels + 1)
    # channel values adding up to each sum: the first channels filled first
    pixels = np.clip(sums - 255 * np.arange(n_channels)[:, None], 0, 255).astype(np.uint8)
    codes = intensity_class_codes(
        pixels[:, None, :],
        np.zeros((1, sums.size), np.uint8),
        threshold=threshold,
        bright_background=bright_background,
    )
    return codes[0] == HEALTHY


def sum_cut(tissue: np.ndarray) -> tuple[int, bool] | None:
    """``(cut, dark_is_tissue)`` such that a sum ``s`` is tissue iff ``s < cut`` (dark
    tissue) or ``s >= cut`` (bright tissue); None if ``tissue`` is no such step.

    The mean is monotonic in the sum, so :func:`tissue_by_sum` is always a step (all
    tissue: ``cut`` past the last sum; none: ``cut`` 0).
    """
    change = np.flatnonzero(tissue != tissue[0])
    if change.size == 0:
        return (tissue.size, True) if tissue[0] else (0, True)
    cut = int(change[0])
    if not (tissue[cut:] == tissue[cut]).all():
        return None
    return cut, bool(tissue[0])


def _codes_from_reader(
    mask: np.ndarray,
    block_info=None,
    *,
    reader,
    channels: np.ndarray,
    cut: int,
    dark_is_tissue: bool,
) -> np.ndarray:
    """Class codes of one level-0 mask block, its pixels read ``(Y, X, C)`` from ``reader``.

    Each decoded tile is classified as it comes (``reader.region_tiles``), while it is in
    the CPU's cache: copying the tiles into a block-sized image first and classifying that
    costs a third more than decoding them. A tile that the mask calls tumor throughout is
    not decoded at all: its tissue would not change a code.
    """
    (y0, y1), (x0, x1) = block_info[0]["array-location"]
    tumor = mask == TUMOR
    if tumor.all():
        return np.full(mask.shape, TUMOR, np.uint8)
    mixed = bool(tumor.any())  # else no tile needs the tumor test (most blocks)
    # every pixel is written by a tile, except in skipped tiles, which stay TUMOR
    code = np.full(mask.shape, TUMOR, np.uint8) if mixed else np.empty(mask.shape, np.uint8)

    def all_tumor(rows: slice, cols: slice) -> bool:
        return mixed and bool(tumor[rows, cols].all())

    pieces = reader.region_tiles(channels, (y0, y1), (x0, x1), keep=False, skip=all_tumor)
    for rows, cols, pixels in pieces:
        out = tissue_codes(pixels, cut, dark_is_tissue, out=code[rows, cols])
        if mixed:
            part = tumor[rows, cols]
            if part.any():  # a tile on the tumor's edge
                np.copyto(out, TUMOR, where=part)
    return code


def tissue_codes(
    pixels: np.ndarray, cut: int, dark_is_tissue: bool, *, out: np.ndarray
) -> np.ndarray:
    """``HEALTHY`` or ``BACKGROUND`` for each uint8 pixel of ``pixels`` from its channel sum.

    Parameters
    ----------
    pixels : ndarray of uint8, shape (Y, X, C)
    cut : int
        Sums below ``cut`` (``dark_is_tissue``), or at or above it, are tissue
        (:func:`sum_cut`).
    dark_is_tissue : bool
    out : ndarray of uint8, shape (Y, X)
        Written in place (any strides: a view into a block).

    Returns
    -------
    ndarray
        ``out``.
    """
    compare = np.less if dark_is_tissue else np.greater_equal
    ones = np.ones(pixels.shape[-1], np.float32)
    # A few rows at a time: the sums stay in the CPU's cache (one band per tile).
    rows = max(1, _BAND_PIXELS // max(1, pixels.shape[1]))
    for r0 in range(0, pixels.shape[0], rows):
        # The channel sum as a matrix-vector product in float32: exact (sums of uint8
        # stay far below 2**24) and faster than numpy's adds over the
        # interleaved (stride-C) channels. (Y, X, C) @ (C,) is one X-by-C product per
        # row, below the size at which BLAS would start threads of its own.
        total = pixels[r0 : r0 + rows].astype(np.float32) @ ones
        compare(total, cut, out=out[r0 : r0 + rows].view(bool))  # HEALTHY is 1, True
    return out


def auto_tissue_threshold(
    slide: Slide,
    *,
    channels: Sequence[int | str] | None = None,
    background: str = "dark",  # noqa: ARG001 - Otsu's split does not depend on polarity
) -> float:
    """Otsu's threshold of the mean brightness of ``channels`` on the smallest level.

    Reads at most about :data:`OTSU_MAX_PIXELS` pixels (the smallest level, subsampled
    when a slide has no small level).
    """
    from skimage.filters import threshold_otsu

    level = slide.levels[-1][list(_channel_indices(slide, channels))]
    _, h, w = level.shape
    step = max(1, math.ceil(math.sqrt(h * w / OTSU_MAX_PIXELS)))
    small = np.asarray(level[:, ::step, ::step].compute(), dtype=np.float64).mean(axis=0)
    if small.size == 0 or small.min() == small.max():
        return float(small.flat[0]) if small.size else 0.0
    return float(threshold_otsu(small))


def _channel_indices(slide: Slide, channels: Sequence[int | str] | None) -> tuple[int, ...]:
    if channels is None:
        return tuple(range(slide.n_channels))
    if isinstance(channels, (str, int)):
        channels = [channels]
    indices = []
    for ch in channels:
        if isinstance(ch, str) and not ch.lstrip("-").isdigit():
            if ch not in slide.channel_names:
                raise PatchwiseError(
                    f"no channel named {ch!r}",
                    path=slide.path,
                    hint=f"channels are {', '.join(slide.channel_names)}",
                )
            indices.append(slide.channel_names.index(ch))
        else:
            i = int(ch)
            if not 0 <= i < slide.n_channels:
                raise PatchwiseError(
                    f"channel {i} does not exist",
                    path=slide.path,
                    hint=f"the slide has {slide.n_channels} channels (0..{slide.n_channels - 1})",
                )
            indices.append(i)
    if not indices:
        raise PatchwiseError("no channels selected for the tissue brightness")
    return tuple(indices)


def _checked_mask(slide: Slide) -> da.Array:
    _, height, width = slide.shape
    f = int(slide.mask_factor)
    mask = slide.mask
    if mask.ndim != 2:
        raise PatchwiseError(f"mask must be 2-D, got shape {mask.shape}", path=slide.mask_path)
    ok = all(
        dim in (n // f, -(-n // f)) for dim, n in zip(mask.shape, (height, width), strict=True)
    )
    if f < 1 or not ok:
        raise PatchwiseError(
            f"mask of shape {tuple(mask.shape)} with factor {f} does not match the "
            f"image's {height} x {width}",
            path=slide.mask_path,
            hint="the mask must cover the image at 1/factor of its size",
        )
    return mask


def _upsample(mask: da.Array, f: int, height: int, width: int) -> da.Array:
    """Level-0 view of a ``1/f`` mask: each chunk repeated ``f x f``; cropped or padded."""
    up = mask.map_blocks(
        partial(_repeat_block, factor=f),
        chunks=tuple(tuple(c * f for c in axis) for axis in mask.chunks),
        dtype=mask.dtype,
    )
    pad = [(0, max(0, height - up.shape[0])), (0, max(0, width - up.shape[1]))]
    if any(after for _, after in pad):  # a floor-sized mask: the last pixels are background
        up = da.pad(up, pad, mode="constant", constant_values=BACKGROUND)
    return up[:height, :width]


def _repeat_block(block: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(block, factor, axis=0), factor, axis=1)


# -- counting ----------------------------------------------------------------------------
def block_class_counts(block: np.ndarray, patch_size: int) -> np.ndarray:
    """Healthy and tumor pixel counts of every ``patch_size`` square tiling ``block``.

    Parameters
    ----------
    block : ndarray, shape (R * patch_size, C * patch_size)
        Class codes.
    patch_size : int

    Returns
    -------
    ndarray of int64, shape (2, R, C)
        ``[n_healthy, n_tumor]`` per patch.
    """
    p = patch_size
    r, c = block.shape[0] // p, block.shape[1] // p
    # Summing over the p rows of each patch row first adds whole contiguous pixel rows
    # (vectorised, in the narrowest sum that cannot overflow); the second sum is over
    # p-long runs of a much smaller array.
    acc = np.uint16 if TUMOR * p <= np.iinfo(np.uint16).max else np.uint32

    def per_patch(values: np.ndarray) -> np.ndarray:
        rows = np.add.reduce(values.reshape(r, p, c * p), axis=1, dtype=acc)
        return rows.reshape(r, c, p).sum(axis=2, dtype=np.int64)

    n_tumor = per_patch((block == TUMOR).view(np.uint8))
    if block.size and int(block.max()) <= TUMOR:
        # codes 0, 1, 2: a patch's code sum is n_healthy + 2 n_tumor (one pass fewer)
        n_healthy = per_patch(block) - TUMOR * n_tumor
    else:  # codes past TUMOR count as neither
        n_healthy = per_patch((block == HEALTHY).view(np.uint8))
    return np.stack([n_healthy, n_tumor])


def _padded_region(code: da.Array, rows: int, cols: int) -> da.Array:
    """``code[:rows, :cols]``, padded with background where it runs past the image."""
    region = code[:rows, :cols]
    pad = [(0, rows - region.shape[0]), (0, cols - region.shape[1])]
    if pad[0][1] or pad[1][1]:
        region = da.pad(region, pad, mode="constant", constant_values=BACKGROUND)
    return region


def aligned_chunks(chunks: tuple[int, ...], extent: int, p: int) -> tuple[int, ...]:
    """Chunk sizes, each a multiple of ``p``, near the array's own (at least TARGET_CHUNK)."""
    size = p * max(1, round(max(max(chunks), TARGET_CHUNK) / p))
    full, rest = divmod(extent, size)
    return (size,) * full + ((rest,) if rest else ())


def _tiled_counts(
    code: da.Array, p: int, n_rows: int, n_cols: int, progress: ProgressCallback | None
) -> np.ndarray:
    region = _padded_region(code, n_rows * p, n_cols * p)
    region = region.rechunk(
        (
            aligned_chunks(region.chunks[0], n_rows * p, p),
            aligned_chunks(region.chunks[1], n_cols * p, p),
        )
    )
    counts = da.map_blocks(
        block_class_counts,
        region,
        patch_size=p,
        new_axis=0,
        chunks=(
            (2,),
            tuple(c // p for c in region.chunks[0]),
            tuple(c // p for c in region.chunks[1]),
        ),
        dtype=np.int64,
    )
    with dask_progress(progress):
        return np.asarray(counts.compute())


def _strided_counts(
    code: da.Array,
    p: int,
    s: int,
    n_rows: int,
    n_cols: int,
    progress: ProgressCallback | None,
) -> np.ndarray:
    """Counts for any stride: per row of patches, column sums then window sums."""
    extent_y, extent_x = (n_rows - 1) * s + p, (n_cols - 1) * s + p
    region = _padded_region(code, extent_y, extent_x)
    xs = s * np.arange(n_cols)
    counts = np.empty((2, n_rows, n_cols), dtype=np.int64)
    # A band of patch rows spans a few chunk rows: computed together, shared chunks are
    # read once, and memory stays bounded by the band.
    rows_per_band = max(1, (4 * max(max(region.chunks[0]), TARGET_CHUNK)) // max(s, p))
    for start in range(0, n_rows, rows_per_band):
        stop = min(n_rows, start + rows_per_band)
        strips = [region[i * s : i * s + p] for i in range(start, stop)]
        column_sums = dask.compute(
            *[
                da.stack([(st == cls).sum(axis=0, dtype=np.int64) for cls in (HEALTHY, TUMOR)])
                for st in strips
            ]
        )
        for i, col in zip(range(start, stop), column_sums, strict=True):
            cum = np.zeros((2, extent_x + 1), dtype=np.int64)
            np.cumsum(col, axis=1, out=cum[:, 1:])
            counts[:, i, :] = cum[:, xs + p] - cum[:, xs]
        if progress is not None:
            progress(stop, n_rows)
    return counts


# -- the table ---------------------------------------------------------------------------
def _table(name: str, grid: PatchGrid, height: int, width: int, counts: np.ndarray) -> pd.DataFrame:
    n_rows, n_cols = counts.shape[1:]
    ys, xs = grid.positions(height, width)
    hs, ws = grid.extents(height, width)
    row, col = np.divmod(np.arange(n_rows * n_cols, dtype=np.int64), max(n_cols, 1))
    n_healthy = counts[0].ravel()
    n_tumor = counts[1].ravel()
    n_tissue = n_healthy + n_tumor
    n_pixels = (hs[:, None] * ws[None, :]).ravel().astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        tumor_tissue = np.where(n_tissue > 0, n_tumor / np.maximum(n_tissue, 1), np.nan)
    return pd.DataFrame(
        {
            "slide": pd.Series([name] * row.size, dtype=object),
            "row": row,
            "col": col,
            "y": ys[row] if row.size else np.zeros(0, np.int64),
            "x": xs[col] if col.size else np.zeros(0, np.int64),
            "height": hs[row].astype(np.int64) if row.size else np.zeros(0, np.int64),
            "width": ws[col].astype(np.int64) if col.size else np.zeros(0, np.int64),
            "n_pixels": n_pixels,
            "n_tumor": n_tumor,
            "n_healthy": n_healthy,
            "n_tissue": n_tissue,
            "label": (n_tumor > 0).astype(np.int8),
            "tumor_ratio": n_tumor / n_pixels if row.size else np.zeros(0),
            "tissue_ratio": n_tissue / n_pixels if row.size else np.zeros(0),
            "tumor_tissue_ratio": tumor_tissue,
        },
        columns=list(TABLE_COLUMNS),
    )


def _is_positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0
