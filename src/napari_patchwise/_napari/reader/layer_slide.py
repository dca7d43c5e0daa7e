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

from ...errors import PatchwiseError
from ...io.mask import MaskMap, as_mask_map, mask_factor, mask_values
from ...io.reader import slide_name
from ...slide import Slide

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
            from ...io import open_slide

            return open_slide(metadata[key], pyramid_cache=False)
    return _wrap_layer_data(layer)


def with_mask_layer(
    slide: Slide,
    mask_layer,
    *,
    mask_map: MaskMap | str | None = None,
    check_values: bool = True,
) -> Slide:
    """``slide`` carrying the classes of a Labels layer as its mask.

    Parameters
    ----------
    slide : Slide
        The image the mask is for.
    mask_layer : napari.layers.Labels
        The mask: a mask file opened by the Patchwise reader (re-read from its file), a
        slide's own mask, or any label array.
    mask_map : MaskMap or str, optional
        Value -> class map, the same for every slide (the dock's "Mask map" field).
        ``None`` is the documented 3-class map ``0=background,1=healthy,2=tumor``: a
        mask holding only 0 and 1 is a tumor-free slide, never guessed to be binary.
    check_values : bool
        Verify that every value of the mask is in the map (one chunked pass).

    Raises
    ------
    PatchwiseError
        The mask's size is not the image's (or an integer fraction of it), or it holds
        values the map does not know.
    """
    mapping = as_mask_map(mask_map) or MaskMap.default()
    metadata = getattr(mask_layer, "metadata", None) or {}
    own = next((v for v in metadata.values() if isinstance(v, Slide)), None)
    if own is not None and own.mask is not None and own.shape[1:] == slide.shape[1:]:
        mapped = with_own_mask(own, mapping, check_values=check_values)
        return slide.with_mask(
            mapped.mask, factor=mapped.mask_factor, kind=mapped.mask_kind, path=mapped.mask_path
        )
    path = metadata.get("patchwise_path")
    if isinstance(path, (str, Path)) and Path(path).is_file():
        # a mask file opened by the Patchwise reader: map its values as the CLI does
        try:
            mask, factor, kind = _read_mask(path, slide.shape[1:], mapping, check_values)
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
    if check_values:
        found = mask_values(labels).tolist()
        unknown = [v for v in found if v not in mapping.classes]
        if unknown:
            raise PatchwiseError(
                f"mask layer '{mask_layer.name}' holds values {unknown[:10]} that the mask "
                f"map {mapping} does not name",
                hint="set the mask map to name every value (e.g. 0=background,255=tumor) "
                "or relabel the mask",
            )
    mapped = labels.map_blocks(mapping.apply, dtype=np.uint8)
    return slide.with_mask(mapped, factor=factor, kind=mapping.kind)


def with_own_mask(
    slide: Slide, mask_map: MaskMap | str | None = None, *, check_values: bool = True
) -> Slide:
    """``slide`` with its own mask read again under ``mask_map`` (from its file).

    A slide opened with its mask (the sample) was mapped when it was opened; the map the
    user chose in the dock must decide its classes too. Without a mask file nothing can
    be remapped and the slide is returned as it is.
    """
    if slide.mask is None or slide.mask_path is None or not Path(slide.mask_path).is_file():
        return slide
    mapping = as_mask_map(mask_map) or MaskMap.default()
    mask, factor, kind = _read_mask(slide.mask_path, slide.shape[1:], mapping, check_values)
    return slide.with_mask(mask, factor=factor, kind=kind, path=Path(slide.mask_path))


def _read_mask(path, level0_yx, mapping: MaskMap, check_values: bool):
    from ...io.mask import read_mask

    # always an explicit map: the core never guesses a mask's semantics from its values
    return read_mask(path, level0_yx, mapping, check_values=check_values)


# -- which slide a layer belongs to ----------------------------------------------------------
#: Set on a mask layer by the reader (and by the dock when the user picks a mask for
#: another slide by hand): the :func:`slide_key` of the slide the mask belongs to.
MASK_OF_KEY = "patchwise_mask_of"


def slide_key(slide: Slide) -> str:
    """Identity of a slide across layers: its path, else its name."""
    return str(slide.path) if slide.path is not None else slide.name


def layer_slide_key(layer) -> str:
    """:func:`slide_key` of the slide an image layer shows, without opening anything."""
    metadata = getattr(layer, "metadata", None) or {}
    slide = next((v for v in metadata.values() if isinstance(v, Slide)), None)
    if slide is not None:
        return slide_key(slide)
    path = next((metadata[k] for k in PATH_KEYS if isinstance(metadata.get(k), (str, Path))), None)
    source = path or getattr(getattr(layer, "source", None), "path", None)
    return str(source) if source else layer.name


def mask_owner(layer) -> str | None:
    """The :func:`slide_key` of the slide a mask layer was opened for (None: unknown)."""
    owner = (getattr(layer, "metadata", None) or {}).get(MASK_OF_KEY)
    return owner if isinstance(owner, str) else None


def owner_name(key: str) -> str:
    """A slide key as the user knows the slide: its file's slide name, else the key."""
    return slide_name(Path(key)) if Path(key).suffix else key


# -- world units -----------------------------------------------------------------------------
#: The unit of a slide's pixel size (``Slide.pixel_size`` is in micrometres).
MICROMETRE = "µm"


def slide_units(pixel_size) -> tuple[str, str] | None:
    """napari layer ``units`` for a slide with ``pixel_size`` (None: stays in pixels).

    Every layer of a slide (channels, mask, overlays) gets the same units, so napari's
    scale bar and cursor read micrometres; a layer in pixels among them would make the
    viewer's units inconsistent (napari then falls back to no unit at all).
    """
    return None if pixel_size is None else (MICROMETRE, MICROMETRE)


def layer_units(layer) -> tuple | None:
    """The last two axes' units of ``layer`` (to give a layer drawn over it), or None."""
    units = getattr(layer, "units", None)
    return None if units is None else tuple(str(u) for u in units[-2:])


# -- world alignment -------------------------------------------------------------------------
def mask_transform(
    factor: int,
    image_scale: tuple[float, float] = (1.0, 1.0),
    image_translate: tuple[float, float] = (0.0, 0.0),
) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(scale, translate)`` that draw a ``1/factor`` mask over its image layer.

    napari centres data pixel ``i`` at ``translate + i * scale``. Mask pixel ``i`` covers
    the level-0 pixels ``[f i, f i + f)``, whose centre is at ``T + p (f i + (f - 1) / 2)``
    (``p``, ``T``: the image layer's scale and translate), so ``scale = p f`` and
    ``translate = T + p (f - 1) / 2``. The mask then shares the slide's world coordinates
    whatever pixel size its own file declares (often none).
    """
    p = np.asarray(image_scale, dtype=float)
    t = np.asarray(image_translate, dtype=float)
    scale = p * factor
    translate = t + p * (factor - 1) / 2.0
    return tuple(float(v) for v in scale), tuple(float(v) for v in translate)


def layer_yx(layer) -> tuple[int, int]:
    """``(Y, X)`` of a layer's full-resolution data (the last two spatial axes)."""
    level = _levels(layer)[0]
    shape = tuple(int(s) for s in level.shape)
    if getattr(layer, "rgb", False):
        shape = shape[:-1]
    return shape[-2], shape[-1]


def fitting_factor(level0_yx: tuple[int, int], mask_yx: tuple[int, int]) -> int | None:
    """The mask's integer factor against ``level0_yx``, or ``None`` when it does not fit."""
    try:
        return mask_factor(level0_yx, mask_yx)
    except PatchwiseError:
        return None


def align_mask_layer(mask_layer, image_layer) -> bool:
    """Put ``mask_layer`` in ``image_layer``'s world coordinates (its scale x factor).

    Returns False (and changes nothing) when the mask's size is not the image's or an
    integer fraction of it: computing then reports the mismatch.
    """
    factor = fitting_factor(layer_yx(image_layer), layer_yx(mask_layer))
    if factor is None:
        return False
    scale, translate = mask_transform(
        factor, tuple(image_layer.scale[-2:]), tuple(image_layer.translate[-2:])
    )
    lead = mask_layer.ndim - 2  # keep any leading (non-spatial) axes as they are
    mask_layer.scale = (*tuple(mask_layer.scale[:lead]), *scale)
    mask_layer.translate = (*tuple(mask_layer.translate[:lead]), *translate)
    mask_layer.units = (*tuple(str(u) for u in mask_layer.units[:lead]), *layer_units(image_layer))
    mask_layer.metadata[ALIGNED_KEY] = image_layer.name
    return True


#: Set on a mask layer once it was put in an image's world coordinates (the image's name).
ALIGNED_KEY = "patchwise_aligned_to"


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
