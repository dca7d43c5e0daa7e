"""Reading one region of a slide level: the direct path under napari, scripts and threads.

Slicing a dask level (``level[:, y0:y1, x0:x1].compute()``) builds, orders and runs a
task graph for every read: about 3 ms of Python per 512 px region on a 20k SVS, more
than decoding its JPEG tiles (about 2.5 ms), and all of it holding the GIL, so reads
from several threads queue behind one another. :func:`read_region` goes straight to the
reader the level was made from (:func:`._layout.level_source`: the TIFF/SVS tile reader,
a zarr array, ...), so a read costs its decode and the decoding threads run in parallel.
Large regions (more than :data:`DIRECT_MAX_CHUNKS` chunks, a fit-to-window level) go
through dask's threaded scheduler instead, which decodes their chunks on every core.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from ._layout import channels_last_reader, level_source

__all__ = ["channels_last_reader", "level_source", "read_region"]

#: Regions touching at most this many dask chunks are read directly, in the caller's thread.
DIRECT_MAX_CHUNKS = 4


def read_region(
    level: da.Array,
    ys: tuple[int, int],
    xs: tuple[int, int],
    *,
    channels_last: bool = False,
) -> np.ndarray:
    """Rows ``ys`` and columns ``xs`` of a ``(C, Y, X)`` slide level, every channel.

    Parameters
    ----------
    level : dask.array.Array
        One of :attr:`Slide.levels <napari_patchwise.slide.Slide.levels>` (or any
        ``(C, Y, X)`` dask array: one that is not a reader's own level is sliced and
        computed).
    ys, xs : tuple of int
        ``(start, stop)`` in the level's pixels, as in ``level[:, y0:y1, x0:x1]``
        (clipped to the level the same way).
    channels_last : bool
        Return ``(Y, X, C)`` (an RGB image) instead of ``(C, Y, X)``.

    Returns
    -------
    numpy.ndarray
        The same pixels as ``np.asarray(level[:, y0:y1, x0:x1])`` (moved to
        channels-last when asked).

    Examples
    --------
    >>> from napari_patchwise.io import open_slide, read_region
    >>> slide = open_slide("slide.svs")  # doctest: +SKIP
    >>> tile = read_region(slide.levels[0], (1024, 1536), (2048, 2560))  # doctest: +SKIP
    """
    if level.ndim != 3:
        raise ValueError(f"read_region needs a (C, Y, X) level; got shape {level.shape}")
    _, h, w = (int(n) for n in level.shape)
    y0, y1, _ = slice(*ys).indices(h)
    x0, x1, _ = slice(*xs).indices(w)
    y1, x1 = max(y0, y1), max(x0, x1)
    source = (
        level_source(level) if _chunks_touched(level, y0, y1, x0, x1) <= DIRECT_MAX_CHUNKS else None
    )
    if source is None:
        out = np.asarray(level[:, y0:y1, x0:x1].compute(scheduler="threads"))
    elif channels_last and getattr(source, "channels_last_reads", False):
        channels = np.arange(level.shape[0])
        return source.read_region(channels, (y0, y1), (x0, x1), channels_last=True)
    else:
        out = np.asarray(source[:, y0:y1, x0:x1])
    return np.moveaxis(out, 0, -1) if channels_last else out


def _chunks_touched(level: da.Array, y0: int, y1: int, x0: int, x1: int) -> int:
    """How many of ``level``'s chunks the region ``[y0, y1) x [x0, x1)`` overlaps."""
    if y1 <= y0 or x1 <= x0:
        return 0
    _, cy, cx = level.chunks
    bounds_y, bounds_x = np.cumsum(cy), np.cumsum(cx)
    rows = np.searchsorted(bounds_y, y1 - 1, side="right") - np.searchsorted(
        bounds_y, y0, side="right"
    )
    cols = np.searchsorted(bounds_x, x1 - 1, side="right") - np.searchsorted(
        bounds_x, x0, side="right"
    )
    return int((rows + 1) * (cols + 1))
