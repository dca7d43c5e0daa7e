"""Aperio SVS through the project's tile reader (tifffile), OpenSlide where that is not exact.

An SVS is a TIFF: its levels are the tiled pages, its thumbnail the second page, its label
and macro further stripped pages named by their descriptions, and its microns per pixel
and objective power sit in the first page's description (``|MPP = 0.25|AppMag = 40``).
Read through :class:`~._tiles.TiffLevelView` (positional reads of the tiles' bytes, one
file descriptor shared by every thread, decoders that release the GIL), region reads are
faster than OpenSlide's and scale with threads (``benchmarks/bench_open.py``).

The tifffile path is taken only where its pixels are OpenSlide's, bit for bit
(``tests/io/test_io_svs_default.py`` compares every level): 8-bit RGB tiles, lossless
(none, LZW, deflate) or JPEG stored as YCbCr, or as RGB without a JFIF marker (OpenSlide
decodes a JPEG tile in the colour space the TIFF tag names, tifffile follows a JFIF
marker's YCbCr instead). Everything else — JPEG 2000 (Aperio 33003/33005), several focal
planes, tiles OpenSlide would not take as levels, a description that is not Aperio's, a
file tifffile cannot open — goes to :func:`.wsi.read_openslide`, as does every SVS when
the environment variable ``PATCHWISE_SVS_READER=openslide`` is set.

The metadata are the ones OpenSlide gives: pixel size from ``MPP`` (both axes), objective
power from ``AppMag``, vendor ``aperio``, the ``thumbnail`` (the second page, when it is
not tiled), and ``label`` / ``macro`` (stripped pages named by the first word of their
description's second line); tiles a file leaves empty read as white glass.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ._layout import lazy_view
from ._loaded import LoadedImage
from ._tiles import TiffLevelView, UnsupportedLayout
from .tiff import check_structure, tifffile_log
from .wsi import (
    ASSOCIATED_NAMES,
    BRIGHTFIELD_LIMITS,
    RGB,
    positive_number,
    positive_pair,
    read_openslide,
)

#: Environment variable choosing the SVS reader: ``openslide`` forces OpenSlide for every
#: SVS; anything else (or unset) takes the tifffile path where it is exact.
READER_ENV = "PATCHWISE_SVS_READER"
#: Compressions whose tiles tifffile and OpenSlide decode to the same pixels.
LOSSLESS = frozenset({1, 5, 8, 32946})  # none, LZW, deflate (Adobe and old codes)
JPEG = 7
PHOTOMETRIC_RGB, PHOTOMETRIC_YCBCR = 2, 6
#: Fill of empty tiles: OpenSlide's transparent pixels over its default white background.
GLASS = 255

log = logging.getLogger(__name__)


class NotExact(UnsupportedLayout):
    """The tifffile path would not give OpenSlide's pixels or metadata for this file."""


def read_scanner(path: str | Path, *, aperio: bool) -> LoadedImage:
    """A scanner slide: Aperio (``aperio=True``: an ``.svs`` or an Aperio ``.tif``, see
    :func:`.formats.is_aperio`) through tifffile where exact, else through OpenSlide."""
    path = Path(path)
    if aperio and os.environ.get(READER_ENV, "").strip().lower() != "openslide":
        try:
            return read_svs(path)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: OpenSlide decides
            log.debug("%s: read through OpenSlide (%s)", path, exc)
    return read_openslide(path)


def read_svs(path: str | Path) -> LoadedImage:
    """Open an Aperio SVS through tifffile, lazily (no fallback: see :func:`read_scanner`).

    Parameters
    ----------
    path : path-like
        The slide.

    Returns
    -------
    LoadedImage
        ``R, G, B`` levels (level 0 first) over :class:`~._tiles.TiffLevelView`, the
        metadata OpenSlide would give (see the module's description).

    Raises
    ------
    NotExact
        The file is not one whose pixels this path reads exactly as OpenSlide.
    tifffile.TiffFileError, OSError, ValueError
        tifffile cannot read it.
    """
    import tifffile

    path = Path(path)
    with tifffile_log() as records:  # damaged structure: OpenSlide decides, nothing on stderr
        tif = tifffile.TiffFile(path)
    try:
        with tifffile_log() as more:
            meta = _description(tif.pages[0])
            levels = _level_pages(tif)
        check_structure(records + more)
        views = [TiffLevelView(path, i, tif=tif, fill=GLASS) for i in range(len(levels))]
        associated = _associated(tif)
    except BaseException:
        tif.close()
        raise
    return LoadedImage(
        levels=[lazy_view(v, v.block) for v in views],
        channel_names=list(RGB),
        pixel_size=positive_pair(meta.get("MPP"), meta.get("MPP")),
        contrast_limits=BRIGHTFIELD_LIMITS,
        background="bright",
        objective_power=positive_number(meta.get("AppMag")),
        associated=associated,
        vendor="aperio",
    )


def _description(page: Any) -> dict[str, str]:
    """``key = value`` items of an Aperio description, values as written (strings)."""
    text = str(page.description or "")
    if not text.startswith("Aperio"):
        raise NotExact("not an Aperio image description")
    items = {}
    for item in text.split("|")[1:]:
        key, sep, value = item.partition("=")
        if sep:
            items[key.strip()] = value.strip()
    return items


def _level_pages(tif: Any) -> list[Any]:
    """The pages of series 0's levels, checked to be OpenSlide's levels and exact."""
    tiled = [p for p in tif.pages if p.is_tiled]
    series = tif.series[0]
    pages = []
    for lvl in series.levels:
        if len(lvl.pages) != 1:
            raise NotExact("several focal planes")
        pages.append(lvl.pages[0])
    if [p.index for p in pages] != [p.index for p in tiled]:
        raise NotExact("its tiled pages are not its levels in order")
    for page in pages:
        _check_exact(page)
    return pages


def _check_exact(page: Any) -> None:
    """Raise :class:`NotExact` unless tifffile decodes ``page`` as OpenSlide does."""
    if (
        page.dtype != np.uint8
        or page.samplesperpixel != 3
        or page.extrasamples
        or page.planarconfig != 1
    ):
        raise NotExact("not 8-bit contiguous RGB")
    compression, photometric = int(page.compression), int(page.photometric)
    if compression in LOSSLESS and photometric == PHOTOMETRIC_RGB and page.predictor in (1, 2):
        return
    if compression == JPEG and (
        photometric == PHOTOMETRIC_YCBCR or (photometric == PHOTOMETRIC_RGB and not page.is_jfif)
    ):
        return
    raise NotExact(f"compression {compression} with photometric {photometric}")


def _associated(tif: Any) -> dict[str, Any]:
    """OpenSlide's associated images of an Aperio file: name -> lazy RGB reader."""
    out: dict[str, Any] = {}
    for index, page in enumerate(tif.pages):
        if index == 0 or page.is_tiled:
            continue
        if index == 1:
            name = "thumbnail"
        else:
            lines = str(page.description or "").splitlines()
            name = lines[1].split(" ")[0] if len(lines) > 1 else ""
        if name in ASSOCIATED_NAMES and name not in out:
            if page.dtype != np.uint8 or page.samplesperpixel != 3 or page.extrasamples:
                raise NotExact(f"associated image {name!r} is not 8-bit RGB")
            out[name] = functools.partial(_page_rgb, tif, index)
    return out


def _page_rgb(tif: Any, index: int) -> np.ndarray:
    """Page ``index`` as ``(Y, X, 3)`` uint8 (tifffile serialises its own file reads)."""
    return np.asarray(tif.pages[index].asarray(), np.uint8).reshape(tif.pages[index].shape)
