"""Turn the layers the user picked into a :class:`~napari_patchwise.slide.Slide`.

A layer opened by the Patchwise reader carries its ``Slide`` (or the file's path) in
``layer.metadata``; any other image layer is wrapped lazily (its pyramid levels become the
slide's levels, never computed). A Labels layer is the mask: it is checked against the
image's size (same size or an integer fraction) and its values against the class map.
"""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np

from ..errors import PatchwiseError
from ..io.mask import MaskMap, mask_factor, mask_values
from ..io.reader import slide_name
from ..slide import Slide

# Keys under which a reader may leave the slide or its path in layer metadata.
SLIDE_KEYS = ("patchwise_slide", "slide")
PATH_KEYS = ("patchwise_path", "path", "source_path")


def slide_of_layer(layer) -> Slide:
    """The slide an image layer shows (from its metadata, else wrapping its data lazily)."""
    metadata = getattr(layer, "metadata", None) or {}
    for key in SLIDE_KEYS:
        if isinstance(metadata.get(key), Slide):
            return metadata[key]
    for value in metadata.values():
        if isinstance(value, Slide):
            return value
    for key in PATH_KEYS:
        if isinstance(metadata.get(key), (str, Path)) and Path(metadata[key]).exists():
            from ..io import open_slide

            return open_slide(metadata[key], pyramid_cache=False)
    return _wrap_layer_data(layer)


def with_mask_layer(slide: Slide, mask_layer, *, check_values: bool = True) -> Slide:
    """``slide`` carrying the classes of a Labels layer as its mask.

    Raises
    ------
    PatchwiseError
        The mask's size is not the image's (or an integer fraction of it), or it holds
        values other than background/healthy/tumor (``0, 1, 2``) or binary ``0, 1``.
    """
    metadata = getattr(mask_layer, "metadata", None) or {}
    own = next((v for v in metadata.values() if isinstance(v, Slide)), None)
    if own is not None and own.mask is not None and own.shape[1:] == slide.shape[1:]:
        return slide.with_mask(own.mask, factor=own.mask_factor, kind=own.mask_kind)
    path = metadata.get("patchwise_path")
    if isinstance(path, (str, Path)) and Path(path).is_file():
        # a mask file opened by the Patchwise reader: map its values as the CLI does
        from ..io.mask import read_mask

        try:
            mask, factor, kind = read_mask(path, slide.shape[1:], check_values=check_values)
        except PatchwiseError as exc:
            raise PatchwiseError(f"mask layer '{mask_layer.name}': {exc}") from exc
        return slide.with_mask(mask, factor=factor, kind=kind, path=Path(path))
    labels = _level0(mask_layer)
    if labels.ndim != 2:
        raise PatchwiseError(
            f"mask layer '{mask_layer.name}' has {labels.ndim} dimensions; expected a 2-D label image"
        )
    try:
        factor = mask_factor(slide.shape[1:], labels.shape)
    except PatchwiseError as exc:
        raise PatchwiseError(
            f"mask layer '{mask_layer.name}' is {labels.shape[0]} x {labels.shape[1]} but "
            f"image '{slide.name}' is {slide.shape[1]} x {slide.shape[2]}",
            hint="pick the mask that belongs to this image",
        ) from exc
    mapping = MaskMap.default()
    if check_values:
        found = mask_values(labels).tolist()
        if set(found) <= {0, 1}:
            mapping = MaskMap.binary()
        unknown = [v for v in found if v not in mapping.classes]
        if unknown:
            raise PatchwiseError(
                f"mask layer '{mask_layer.name}' holds values {unknown[:10]} besides "
                "0 (background), 1 (healthy), 2 (tumor)",
                hint="relabel the mask or open it with a value map",
            )
    mapped = labels.map_blocks(mapping.apply, dtype=np.uint8)
    return slide.with_mask(mapped, factor=factor, kind=mapping.kind)


# -- helpers ---------------------------------------------------------------------------------
def _levels(layer) -> list:
    data = layer.data
    return list(data) if getattr(layer, "multiscale", False) else [data]


def _level0(layer) -> da.Array:
    level = _levels(layer)[0]
    return level if isinstance(level, da.Array) else da.from_array(level, chunks="auto")


def _wrap_layer_data(layer) -> Slide:
    levels = []
    for level in _levels(layer):
        arr = level if isinstance(level, da.Array) else da.from_array(level, chunks="auto")
        if getattr(layer, "rgb", False):
            arr = da.moveaxis(arr, -1, 0)
        elif arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise PatchwiseError(
                f"image layer '{layer.name}' has shape {tuple(arr.shape)}; expected a 2-D "
                "image, RGB, or channels x Y x X"
            )
        levels.append(arr)
    scale = tuple(float(s) for s in layer.scale[-2:])
    source = getattr(getattr(layer, "source", None), "path", None)
    return Slide(
        levels=tuple(levels),
        channel_names=tuple(f"{layer.name}[{c}]" for c in range(levels[0].shape[0]))
        if levels[0].shape[0] > 1
        else (layer.name,),
        pixel_size=None if scale == (1.0, 1.0) else scale,
        name=slide_name(Path(source)) if source else layer.name,
        path=Path(source) if source else None,
    )
