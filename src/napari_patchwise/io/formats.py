"""Which reader a path needs, and the slide name a file gives.

The lowest layer of ``io``: both :mod:`.reader` (slides) and :mod:`.mask` (label images)
load files through :func:`load_image`, so neither imports the other for it.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from ..errors import PatchwiseError
from ._loaded import LoadedImage

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ZARR_SUFFIXES = (".zarr",)
# Vendor slides (the ``wsi`` extra, see ``io/wsi.py``); kept here, with the others, so
# that deciding the reader never imports OpenSlide or wsidicom.
WSI_SUFFIXES = (".svs", ".ndpi", ".mrxs", ".scn", ".bif", ".vms", ".vmu", ".svslide")
DICOM_SUFFIXES = (".dcm",)
#: OpenSlide vendors whose ``.tif``/``.tiff`` files OpenSlide reads (their pyramid,
#: microns per pixel and associated images are in vendor metadata tifffile does not parse).
#: ``generic-tiff`` stays on the project's own TIFF reader: it keeps 16-bit and
#: multichannel data that OpenSlide would turn into 8-bit RGBA (docs/formats.md).
VENDOR_TIFF = frozenset({"aperio", "philips", "ventana", "leica", "hamamatsu", "trestle"})
SUPPORTED = (
    "OME-TIFF/TIFF (.tif, .tiff), OME-Zarr (.zarr directory), PNG, JPEG, and with the "
    "'wsi' extra SVS, NDPI, MRXS, SCN, BIF, VMS, VMU, SVSLIDE and DICOM WSI folders"
)


def image_format(path: str | os.PathLike) -> str:
    """Which reader handles ``path``: ``"tiff"``, ``"zarr"``, ``"image"`` (PNG/JPEG),
    ``"openslide"`` (vendor slides, and ``.tif`` files OpenSlide recognises as a
    scanner's, see :func:`.wsi.vendor_tiff`) or ``"dicom"`` (a DICOM WSI folder or one
    of its ``.dcm`` files).

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
        if is_dicom_folder(path):
            return "dicom"
        raise PatchwiseError(
            "is a directory but not a zarr store (no zarr.json or .zattrs/.zgroup) "
            "nor a DICOM WSI folder (no DICOM files)",
            path=path,
            hint=f"open a file, an OME-Zarr store or a DICOM WSI folder; supported: {SUPPORTED}",
        )
    if suffix in TIFF_SUFFIXES:
        return "openslide" if vendor_tiff(path) else "tiff"
    if suffix in WSI_SUFFIXES:
        return "openslide"
    if suffix in DICOM_SUFFIXES:
        return "dicom"
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

        return read_ome_zarr(path, labels=labels)
    if kind == "openslide":
        from .svs import read_scanner

        return read_scanner(path, aperio=is_aperio(Path(path)))
    if kind == "dicom":
        from .wsi import read_dicom

        return read_dicom(path)
    from .image import read_image

    return read_image(path, labels=labels)


def slide_name(path: Path) -> str:
    """The file name without ``.ome.tif``-style double suffixes; a DICOM WSI's folder name."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return path.parent.name or path.stem
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", *TIFF_SUFFIXES, *IMAGE_SUFFIXES, ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return path.stem


def vendor_tiff(path: str | Path) -> str | None:
    """The scanner vendor OpenSlide recognises in a ``.tif``/``.tiff``, if it should read it.

    ``None`` for generic and OME-TIFFs and when OpenSlide is not installed: those stay on
    the TIFF reader (a scanner TIFF then opens without its vendor metadata).
    """
    try:
        import openslide
    except (ImportError, OSError):
        return None
    try:
        vendor = openslide.OpenSlide.detect_format(str(path))
    except Exception:  # noqa: BLE001 - "not recognised" whatever OpenSlide raises
        return None
    return vendor if vendor in VENDOR_TIFF else None


def is_aperio(path: Path) -> bool:
    """Whether ``path`` is an Aperio slide: an ``.svs``, or a TIFF OpenSlide calls Aperio's."""
    suffix = path.suffix.lower()
    if suffix == ".svs":
        return True
    return suffix in TIFF_SUFFIXES and vendor_tiff(path) == "aperio"


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM Part 10 file (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom_folder(path: Path, *, look_at: int = 64) -> bool:
    """Whether directory ``path`` holds DICOM files (``.dcm`` or a ``DICM`` preamble)."""
    try:  # a look at the first few entries only: napari asks this of every folder opened
        entries = [p for p in itertools.islice(path.iterdir(), look_at) if p.is_file()]
    except OSError:
        return False
    return any(p.suffix.lower() in DICOM_SUFFIXES or is_dicom_file(p) for p in entries)
