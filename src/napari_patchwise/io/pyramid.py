"""Lazy display pyramids: repeated 2x block-mean downsampling of a dask array.

A single-level image handed to napari must come with a pyramid (a huge single array
exhausts memory, napari issue 8710). :func:`build_pyramid` describes every coarser level
lazily; nothing is computed until a chunk is asked for. For big images the pyramid is
written once to a cache (see :mod:`napari_patchwise.io.pyramid_cache`), because a lazily
coarsened level still has to read all of level 0 to be displayed.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

#: Spatial chunk side of coarsened levels (merged back up so deep levels are not
#: thousands of tiny chunks).
LEVEL_CHUNK = 1024


def block_mean(block: np.ndarray, axis: tuple[int, ...] | None = None, dtype=None) -> np.ndarray:
    """Mean over ``axis``, rounded and cast back to ``dtype`` for integer data.

    The reduction used by :func:`dask.array.coarsen`; integer images keep their dtype
    (a uint8 slide stays uint8) with round-half-up averaging.
    """
    dtype = np.dtype(block.dtype if dtype is None else dtype)
    mean = block.mean(axis=axis, dtype=np.float64 if block.dtype.itemsize > 2 else np.float32)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        mean = np.clip(np.floor(mean + 0.5), info.min, info.max)
    return mean.astype(dtype, copy=False)


def downsample(level: da.Array, factor: int = 2, method: str = "mean") -> da.Array:
    """Downsample the last two axes of ``level`` by ``factor``, trimming ragged edges.

    ``method="mean"`` averages each ``factor x factor`` block (images); ``"nearest"``
    keeps its top-left pixel (label images, whose values must not be blended). The
    result has ``floor(size / factor)`` pixels per spatial axis and ``level``'s dtype.
    """
    if method == "nearest":
        h, w = level.shape[-2:]
        small = level[..., : h - h % factor : factor, : w - w % factor : factor]
    elif method == "mean":
        axes = {level.ndim - 2: factor, level.ndim - 1: factor}
        small = da.coarsen(block_mean, level, axes, trim_excess=True, dtype=level.dtype)
    else:
        raise ValueError(f"method must be 'mean' or 'nearest', got {method!r}")
    target = {level.ndim - 2: LEVEL_CHUNK, level.ndim - 1: LEVEL_CHUNK}
    return small.rechunk(target)


def build_pyramid(
    level0: da.Array, *, min_size: int = 256, factor: int = 2, method: str = "mean"
) -> list[da.Array]:
    """Return ``[level0, level1, ...]``, each ``factor`` times smaller than the last.

    Levels are added until the larger spatial side is at most ``min_size`` (a level's
    size is the previous one's divided by ``factor``, rounded down). Everything is lazy.

    Parameters
    ----------
    level0 : dask.array.Array
        ``(..., Y, X)`` full-resolution image, e.g. ``(C, Y, X)``.
    min_size : int
        Stop once ``max(Y, X)`` of the last level is ``<= min_size``.
    factor : int
        Integer downsampling factor between consecutive levels (>= 2).
    method : {"mean", "nearest"}
        Block mean for images, nearest (top-left pixel) for label images.

    Returns
    -------
    list of dask.array.Array
        The pyramid, level 0 first; a single element when level 0 is already small.
    """
    if factor < 2:
        raise ValueError(f"factor must be >= 2, got {factor}")
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size}")
    levels = [level0]
    while max(levels[-1].shape[-2:]) > min_size and min(levels[-1].shape[-2:]) >= factor:
        levels.append(downsample(levels[-1], factor, method))
    return levels
