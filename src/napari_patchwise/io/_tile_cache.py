"""Decoded tiles kept for reuse, least recently used dropped first, bounded in bytes.

napari shows a slide's channels as one layer each, and each layer slices its own
channel, so without a cache an RGB scanner slide decodes every tile under the view three
times per pan step (a tile holds all three samples). Panning back over a region decodes
it again too. The cache holds decoded tiles of :class:`~._tiles.TiffLevelView` reads,
keyed by view and tile, up to :data:`DEFAULT_BYTES` (``PATCHWISE_TILE_CACHE_MB``
overrides it; ``0`` turns the cache off). Its lock guards the table only: decoding
happens outside it, so threads still decode in parallel. In the viewer,
:data:`PREFETCH` decodes the ring of tiles around each read in the background, so a
pan by less than a tile finds what it shows already decoded.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

import numpy as np

#: Default bound of the shared cache (bytes): about 170 decoded 512 px RGB tiles, or
#: 680 of 256 px, i.e. a few screens of a 1400 x 900 canvas.
DEFAULT_BYTES = 128 * 2**20
ENV_MB = "PATCHWISE_TILE_CACHE_MB"

_owners = itertools.count()


def new_owner() -> int:
    """A key prefix unique to one open view in this process (never reused, unlike ``id``)."""
    return next(_owners)


class TileCache:
    """Thread-safe LRU of read-only arrays, bounded by their total ``nbytes``.

    Parameters
    ----------
    max_bytes : int
        Upper bound of :attr:`nbytes`; an array larger than it is not kept.
    """

    def __init__(self, max_bytes: int):
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._nbytes = 0
        self.max_bytes = max(0, int(max_bytes))
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        """Bytes held now (always ``<= max_bytes``)."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def get(self, key: Hashable) -> np.ndarray | None:
        """The array stored under ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: np.ndarray) -> None:
        """Keep ``value`` (made read-only) under ``key``, dropping the oldest to fit."""
        size = int(value.nbytes)
        if size > self.max_bytes:
            return
        value.setflags(write=False)  # shared by every later reader of the tile
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._nbytes -= int(old.nbytes)
            self._items[key] = value
            self._nbytes += size
            self._trim(self.max_bytes)

    def resize(self, max_bytes: int) -> None:
        """Change the bound (dropping the oldest tiles to fit it)."""
        with self._lock:
            self.max_bytes = max(0, int(max_bytes))
            self._trim(self.max_bytes)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._nbytes = 0

    def _trim(self, limit: int) -> None:
        while self._nbytes > limit and self._items:
            _, dropped = self._items.popitem(last=False)
            self._nbytes -= int(dropped.nbytes)


def _env_bytes() -> int:
    try:
        return int(float(os.environ.get(ENV_MB, "")) * 2**20)
    except ValueError:
        return DEFAULT_BYTES


#: The process's one tile cache, shared by every open TIFF / SVS level.
TILES = TileCache(_env_bytes() if os.environ.get(ENV_MB) else DEFAULT_BYTES)


class Prefetcher:
    """Decode tiles next to what was just read, in the background, into :data:`TILES`.

    Off until :meth:`enable` (the napari reader turns it on: panning reads the tiles next
    to the last view; headless statistics read every tile once and would only decode
    twice). At most ``max_pending`` tiles wait; a tile already cached or waiting is not
    asked for again, and a failing decode is dropped silently (the read that needs the
    tile reports it).
    """

    def __init__(self, workers: int = 2, max_pending: int = 256):
        self._workers = workers
        self._max_pending = max_pending
        self._pending: dict[Hashable, Future] = {}
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self.enabled = False

    def enable(self, on: bool = True) -> None:
        """Start (or stop) prefetching for every view of this process."""
        self.enabled = bool(on)

    def submit(self, key: Hashable, load: Callable[[], np.ndarray | None]) -> None:
        """Decode ``load()`` into the cache under ``key`` unless it is there or waiting."""
        if not self.enabled or TILES.max_bytes == 0 or key in TILES:
            return
        with self._lock:
            if key in self._pending or len(self._pending) >= self._max_pending:
                return
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._workers, "patchwise-prefetch")
            self._pending[key] = self._executor.submit(self._run, key, load)

    def _run(self, key: Hashable, load: Callable[[], np.ndarray | None]) -> None:
        try:
            if key not in TILES:
                value = load()
                if value is not None:
                    TILES.put(key, value)
        except Exception:  # noqa: BLE001 - the foreground read reports a bad tile
            pass
        finally:
            with self._lock:
                self._pending.pop(key, None)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the tiles asked for so far are decoded (tests, benchmarks)."""
        with self._lock:
            futures = list(self._pending.values())
        wait_futures(futures, timeout=timeout)


#: The process's one prefetcher (off until the napari reader enables it).
PREFETCH = Prefetcher()
