"""Direct tile/strip reader for one TIFF pyramid level.

Reading a region of a tiled TIFF through tifffile's zarr interface goes through zarr 3's
asynchronous store machinery for every tile; streaming a whole 20k x 20k mask that way
took 3-10x as long as ``tifffile.imread`` of the same file. :class:`TiffLevelView`
instead finds the tiles or strips under a requested region from the page's offsets,
reads their bytes with ``os.pread`` (positional, so threads share one descriptor without
a lock or seek) and decodes each with tifffile's own segment decoder (decompression,
predictors, bit order, JPEG tables), whose codecs release the GIL: dask's threads decode
in parallel. Only the requested sub-region is assembled.

Layouts the view does not cover (volumes, NDPI JPEG streams, codecs tifffile cannot
decode, pages and samples both varying) raise :class:`UnsupportedLayout` at construction,
and the caller falls back to tifffile's zarr store.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PatchwiseError
from ._tile_cache import PREFETCH, TILES, new_owner

_JPEG_COMPRESSIONS = (6, 7, 33007, 34892)


DAMAGED_HINT = "the file is damaged; copy or export it again"


def undecodable(
    path: str | os.PathLike, where: str, exc: BaseException, *, hint: str = DAMAGED_HINT
) -> PatchwiseError:
    """The one-line error for pixels that cannot be read: ``path: WHERE cannot be decoded``.

    Every reader (TIFF tiles, OpenSlide and DICOM regions, zarr chunks) reports damaged
    bytes through this, so a corrupt tile reads the same whatever library decodes it:
    the file, the tile or chunk, and the decoder's own words cut to one short clause.
    """
    detail = " ".join(str(exc).split())
    detail = detail if len(detail) <= 120 else detail[:117] + "..."
    reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return PatchwiseError(f"{where} cannot be decoded ({reason})", path=path, hint=hint)


class UnsupportedLayout(ValueError):
    """The level's layout is not one :class:`TiffLevelView` reads (use the zarr store)."""


@dataclass(frozen=True)
class SegmentGrid:
    """Where a level's tiles or strips lie.

    ``block`` is the stored segment ``(rows, cols)``: a tile, or ``(rows_per_strip,
    width)`` for strips. Segments of one plane are numbered in raster order; a page with
    ``n_separate`` planar-separate samples stores its planes one after another.
    """

    shape_yx: tuple[int, int]
    block: tuple[int, int]
    n_separate: int
    n_contig: int

    @property
    def grid(self) -> tuple[int, int]:
        """Number of segment rows and columns in one plane."""
        (h, w), (by, bx) = self.shape_yx, self.block
        return math.ceil(h / by), math.ceil(w / bx)

    @property
    def per_plane(self) -> int:
        rows, cols = self.grid
        return rows * cols

    def index(self, plane: int, row: int, col: int) -> int:
        """Position of a segment in the page's offsets / byte counts."""
        return plane * self.per_plane + row * self.grid[1] + col

    def covering(self, start: int, stop: int, axis: int) -> range:
        """Segment rows (``axis=0``) or columns (``axis=1``) that intersect ``[start, stop)``."""
        if stop <= start:
            return range(0)
        size = self.block[axis]
        return range(start // size, (stop - 1) // size + 1)

    def sample_of(self, channel: int) -> tuple[int, int, int]:
        """``(page, separate plane, contiguous sample)`` holding ``channel`` of the level."""
        page, rest = divmod(channel, self.n_separate * self.n_contig)
        plane, sample = divmod(rest, self.n_contig)
        return page, plane, sample

    def channel_groups(self, channels) -> dict[tuple[int, int], tuple[Index, Index]]:
        """For each ``(page, plane)`` holding some of ``channels``: ``(samples, positions)``,
        its samples and their positions in ``channels`` (slices where they are runs, so
        that picking them copies nothing)."""
        groups: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
        for i, c in enumerate(int(c) for c in channels):
            page, plane, sample = self.sample_of(c)
            samples, positions = groups.setdefault((page, plane), ([], []))
            samples.append(sample)
            positions.append(i)
        return {key: (_run(a), _run(b)) for key, (a, b) in groups.items()}

    def parts(
        self, plane: int, ys: tuple[int, int], xs: tuple[int, int]
    ) -> Iterator[tuple[int, tuple[slice, slice], tuple[slice, slice]]]:
        """The segments of ``plane`` meeting rows ``ys`` and columns ``xs`` (within the level):
        ``(index, (rows, cols) in the region, (rows, cols) in the segment)``."""
        (y0, y1), (x0, x1) = ys, xs
        (by, bx), (h, w) = self.block, self.shape_yx
        for row in self.covering(y0, y1, 0):
            for col in self.covering(x0, x1, 1):
                sy0, sx0 = row * by, col * bx
                ay0, ay1 = max(y0, sy0), min(y1, sy0 + by, h)
                ax0, ax1 = max(x0, sx0), min(x1, sx0 + bx, w)
                yield (
                    self.index(plane, row, col),
                    (slice(ay0 - y0, ay1 - y0), slice(ax0 - x0, ax1 - x0)),
                    (slice(ay0 - sy0, ay1 - sy0), slice(ax0 - sx0, ax1 - sx0)),
                )

    def ring(self, rows: range, cols: range) -> Iterator[tuple[int, int]]:
        """Segment ``(row, col)`` positions in a one-segment ring around ``rows`` x ``cols``."""
        n_rows, n_cols = self.grid
        for row in range(max(0, rows.start - 1), min(n_rows, rows.stop + 1)):
            for col in range(max(0, cols.start - 1), min(n_cols, cols.stop + 1)):
                if row not in rows or col not in cols:
                    yield row, col


Index = slice | list[int]


def _run(values: list[int]) -> Index:
    """``values`` as a slice if they step by one, else the list itself."""
    if values == list(range(values[0], values[0] + len(values))):
        return slice(values[0], values[0] + len(values))
    return values


def segment_grid(page: Any) -> SegmentGrid:
    """The :class:`SegmentGrid` of a tifffile page (or frame).

    Raises
    ------
    UnsupportedLayout
        A volume (depth > 1), an NDPI JPEG stream, or a page tifffile cannot decode.
    """
    key = page.keyframe
    n_separate, depth, length, width, n_contig = (int(n) for n in key.shaped)
    if depth != 1 or int(getattr(key, "tiledepth", 1) or 1) != 1:
        raise UnsupportedLayout("volumetric (depth > 1) TIFF")
    if key.jpegheader is not None:
        raise UnsupportedLayout("NDPI JPEG stream")
    if key.dtype is None or key.decode.__name__.startswith("decode_raise"):
        raise UnsupportedLayout(f"codec {key.compression} cannot be decoded")
    if key.is_tiled:
        block = (int(key.tilelength), int(key.tilewidth))
    else:
        rows = int(key.rowsperstrip or length)
        block = (min(max(rows, 1), length), width)
    if block[0] < 1 or block[1] < 1:
        raise UnsupportedLayout(f"invalid segment size {block}")
    grid = SegmentGrid((length, width), block, n_separate, n_contig)
    if len(page.dataoffsets) != n_separate * grid.per_plane:
        raise UnsupportedLayout(
            f"{len(page.dataoffsets)} segments where {n_separate * grid.per_plane} expected"
        )
    return grid


class TiffLevelView:
    """Read-only ``(C, Y, X)`` view of one level of a TIFF series, read tile by tile.

    Channels are the level's pages (OME-TIFF writes one page per channel, with reduced
    levels in SubIFDs), or a single page's samples (planar separate or contiguous).
    ``view[c, y0:y1, x0:x1]`` reads and decodes only the tiles or strips intersecting
    the region, so ``dask.array.from_array`` over the view (which fuses a later slice
    into the read) decodes only what is shown or counted.

    The view pickles as ``(path, series, level)`` and reopens the file on unpickling,
    for ``dask.distributed`` workers.

    Parameters
    ----------
    path : path-like
        The TIFF file.
    level : int
        Pyramid level of the series (0 = full resolution).
    series : int
        Series index in the file.
    tif : tifffile.TiffFile, optional
        An already-open file to take the page structure from (kept open by the view).
    fill : number, optional
        Value of tiles the file leaves empty (offset or byte count 0); tifffile's fill
        value by default. Scanner slides read as glass there (OpenSlide composites its
        transparent missing tiles onto white).

    Decoded tiles go through the process's shared, byte-bounded tile cache
    (:mod:`._tile_cache`), so a tile shown in napari and then counted by the dock (or
    shown by several channel layers) is decoded once.

    Raises
    ------
    UnsupportedLayout
        The level is not one this reader handles; read it another way.
    """

    def __init__(
        self,
        path: str | Path,
        level: int = 0,
        series: int = 0,
        *,
        tif: Any = None,
        fill: float | None = None,
    ):
        self._path, self._level, self._series = str(path), int(level), int(series)
        self._fill = fill
        self._open(tif)

    def _open(self, tif: Any) -> None:
        import tifffile

        own = tif is None
        tif = tifffile.TiffFile(self._path) if own else tif
        try:
            self._describe(tif.series[self._series].levels[self._level])
        except BaseException:
            if own:
                tif.close()
            raise
        # The decoders come from tifffile's pages, which need their TiffFile; the pixels
        # are read through our own descriptor.
        self._tif = tif
        self._owner = new_owner()  # this open view's key in the tile cache
        self._fd = os.open(self._path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._read_lock = threading.Lock()  # only used where os.pread is missing (Windows)
        weakref.finalize(self, os.close, self._fd)

    def _describe(self, lvl: Any) -> None:
        pages = list(lvl.pages)
        if not pages or any(p is None for p in pages):
            raise UnsupportedLayout("level has missing pages")
        grid = segment_grid(pages[0])
        key = pages[0].keyframe
        for page in pages[1:]:
            other = page.keyframe
            if (
                segment_grid(page) != grid
                or other.dtype != key.dtype
                or other.compression != key.compression
                or other.predictor != key.predictor
            ):
                raise UnsupportedLayout("pages of the level differ in layout")
        per_page = grid.n_separate * grid.n_contig
        if len(pages) > 1 and per_page > 1:
            raise UnsupportedLayout("several pages with several samples each")
        h, w = grid.shape_yx
        axes = lvl.axes.upper()
        if "Y" not in axes or "X" not in axes:
            raise UnsupportedLayout(f"axes {axes!r} lack Y or X")
        if (lvl.shape[axes.index("Y")], lvl.shape[axes.index("X")]) != (h, w):
            raise UnsupportedLayout("level shape does not match its pages")
        if math.prod(lvl.shape) != len(pages) * per_page * h * w:
            raise UnsupportedLayout("level shape does not match its pages")
        self._grid = grid
        self._tiled = bool(key.is_tiled)
        self._offsets = [np.asarray(p.dataoffsets, np.int64) for p in pages]
        self._counts = [np.asarray(p.databytecounts, np.int64) for p in pages]
        self._decoders = [p.keyframe.decode for p in pages]
        self._decode_kwargs = [self._jpeg_kwargs(p) for p in pages]
        self._nodata = key.nodata if self._fill is None else self._fill
        self.dtype = np.dtype(key.dtype)
        self.shape = (len(pages) * per_page, h, w)
        self.ndim = 3

    @staticmethod
    def _jpeg_kwargs(page: Any) -> dict:
        key = page.keyframe
        if key.compression not in _JPEG_COMPRESSIONS:
            return {}
        return {"jpegtables": page.jpegtables, "jpegheader": key.jpegheader}

    @property
    def block(self) -> tuple[int, int]:
        """The stored segment ``(rows, cols)``: a tile, or whole-width strips."""
        return self._grid.block

    def __getstate__(self) -> dict:
        return {
            "path": self._path,
            "level": self._level,
            "series": self._series,
            "fill": self._fill,
        }

    def __setstate__(self, state: dict) -> None:
        self._path, self._level, self._series = state["path"], state["level"], state["series"]
        self._fill = state.get("fill")
        self._open(None)

    def __repr__(self) -> str:
        return f"TiffLevelView({self._path!r}, level={self._level}, shape={self.shape})"

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if len(key) > 3:
            raise IndexError(f"too many indices for a 3-D view: {key!r}")
        key_c, key_y, key_x = key + (slice(None),) * (3 - len(key))
        channels = np.arange(self.shape[0])[key_c]
        y0, y1, post_y = key_bounds(key_y, self.shape[1])
        x0, x1, post_x = key_bounds(key_x, self.shape[2])
        region = self.read_region(np.atleast_1d(channels), (y0, y1), (x0, x1))
        if np.ndim(channels) == 0:
            region = region[0]
        region = region[..., post_y, :]
        return region[..., post_x]

    #: :meth:`read_region` can fill a ``(Y, X, C)`` array (an RGB layer's, see
    #: :func:`._layout.yxc_level`) straight from the decoded interleaved tiles.
    channels_last_reads = True

    def read_region(
        self,
        channels: np.ndarray,
        ys: tuple[int, int],
        xs: tuple[int, int],
        *,
        channels_last: bool = False,
        keep: bool = True,
    ) -> np.ndarray:
        """Channels ``channels`` (a 1-D sequence) of rows ``[y0, y1)`` and columns ``[x0, x1)``.

        ``(C, Y, X)``, or ``(Y, X, C)`` with ``channels_last`` (contiguous tiles' samples
        are then copied as they are stored, without a transposing copy). ``keep=False``
        leaves the decoded tiles out of the shared cache (a pass over the whole slide
        reads each tile once; keeping them would only push out the viewer's).
        """
        (y0, y1), (x0, x1) = ys, xs
        h_out, w_out = max(0, y1 - y0), max(0, x1 - x0)
        shape = (h_out, w_out, len(channels)) if channels_last else (len(channels), h_out, w_out)
        out = np.empty(shape, self.dtype)
        yxc = out if channels_last else np.moveaxis(out, 0, -1)  # a view: writes land in out
        for rows, cols, positions, samples, part in self._pieces(channels, ys, xs, keep=keep):
            dst = yxc[rows, cols]
            # empty segment: tifffile's fill value
            dst[..., positions] = self._nodata if part is None else part[..., samples]
        return out

    def region_tiles(
        self,
        channels: np.ndarray,
        ys: tuple[int, int],
        xs: tuple[int, int],
        *,
        keep: bool = True,
        skip: Callable[[slice, slice], bool] | None = None,
    ) -> Iterator[tuple[slice, slice, np.ndarray]]:
        """The region of :meth:`read_region` (``channels_last``) in pieces, as decoded.

        Yields ``(rows, cols, pixels)``: ``pixels`` is ``(Y, X, C)`` with every channel of
        ``channels`` and goes to ``[rows, cols]`` of the region. Where all the channels are
        samples of one tile, each piece is one tile's part, a view of the decoded tile
        (no copy into a region-sized array, so whatever the caller computes on it runs
        while the tile is in the CPU's cache); else the whole region is one piece. A piece
        for which ``skip(rows, cols)`` is true is neither decoded nor yielded.
        """
        (y0, y1), (x0, x1) = ys, xs
        if y1 <= y0 or x1 <= x0:
            return
        if len(self._grid.channel_groups(channels)) > 1:
            whole = slice(0, y1 - y0), slice(0, x1 - x0)
            if skip is None or not skip(*whole):
                yield *whole, self.read_region(channels, ys, xs, channels_last=True, keep=keep)
            return
        for rows, cols, _, samples, part in self._pieces(channels, ys, xs, keep=keep, skip=skip):
            if part is None:
                shape = (rows.stop - rows.start, cols.stop - cols.start, len(channels))
                yield rows, cols, np.full(shape, self._nodata, self.dtype)
            else:
                yield rows, cols, part[..., samples]

    def _pieces(
        self,
        channels,
        ys: tuple[int, int],
        xs: tuple[int, int],
        *,
        keep: bool,
        skip: Callable[[slice, slice], bool] | None = None,
    ) -> Iterator[tuple[slice, slice, Index, Index, np.ndarray | None]]:
        """Every decoded segment's part inside the region, as ``(rows, cols, positions,
        samples, part)``: ``part[..., samples]`` holds the channels at ``positions`` of
        ``channels`` for ``[rows, cols]`` of the region (``part`` is None for an empty
        segment). Parts where ``skip(rows, cols)`` is true are left out, undecoded."""
        grid = self._grid
        for (page, plane), (samples, positions) in grid.channel_groups(channels).items():
            if keep and PREFETCH.enabled and self._tiled:  # a one-pass read wants no ring
                self._prefetch_ring(page, plane, grid.covering(*ys, 0), grid.covering(*xs, 1))
            for index, (rows, cols), in_segment in grid.parts(plane, ys, xs):
                if skip is not None and skip(rows, cols):
                    continue
                segment = self._segment(page, index) if keep else self._decode(page, index)
                part = None if segment is None else segment[0][in_segment]
                if part is not None and part.shape[:2] != (
                    rows.stop - rows.start,
                    cols.stop - cols.start,
                ):
                    raise ValueError(
                        f"{self._path}: segment {index} decodes to {segment.shape[1:3]}, "
                        f"smaller than its {grid.block} block"
                    )
                yield rows, cols, positions, samples, part

    def _prefetch_ring(self, page: int, plane: int, rows: range, cols: range) -> None:
        """Ask for the tiles in a one-tile ring around ``rows`` x ``cols``."""
        for row, col in self._grid.ring(rows, cols):
            index = self._grid.index(plane, row, col)
            load = functools.partial(self._decode, page, index)
            PREFETCH.submit((self._owner, page, index), load)

    def _segment(self, page: int, index: int) -> np.ndarray | None:
        """Decoded segment ``index`` of page ``page`` as ``(1, rows, cols, samples)``, or ``None``."""
        key = (self._owner, page, index)
        cached = TILES.get(key)
        if cached is not None:
            return cached
        segment = self._decode(page, index)
        if segment is not None:
            TILES.put(key, segment)
        return segment

    def _decode(self, page: int, index: int) -> np.ndarray | None:
        count = int(self._counts[page][index])
        offset = int(self._offsets[page][index])
        data = self._pread(offset, count) if count > 0 and offset > 0 else None
        try:
            segment, _, _ = self._decoders[page](data, index, **self._decode_kwargs[page])
        except MemoryError:
            raise
        except Exception as exc:
            where = f"{self._segment_name(index)} of level {self._level}"
            raise undecodable(self._path, where, exc) from exc
        return segment

    def _segment_name(self, index: int) -> str:
        """``tile (row R, column C)`` or ``strip R``: how every reader names a bad tile."""
        plane, rest = divmod(index, self._grid.per_plane)
        row, col = divmod(rest, self._grid.grid[1])
        name = f"tile (row {row}, column {col})" if self._tiled else f"strip {row}"
        return f"{name} of plane {plane}" if self._grid.n_separate > 1 else name

    def _pread(self, offset: int, count: int) -> bytes:
        if hasattr(os, "pread"):
            data = os.pread(self._fd, count, offset)
        else:  # no positional read: serialise seek + read
            with self._read_lock:
                os.lseek(self._fd, offset, os.SEEK_SET)
                data = os.read(self._fd, count)
        if len(data) != count:
            raise PatchwiseError(
                f"file ends inside a tile or strip at byte {offset + len(data)}",
                path=self._path,
                hint="the file is truncated; copy or export it again",
            )
        return data


def key_bounds(key, n: int) -> tuple[int, int, Any]:
    """Bounding range ``[start, stop)`` of ``key`` on an axis of length ``n``, and the
    index that picks ``key``'s elements out of that range."""
    if isinstance(key, int | np.integer):
        k = int(key) + n if key < 0 else int(key)
        if not 0 <= k < n:
            raise IndexError(f"index {int(key)} is out of bounds for axis with size {n}")
        return k, k + 1, 0
    if isinstance(key, slice):
        start, stop, step = key.indices(n)
        if step == 1:
            return start, max(start, stop), slice(None)
        picks = np.arange(start, stop, step)
    else:
        picks = np.arange(n)[key]
    if picks.size == 0:
        return 0, 0, slice(None)
    lo = int(picks.min())
    return lo, int(picks.max()) + 1, picks - lo
