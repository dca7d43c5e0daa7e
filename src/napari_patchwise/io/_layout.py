"""Array layout of files: axis order to ``(C, Y, X)`` and dask chunk sizes.

Files are tiled in 256-512 px tiles or striped in a few rows; one dask task per tile
would mean hundreds of thousands of tasks for a 50k x 50k slide, so tiles are grouped
into square chunks of about :data:`TARGET_CHUNK_BYTES` over all channels (whole tiles, so
no tile is decoded twice): 1024 px for 3 x uint8, 2048 px for a uint8 mask. A roughly
constant chunk size in bytes keeps dask's per-task overhead (a few ms on a loaded
machine) small next to the decoding of highly compressible masks, while a chunk never
grows so large that a viewer waits on one task: slices are fused into the read, so a
small region still decodes only the tiles under it, whatever the chunk size.
Strips span the full width, so strip chunks stack whole strips up to :data:`TARGET_BYTES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np

from ..errors import PatchwiseError

# Every axis that is not Y or X (C, S for samples, Q/I for unnamed stacks, T, Z) may be the
# channel axis; singletons are dropped.
SPATIAL = ("Y", "X")

TARGET_CHUNK_BYTES = 4 * 2**20
MIN_SIDE = 512
TARGET_BYTES = 32 * 2**20


def tile_chunk_side(bytes_per_pixel: int) -> int:
    """Target side of a square chunk of tiles holding ``TARGET_CHUNK_BYTES``."""
    return max(MIN_SIDE, math.isqrt(TARGET_CHUNK_BYTES // max(1, bytes_per_pixel)))


def grouped(stored: int, size: int, target: int) -> int:
    """Largest multiple of ``stored`` that is ``<= max(target, stored)``, capped at ``size``."""
    stored = max(1, min(stored, size))
    return min(size, max(1, target // stored) * stored)


def yx_chunks(
    stored_yx: tuple[int, int], shape_yx: tuple[int, int], bytes_per_pixel: int
) -> tuple[int, int]:
    """Dask chunk ``(y, x)`` for an image stored in ``stored_yx`` blocks.

    Parameters
    ----------
    stored_yx : (int, int)
        The file's own block: a tile, or ``(rows_per_strip, width)`` for a striped file.
    shape_yx : (int, int)
        Image size.
    bytes_per_pixel : int
        Bytes of one pixel over all channels read together.
    """
    (sy, sx), (h, w) = stored_yx, shape_yx
    if sx >= w and sy < w:  # strips: whole rows, stacked up to TARGET_BYTES
        row_bytes = max(1, w * bytes_per_pixel)
        return grouped(sy, h, max(sy, TARGET_BYTES // row_bytes)), w
    side = tile_chunk_side(bytes_per_pixel)
    return grouped(sy, h, side), grouped(sx, w, side)


def itemsize(dtype) -> int:
    return int(np.dtype(dtype).itemsize)


def stored_yx(chunks: tuple[int, ...], axes: str) -> tuple[int, int]:
    """The file's own block ``(y, x)`` from zarr ``chunks`` in ``axes`` order."""
    axes = axes.upper()
    return chunks[axes.index("Y")], chunks[axes.index("X")]


class CYXView:
    """Read-only ``(C, Y, X)`` view of an array stored in another axis order.

    ``axes`` names the stored axes (tifffile / OME letters such as ``"YXS"``,
    ``"TCZYX"``). Singleton non-spatial axes are dropped; exactly one non-spatial axis
    may have more than one entry and becomes C (a 2-D image gets C of length 1).

    Reordering happens inside ``__getitem__``, so ``dask.array.from_array`` over this
    view still fuses a later slice into the read: only the file blocks under a viewed
    region are decoded.

    ``opener`` (a picklable callable returning ``data``) makes the view picklable, so
    its dask graphs can be shipped to ``dask.distributed`` workers, which reopen the
    file themselves (open file handles cannot be pickled).
    """

    def __init__(self, data, axes: str, opener: Callable[[], Any] | None = None):
        axes = axes.upper()
        if len(axes) != len(data.shape) or "Y" not in axes or "X" not in axes:
            raise PatchwiseError(f"image axes {axes!r} do not fit its shape {tuple(data.shape)}")
        others = [
            i
            for i, (a, n) in enumerate(zip(axes, data.shape, strict=True))
            if a not in SPATIAL and n != 1
        ]
        if len(others) > 1:
            sizes = ", ".join(f"{axes[i]}={data.shape[i]}" for i in others)
            raise PatchwiseError(
                f"image has several non-spatial axes ({sizes}); only one channel axis is supported",
                hint="export a single time point and z plane",
            )
        self._data = data
        self._axes = axes
        self._opener = opener
        self._channel = others[0] if others else None
        self._y, self._x = axes.index("Y"), axes.index("X")
        n_channels = 1 if self._channel is None else int(data.shape[self._channel])
        self.shape = (n_channels, int(data.shape[self._y]), int(data.shape[self._x]))
        self.dtype = np.dtype(data.dtype)
        self.ndim = 3

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self._opener is not None:
            state["_data"] = None  # reopened from the file on unpickling
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._data is None:
            self._data = self._opener()

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key_c, key_y, key_x = key + (slice(None),) * (3 - len(key))
        stored, labels = [], []
        for i in range(len(self._axes)):
            index, label = {
                self._channel: (key_c, "c"),
                self._y: (key_y, "y"),
                self._x: (key_x, "x"),
            }.get(i, (0, None))
            stored.append(index)
            if label is not None and not isinstance(index, int | np.integer):
                labels.append(label)
        out = np.asarray(self._data[tuple(stored)])
        out = out.transpose([labels.index(a) for a in "cyx" if a in labels])
        if self._channel is None:  # no stored channel axis: add it, then index it
            out = out[None][(key_c,)]
        return out


def lazy_cyx(
    data, axes: str, block_yx: tuple[int, int], opener: Callable[[], Any] | None = None
) -> da.Array:
    """Dask ``(C, Y, X)`` array over ``data`` (zarr array, memmap, ...) stored as ``axes``.

    Chunks hold all channels and whole file blocks (``block_yx``: tile or strip), see
    :func:`yx_chunks`. Nothing is read here.
    """
    return lazy_view(CYXView(data, axes, opener), block_yx)


def lazy_view(view, block_yx: tuple[int, int]) -> da.Array:
    """Dask array over a ``(C, Y, X)`` view (anything with ``shape``, ``dtype`` and
    ``__getitem__``), chunked to whole file blocks ``block_yx`` and all channels.

    Nothing is read here. Default ``fancy=True`` lets dask fuse a later slice into the
    view's ``__getitem__``, so only the blocks under a sliced region are read.
    """
    c, h, w = view.shape
    cy, cx = yx_chunks(block_yx, (h, w), itemsize(view.dtype) * c)
    return da.from_array(view, chunks=(c, cy, cx), lock=False, asarray=True, name=False)


class YXCView:
    """Read-only ``(Y, X, C)`` view of a ``(C, Y, X)`` dask level (an RGB layer's data).

    ``level.transpose(1, 2, 0)`` would read whole dask chunks: dask does not push a
    later slice through the transpose, so a 100 px view region decoded 64 tiles. Here
    the slice reaches the file reader directly: a level straight over a reader that fills
    ``(Y, X, C)`` itself (``channels_last_reads``, :class:`._tiles.TiffLevelView`) is read
    through it (the tiles' interleaved samples copied as stored); any other level is
    sliced first (fused into its reader: only the tiles under the region are decoded)
    and the result transposed.
    """

    def __init__(self, level: da.Array):
        c, h, w = (int(n) for n in level.shape)
        self._level = level
        self._reader = channels_last_reader(level)
        self.shape = (h, w, c)
        self.dtype = np.dtype(level.dtype)
        self.ndim = 3

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key_y, key_x, key_c = key + (slice(None),) * (3 - len(key))
        channels = np.arange(self.shape[2])[key_c]
        if self._reader is not None and np.ndim(channels) == 1:
            ys, xs = _unit_range(key_y, self.shape[0]), _unit_range(key_x, self.shape[1])
            if ys is not None and xs is not None:
                return self._reader.read_region(channels, ys, xs, channels_last=True)
        # synchronous: this runs inside a task of the outer (threaded) dask compute
        out = np.asarray(self._level[key_c, key_y, key_x].compute(scheduler="sync"))
        return out if np.ndim(channels) == 0 else np.moveaxis(out, 0, -1)  # C first: last


def level_source(level: da.Array):
    """The view a level was made from by :func:`lazy_view`, or ``None``.

    ``da.from_array`` keeps the wrapped object under ``"original-" + name`` in the graph;
    any later operation on the level gives it another name, so a found view holds the
    level's own pixels. Looked up in the graph's layer (a microsecond), not by turning
    the whole graph into a dict (a quarter of a millisecond on a 20k slide's level).
    """
    key = f"original-{level.name}"
    graph = level.__dask_graph__()
    layer = getattr(graph, "layers", {}).get(key)
    source = layer.get(key) if layer is not None else dict(graph).get(key)
    if source is None or not hasattr(source, "shape") or not hasattr(source, "__getitem__"):
        return None
    return source if tuple(source.shape) == tuple(level.shape) else None


def channels_last_reader(level: da.Array):
    """The level's :func:`level_source`, if it fills ``(Y, X, C)`` itself."""
    reader = level_source(level)
    return reader if getattr(reader, "channels_last_reads", False) else None


def _unit_range(key, n: int) -> tuple[int, int] | None:
    """``(start, stop)`` of a step-1 slice on an axis of length ``n`` (None: another key)."""
    if not isinstance(key, slice):
        return None
    start, stop, step = key.indices(n)
    return (start, max(start, stop)) if step == 1 else None


def yxc_level(level: da.Array) -> da.Array:
    """``(Y, X, C)`` dask array over a ``(C, Y, X)`` ``level``, chunked as the level.

    The level's chunks hold whole file tiles and all channels (:func:`lazy_view`), so
    the RGB array's chunks do too, and a viewed region decodes only its own tiles.
    """
    _, cy, cx = level.chunks
    chunks = (cy, cx, (int(level.shape[0]),))
    return da.from_array(YXCView(level), chunks=chunks, lock=False, asarray=True, name=False)
