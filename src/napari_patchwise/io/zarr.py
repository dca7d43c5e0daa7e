"""OME-Zarr images: v0.4 (zarr v2 ``.zattrs``) and v0.5 (zarr v3 ``zarr.json``, ``ome`` key).

Read with zarr 3: the ``multiscales`` datasets are the pyramid levels, the first
dataset's ``scale`` gives the pixel size, ``omero`` channels give names and display
windows. A ``labels`` group (``store.zarr/labels``) opens its first label image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import PatchwiseError
from ._layout import lazy_cyx, stored_yx
from ._loaded import UNIT_TO_UM, LoadedImage

_HINT = (
    "write it as OME-Zarr (multiscales metadata), e.g. `patchwise convert IMAGE --out OUT.ome.zarr`"
)


def read_ome_zarr(path: str | Path) -> LoadedImage:
    """Open an OME-Zarr image store lazily.

    Parameters
    ----------
    path : path-like
        The store (a directory), e.g. ``slide.ome.zarr``, or its ``labels`` group.

    Returns
    -------
    LoadedImage
        Levels ``(C, Y, X)``; channel names, pixel size (µm) and contrast limits where
        the metadata has them.

    Raises
    ------
    PatchwiseError
        Not a zarr group, no ``multiscales`` metadata, or unsupported axes.
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
    multiscales = attrs.get("multiscales")
    if not multiscales:
        raise PatchwiseError("zarr store has no OME multiscales metadata", path=path, hint=_HINT)
    try:
        return _read_multiscale(node, multiscales[0], attrs.get("omero"))
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


def _read_multiscale(group: Any, multiscale: dict, omero: dict | None) -> LoadedImage:
    datasets = multiscale["datasets"]
    arrays = [group[str(ds["path"])] for ds in datasets]
    letters, axes = _axis_letters(multiscale, arrays[0].ndim)
    levels = [lazy_cyx(a, letters, stored_yx(a.chunks, letters)) for a in arrays]
    n = int(levels[0].shape[0])
    return LoadedImage(
        levels=levels,
        channel_names=_omero_names(omero, n),
        pixel_size=_pixel_size(multiscale, datasets[0], letters, axes),
        contrast_limits=_omero_windows(omero, n),
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
