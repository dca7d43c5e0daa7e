"""OME-Zarr images: v0.4 (zarr v2 ``.zattrs``) and v0.5 (zarr v3 ``zarr.json``, ``ome`` key).

Read with zarr 3: the ``multiscales`` datasets are the pyramid levels, the first
dataset's ``scale`` gives the pixel size, ``omero`` channels give names and display
windows. A ``labels`` group (``store.zarr/labels``) opens its first label image.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PatchwiseError
from ._layout import lazy_cyx, stored_yx
from ._loaded import UNIT_TO_UM, LoadedImage
from ._tiles import key_bounds, undecodable
from ._zarr_direct import DirectChunks

_HINT = (
    "write it as OME-Zarr (multiscales metadata), e.g. `patchwise convert IMAGE --out OUT.ome.zarr`"
)


def read_ome_zarr(path: str | Path, *, labels: bool = False) -> LoadedImage:
    """Open an OME-Zarr image store lazily.

    Parameters
    ----------
    path : path-like
        The store (a directory), e.g. ``slide.ome.zarr``, or its ``labels`` group.
    labels : bool
        Read a label image (a mask; also any store opened through its ``labels``
        group): a chunk missing from the store is the fill value (background), as zarr
        leaves out chunks that hold only it. In a pixel image a missing chunk is the
        fill value only where the next coarser level is all fill value there (see
        :class:`CheckedChunks`), else an error raised when a read reaches it.

    Returns
    -------
    LoadedImage
        Levels ``(C, Y, X)``; channel names, pixel size (µm) and contrast limits where
        the metadata has them.

    Raises
    ------
    PatchwiseError
        Not a zarr group, no ``multiscales`` metadata, or unsupported axes; when read, a
        missing (pixel images) or undecodable chunk, naming its file.
    """
    import zarr

    path = Path(path)
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - zarr raises many types for a bad store
        raise PatchwiseError(
            f"not a readable zarr store ({' '.join(str(exc).split()) or type(exc).__name__})",
            path=path,
            hint=_HINT,
        ) from None
    if not isinstance(node, zarr.Group):
        raise PatchwiseError(
            "is a bare zarr array without OME multiscales metadata", path=path, hint=_HINT
        )
    attrs = _ome_attrs(node)
    if not attrs.get("multiscales") and attrs.get("labels"):
        node = node[str(attrs["labels"][0])]
        attrs = _ome_attrs(node)
        labels = True
    multiscales = attrs.get("multiscales")
    if not multiscales:
        raise PatchwiseError("zarr store has no OME multiscales metadata", path=path, hint=_HINT)
    try:
        return _read_multiscale(node, multiscales[0], attrs.get("omero"), path, labels)
    except PatchwiseError as exc:
        raise PatchwiseError(str(exc).rstrip("."), path=path) from None
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise PatchwiseError(
            f"malformed OME multiscales metadata ({type(exc).__name__}: {exc})",
            path=path,
            hint=_HINT,
        ) from None


def _ome_attrs(group: Any) -> dict:
    """Attributes of an OME group, whether v0.5 (under ``"ome"``) or v0.4 (top level)."""
    attrs = dict(group.attrs)
    return dict(attrs["ome"]) if isinstance(attrs.get("ome"), dict) else attrs


def _axis_letters(multiscale: dict, ndim: int) -> tuple[str, list[dict]]:
    axes = multiscale.get("axes")
    if axes is None:  # v0.1-v0.3 without axes: always (t, c, z, y, x), trailing
        return "TCZYX"[-ndim:], [{} for _ in range(ndim)]
    axes = [a if isinstance(a, dict) else {"name": str(a)} for a in axes]
    letters = ""
    for axis in axes:
        name = str(axis.get("name", "")).lower()
        kind = str(axis.get("type", "")).lower()
        if name in ("y", "x", "z", "t", "c"):
            letters += name.upper()
        elif kind == "channel":
            letters += "C"
        elif kind == "time":
            letters += "T"
        else:
            letters += "Q"  # some other axis: a channel candidate if it has > 1 entry
    return letters, axes


def _read_multiscale(
    group: Any, multiscale: dict, omero: dict | None, path: Path, labels: bool
) -> LoadedImage:
    datasets = multiscale["datasets"]
    arrays = _checked_levels([group[str(ds["path"])] for ds in datasets], path, labels)
    letters, axes = _axis_letters(multiscale, arrays[0].ndim)
    levels = [lazy_cyx(a, letters, stored_yx(a.chunks, letters)) for a in arrays]
    n = int(levels[0].shape[0])
    return LoadedImage(
        levels=levels,
        channel_names=_omero_names(omero, n),
        pixel_size=_pixel_size(multiscale, datasets[0], letters, axes),
        contrast_limits=_omero_windows(omero, n),
    )


def _checked_levels(levels: list, path: Path, labels: bool) -> list[CheckedChunks]:
    """The pyramid's levels, each read through the chunk check its writer allows.

    A label image may leave out any chunk; an image whose every level records that every
    chunk was written (``patchwise``'s) may leave out none; any other image is checked
    level by level against the next coarser one, the coarsest against the next finer
    (``absent="pyramid"``).
    """
    if labels:
        return [CheckedChunks(a, path, absent="fill") for a in levels]
    if all(writes_every_chunk(a) for a in levels):
        return [CheckedChunks(a, path) for a in levels]
    checked: list[CheckedChunks] = []
    for k in range(len(levels) - 1, -1, -1):  # coarsest first: each checks against the last
        array = levels[k]
        coarser = checked[-1] if checked and _same_axes(checked[-1], array) else None
        finer = levels[k - 1] if coarser is None and k > 0 else None
        if finer is not None and not _same_axes(CheckedChunks(array, path), finer):
            finer = None
        checked.append(CheckedChunks(array, path, absent="pyramid", coarser=coarser, finer=finer))
    return checked[::-1]


def _same_axes(coarser: CheckedChunks, array: Any) -> bool:
    """Whether ``coarser`` is a downsampled copy of ``array`` (same axes, no larger)."""
    shape = tuple(int(n) for n in array.shape)
    return len(shape) == coarser.ndim and all(
        0 < m <= n for m, n in zip(coarser.shape, shape, strict=True)
    )


def _scale(transforms: list | None, ndim: int) -> list[float]:
    for t in transforms or []:
        if t.get("type") == "scale" and "scale" in t:
            return [float(s) for s in t["scale"]]
    return [1.0] * ndim


def _pixel_size(multiscale: dict, dataset0: dict, letters: str, axes: list[dict]):
    ndim = len(letters)
    scale = _scale(dataset0.get("coordinateTransformations"), ndim)
    overall = _scale(multiscale.get("coordinateTransformations"), ndim)
    sizes = []
    for letter in "YX":
        i = letters.index(letter)
        unit = axes[i].get("unit")
        value = scale[i] * overall[i]
        if unit is None:
            if value == 1.0:  # no unit and the identity scale: nothing is known
                return None
            factor = 1.0  # unitless scales are micrometres by convention
        elif str(unit).lower() in UNIT_TO_UM:
            factor = UNIT_TO_UM[str(unit).lower()]
        else:
            return None
        sizes.append(value * factor)
    return (sizes[0], sizes[1]) if all(s > 0 for s in sizes) else None


def _omero_channels(omero: dict | None, n: int) -> list[dict] | None:
    channels = (omero or {}).get("channels")
    return list(channels) if isinstance(channels, list) and len(channels) == n else None


def _omero_names(omero: dict | None, n: int) -> list[str] | None:
    channels = _omero_channels(omero, n)
    if channels is None:
        return None
    names = [str(ch.get("label", "") or "").strip() for ch in channels]
    return names if all(names) and len(set(names)) == n else None


def _omero_windows(omero: dict | None, n: int) -> tuple[tuple[float, float], ...] | None:
    channels = _omero_channels(omero, n)
    if channels is None:
        return None
    limits = []
    for ch in channels:
        window = ch.get("window") or {}
        try:
            lo, hi = float(window["start"]), float(window["end"])
        except (KeyError, TypeError, ValueError):
            return None
        if not hi > lo:
            return None
        limits.append((lo, hi))
    return tuple(limits)


# -- chunk checks ------------------------------------------------------------------------------
MISSING_HINT = "the store is incomplete; copy it again (or write it again)"

#: Array attribute of the images ``patchwise`` writes: every chunk is in the store, all-zero
#: ones included, so an absent chunk is always a lost one (io/write.py sets it).
EVERY_CHUNK_WRITTEN = {"napari_patchwise": {"every_chunk_written": True}}

# (store, array) pairs already warned about (once per file and process).
_WARNED: set[tuple[str, str]] = set()


def writes_every_chunk(array: Any) -> bool:
    """Whether ``array`` records that its writer stored every chunk (:data:`EVERY_CHUNK_WRITTEN`)."""
    mark = dict(array.attrs).get("napari_patchwise")
    return isinstance(mark, dict) and mark.get("every_chunk_written") is True


class AbsentChunksWarning(UserWarning):
    """Chunks absent from a level with no coarser level to check them against."""


class CheckedChunks:
    """Read-only view of a zarr array whose reads refuse missing and undecodable chunks.

    zarr reads a chunk that is not in the store as the fill value: a store copied in
    part, or one whose chunk file was lost, would read as a block of zeros; but zarr's
    writers also leave out, on purpose, chunks that hold only the fill value (zarr 3's
    default). Before each read the view checks that every stored chunk (shard) under the
    selection exists — a ``stat`` per chunk on a local store, about 12 µs next to
    milliseconds of decoding — and decides what an absent one is (``absent``):

    - ``"error"``: lost (every chunk was written: :data:`EVERY_CHUNK_WRITTEN`, feature
      stores);
    - ``"fill"``: the fill value (sparse arrays: masks, whose background chunks are left out);
    - ``"pyramid"``: the fill value where the region it covers in ``coarser`` (the next
      level of the pyramid, computed from this one) reads as all fill value, else lost;
      at the coarsest level the fill value, silently where the next finer level
      (``finer``) is all fill value there, else (a single-level image, pixels there:
      nothing tells the two apart) with one :class:`AbsentChunksWarning` per file and
      process.
      Absent chunks found empty are remembered, so each is checked once.

    A chunk that exists but does not decode (a truncated copy) is one line naming it,
    found by reading the selection's chunks one by one on that failure path.

    Parameters
    ----------
    array : zarr.Array
        The array (picklable: the view is shipped to dask.distributed workers with it).
    path : path-like
        The store the user named (messages name chunk files under it).
    absent : {"error", "fill", "pyramid"}
        What a chunk absent from the store is, see above.
    coarser : CheckedChunks, optional
        The next coarser level (``absent="pyramid"``), with the same axes.
    finer : zarr.Array, optional
        The next finer level, for the coarsest level of a pyramid (``absent="pyramid"``
        with no ``coarser``): an absent chunk whose region there is all fill value (read
        as stored) is empty, without a warning.
    """

    def __init__(
        self,
        array: Any,
        path: str | os.PathLike,
        *,
        absent: str = "error",
        coarser: CheckedChunks | None = None,
        finer: Any = None,
    ):
        if absent not in ("error", "fill", "pyramid"):
            raise ValueError(f"absent must be 'error', 'fill' or 'pyramid', not {absent!r}")
        self._array = array
        self._path = str(path)
        self._absent = absent
        self._coarser = coarser
        self._finer = finer
        self._empty: set[tuple[int, ...]] = set()  # absent chunks known to be fill value
        self.shape = tuple(int(n) for n in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        self.chunks = tuple(int(n) for n in array.chunks)
        # Chunks are stored per shard when the array is sharded.
        self._stored = tuple(int(n) for n in (getattr(array, "shards", None) or array.chunks))
        fill = getattr(array, "fill_value", None)
        self.fill_value = np.asarray(0 if fill is None else fill, self.dtype)
        # Local stores are read chunk file by chunk file in the calling thread (threads
        # scale); anything else through zarr.
        self._direct = DirectChunks.for_array(array)

    def __repr__(self) -> str:
        return f"CheckedChunks({self._path!r}, {self._array.path!r})"

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        spans = [key_bounds(k, n)[:2] for k, n in zip(key, self.shape, strict=True)]
        coords = list(self._chunk_coords(spans))
        if self._absent != "fill":
            for chunk in coords:
                if chunk not in self._empty and not self._exists(chunk):
                    self._check_absent(chunk)
        try:
            if self._direct is not None:
                return self._direct[key]
            return np.asarray(self._array[key])
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - numcodecs / zarr codec errors of damaged bytes
            raise undecodable(self._path, f"chunk {self._bad(coords)}", exc) from None

    def _check_absent(self, chunk: tuple[int, ...]) -> None:
        """Accept an absent chunk as fill value (remembered), or raise that it is missing."""
        if self._absent == "error":
            raise PatchwiseError(
                f"chunk {self._key(chunk)} is missing", path=self._path, hint=MISSING_HINT
            )
        if self._coarser is None:
            self._empty.add(chunk)
            if not self._finer_is_fill(chunk):
                self._warn_once()
            return
        region = self._coarser_region(chunk)
        values = self._coarser[region]
        if not _all_fill(values, self._coarser.fill_value):
            raise PatchwiseError(
                f"chunk {self._key(chunk)} is missing (the next pyramid level has pixels "
                "there, so it was not left out for being empty)",
                path=self._path,
                hint=MISSING_HINT,
            )
        self._empty.add(chunk)

    def _coarser_region(self, chunk: tuple[int, ...]) -> tuple[slice, ...]:
        """The region of the coarser level that ``chunk`` was downsampled into.

        Its edge pixels facing a neighbouring chunk are left out where the region is
        wider than that: a smoothing downsampler blends the neighbour's pixels into them.
        """
        region = []
        shapes = zip(chunk, self._stored, self.shape, self._coarser.shape, strict=True)
        for c, size, n, m in shapes:
            lo, hi = c * size, min((c + 1) * size, n)
            factor = n / max(m, 1)
            clo, chi = math.floor(lo / factor), min(math.ceil(hi / factor), m)
            inner = clo + int(lo > 0), chi - int(hi < n)
            if factor > 1 and inner[1] > inner[0]:
                clo, chi = inner
            region.append(slice(clo, max(chi, clo + 1)))
        return tuple(region)

    def _finer_is_fill(self, chunk: tuple[int, ...]) -> bool:
        """Whether the finer level (as stored) is all fill value where ``chunk`` lies.

        Not proof (a decimating downsampler may skip the finer level's only pixels), so
        pixels there are a warning, not an error.
        """
        if self._finer is None:
            return False
        region = []
        for c, size, n, m in zip(chunk, self._stored, self.shape, self._finer.shape, strict=True):
            factor = m / max(n, 1)
            lo, hi = c * size, min((c + 1) * size, n)
            region.append(slice(math.floor(lo * factor), min(math.ceil(hi * factor), m)))
        fill = getattr(self._finer, "fill_value", None)
        values = np.asarray(self._finer[tuple(region)])
        return _all_fill(values, np.asarray(0 if fill is None else fill, values.dtype))

    def _warn_once(self) -> None:
        key = (self._path, str(self._array.path))
        if key in _WARNED:
            return
        _WARNED.add(key)
        n, total = self._count_absent()
        level = self._array.path or "the array"
        warnings.warn(
            f"{self._path}: {n} of the {total} chunks of level {level} are not in the store "
            f"and read as {self.fill_value.item()!r} (zarr leaves out chunks that hold only "
            "the fill value; no coarser level tells a lost one apart) — if the store was "
            "copied, check that the copy is complete",
            AbsentChunksWarning,
            stacklevel=4,
        )

    def _count_absent(self) -> tuple[int, int]:
        """How many of the array's stored chunks are absent, of how many (one listing)."""
        from zarr.core.sync import sync

        total = math.prod(-(-n // s) for n, s in zip(self.shape, self._stored, strict=True))
        prefix = f"{self._array.path}/" if self._array.path else ""
        meta = ("zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata")

        async def present() -> int:
            count = 0
            async for key in self._array.store.list_prefix(prefix):
                count += key.rsplit("/", 1)[-1] not in meta  # chunks, not metadata
            return count

        try:
            return max(total - sync(present()), 1), total
        except Exception:  # noqa: BLE001 - a store that cannot list: the count is unknown
            return 1, total

    def _chunk_coords(self, spans: list[tuple[int, int]]):
        ranges = [
            range(lo // size, (hi - 1) // size + 1) if hi > lo else range(0)
            for (lo, hi), size in zip(spans, self._stored, strict=True)
        ]
        return itertools.product(*ranges)

    def _key(self, chunk: tuple[int, ...]) -> str:
        """The chunk's key in the store (its file under the store's folder)."""
        key = self._array.metadata.encode_chunk_key(tuple(chunk))
        return f"{self._array.path}/{key}" if self._array.path else key

    def _exists(self, chunk: tuple[int, ...]) -> bool:
        store = self._array.store
        root = getattr(store, "root", None)
        if root is not None and type(store).__name__ == "LocalStore":
            return os.path.exists(os.path.join(root, *self._key(chunk).split("/")))
        from zarr.core.sync import sync

        return bool(sync(store.exists(self._key(chunk))))

    def _bad(self, coords: list[tuple[int, ...]]) -> str:
        """The first of ``coords`` that does not decode (or all of them, as a range).

        A blosc chunk cut short is found by its header first: blosc's decoder is not told
        the buffer's length, so decoding a cut chunk on its own may read past its end and
        succeed or fail by chance (the whole read failed; naming the chunk must not).
        """
        for chunk in coords:
            if self._cut_blosc(chunk):
                return self._key(chunk)
        for chunk in coords:
            region = tuple(
                slice(c * size, (c + 1) * size) for c, size in zip(chunk, self._stored, strict=True)
            )
            try:
                self._array[region]
            except MemoryError:
                raise
            except Exception:  # noqa: BLE001 - the failure being looked for
                return self._key(chunk)
        first, last = self._key(coords[0]), self._key(coords[-1])
        return first if first == last else f"{first} .. {last}"

    def _cut_blosc(self, chunk: tuple[int, ...]) -> bool:
        """Whether ``chunk`` is a blosc frame shorter or longer than its header says
        (a local store's file only; the header's bytes 12-16 hold the frame's length)."""
        store = self._array.store
        root = getattr(store, "root", None)
        codecs = str(getattr(self._array.metadata, "codecs", "")) + str(
            getattr(self._array.metadata, "compressor", "")
        )
        if root is None or type(store).__name__ != "LocalStore" or "blosc" not in codecs.lower():
            return False
        try:
            with open(os.path.join(root, *self._key(chunk).split("/")), "rb") as f:
                data = f.read()
        except OSError:
            return False
        return len(data) < 16 or int.from_bytes(data[12:16], "little") != len(data)


def _all_fill(values: np.ndarray, fill: np.ndarray) -> bool:
    if fill.dtype.kind in "fc" and np.isnan(fill):
        return bool(np.isnan(values).all())
    return bool((values == fill).all())


def read_checked(array: Any, path: str | os.PathLike) -> np.ndarray:
    """All of zarr ``array``, every chunk present and decodable (else one line naming it)."""
    return CheckedChunks(array, path)[(slice(None),) * array.ndim]
