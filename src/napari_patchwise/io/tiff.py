"""TIFF and OME-TIFF: pyramidal or not, tiled or striped, any channel layout.

Pixels are read lazily, one dask chunk per group of whole tiles or strips, by
:class:`~._tiles.TiffLevelView` (positional reads + tifffile's segment decoder, no lock);
uncompressed contiguous files are memory-mapped, and layouts the direct reader does not
cover (volumes, NDPI JPEG streams) go through tifffile's zarr interface (``aszarr``).
Stored pyramid levels (OME-TIFF SubIFDs or series levels) are used as they are.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.array as da

from ..errors import PatchwiseError
from ._layout import lazy_cyx, lazy_view, stored_yx
from ._loaded import UNIT_TO_UM, LoadedImage
from ._tiles import TiffLevelView, UnsupportedLayout

_ALPHA_EXTRASAMPLES = (1, 2)  # ASSOCALPHA, UNASSALPHA


def read_tiff(path: str | Path) -> LoadedImage:
    """Open a TIFF / OME-TIFF lazily.

    Parameters
    ----------
    path : path-like
        The file.

    Returns
    -------
    LoadedImage
        Levels ``(C, Y, X)`` as dask arrays (stored pyramid levels if any), channel
        names and pixel size (micrometres, ``(y, x)``) from OME-XML or the resolution
        tags where present.

    Raises
    ------
    PatchwiseError
        The file is not a readable TIFF, is truncated, or has an unsupported layout.
    """
    import tifffile

    path = Path(path)
    tif = None
    try:
        with tifffile_log() as records:
            tif = tifffile.TiffFile(path)
            series = tif.series[0]
        check_structure(records)
        _check_complete(tif, series)
        _check_decodable(series, path)
        levels = [_level_array(tif, series, i) for i in range(len(series.levels))]
        ome = _ome_pixels(tif)
        channel_names = _channel_names(series, ome, levels[0].shape[0])
        pixel_size = _ome_pixel_size(ome) or _tag_pixel_size(tif)
    except PatchwiseError:
        if tif is not None:
            tif.close()
        raise
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError) as exc:
        if tif is not None:
            tif.close()
        raise PatchwiseError(
            f"not a readable TIFF ({_short(exc)})",
            path=path,
            hint="the file may be truncated or corrupt; re-export or re-copy it",
        ) from None
    return LoadedImage(levels=levels, channel_names=channel_names, pixel_size=pixel_size)


# tifffile logs (and carries on) where a file's structure is damaged: pages or tag values
# past the end of a truncated file, missing offsets. It then reads what is left — e.g. one
# channel of three — so these records are errors here, not noise.
_DAMAGED = re.compile(
    r"invalid (page offset|value offset|offset to|circular reference)|corrupted tag list"
    r"|missing (data offset|data ByteCounts|ByteCounts|required tags)|incorrect Strip"
)
_collectors: list[list[logging.LogRecord]] = []
_collectors_lock = threading.Lock()


class _Collect(logging.Filter):
    """Hand tifffile's records to the open :func:`tifffile_log` blocks instead of stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _collectors_lock:
            for records in _collectors:
                records.append(record)
            return not _collectors


@contextlib.contextmanager
def tifffile_log() -> Iterator[list[logging.LogRecord]]:
    """Collect (and keep off stderr) what tifffile logs while the block opens a file.

    Its lines would otherwise appear before, and say less than, our one-line error.
    """
    logger = logging.getLogger("tifffile")
    with _collectors_lock:
        if not any(isinstance(f, _Collect) for f in logger.filters):
            logger.addFilter(_Collect())
        records: list[logging.LogRecord] = []
        _collectors.append(records)
    try:
        yield records
    finally:
        with _collectors_lock:
            _collectors.remove(records)


def check_structure(records: list[logging.LogRecord]) -> None:
    """Raise on the first collected record that says the file's structure is damaged."""
    for record in records:
        message = record.getMessage()
        if _DAMAGED.search(message):
            raise ValueError(f"file is truncated or damaged: {re.sub(r'<[^>]*> ?', '', message)}")


def _check_complete(tif: Any, series: Any) -> None:
    """Fail now, not mid-pan, when the file ends before its last tile or strip."""
    size = tif.filehandle.size
    for lvl in series.levels:
        for page in lvl.pages:
            if page is None:
                continue
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)]
            if ends and max(ends) > size:
                raise ValueError(f"file is truncated: {size} bytes, data runs to {max(ends)}")


def _check_decodable(series: Any, path: Path) -> None:
    """Fail on open, not on the first read, when no codec decodes the pixels.

    tifffile opens such a page (an unknown compression code, an unsupported sample
    format) and gives it a decoder that raises; read through its zarr store that
    surfaced as a traceback mid-conversion, or a wrongly sized image.
    """
    for lvl in series.levels:
        for page in lvl.pages:
            key = getattr(page, "keyframe", None)
            decode = getattr(key, "decode", None)
            if decode is None or not decode.__name__.startswith("decode_raise"):
                continue
            try:
                decode(None, 0)
                reason = f"compression {key.compression}"
            except Exception as exc:  # noqa: BLE001 - the reason tifffile gives
                reason = _short(exc)
            raise PatchwiseError(
                f"its pixels cannot be decoded ({reason})",
                path=path,
                hint="export it again with a common compression (none, deflate, LZW or JPEG)",
            )


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _level_array(tif: Any, series: Any, level: int) -> da.Array:
    """Level ``level`` of ``series`` as a lazy ``(C, Y, X)`` dask array."""
    lvl = series.levels[level]
    path = str(tif.filehandle.path)
    # Uncompressed and contiguous: a memory map reads exactly what is sliced, even when
    # the whole image is a single strip.
    memmap = lvl.dataoffset is not None and len(series.levels) == 1
    array = None
    if not memmap:
        try:
            view = TiffLevelView(path, level, tif=tif)
        except UnsupportedLayout:
            pass  # read through tifffile's zarr store below
        else:
            array = lazy_view(view, view.block)
    if array is None:
        opener = functools.partial(open_level_data, path, level, memmap)
        data = _level_data(tif, level, memmap)
        if data.shape != tuple(lvl.shape):
            raise ValueError(f"level {level} shape {data.shape} != series shape {lvl.shape}")
        block_yx = (1, 1) if memmap else stored_yx(data.chunks, lvl.axes)
        array = lazy_cyx(data, lvl.axes, block_yx, opener)
    if _has_alpha(lvl.pages[0]) and array.shape[0] in (2, 4):
        array = array[:-1]  # drop alpha: it is display transparency, not a modality
    return array


def _level_data(tif: Any, level: int, memmap: bool):
    import tifffile
    import zarr

    if memmap:
        return tifffile.memmap(tif.filehandle.path, series=0, mode="r")
    return zarr.open(tif.series[0].aszarr(level=level), mode="r")


def open_level_data(path: str, level: int, memmap: bool):
    """Reopen the pixel source of one level (for unpickled dask graphs on workers)."""
    import tifffile

    return _level_data(tifffile.TiffFile(path), level, memmap)


def _has_alpha(page: Any) -> bool:
    extras = tuple(int(e) for e in (getattr(page, "extrasamples", ()) or ()))
    return bool(extras) and extras[-1] in _ALPHA_EXTRASAMPLES


def _ome_pixels(tif: Any) -> dict | None:
    """The ``Pixels`` element of the first OME ``Image``, as a dict, or ``None``."""
    import tifffile

    xml = tif.ome_metadata
    if not xml:
        return None
    try:
        ome = tifffile.xml2dict(xml).get("OME", {})
    except Exception:  # noqa: BLE001 - broken XML means "no metadata", not a failure
        return None
    image = ome.get("Image")
    if isinstance(image, list):
        image = image[0] if image else None
    return image.get("Pixels") if isinstance(image, dict) else None


def _channel_names(series: Any, pixels: dict | None, n: int) -> list[str] | None:
    """Channel names from OME ``Channel/@Name``, or ``R, G, B`` for RGB files."""
    names: list[str] = []
    if pixels is not None:
        channels = pixels.get("Channel", [])
        channels = [channels] if isinstance(channels, dict) else list(channels)
        for ch in channels:
            name = str(ch.get("Name", "") or "").strip()
            spp = int(ch.get("SamplesPerPixel", 1) or 1)
            # One OME channel holding interleaved samples (RGB) names no single sample.
            names += [name] if spp == 1 else [""] * spp
        if len(names) >= n and all(names[:n]) and len(set(names[:n])) == n:
            return names[:n]
    photometric = int(getattr(series.pages[0], "photometric", -1) or -1)
    if photometric == 2 and n == 3:  # RGB
        return ["R", "G", "B"]
    return None


def _ome_pixel_size(pixels: dict | None) -> tuple[float, float] | None:
    if pixels is None:
        return None
    try:
        sy = float(pixels["PhysicalSizeY"]) * UNIT_TO_UM[pixels.get("PhysicalSizeYUnit", "µm")]
        sx = float(pixels["PhysicalSizeX"]) * UNIT_TO_UM[pixels.get("PhysicalSizeXUnit", "µm")]
    except (KeyError, TypeError, ValueError):
        return None
    return (sy, sx) if sy > 0 and sx > 0 else None


def _tag_pixel_size(tif: Any) -> tuple[float, float] | None:
    """Pixel size from the resolution tags (centimetre/inch units, or ImageJ microns)."""
    page = tif.pages[0]
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    per_unit_um = {2: 25400.0, 3: 10000.0}.get(unit)
    if tif.is_imagej and (tif.imagej_metadata or {}).get("unit") in ("micron", "um", "µm"):
        per_unit_um = 1.0
    if per_unit_um is None:
        return None

    def size(tag: str) -> float | None:
        num, den = tags[tag].value
        return per_unit_um * den / num if num else None

    sy, sx = size("YResolution"), size("XResolution")
    # 1 pixel per inch/cm is tifffile's "no resolution" default: not a real pixel size.
    if sy is None or sx is None or (unit == 2 and sx == per_unit_um):
        return None
    return sy, sx
