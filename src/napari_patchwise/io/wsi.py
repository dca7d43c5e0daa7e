"""Vendor whole-slide images: OpenSlide formats and DICOM WSI folders (the ``wsi`` extra).

Scanner files (Aperio SVS, Hamamatsu NDPI/VMS/VMU, 3DHISTECH MRXS, Leica SCN, Philips
TIFF, Ventana BIF, Sakura SVSLIDE) are read through OpenSlide (``openslide-python`` with
the ``openslide-bin`` wheel) and DICOM WSI (a folder of DICOM instances) through
``wsidicom``. Each pyramid level becomes a lazy ``(C, Y, X)`` dask array whose chunks are
whole tiles of the file (grouped as in :mod:`._layout`) read with the library's region
read; a slice of it reads only the tiles under it. OpenSlide handles are thread safe for
``read_region`` (one handle serves every dask thread, no lock; measured in
``benchmarks/bench_open.py``).

Brightfield slides come back as ``R, G, B`` (alpha dropped: OpenSlide's transparent
pixels, outside the scanned area, are composited onto the slide's background colour,
white by default), with the ``"bright"`` intensity-tissue background and 0-255 display
limits. Microns per pixel, objective power and the associated images (label, macro,
thumbnail) come from the file's metadata.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PatchwiseError
from ._layout import lazy_view
from ._loaded import LoadedImage
from ._tiles import key_bounds as axis_bounds
from ._tiles import undecodable

EXTRA_HINT = "install the 'wsi' extra: pip install 'napari-patchwise[wsi]'"
#: Names of the associated images a slide may carry (OpenSlide's names; a DICOM
#: overview is the ``macro``).
ASSOCIATED_NAMES = ("label", "macro", "thumbnail")
#: Fallback tile side where a format does not report its tiles.
DEFAULT_TILE = 256
RGB = ["R", "G", "B"]
BG_PROPERTY = "openslide.background-color"
BRIGHTFIELD_LIMITS = ((0.0, 255.0),) * 3


# -- the extra ---------------------------------------------------------------------------
def _openslide(path: Path, what: str = "this slide"):
    """The ``openslide`` module, or a one-line error naming the extra."""
    try:
        import openslide
    except (ImportError, OSError):  # OSError: openslide-python without its library
        raise PatchwiseError(
            f"reading {what} needs OpenSlide, which is not installed", path=path, hint=EXTRA_HINT
        ) from None
    return openslide


def _wsidicom(path: Path):
    try:
        import wsidicom
    except ImportError:
        raise PatchwiseError(
            "reading a DICOM WSI needs wsidicom, which is not installed",
            path=path,
            hint=EXTRA_HINT,
        ) from None
    return wsidicom


# -- OpenSlide -----------------------------------------------------------------------------
def read_openslide(path: str | Path) -> LoadedImage:
    """Open a slide through OpenSlide lazily.

    Parameters
    ----------
    path : path-like
        An SVS, NDPI, MRXS, SCN, BIF, VMS, VMU, SVSLIDE file or a vendor TIFF.

    Returns
    -------
    LoadedImage
        ``R, G, B`` levels as dask arrays (level 0 first), pixel size from
        ``openslide.mpp-y/x``, objective power, associated images, bright background.

    Raises
    ------
    PatchwiseError
        OpenSlide is not installed, or it cannot read the file.
    """
    path = Path(path)
    openslide = _openslide(path, f"{path.suffix or 'this'} slides")
    try:
        handle = openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, OSError) as exc:
        raise PatchwiseError(
            f"OpenSlide cannot read this slide ({' '.join(str(exc).split()) or type(exc).__name__})",
            path=path,
            hint="the file may be truncated, or an MRXS missing its data folder",
        ) from None
    props = handle.properties
    levels = []
    for level in range(handle.level_count):
        view = OpenSlideLevelView(path, level, handle=handle)
        levels.append(lazy_view(view, view.block))
    associated = {
        name: functools.partial(_openslide_associated, handle, name)
        for name in ASSOCIATED_NAMES
        if name in handle.associated_images
    }
    return LoadedImage(
        levels=levels,
        channel_names=list(RGB),
        pixel_size=positive_pair(props.get("openslide.mpp-y"), props.get("openslide.mpp-x")),
        contrast_limits=BRIGHTFIELD_LIMITS,
        background="bright",
        objective_power=positive_number(props.get("openslide.objective-power")),
        associated=associated,
        vendor=props.get("openslide.vendor"),
    )


class OpenSlideLevelView:
    """Read-only ``(3, Y, X)`` uint8 view of one OpenSlide level.

    ``__getitem__`` reads the bounding box of the key with one ``read_region`` (only the
    tiles under it are decoded), drops alpha and returns the requested part. The view is
    picklable: it reopens the file on unpickling (dask.distributed workers).
    """

    def __init__(self, path: str | Path, level: int, *, handle: Any = None):
        self._path = str(path)
        self._level = int(level)
        self._open(handle)

    def _open(self, handle: Any) -> None:
        if handle is None:
            handle = _openslide(Path(self._path)).OpenSlide(self._path)
        self._handle = handle
        props = handle.properties
        width, height = handle.level_dimensions[self._level]
        self.shape = (3, int(height), int(width))
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3
        self._downsample = float(handle.level_downsamples[self._level])
        tile = [props.get(f"openslide.level[{self._level}].tile-{s}") for s in ("height", "width")]
        self.block = tuple(int(t) if t else DEFAULT_TILE for t in tile)
        self._background = _hex_colour(props.get(BG_PROPERTY))

    def __getstate__(self) -> dict:
        return {"path": self._path, "level": self._level}

    def __setstate__(self, state: dict) -> None:
        self._path, self._level = state["path"], state["level"]
        self._open(None)

    def __repr__(self) -> str:
        return f"OpenSlideLevelView({self._path!r}, level={self._level})"

    @property
    def level_index(self) -> int:
        """Position of the level in the pyramid (0 = full resolution)."""
        return self._level

    def __getitem__(self, key) -> np.ndarray:
        return _index_view(self, key)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """``(3, y1 - y0, x1 - x0)`` RGB of this level (level coordinates)."""
        if y1 <= y0 or x1 <= x0:
            return np.zeros((3, max(0, y1 - y0), max(0, x1 - x0)), np.uint8)
        try:
            image = self._read_rgba(self._handle, y0, y1, x0, x1)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - OpenSlideError, or what its codecs raise
            # OpenSlide's error is sticky on the handle and names no tile: find the tile
            # with a fresh handle (only on this failure path).
            where = _bad_tile(self, self._fresh_reader(), y0, y1, x0, x1)
            raise undecodable(self._path, where, exc) from None
        return _flatten_rgba(np.asarray(image), self._background).transpose(2, 0, 1)

    def _read_rgba(self, handle: Any, y0: int, y1: int, x0: int, x1: int) -> Any:
        # OpenSlide takes the corner in level-0 pixels and divides it by the downsample.
        corner = (round(x0 * self._downsample), round(y0 * self._downsample))
        return handle.read_region(corner, self._level, (x1 - x0, y1 - y0))

    def _fresh_reader(self) -> Callable[[int, int, int, int], Any]:
        """Reads of a new handle (one per failed region read; the first is in error)."""
        try:
            handle = _openslide(Path(self._path)).OpenSlide(self._path)
        except Exception:  # noqa: BLE001 - then the region itself is all we can name
            return _raise_always
        return functools.partial(self._read_rgba, handle)


def _raise_always(*_: int) -> None:
    raise RuntimeError("unreadable")


def _bad_tile(view, read: Callable[[int, int, int, int], Any], y0, y1, x0, x1) -> str:
    """Which of the view's tiles under ``[y0, y1) x [x0, x1)`` fails ``read(y0, y1, x0, x1)``.

    Read tile by tile on the failure path only; the region itself when no single tile
    fails (or the reader cannot be reopened).
    """
    (by, bx), (_, h, w) = view.block, view.shape
    for row in range(y0 // by, (y1 - 1) // by + 1):
        for col in range(x0 // bx, (x1 - 1) // bx + 1):
            try:
                read(row * by, min(h, (row + 1) * by), col * bx, min(w, (col + 1) * bx))
            except MemoryError:
                raise
            except Exception:  # noqa: BLE001 - any failure marks the tile
                return f"tile (row {row}, column {col}) of level {view.level_index}"
    return f"region y {y0}:{y1}, x {x0}:{x1} of level {view.level_index}"


def _index_view(view, key) -> np.ndarray:
    """``view[key]`` for a view with ``shape`` and ``read(y0, y1, x0, x1)``."""
    key = key if isinstance(key, tuple) else (key,)
    if len(key) > 3:
        raise IndexError(f"too many indices for a 3-D view: {key!r}")
    key_c, key_y, key_x = key + (slice(None),) * (3 - len(key))
    y0, y1, post_y = axis_bounds(key_y, view.shape[1])
    x0, x1, post_x = axis_bounds(key_x, view.shape[2])
    region = view.read(y0, y1, x0, x1)[key_c]
    region = region[..., post_y, :]
    return np.ascontiguousarray(region[..., post_x])


def _flatten_rgba(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """RGB of OpenSlide's premultiplied RGBA over ``background`` (alpha is not a channel)."""
    rgb = rgba[..., :3]
    alpha = rgba[..., 3]
    if alpha.min() == 255:  # the whole region was scanned: nothing to composite
        return rgb
    uncovered = (255 - alpha.astype(np.uint16))[..., None]
    bg = np.asarray(background, np.uint16)
    flat = rgb.astype(np.uint16) + (uncovered * bg + 127) // 255
    return np.minimum(flat, 255).astype(np.uint8)


def _openslide_associated(handle: Any, name: str) -> np.ndarray:
    image = handle.associated_images[name]  # RGBA: composite like the levels
    return _flatten_rgba(np.asarray(image), _hex_colour(handle.properties.get(BG_PROPERTY)))


# -- DICOM WSI -----------------------------------------------------------------------------
def dicom_folder(path: Path) -> Path:
    """The folder of a DICOM WSI given the folder or one of its ``.dcm`` files."""
    return path if path.is_dir() else path.parent


def read_dicom(path: str | Path) -> LoadedImage:
    """Open a DICOM WSI (a folder of instances, or one of its files) through wsidicom.

    Parameters
    ----------
    path : path-like
        The folder, or any DICOM file in it.

    Returns
    -------
    LoadedImage
        One level per pyramid level of the first pyramid; ``R, G, B`` channels for
        colour images, one channel for monochrome; pixel size from the level's pixel
        spacing; label, macro (overview) and thumbnail when present.

    Raises
    ------
    PatchwiseError
        wsidicom is not installed, or the folder holds no readable WSI.
    """
    path = Path(path)
    folder = dicom_folder(path)
    wsidicom = _wsidicom(path)
    try:
        wsi = wsidicom.WsiDicom.open(folder)
        levels_meta = list(wsi.levels)
    except Exception as exc:  # noqa: BLE001 - wsidicom raises many types for bad folders
        raise PatchwiseError(
            f"not a readable DICOM WSI ({' '.join(str(exc).split())[:120] or type(exc).__name__})",
            path=folder,
            hint="open the folder that holds the slide's DICOM instances",
        ) from None
    if not levels_meta:
        raise PatchwiseError("the folder holds no DICOM WSI pyramid", path=folder)
    _check_base_level(levels_meta[0], folder)
    views = [DicomLevelView(folder, i, wsi=wsi) for i in range(len(levels_meta))]
    levels = [lazy_view(v, v.block) for v in views]
    n = views[0].shape[0]
    return LoadedImage(
        levels=levels,
        channel_names=list(RGB) if n == 3 else None,
        pixel_size=positive_pair(levels_meta[0].mpp.height, levels_meta[0].mpp.width),
        contrast_limits=BRIGHTFIELD_LIMITS if n == 3 else None,
        background="bright" if n == 3 else None,
        objective_power=_dicom_objective(wsi),
        associated=_dicom_associated(wsi),
        vendor="dicom",
    )


class DicomLevelView:
    """Read-only ``(C, Y, X)`` view of one level of a DICOM WSI (picklable, see above)."""

    def __init__(self, folder: str | Path, index: int, *, wsi: Any = None):
        self._folder = str(folder)
        self._index = int(index)
        self._open(wsi)

    def _open(self, wsi: Any) -> None:
        if wsi is None:
            wsi = _wsidicom(Path(self._folder)).WsiDicom.open(self._folder)
        self._wsi = wsi
        level = list(wsi.levels)[self._index]
        self._level = level.level  # wsidicom's level number: log2 of the downsample
        self.block = (int(level.tile_size.height), int(level.tile_size.width))
        try:
            probe = np.asarray(wsi.read_region((0, 0), self._level, (1, 1)))
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - pydicom / codec errors of a damaged file
            where = f"tile (row 0, column 0) of level {self._index}"
            raise undecodable(self._folder, where, exc) from None
        channels = 1 if probe.ndim == 2 else int(probe.shape[-1])
        self.shape = (channels, int(level.size.height), int(level.size.width))
        self.dtype = np.dtype(probe.dtype)
        self.ndim = 3

    def __getstate__(self) -> dict:
        return {"folder": self._folder, "index": self._index}

    def __setstate__(self, state: dict) -> None:
        self._folder, self._index = state["folder"], state["index"]
        self._open(None)

    def __repr__(self) -> str:
        return f"DicomLevelView({self._folder!r}, index={self._index})"

    @property
    def level_index(self) -> int:
        """Position of the level in the pyramid (0 = full resolution)."""
        return self._index

    def __getitem__(self, key) -> np.ndarray:
        return _index_view(self, key)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """``(C, y1 - y0, x1 - x0)`` pixels of this level (level coordinates)."""
        if y1 <= y0 or x1 <= x0:
            return np.zeros((self.shape[0], max(0, y1 - y0), max(0, x1 - x0)), self.dtype)
        try:
            region = self._read(y0, y1, x0, x1)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - pydicom / codec errors of a damaged file
            where = _bad_tile(self, self._read, y0, y1, x0, x1)
            raise undecodable(self._folder, where, exc) from None
        return region[None] if region.ndim == 2 else region.transpose(2, 0, 1)

    def _read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        # A Pillow image (``as_array`` is recent): RGB, or L for monochrome.
        return np.asarray(self._wsi.read_region((x0, y0), self._level, (x1 - x0, y1 - y0)))


def _check_base_level(base: Any, folder: Path) -> None:
    """Refuse a pyramid whose largest level is a resampled one (level 0 not in the folder).

    wsidicom takes the largest level it finds as the base, so a folder missing its
    full-resolution instance would be read at half (or less) the resolution, with the
    patch grid and pixel size of the wrong level. DICOM marks each VOLUME instance:
    Image Type value 4 is ``NONE`` for the original resolution and ``RESAMPLED`` for the
    pyramid's derived levels.
    """
    datasets = list(getattr(base, "datasets", None) or [None])
    dataset = getattr(datasets[0], "as_dataset", lambda: datasets[0])()  # pydicom's
    image_type = [str(v).upper() for v in (getattr(dataset, "ImageType", None) or [])]
    if len(image_type) > 3 and image_type[3] == "RESAMPLED":
        size = base.size
        raise PatchwiseError(
            f"the slide's full-resolution level is missing: its largest level "
            f"({size.width} x {size.height} px) is a resampled (downsampled) one",
            path=folder,
            hint="copy every DICOM instance of the slide into the folder",
        )


def _dicom_associated(wsi: Any) -> dict[str, Callable[[], np.ndarray]]:
    out: dict[str, Callable[[], np.ndarray]] = {}
    if list(getattr(wsi, "labels", None) or []):
        out["label"] = functools.partial(_rgb, wsi.read_label)
    if list(getattr(wsi, "overviews", None) or []):
        out["macro"] = functools.partial(_rgb, wsi.read_overview)
    pyramid = getattr(wsi, "pyramid", None)
    if pyramid is not None and list(getattr(pyramid, "thumbnails", None) or []):
        out["thumbnail"] = functools.partial(_rgb, wsi.read_thumbnail)
    return out


def _rgb(read: Callable[[], Any]) -> np.ndarray:
    return np.asarray(read().convert("RGB"))


def _dicom_objective(wsi: Any) -> float | None:
    """Objective lens power from the optical path metadata, if recorded."""
    try:
        paths = wsi.metadata.pyramid.optical_paths
        return positive_number(paths[0].objective.objective_power)
    except (AttributeError, IndexError, TypeError):
        return None


# -- metadata helpers -----------------------------------------------------------------------
def positive_number(value: Any) -> float | None:
    """``value`` as a float if it is a positive finite number, else ``None`` (metadata)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def positive_pair(y: Any, x: Any) -> tuple[float, float] | None:
    """``(y, x)`` as floats if both are positive numbers, else ``None`` (a pixel size)."""
    sy, sx = positive_number(y), positive_number(x)
    return (sy, sx) if sy is not None and sx is not None else None


def _hex_colour(value: str | None) -> tuple[int, int, int]:
    """OpenSlide's ``RRGGBB`` background colour; white when absent or malformed."""
    try:
        rgb = int(str(value), 16)
    except ValueError:
        return (255, 255, 255)
    return (rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255
