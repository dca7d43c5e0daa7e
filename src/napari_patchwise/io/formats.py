"""Which reader a path needs, and the slide name a file gives.

The lowest layer of ``io``: both :mod:`.reader` (slides) and :mod:`.mask` (label images)
load files through :func:`load_image`, so neither imports the other for it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import PatchwiseError
from ._loaded import LoadedImage

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ZARR_SUFFIXES = (".zarr",)
SUPPORTED = "OME-TIFF/TIFF (.tif, .tiff), OME-Zarr (.zarr directory), PNG, JPEG"


def image_format(path: str | os.PathLike) -> str:
    """Which reader handles ``path``: ``"tiff"``, ``"zarr"`` or ``"image"`` (PNG/JPEG).

    Raises
    ------
    PatchwiseError
        The path does not exist, has an unsupported extension, or is a directory that
        is not a zarr store.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.exists():
        raise PatchwiseError("no such file or directory", path=path, hint="check the path")
    if path.is_dir():
        if suffix in ZARR_SUFFIXES or is_zarr_store(path):
            return "zarr"
        raise PatchwiseError(
            "is a directory but not a zarr store (no zarr.json or .zattrs/.zgroup)",
            path=path,
            hint=f"open a file or an OME-Zarr store; supported: {SUPPORTED}",
        )
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    raise PatchwiseError(
        f"unsupported file type {suffix or '(no extension)'!r}",
        path=path,
        hint=f"supported: {SUPPORTED}",
    )


def is_zarr_store(path: Path) -> bool:
    """Whether directory ``path`` holds zarr v2 or v3 metadata at its root."""
    return any((path / name).is_file() for name in ("zarr.json", ".zattrs", ".zgroup", ".zarray"))


def load_image(path: str | os.PathLike, *, labels: bool = False) -> LoadedImage:
    """Read ``path`` with the reader for its format; levels stay lazy.

    ``labels=True`` reads a label image: a palette PNG gives its indices, not colours.
    """
    kind = image_format(path)
    if kind == "tiff":
        from .tiff import read_tiff

        return read_tiff(path)
    if kind == "zarr":
        from .zarr import read_ome_zarr

        return read_ome_zarr(path)
    from .image import read_image

    return read_image(path, labels=labels)


def slide_name(path: Path) -> str:
    """The file name without ``.ome.tif``-style double suffixes."""
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", *TIFF_SUFFIXES, *IMAGE_SUFFIXES, ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return path.stem
