"""OME-Zarr (placeholder until the reader lands)."""

from __future__ import annotations

from pathlib import Path

from ._loaded import LoadedImage


def read_ome_zarr(path: str | Path) -> LoadedImage:
    raise NotImplementedError
