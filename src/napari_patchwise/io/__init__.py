"""Readers and writers: OME-TIFF/TIFF pyramids, OME-Zarr, PNG/JPEG, masks, tables.

Everything returns lazy dask arrays; nothing here reads a full-resolution level.

>>> from napari_patchwise.io import open_slide
>>> slide = open_slide("slide.ome.tif", mask="mask.tif")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from .mask import MaskMap, read_mask
from .pyramid import build_pyramid
from .reader import image_format, open_slide
from .region import read_region
from .tables import read_table, validate_table, write_geojson, write_table

# Names exported from sibling modules owned by other parts of the project, imported on
# first use so that a missing optional dependency there never breaks opening images.
_LAZY = {
    "write_ome_tiff": "write",
    "write_ome_zarr": "write",
}

__all__ = [
    "MaskMap",
    "build_pyramid",
    "image_format",
    "open_slide",
    "read_mask",
    "read_region",
    "read_table",
    "validate_table",
    "write_geojson",
    "write_table",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
