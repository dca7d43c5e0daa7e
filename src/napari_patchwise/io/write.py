"""Writers: tiled, compressed, pyramidal OME-TIFF and OME-Zarr (v0.4 and v0.5).

Both writers stream: a level is never held in memory. The OME-TIFF writer computes one
row of tiles of one channel at a time (the next row is computed in the background while
tifffile compresses the current one); the OME-Zarr writer stores dask chunks with
``dask.array.store``. Outputs appear atomically (temporary sibling, then rename).

Levels are written exactly as given, so each level should be cheap to compute. Arrays
that are expensive to compute (a generated slide and its mask) go through
:func:`staged_arrays` first: computed once into a scratch store, then read from there.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np

from .._atomic import OutputKind, atomic_path, scratch_dir, zarr_attributes
from .._compute import joined_threads
from .._progress import ProgressCallback, dask_progress
from ..errors import PatchwiseError
from ._loaded import default_channel_names
from .formats import TIFF_SUFFIXES, ZARR_SUFFIXES
from .zarr import EVERY_CHUNK_WRITTEN

# Scratch stores favour speed over size: they live only while a pyramid is written.
_SCRATCH_CLEVEL = 1


def _as_levels(levels: da.Array | np.ndarray | Sequence) -> list[da.Array]:
    """Normalise ``levels`` to a non-empty list of dask arrays of one kind."""
    if isinstance(levels, da.Array | np.ndarray):
        levels = [levels]
    out = [da.asarray(level) for level in levels]
    if not out:
        raise ValueError("at least one level is needed")
    ndim, dtype = out[0].ndim, out[0].dtype
    for level in out:
        if level.ndim not in (2, 3) or level.ndim != ndim:
            raise ValueError(f"levels must all be (C, Y, X) or all (Y, X); got {level.shape}")
        if level.dtype != dtype:
            raise ValueError(f"levels must share one dtype; got {level.dtype} and {dtype}")
        if ndim == 3 and level.shape[0] != out[0].shape[0]:
            raise ValueError("levels must share the number of channels")
    return out


def _pixel_size_yx(pixel_size: float | Sequence[float] | None) -> tuple[float, float] | None:
    if pixel_size is None:
        return None
    if np.isscalar(pixel_size):
        return float(pixel_size), float(pixel_size)  # type: ignore[arg-type]
    y, x = pixel_size  # type: ignore[misc]
    return float(y), float(x)


def _channel_names(names: Sequence[str] | None, n: int) -> list[str]:
    # Unnamed channels get the names a reader gives an unnamed file (one home for them).
    if names is None:
        return default_channel_names(n)
    names = [str(name) for name in names]
    if len(names) != n:
        raise ValueError(f"{len(names)} channel names for {n} channels")
    return names


@dataclass(frozen=True)
class _Pyramid:
    """The levels to write and what both writers derive from them, checked once.

    ``channel_names`` is None for a mask (2-D levels): masks carry no channel metadata.
    """

    levels: list[da.Array]
    pixel_yx: tuple[float, float] | None
    channel_names: list[str] | None

    @property
    def is_mask(self) -> bool:
        return self.levels[0].ndim == 2

    def factors(self, level: da.Array) -> tuple[float, float]:
        """``(y, x)`` downsampling factors of ``level`` against level 0."""
        y0, x0 = self.levels[0].shape[-2:]
        return _factor(y0, level.shape[-2]), _factor(x0, level.shape[-1])


def _pyramid(
    levels: da.Array | Sequence[da.Array],
    pixel_size: float | Sequence[float] | None,
    channel_names: Sequence[str] | None,
) -> _Pyramid:
    """Check the arguments both writers share, in the order the writers always did."""
    checked = _as_levels(levels)
    pixel_yx = _pixel_size_yx(pixel_size)
    names = None if checked[0].ndim == 2 else _channel_names(channel_names, checked[0].shape[0])
    return _Pyramid(checked, pixel_yx, names)


def _checked_path(path: str | os.PathLike, suffixes: tuple[str, ...], what: str, hint: str) -> Path:
    """``path`` as a Path, refused before any work if its suffix is not one of ``suffixes``."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise PatchwiseError(f"not a {what} name", path=path, hint=hint)
    return path


def _multiscales_of(folder: Path) -> list:
    """The ``multiscales`` entries of an OME-Zarr group (0.5 nests them under ``ome``)."""
    attrs = zarr_attributes(folder)
    found = attrs.get("ome", attrs).get("multiscales") if isinstance(attrs, dict) else None
    return found if isinstance(found, list) else []


def _ome_zarr_owns(folder: Path, name: str) -> bool:
    """Whether an OME-Zarr group writes the entry ``name``: metadata and its datasets."""
    if name in {"zarr.json", ".zattrs", ".zgroup", ".zmetadata", "labels", "OME"}:
        return True
    paths = {
        str(d.get("path", "")).split("/")[0]
        for entry in _multiscales_of(folder)
        if isinstance(entry, dict)
        for d in entry.get("datasets", [])
        if isinstance(d, dict)
    }
    return name in paths


#: What ``convert`` / ``synth`` write as a folder: a ``*.zarr`` recognised by its
#: multiscales metadata, holding nothing but that metadata and its levels.
OME_ZARR = OutputKind(
    "an OME-Zarr image",
    suffixes=ZARR_SUFFIXES,
    folder=True,
    recognise=lambda folder: bool(_multiscales_of(folder)),
    owns=_ome_zarr_owns,
)


def _factor(size0: int, size: int) -> float:
    """Downsampling factor of a level: an integer for pyramids (sizes are rounded)."""
    f = max(1, round(size0 / size))
    return float(f) if size in (size0 // f, -(-size0 // f)) else size0 / size


# -- OME-TIFF ----------------------------------------------------------------------------


def _tile_rows(level: da.Array, tile: int) -> Iterator[np.ndarray]:
    """Yield ``(tile, X)`` rows of every plane, computing the next row in the background."""
    planes = [level] if level.ndim == 2 else [level[c] for c in range(level.shape[0])]
    jobs = [(plane, y0) for plane in planes for y0 in range(0, plane.shape[0], tile)]

    def compute(job: tuple[da.Array, int]) -> np.ndarray:
        plane, y0 = job
        return np.asarray(plane[y0 : y0 + tile].compute())

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(compute, jobs[0]) if jobs else None
        for i in range(len(jobs)):
            row = pending.result()  # type: ignore[union-attr]
            pending = pool.submit(compute, jobs[i + 1]) if i + 1 < len(jobs) else None
            yield row


def _tiles(level: da.Array, tile: int, tick) -> Iterator[np.ndarray]:
    """Yield the tiles of ``level`` in TIFF order (plane, tile row, tile column)."""
    width = level.shape[-1]
    for row in _tile_rows(level, tile):
        for x0 in range(0, width, tile):
            tile_data = np.ascontiguousarray(row[:, x0 : x0 + tile])
            # Count before yielding: tifffile does not resume the generator after the
            # last tile it expects.
            tick()
            yield tile_data


def _n_tiles(level: da.Array, tile: int) -> int:
    planes = 1 if level.ndim == 2 else level.shape[0]
    return planes * math.ceil(level.shape[-2] / tile) * math.ceil(level.shape[-1] / tile)


def write_ome_tiff(
    path: str | os.PathLike,
    levels: da.Array | Sequence[da.Array],
    *,
    channel_names: Sequence[str] | None = None,
    pixel_size: float | tuple[float, float] | None = None,
    tile: int = 512,
    compression: str | None = "zlib",
    compression_level: int | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Write a tiled, compressed, pyramidal OME-TIFF, one row of tiles at a time.

    Level 0 is the main image (one page per channel); the reduced levels are stored in
    SubIFDs of each page, as QuPath, Bio-Formats and tifffile expect.

    Parameters
    ----------
    path : path-like
        Output file (``.tif``/``.tiff``; ``.ome.tif`` recommended).
    levels : dask array or sequence of dask arrays
        Pyramid, level 0 first: ``(C, Y, X)`` images or ``(Y, X)`` masks.
    channel_names : sequence of str, optional
        One name per channel, stored in the OME-XML.
    pixel_size : float or (float, float), optional
        Level-0 pixel size in micrometres (``(y, x)`` or one value for both).
    tile : int
        Tile side in pixels (a multiple of 16).
    compression : str or None
        A tifffile compression name (``"zlib"``, ``"zstd"``, ``"lzw"``...) or None.
    compression_level : int, optional
        Codec level (e.g. 1 for fast zlib); the codec default if None.
    progress : callable, optional
        Called as ``progress(done_tiles, total_tiles)``.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    import tifffile

    path = _checked_path(
        path, TIFF_SUFFIXES, "TIFF file", hint="name the output *.ome.tif or *.tif"
    )
    if tile <= 0 or tile % 16:
        raise PatchwiseError(f"tile size {tile} is not a positive multiple of 16", path=path)
    pyramid = _pyramid(levels, pixel_size, channel_names)
    metadata = _ome_metadata(pyramid)
    tick = _tile_counter(sum(_n_tiles(level, tile) for level in pyramid.levels), progress)
    options = _tiff_options(tile, compression, compression_level)
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as tif:
        for k, level in enumerate(pyramid.levels):
            tif.write(
                _tiles(level, tile, tick),
                shape=level.shape,
                dtype=level.dtype,
                # Level 0 holds the reduced levels in its SubIFDs and the OME-XML.
                subifds=len(pyramid.levels) - 1 if k == 0 else None,
                subfiletype=1 if k > 0 else 0,
                metadata=metadata if k == 0 else None,
                **_tiff_resolution(pyramid, level),
                **options,
            )
    return path


def _ome_metadata(pyramid: _Pyramid) -> dict:
    """The OME-XML fields tifffile writes: axes, a UUID, channel names, pixel size."""
    # A random UUID: tifffile's default (uuid1) embeds the time and the host's MAC address.
    metadata: dict = {"axes": "YX" if pyramid.is_mask else "CYX", "UUID": str(uuid.uuid4())}
    if pyramid.channel_names is not None:
        metadata["Channel"] = {"Name": pyramid.channel_names}
    if pyramid.pixel_yx is not None:
        metadata.update(
            PhysicalSizeY=pyramid.pixel_yx[0],
            PhysicalSizeYUnit="µm",
            PhysicalSizeX=pyramid.pixel_yx[1],
            PhysicalSizeXUnit="µm",
        )
    return metadata


def _tile_counter(total: int, progress: ProgressCallback | None) -> Callable[[], None]:
    """A ``tick()`` that reports ``progress(done, total)`` once per written tile."""
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    return tick


def _tiff_options(tile: int, compression: str | None, compression_level: int | None) -> dict:
    """Keyword arguments of ``TiffWriter.write`` shared by every level."""
    options: dict = dict(
        photometric="minisblack",
        tile=(tile, tile),
        compression=compression,
        maxworkers=os.cpu_count() or 1,
    )
    if compression_level is not None and compression is not None:
        options["compressionargs"] = {"level": compression_level}
    return options


def _tiff_resolution(pyramid: _Pyramid, level: da.Array) -> dict:
    """Resolution tags of ``level`` (none without a pixel size)."""
    if pyramid.pixel_yx is None:
        return {}
    # TIFF stores pixels per centimetre, x first.
    fy, fx = pyramid.factors(level)
    return dict(
        resolution=(1e4 / (pyramid.pixel_yx[1] * fx), 1e4 / (pyramid.pixel_yx[0] * fy)),
        resolutionunit="CENTIMETER",
    )


# -- OME-Zarr ----------------------------------------------------------------------------


def _window(level: da.Array, contrast_limits: Sequence[tuple[float, float]] | None) -> list:
    """OMERO display windows per channel: the given limits or percentiles of ``level``."""
    info = np.iinfo(level.dtype) if level.dtype.kind in "ui" else None
    lo_max = (float(info.min), float(info.max)) if info else None
    if contrast_limits is None:
        small = np.asarray(level.compute(), dtype=np.float64)
        contrast_limits = []
        for plane in small:
            lo, hi = np.percentile(plane, [0.5, 99.8])
            contrast_limits.append((float(lo), float(max(hi, lo + 1))))
    windows = []
    for lo, hi in contrast_limits:
        dmin, dmax = lo_max if lo_max else (float(lo), float(hi))
        windows.append({"min": dmin, "max": dmax, "start": float(lo), "end": float(hi)})
    return windows


_COLORS = ("FF00FF", "00FF00", "00FFFF", "FFFF00", "FF0000", "0000FF")


def _multiscales(pyramid: _Pyramid, name: str, version: str | None) -> dict:
    """The ``multiscales`` entry: axes and one scale transformation per level."""
    is_mask, pixel_yx = pyramid.is_mask, pyramid.pixel_yx
    unit = {"unit": "micrometer"} if pixel_yx is not None else {}
    axes = [{"name": "y", "type": "space", **unit}, {"name": "x", "type": "space", **unit}]
    if not is_mask:
        axes.insert(0, {"name": "c", "type": "channel"})
    base = pixel_yx if pixel_yx is not None else (1.0, 1.0)
    datasets = []
    for k, level in enumerate(pyramid.levels):
        fy, fx = pyramid.factors(level)
        scale = [base[0] * fy, base[1] * fx]
        if not is_mask:
            scale.insert(0, 1.0)
        datasets.append(
            {"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    ms = {"name": name, "axes": axes, "datasets": datasets}
    if version is not None:
        ms = {"version": version, **ms}
    return ms


def _omero(names: list[str], windows: list[dict], version: str) -> dict:
    """The ``omero`` display metadata of an image: label, colour and window per channel."""
    omero: dict = {
        "channels": [
            {
                "label": label,
                "color": _COLORS[i % len(_COLORS)],
                "window": window,
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
            }
            for i, (label, window) in enumerate(zip(names, windows, strict=True))
        ],
        "rdefs": {"model": "color"},
    }
    if version == "0.4":
        omero["version"] = "0.4"
    return omero


def _zarr_attrs(
    pyramid: _Pyramid,
    name: str,
    version: str,
    contrast_limits: Sequence[tuple[float, float]] | None,
) -> dict:
    """The group attributes: ``multiscales`` (and ``omero`` for images), nested per version.

    0.4 puts a version in each entry; 0.5 nests everything under ``"ome"`` with one version.
    """
    multiscales = _multiscales(pyramid, name, "0.4" if version == "0.4" else None)
    attrs: dict = {"multiscales": [multiscales]}
    if pyramid.channel_names is not None:  # an image, not a mask
        windows = _window(pyramid.levels[-1], contrast_limits)
        attrs["omero"] = _omero(pyramid.channel_names, windows, version)
    if version == "0.5":
        attrs = {"ome": {"version": "0.5", **attrs}}
    return attrs


def write_ome_zarr(
    path: str | os.PathLike,
    levels: da.Array | Sequence[da.Array],
    *,
    channel_names: Sequence[str] | None = None,
    pixel_size: float | tuple[float, float] | None = None,
    chunk: int = 512,
    version: str = "0.5",
    contrast_limits: Sequence[tuple[float, float]] | None = None,
    name: str | None = None,
    compression_level: int = 5,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Write an OME-Zarr pyramid (v0.5 on zarr v3, or v0.4 on zarr v2), chunk by chunk.

    Parameters
    ----------
    path : path-like
        Output store directory (``*.ome.zarr``).
    levels : dask array or sequence of dask arrays
        Pyramid, level 0 first: ``(C, Y, X)`` images or ``(Y, X)`` masks.
    channel_names : sequence of str, optional
        Channel labels for the ``omero`` metadata (images only).
    pixel_size : float or (float, float), optional
        Level-0 pixel size in micrometres; written as the scale transformations.
    chunk : int
        Chunk side in pixels (one channel per chunk).
    version : {"0.5", "0.4"}
        OME-NGFF version: ``"0.5"`` writes zarr v3 with ``zarr.json`` attributes under
        ``"ome"``; ``"0.4"`` writes zarr v2 with ``.zattrs``.
    contrast_limits : sequence of (float, float), optional
        Display window per channel; percentiles of the smallest level if None.
    name : str, optional
        Name of the multiscale image (the file stem by default).
    compression_level : int
        Blosc/zstd level of the chunks.
    overwrite : bool
        Replace an existing OME-Zarr image at ``path`` (only once the new one is
        complete; only a folder recognisably one: :data:`OME_ZARR`); without it an
        existing store is an error and is left as it is.
    progress : callable, optional
        Called as ``progress(done_tasks, total_tasks)``.

    Returns
    -------
    pathlib.Path
        The written store.
    """
    path = _checked_path(path, ZARR_SUFFIXES, "zarr store", hint="name the output *.ome.zarr")
    if version not in ("0.4", "0.5"):
        raise PatchwiseError(f"unknown OME-Zarr version {version!r}", hint="use 0.4 or 0.5")
    pyramid = _pyramid(levels, pixel_size, channel_names)
    attrs = _zarr_attrs(pyramid, name or path.name.split(".")[0], version, contrast_limits)
    with atomic_path(path, replace=OME_ZARR if overwrite else None) as tmp:
        _store_levels(
            tmp,
            pyramid.levels,
            chunk=chunk,
            zarr_format=3 if version == "0.5" else 2,
            clevel=compression_level,
            cname="zstd",
            attrs=attrs,
            progress=progress,
        )
    return path


def _store_levels(
    store: Path,
    levels: list[da.Array],
    *,
    chunk: int,
    zarr_format: int,
    clevel: int,
    cname: str,
    attrs: dict | None = None,
    progress: ProgressCallback | None = None,
) -> list:
    """Create a zarr group at ``store`` with arrays ``"0"``, ``"1"``... and fill them."""
    import zarr

    root = zarr.open_group(store, mode="w", zarr_format=zarr_format)
    arrays, sources = [], []
    for k, level in enumerate(levels):
        arrays.append(_create_array(root, str(k), level, chunk, zarr_format, clevel, cname))
        sources.append(level.rechunk(arrays[-1].chunks))
    if attrs:
        root.attrs.update(attrs)
    with joined_threads(), dask_progress(progress):
        da.store(sources, arrays, lock=False)
    return arrays


def _create_array(root, key: str, level: da.Array, chunk: int, zarr_format: int, clevel, cname):
    chunks = (chunk, chunk) if level.ndim == 2 else (1, chunk, chunk)
    chunks = tuple(min(c, max(1, s)) for c, s in zip(chunks, level.shape, strict=True))
    kwargs: dict = dict(shape=level.shape, dtype=level.dtype, chunks=chunks, fill_value=0)
    # Every chunk is written, all-zero ones too: readers refuse a chunk missing from an
    # image (io/zarr.py), which zarr's default would leave out for black regions.
    # The arrays say so (EVERY_CHUNK_WRITTEN): a reader then takes any absent chunk as lost.
    kwargs["config"] = {"write_empty_chunks": True}
    kwargs["attributes"] = copy.deepcopy(EVERY_CHUNK_WRITTEN)
    if zarr_format == 3:
        from zarr.codecs import BloscCodec

        kwargs["compressors"] = BloscCodec(cname=cname, clevel=clevel, shuffle="noshuffle")
        kwargs["dimension_names"] = ("y", "x") if level.ndim == 2 else ("c", "y", "x")
    else:
        from numcodecs import Blosc

        kwargs["compressors"] = Blosc(cname=cname, clevel=clevel, shuffle=Blosc.NOSHUFFLE)
        kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    return root.create_array(key, **kwargs)


# -- staging -----------------------------------------------------------------------------


@contextlib.contextmanager
def staged_arrays(
    arrays: Sequence[da.Array],
    *,
    workdir: str | os.PathLike | None = None,
    chunk: int = 512,
    progress: ProgressCallback | None = None,
) -> Iterator[list[da.Array]]:
    """Compute ``arrays`` together, once, into a scratch store and read them from there.

    For arrays that are expensive to compute and share work (a generated image and its
    mask come from the same blocks): one ``dask.array.store`` computes the shared work
    once, chunk by chunk; the writers and pyramid builders then read the stored chunks
    as often as they need. The store (fast lz4 compression) lives in a private
    ``.patchwise-scratch-<pid>-*`` folder in ``workdir`` (the system temp folder if None),
    removed on exit; one left by a killed run is removed by a later run
    (:func:`napari_patchwise._atomic.clean_stale`).

    Yields
    ------
    list of dask.array.Array
        The stored arrays, in order.
    """
    import zarr

    with scratch_dir(workdir) as tmp:
        root = zarr.open_group(tmp / "scratch.zarr", mode="w", zarr_format=3)
        targets = [
            _create_array(root, str(i), a, chunk, 3, _SCRATCH_CLEVEL, "lz4")
            for i, a in enumerate(arrays)
        ]
        sources = [a.rechunk(t.chunks) for a, t in zip(arrays, targets, strict=True)]
        with joined_threads(), dask_progress(progress):
            da.store(sources, targets, lock=False)
        yield [da.from_zarr(t) for t in targets]
