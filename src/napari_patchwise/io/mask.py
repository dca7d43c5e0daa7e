"""Masks: label images (and QuPath annotations) mapped to background / healthy / tumor.

A mask file stores arbitrary integer values; a :class:`MaskMap` says which class each
value means. A GeoJSON mask (QuPath annotations, :mod:`.annotations`) stores class
*names*; the same map names them (``Tumor=tumor,Stroma=healthy``). The mapped mask is a lazy ``uint8`` dask array with values
``BACKGROUND=0``, ``HEALTHY=1``, ``TUMOR=2`` (:mod:`napari_patchwise.slide`), at level-0
resolution or an integer fraction ``1/f`` of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import dask
import dask.array as da
import numpy as np

from .._progress import ProgressCallback, dask_progress
from ..errors import PatchwiseError
from ..slide import BACKGROUND, CLASS_NAMES, HEALTHY, TUMOR
from .formats import load_image

_CLASS_BY_NAME = {
    "background": BACKGROUND,
    "bg": BACKGROUND,
    "non-tumor": BACKGROUND,
    "nontumor": BACKGROUND,
    "non_tumor": BACKGROUND,
    "healthy": HEALTHY,
    "tissue": HEALTHY,
    "tumor": TUMOR,
    "tumour": TUMOR,
}
_MAX_LISTED = 20

#: Named mask maps accepted wherever a map spec is (``--mask-map binary``). The default is
#: the documented 3-class map; a 0/1 mask means "healthy, no tumor" under it, so binary
#: tumor masks must be named as such (see docs/numbers.md).
PRESETS: Mapping[str, str] = MappingProxyType(
    {
        "default": "0=background,1=healthy,2=tumor",
        "3class": "0=background,1=healthy,2=tumor",
        "binary": "0=background,1=tumor",
        "binary255": "0=background,255=tumor",
    }
)


@dataclass(frozen=True)
class MaskMap:
    """File value -> class (``BACKGROUND``, ``HEALTHY`` or ``TUMOR``).

    Parameters
    ----------
    classes : mapping of int to int
        For each value that may appear in the mask file, its class.
    names : mapping of str to int
        For each annotation class name (GeoJSON masks), its class. Matched without
        regard to case; ``unclassified`` names annotations without a class.

    Attributes
    ----------
    kind : str
        ``"3class"`` when the map has a healthy class (tissue is known from the mask),
        else ``"binary"`` (tumor vs. everything else; tissue must come from intensity).

    Examples
    --------
    >>> MaskMap.parse("0=background,1=healthy,2=tumor").kind
    '3class'
    >>> MaskMap.parse("0=non-tumor,255=tumor").classes[255]
    2
    >>> MaskMap.parse("Tumor=tumor,Stroma=healthy").names["Stroma"]
    1
    """

    classes: Mapping[int, int] = field(
        default_factory=lambda: {0: BACKGROUND, 1: HEALTHY, 2: TUMOR}
    )
    names: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clean = {int(v): int(c) for v, c in dict(self.classes).items()}
        named = {str(n).strip(): int(c) for n, c in dict(self.names).items()}
        bad = sorted(c for c in {*clean.values(), *named.values()} if c not in CLASS_NAMES)
        if bad:
            raise PatchwiseError(f"mask map has unknown class ids {bad}; use 0, 1 or 2")
        if not clean and not named:
            raise PatchwiseError("mask map is empty")
        object.__setattr__(self, "classes", MappingProxyType(clean))
        object.__setattr__(self, "names", MappingProxyType(named))

    @property
    def kind(self) -> str:
        """The kind of a label mask read under this map (its values part)."""
        used = self.classes.values() if self.classes else self.names.values()
        return "3class" if HEALTHY in used else "binary"

    def name_classes(self) -> dict[str, int]:
        """Annotation class name (lower case) -> class, for GeoJSON masks.

        The names the map gives; a map that names none (the presets, ``0=...`` maps)
        accepts the class names themselves (``tumor``/``tumour``, ``healthy``/
        ``tissue``, ``background``/``non-tumor``) for the classes its values use, so
        ``binary`` accepts Tumor and Background annotations but not Healthy ones.
        """
        if self.names:
            return {n.lower(): c for n, c in self.names.items()}
        used = set(self.classes.values())
        return {n: c for n, c in _CLASS_BY_NAME.items() if c in used}

    @classmethod
    def default(cls) -> MaskMap:
        """``0`` background, ``1`` healthy, ``2`` tumor."""
        return cls()

    @classmethod
    def binary(cls) -> MaskMap:
        """``0`` non-tumor, ``1`` tumor (healthy tissue must come from intensity)."""
        return cls({0: BACKGROUND, 1: TUMOR})

    @classmethod
    def parse(cls, text: str) -> MaskMap:
        """Parse ``"0=background,1=healthy,2=tumor"`` or a preset name (:data:`PRESETS`).

        A label ``"NAME (SPEC)"`` (as the dock lists presets) means its ``SPEC``.

        Class names: background (or non-tumor), healthy (or tissue), tumor. A value named
        twice is an error, even with the same class: it is almost always a typo. An item
        whose left side is not a whole number names an annotation class of a GeoJSON
        mask (``Tumor=tumor,Stroma=healthy``; matched without regard to case).
        """
        text = text.strip()
        _, paren, inner = text.partition(" (")
        if paren and inner.endswith(")"):  # a preset's label, "NAME (SPEC)", means SPEC
            text = inner[:-1].strip()
        if not text:
            return cls.default()
        preset = PRESETS.get(text.lower())
        if preset is not None:
            return cls.parse(preset)
        classes: dict[int, int] = {}
        names: dict[str, int] = {}
        for item in text.split(","):
            value, sep, name = item.partition("=")
            value = value.strip()
            cls_id = _CLASS_BY_NAME.get(name.strip().lower())
            if not sep or not value or cls_id is None:
                raise PatchwiseError(
                    f"cannot read mask map item {item.strip()!r}",
                    hint="write it as VALUE=CLASS pairs, e.g. 0=background,1=healthy,2=tumor "
                    "(or NAME=CLASS for annotation classes, e.g. Tumor=tumor,Stroma=healthy)",
                )
            try:
                key: int | str = int(value)
            except ValueError:
                key = value
            seen = classes if isinstance(key, int) else {n.lower(): c for n, c in names.items()}
            if (key.lower() if isinstance(key, str) else key) in seen:
                what = "value" if isinstance(key, int) else "class name"
                raise PatchwiseError(
                    f"mask map names {what} {key} twice ({text!r})",
                    hint="give each mask value one class, e.g. 0=background,1=healthy,2=tumor",
                )
            if isinstance(key, int):
                classes[key] = cls_id
            else:
                names[key] = cls_id
        return cls(classes, names)

    def __str__(self) -> str:
        items = [f"{v}={CLASS_NAMES[c]}" for v, c in sorted(self.classes.items())]
        items += [f"{n}={CLASS_NAMES[c]}" for n, c in sorted(self.names.items())]
        return ",".join(items)

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted file values and their classes, as arrays (see :func:`map_values`)."""
        keys = np.array(sorted(self.classes), dtype=np.int64)
        return keys, np.array([self.classes[k] for k in keys], dtype=np.uint8)

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """Map a block of file values to classes (``uint8``); values must be in the map."""
        return map_values(labels, *self.table())


def map_values(labels: np.ndarray, keys: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``classes[i]`` wherever ``labels == keys[i]`` (``keys`` sorted, covering ``labels``)."""
    # This runs on every mask pixel each time a mask is streamed: a searchsorted pass
    # (int64 index per pixel) cost 10x the tile decoding on a 20k x 20k mask.
    if labels.dtype == np.uint8 and np.array_equal(keys, classes):
        return labels  # the default 0/1/2 map on a 0/1/2 mask: values are the classes
    if labels.dtype in (np.uint8, np.uint16):  # a lookup table per possible value
        table = np.zeros(np.iinfo(labels.dtype).max + 1, np.uint8)
        fits = (keys >= 0) & (keys < len(table))
        table[keys[fits]] = classes[fits]
        return np.take(table, labels)
    index = np.searchsorted(keys, labels).clip(0, len(keys) - 1)
    return classes[index]


def as_mask_map(mask_map: MaskMap | str | Mapping[int, int] | None) -> MaskMap | None:
    """Accept a :class:`MaskMap`, its text form, or a plain ``{value: class}`` dict."""
    if mask_map is None or isinstance(mask_map, MaskMap):
        return mask_map
    if isinstance(mask_map, str):
        return MaskMap.parse(mask_map)
    return MaskMap(mask_map)


def mask_factor(
    level0_yx: tuple[int, int], mask_yx: tuple[int, int], path: str | os.PathLike | None = None
) -> int:
    """How many level-0 pixels one mask pixel covers per axis.

    The mask must be level 0's size divided by an integer ``f`` (rounded down or up, so
    odd sizes work).

    Raises
    ------
    PatchwiseError
        The sizes are not related by an integer factor; the message names both sizes.
    """
    (h, w), (mh, mw) = (int(s) for s in level0_yx), (int(s) for s in mask_yx)
    if (mh, mw) == (h, w):
        return 1
    if mh > 0 and mw > 0:
        f = max(1, round(h / mh))
        if all(m in (n // f, -(-n // f)) for n, m in ((h, mh), (w, mw))):
            return f
    raise PatchwiseError(
        f"mask is {mh} x {mw} pixels but the image is {h} x {w}; a mask must be the "
        "image's size or that size divided by a whole number",
        path=path,
        hint="use the mask that belongs to this image, exported at full or integer-downsampled resolution",
    )


def mask_values(labels: da.Array, progress: ProgressCallback | None = None) -> np.ndarray:
    """Sorted distinct values of ``labels``, computed chunk by chunk (exact).

    Each chunk is reduced to its own distinct values (a bincount for 8/16-bit unsigned
    data, ``np.unique`` otherwise); only those small sets are held at once.
    """
    blocks = labels.to_delayed().ravel()
    with dask_progress(progress):
        per_block = dask.compute(*(dask.delayed(_distinct)(b) for b in blocks))
    if not per_block:
        return np.array([], dtype=labels.dtype)
    return np.unique(np.concatenate(per_block))


def _distinct(block: np.ndarray) -> np.ndarray:
    if block.dtype in (np.uint8, np.uint16, np.bool_):
        counts = np.bincount(block.ravel().astype(np.intp, copy=False), minlength=1)
        return np.flatnonzero(counts).astype(block.dtype)
    return np.unique(block)


def read_mask(
    path: str | os.PathLike,
    level0_yx: tuple[int, int],
    mask_map: MaskMap | str | Mapping[int, int] | None = None,
    *,
    check_values: bool = True,
    progress: ProgressCallback | None = None,
) -> tuple[da.Array, int, str]:
    """Read a label image and map it to classes, lazily.

    Parameters
    ----------
    path : path-like
        TIFF / OME-TIFF, OME-Zarr or PNG label image (single channel, integer values).
        For a pyramidal file, its full-resolution level is used. A ``.geojson`` (or
        ``.json``) file is read as QuPath annotations, classes by name
        (:meth:`MaskMap.name_classes`, :mod:`.annotations`), at level 0's size.
    level0_yx : (int, int)
        ``(Y, X)`` of the image's level 0.
    mask_map : MaskMap or str or dict, optional
        Value -> class map; by default ``0`` background, ``1`` healthy, ``2`` tumor. The
        map is never guessed from the values found: a tumor-free 3-class mask holds only
        0 and 1 too, and reading it as binary would label healthy tissue as tumor.
    check_values : bool
        Verify up front (one chunked pass over the mask) that every value is in the map,
        so an unexpected value fails here with the values listed. Without it the check
        still happens, chunk by chunk, as the mapped mask is computed (no extra pass):
        headless commands that read the whole mask anyway use that.
    progress : callable, optional
        ``progress(done, total)`` over the chunks of the up-front pass.

    Returns
    -------
    mask : dask.array.Array
        ``uint8`` classes ``(ceil or floor of Y / f, ... X / f)``.
    factor : int
        ``f``.
    kind : str
        ``"3class"`` or ``"binary"``.

    Raises
    ------
    PatchwiseError
        Unreadable file, more than one channel, non-integer values, a size that is not
        an integer fraction of level 0, or values the map does not know (when computed,
        for ``check_values=False``).
    """
    path = Path(path)
    from .annotations import is_geojson

    if is_geojson(path):  # QuPath annotations, classes by name
        return _read_annotation_mask(path, level0_yx, as_mask_map(mask_map) or MaskMap.default())
    labels = load_image(path, labels=True).levels[0]
    if labels.shape[0] != 1:
        raise PatchwiseError(
            f"mask has {labels.shape[0]} channels; expected a single-channel label image",
            path=path,
            hint="save the mask as one integer channel (e.g. 0 background, 1 healthy, 2 tumor)",
        )
    labels = labels[0]
    if labels.dtype == np.bool_:
        labels = labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise PatchwiseError(
            f"mask has {labels.dtype} pixels; expected integer labels",
            path=path,
            hint="save the mask with an integer type (uint8 or uint16)",
        )
    factor = mask_factor(level0_yx, labels.shape, path)
    mapping = as_mask_map(mask_map) or MaskMap.default()
    if check_values:
        _check_known(mask_values(labels, progress), mapping, path)
    # A module-level function with plain arguments keeps the graph picklable.
    keys, classes = mapping.table()
    mapped = labels.map_blocks(
        map_known_values, keys, classes, spec=str(mapping), path=str(path), dtype=np.uint8
    )
    return mapped, factor, mapping.kind


def _read_annotation_mask(
    path: Path, level0_yx: tuple[int, int], mapping: MaskMap
) -> tuple[da.Array, int, str]:
    from .annotations import read_geojson_mask

    mask, factor, kind, _ = read_geojson_mask(path, level0_yx, mapping.name_classes(), str(mapping))
    return mask, factor, kind


def map_known_values(
    labels: np.ndarray, keys: np.ndarray, classes: np.ndarray, *, spec: str, path: str
) -> np.ndarray:
    """:func:`map_values`, raising :class:`PatchwiseError` on a value not in ``keys``.

    The check rides on the pass that maps the block, so a command that reads the whole
    mask once validates it for free (a separate value pass decoded the mask twice:
    1.15 s of a 3.2 s ``stats`` on a 16k x 20k slide).
    """
    if not _all_known(labels, keys):
        found = _distinct(labels)
        unknown = found[~np.isin(found, keys)]
        raise PatchwiseError(
            f"mask has values {_listed(found)}; {_listed(unknown, braces=False)} not in "
            f"the mask map {spec}",
            path=path,
            hint="pass a mask map that names every value, e.g. --mask-map "
            "0=background,1=healthy,2=tumor (or --mask-map binary for 0/1 tumor masks)",
        )
    return map_values(labels, keys, classes)


def _all_known(labels: np.ndarray, keys: np.ndarray) -> bool:
    if labels.size == 0:
        return True
    if np.issubdtype(labels.dtype, np.unsignedinteger) and np.array_equal(
        keys, np.arange(len(keys))
    ):
        return int(labels.max()) < len(keys)  # keys 0..k-1 (the usual maps): a max suffices
    if labels.dtype in (np.uint8, np.uint16):
        # A lookup of "known" per possible value: one pass, no sort.
        known = np.zeros(np.iinfo(labels.dtype).max + 1, dtype=bool)
        known[keys[(keys >= 0) & (keys < len(known))]] = True
        return bool(np.take(known, labels).all())
    return bool(np.isin(np.unique(labels), keys).all())


def _listed(values: Iterable[int], *, braces: bool = True) -> str:
    values = [int(v) for v in values]
    text = ", ".join(str(v) for v in values[:_MAX_LISTED])
    if len(values) > _MAX_LISTED:
        text += f", ... ({len(values)} values)"
    return "{" + text + "}" if braces else text


def _check_known(found: Iterable[int], mapping: MaskMap, path: Path) -> None:
    found = [int(v) for v in found]
    unknown = [v for v in found if v not in mapping.classes]
    if not unknown:
        return
    raise PatchwiseError(
        f"mask has values {_listed(found)}; {_listed(unknown, braces=False)} "
        f"not in the mask map {mapping}",
        path=path,
        hint="pass a mask map that names every value, e.g. --mask-map 0=background,1=healthy,2=tumor "
        "(or --mask-map binary for 0/1 tumor masks)",
    )
