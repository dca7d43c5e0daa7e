"""``open_slide``: any supported image (and optional mask) as a :class:`~napari_patchwise.Slide`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._progress import ProgressCallback
from ..errors import PatchwiseError
from ..slide import Slide
from ._loaded import LoadedImage, default_channel_names
from .formats import (  # noqa: F401 - re-exported: the reader's public names
    IMAGE_SUFFIXES,
    SUPPORTED,
    TIFF_SUFFIXES,
    ZARR_SUFFIXES,
    image_format,
    is_zarr_store,
    load_image,
    slide_name,
)
from .mask import read_mask


def open_slide(
    path: str | os.PathLike,
    *,
    mask: str | os.PathLike | None = None,
    mask_map=None,
    channel_names: Sequence[str] | None = None,
    pixel_size: float | tuple[float, float] | None = None,
    pyramid_cache: str | os.PathLike | bool | None = None,
    pyramid: bool = True,
    check_mask_values: bool = True,
    progress: ProgressCallback | None = None,
) -> Slide:
    """Open an image (and optionally its mask) lazily as a :class:`Slide`.

    Parameters
    ----------
    path : path-like
        OME-TIFF / TIFF, OME-Zarr (v0.4 or v0.5) store, PNG or JPEG; with the ``wsi``
        extra also vendor slides (SVS, NDPI, MRXS, SCN, BIF, Philips TIFF...) and a
        DICOM WSI folder (see ``docs/formats.md``).
    mask : path-like, optional
        Label image of the same size as level 0 or an integer fraction of it.
    mask_map : MaskMap or str, optional
        File value -> class mapping of the mask (see :class:`MaskMap`); by default
        ``0`` background, ``1`` healthy, ``2`` tumor. Never guessed from the values: a
        0/1 tumor mask needs ``mask_map="binary"``.
    channel_names : sequence of str, optional
        Override the file's channel names (one per channel).
    pixel_size : float or (float, float), optional
        Override the level-0 pixel size in micrometres (``(y, x)`` or one value).
    pyramid_cache : path-like or bool, optional
        Where a single-level image larger than
        :data:`~napari_patchwise.io.pyramid_cache.CACHE_MIN_SIDE` gets its display
        pyramid written once: ``None``/``True`` the user cache folder, a directory,
        ``"beside"`` next to the image, or ``False`` to never write (lazy pyramid only).
    pyramid : bool
        Give a single-level image a display pyramid (above). Headless work (statistics,
        training, prediction) reads level 0 and passes ``False``: only the levels stored
        in the file, nothing built and nothing written.
    check_mask_values : bool
        Check the mask's values against the map up front (one pass over the mask);
        ``False`` checks them chunk by chunk as the mask is read (see ``read_mask``).
    progress : callable, optional
        ``progress(done, total)`` while a pyramid is written.

    Returns
    -------
    Slide
        Levels are lazy ``(C, Y, X)`` dask arrays; nothing at full resolution is read.

    Raises
    ------
    PatchwiseError
        Missing or unreadable file, unsupported format, or a mask that does not fit.
    """
    path = Path(path)
    slide = slide_from_loaded(
        path,
        load_image(path),
        channel_names=channel_names,
        pixel_size=pixel_size,
        pyramid_cache=pyramid_cache,
        pyramid=pyramid,
        progress=progress,
    )
    if mask is not None:
        mask_array, factor, kind = read_mask(
            mask, slide.shape[1:], mask_map, check_values=check_mask_values
        )
        slide = slide.with_mask(mask_array, factor=factor, kind=kind, path=Path(mask))
    return slide


def slide_from_loaded(
    path: Path,
    loaded: LoadedImage,
    *,
    channel_names: Sequence[str] | None = None,
    pixel_size: float | tuple[float, float] | None = None,
    pyramid_cache: str | os.PathLike | bool | None = None,
    pyramid: bool = True,
    progress: ProgressCallback | None = None,
) -> Slide:
    """The :class:`Slide` for an image already read by :func:`load_image` (see ``open_slide``)."""
    levels = list(loaded.levels)
    if len(levels) == 1 and pyramid:
        from .pyramid_cache import pyramid_for

        levels = pyramid_for(path, levels[0], loaded, cache=pyramid_cache, progress=progress)
    n = int(levels[0].shape[0])
    return Slide(
        levels=tuple(levels),
        channel_names=tuple(_channel_names(path, channel_names, loaded.channel_names, n)),
        background=loaded.background or _background(loaded.channel_names, levels[0].dtype),
        pixel_size=_pixel_size(path, pixel_size, loaded.pixel_size),
        name=slide_name(path),
        path=path,
        contrast_limits=loaded.contrast_limits,
        objective_power=loaded.objective_power,
        associated=dict(loaded.associated),
        vendor=loaded.vendor,
    )


def _background(names: list[str] | None, dtype) -> str:
    """``"bright"`` for an 8-bit RGB image (brightfield: tissue darker than the glass)."""
    rgb = names is not None and list(names) == ["R", "G", "B"]
    return "bright" if rgb and np.dtype(dtype) == np.uint8 else "dark"


def _channel_names(
    path: Path, override: Sequence[str] | None, from_file: list[str] | None, n: int
) -> list[str]:
    if override is not None:
        names = [str(x) for x in override]
        if len(names) != n:
            raise PatchwiseError(
                f"{len(names)} channel names given for an image with {n} channels",
                path=path,
                hint=f"give exactly {n} names",
            )
        return names
    if from_file is not None and len(from_file) == n:
        return list(from_file)
    return default_channel_names(n)


def _pixel_size(
    path: Path, override: float | tuple[float, float] | None, from_file
) -> tuple[float, float] | None:
    if override is None:
        return from_file
    values = (override, override) if isinstance(override, int | float) else tuple(override)
    if len(values) != 2 or not all(float(v) > 0 for v in values):
        raise PatchwiseError(
            f"pixel size must be one or two positive numbers (µm), got {override!r}",
            path=path,
        )
    return float(values[0]), float(values[1])
