"""npe2 reader: each modality of a slide as its own pyramid image layer (a brightfield RGB
slide as one RGB layer); masks as Labels.

napari calls :func:`napari_get_reader` with a path; for a supported path it returns
:func:`read_layers`, which hands napari layer-data tuples. Image layers carry their
:class:`~napari_patchwise.Slide` in ``metadata["patchwise_slide"]`` so the Patchwise
widget works on the slide the reader opened (levels, names, pixel size).

Bad input shows one notification line (the :class:`PatchwiseError` message) and opens
nothing (napari's "no layers" sentinel), instead of napari's reader traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ... import palette
from ...errors import PatchwiseError
from ...io._loaded import LoadedImage
from ...io.formats import DICOM_SUFFIXES, WSI_SUFFIXES, is_dicom_folder
from ...io.reader import IMAGE_SUFFIXES, TIFF_SUFFIXES, ZARR_SUFFIXES, is_zarr_store
from ...slide import Slide
from ..jobs.progress import NapariProgress

#: napari's dask chunk cache defaults to 25% of RAM; a bounded cache keeps panning over a
#: 50k x 50k slide within the memory budget while still reusing recently shown tiles.
DASK_CACHE_BYTES = 384 * 2**20

#: Colormaps for multichannel slides, in channel order (additive blending).
CHANNEL_COLORMAPS = ("magenta", "green", "cyan", "yellow", "red", "blue", "orange", "bop purple")
RGB_COLORMAPS = {"R": "red", "G": "green", "B": "blue"}

#: Class colours of a mapped (or 0/1/2) mask shown as Labels.
MASK_COLORS = palette.MASK_COLORS  # the one palette: non-tumor blue, tumor vermillion

_MASK_NAME = re.compile(r"(mask|label|annotation|segmentation)", re.IGNORECASE)
_MASK_MAX_VALUES = 8
_SAMPLE_SIDE = 512

LayerData = tuple[Any, dict, str]
NO_LAYERS = [(None,)]  # npe2/napari sentinel: "handled, nothing to add"

#: Microscopy file patterns napari's File > Open should send to this reader. PNG/JPEG
#: are left to the user's choice (napari's own reader shows photos as one RGB layer).
#: Directories are matched with a trailing separator by napari's preference lookup.
PREFERRED_PATTERNS = (
    *("*.tif", "*.tiff", "*.ome.tif", "*.ome.tiff", "*.zarr/", "*.ome.zarr/"),
    *(f"*{suffix}" for suffix in WSI_SUFFIXES + DICOM_SUFFIXES),
)
PLUGIN_NAME = "napari-patchwise"

_cache_sized = False


def napari_get_reader(path: str | list[str]):
    """Return :func:`read_layers` if this plugin reads ``path``, else ``None``."""
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    return read_layers if is_supported(Path(path)) else None


def is_supported(path: Path) -> bool:
    """Whether ``path`` looks like a file or store this plugin reads (by name / layout)."""
    suffix = path.suffix.lower()
    if path.is_dir():
        return suffix in ZARR_SUFFIXES or is_zarr_store(path) or is_dicom_folder(path)
    return suffix in (*TIFF_SUFFIXES, *IMAGE_SUFFIXES, *WSI_SUFFIXES, *DICOM_SUFFIXES, ".geojson")


def read_layers(path: str | list[str]) -> list:
    """Layer data for ``path``: the slide's image layer(s), or one Labels layer for a mask."""
    if isinstance(path, list | tuple):
        path = path[0]
    size_dask_cache()
    # Panning reads the tiles next to the last view: decode them in the background.
    from ...io._tile_cache import PREFETCH

    PREFETCH.enable()
    viewer = _current_viewer()
    try:
        layers = layers_for_path(Path(path), viewer=viewer)
    except PatchwiseError as err:
        from napari.utils.notifications import show_error

        show_error(str(err))
        return NO_LAYERS
    if viewer is not None:
        guard_masks_when_added(viewer, layers)
        offer_reader_preferences()
    return layers


#: The user was offered "use Patchwise for these files" in this session (asked once).
_offered = False
OFFER_TEXT = (
    "Use Patchwise for these files? (TIFF, zarr, scanner slides: File > Open then "
    "stops asking; Preferences > Plugins undoes it)"
)
OFFER_ACTION = "Use Patchwise for these files"


def unclaimed_patterns(patterns: tuple[str, ...] = PREFERRED_PATTERNS) -> list[str]:
    """The ``patterns`` for which the user has no reader preference in napari yet."""
    from napari.settings import get_settings

    current = get_settings().plugins.extension2reader
    return [p for p in patterns if p not in current]


def offer_reader_preferences() -> bool:
    """Offer once per session, in a notification with an action, to become the reader.

    Nothing in the user's napari settings changes unless they click the action (which
    calls :func:`claim_reader_preferences`). Not offered when every pattern already
    has a preference (the user chose, either way). Returns whether it was offered now.
    """
    global _offered
    if _offered or not unclaimed_patterns():
        return False
    _offered = True
    from napari.utils.notifications import Notification, notification_manager

    notification_manager.dispatch(
        Notification(
            OFFER_TEXT,
            severity="info",
            actions=[(OFFER_ACTION, lambda *_: claim_reader_preferences())],
        )
    )
    return True


def claim_reader_preferences(patterns: tuple[str, ...] = PREFERRED_PATTERNS) -> list[str]:
    """Make this reader napari's choice for ``patterns`` that have no preference yet.

    Called only on the user's action (the notification of
    :func:`offer_reader_preferences`): it records Patchwise as the reader dialog's
    "remember" would, without overriding a choice the user already made. Returns the
    patterns claimed.
    """
    from napari.settings import get_settings

    plugins = get_settings().plugins
    current = dict(plugins.extension2reader)
    claimed = [p for p in patterns if p not in current]
    if claimed:
        plugins.extension2reader = {**current, **dict.fromkeys(claimed, PLUGIN_NAME)}
    return claimed


def guard_masks_when_added(viewer, layers: list) -> None:
    """Once napari has added them, leave this read's mask layers unarmed for painting.

    napari selects the last layer it adds; a selected Labels layer shows its paint
    tools, and a stray drag would edit the mask the counts come from. The masks are
    made non-editable in pan/zoom mode and the selection moves to the slide's image
    (or is cleared), after napari's own selection (next event-loop turn).
    """
    if not any(len(data) == 3 and data[2] == "labels" for data in layers):
        return
    from qtpy.QtCore import QTimer

    QTimer.singleShot(0, lambda: disarm_masks(viewer))


def disarm_masks(viewer) -> None:
    """Every Patchwise mask layer non-editable, pan/zoom, and not the active layer."""
    from napari.layers import Labels

    masks = [
        layer
        for layer in viewer.layers
        if isinstance(layer, Labels) and layer.metadata.get("patchwise_mask")
    ]
    for layer in masks:
        layer.mode = "pan_zoom"
        layer.editable = False
    if viewer.layers.selection.active in masks:
        images = slide_image_layers(viewer)
        viewer.layers.selection.clear()
        if images:
            viewer.layers.selection.active = images[0]


def _current_viewer():
    """The viewer napari is reading into (``None`` outside a viewer).

    Its layers place a mask opened for a slide.
    """
    import napari

    return napari.current_viewer()


def size_dask_cache(nbytes: int = DASK_CACHE_BYTES) -> None:
    """Bound napari's dask chunk cache once (it defaults to a quarter of RAM)."""
    global _cache_sized
    if not _cache_sized:
        from napari.utils import resize_dask_cache

        resize_dask_cache(nbytes=nbytes)
        _cache_sized = True


def layers_for_path(path: Path, *, viewer=None) -> list[LayerData]:
    """Open ``path`` and build its layer data (raises :class:`PatchwiseError`).

    With ``viewer`` (the one napari reads into), a mask is placed over the slide it
    belongs to there, and a slide places the masks opened before it (see
    :func:`mask_file_layer`).
    """
    from ...io.reader import load_image, slide_from_loaded

    if path.suffix.lower() == ".geojson":  # QuPath annotations over the newest slide
        from .annotation_io import geojson_layer

        return [geojson_layer(path, [] if viewer is None else slide_image_layers(viewer))]
    loaded = load_image(path)
    if looks_like_mask(path, loaded):
        images = [] if viewer is None else slide_image_layers(viewer)
        return [mask_file_layer(path, loaded, images=images)]
    with NapariProgress(f"Building display pyramid for {path.name}") as progress:
        slide = slide_from_loaded(path, loaded, progress=progress)
    if viewer is not None:
        align_waiting_masks(viewer, slide)
    return slide_layers(slide)


def slide_image_layers(viewer) -> list:
    """The viewer's image layers that show a slide (not Patchwise overlays), newest first."""
    from napari.layers import Image

    return [
        layer
        for layer in reversed(list(viewer.layers))
        if isinstance(layer, Image) and "patchwise_overlay" not in layer.metadata
    ]


def align_waiting_masks(viewer, slide: Slide) -> list:
    """Place the mask layers opened before ``slide`` (and not yet placed) over it.

    Opening a slide and its mask together may read the mask first; it fits the slide
    when its size is the slide's or an integer fraction of it. When some waiting masks
    are named after the slide (``<slide>_mask.tif``), only those are placed: the others
    wait for their own slide. Returns the layers moved.
    """
    from napari.layers import Labels

    from .layer_slide import (
        ALIGNED_KEY,
        MASK_OF_KEY,
        fitting_factor,
        layer_yx,
        mask_transform,
        slide_key,
        slide_units,
    )

    waiting = [
        layer
        for layer in viewer.layers
        if isinstance(layer, Labels)
        and layer.metadata.get("patchwise_mask")
        and ALIGNED_KEY not in layer.metadata
        and fitting_factor(slide.shape[1:], layer_yx(layer)) is not None
    ]
    named = [layer for layer in waiting if _named_after(layer.name, slide.name)]
    for layer in named or waiting:
        factor = fitting_factor(slide.shape[1:], layer_yx(layer))
        scale, translate = mask_transform(factor, slide.pixel_size or (1.0, 1.0))
        layer.scale, layer.translate = scale, translate
        layer.units = slide_units(slide.pixel_size) or ("pixel", "pixel")
        layer.metadata[ALIGNED_KEY] = slide.name
        layer.metadata[MASK_OF_KEY] = slide_key(slide)
    return named or waiting


def _named_after(mask_name: str, slide_name: str) -> bool:
    """Whether a mask's name starts with a slide's (``A_mask`` / ``A mask`` for ``A``)."""
    return bool(slide_name) and mask_name.lower().startswith(slide_name.lower())


def slide_layers(slide: Slide) -> list[LayerData]:
    """One multiscale image layer per channel (+ a Labels layer if the slide has a mask).

    A brightfield RGB slide is one RGB layer instead (:func:`rgb_slide_layer`).
    Layers are named by channel, blend additively with distinct colormaps, and get
    explicit contrast limits (from metadata or the smallest level) so napari does not
    guess them from the first tile it reads.
    """
    from .layer_slide import slide_units

    scale = slide.pixel_size or (1.0, 1.0)
    units = slide_units(slide.pixel_size)  # the scale bar reads µm (None: pixels)
    if is_brightfield_rgb(slide):
        layers = [rgb_slide_layer(slide)]
        return layers + ([slide_mask_layer(slide)] if slide.mask is not None else [])
    limits = slide.display_contrast_limits()
    layers: list[LayerData] = []
    for c, name in enumerate(slide.channel_names):
        kwargs = {
            "name": name,
            "multiscale": True,
            "blending": "additive",
            "colormap": channel_colormap(slide.channel_names, c),
            "contrast_limits": [float(v) for v in limits[c]],
            "scale": tuple(float(s) for s in scale),
            **({} if units is None else {"units": units}),
            "metadata": {
                "patchwise_slide": slide,
                "patchwise_channel": c,
                "patchwise_path": None if slide.path is None else str(slide.path),
            },
        }
        layers.append(([level[c] for level in slide.levels], kwargs, "image"))
    if slide.mask is not None:
        layers.append(slide_mask_layer(slide))
    return layers


def is_brightfield_rgb(slide: Slide) -> bool:
    """An 8-bit ``R, G, B`` slide (scanner formats, RGB TIFF): shown as one RGB layer."""
    return tuple(slide.channel_names) == ("R", "G", "B") and slide.dtype == np.uint8


def rgb_slide_layer(slide: Slide) -> LayerData:
    """A brightfield slide as one ``rgb=True`` multiscale image layer named after it.

    One RGB layer draws the slide as the scanner's viewer does, and pans 2-3x faster
    than three additive channel layers (one texture and one read per view instead of
    three). Levels are ``(Y, X, 3)`` over the ``(C, Y, X)`` levels, chunked as they are
    (whole file tiles), so a view decodes only the tiles under it.
    """
    from ...io._layout import yxc_level
    from .layer_slide import slide_units

    units = slide_units(slide.pixel_size)
    kwargs = {
        "name": slide.name,
        "multiscale": True,
        "rgb": True,
        "contrast_limits": [0.0, 255.0],
        "scale": tuple(float(s) for s in slide.pixel_size or (1.0, 1.0)),
        **({} if units is None else {"units": units}),
        "metadata": {
            "patchwise_slide": slide,
            "patchwise_path": None if slide.path is None else str(slide.path),
        },
    }
    return [yxc_level(level) for level in slide.levels], kwargs, "image"


def channel_colormap(names: tuple[str, ...], index: int) -> str:
    """Gray for one channel, red/green/blue for RGB, else a distinct colour per channel."""
    if len(names) == 1:
        return "gray"
    if tuple(names) == ("R", "G", "B"):
        return RGB_COLORMAPS[names[index]]
    return CHANNEL_COLORMAPS[index % len(CHANNEL_COLORMAPS)]


def slide_mask_layer(slide: Slide) -> LayerData:
    """The slide's mapped class mask as a multiscale Labels layer over the image."""
    from ...io.annotations import mask_pyramid
    from ...io.pyramid import build_pyramid
    from .layer_slide import ALIGNED_KEY, MASK_OF_KEY, mask_transform, slide_key, slide_units

    drawn = mask_pyramid(slide.mask)  # a GeoJSON mask: levels filled from its polygons
    levels = [lvl[None] for lvl in drawn] if drawn else None
    levels = levels or build_pyramid(slide.mask[None], method="nearest")
    # a 1/f mask pixel covers level-0 pixels [f i, f i + f): scale p f, shifted by p (f-1)/2
    scale, translate = mask_transform(slide.mask_factor, slide.pixel_size or (1.0, 1.0))
    units = slide_units(slide.pixel_size)
    kwargs = {
        "name": f"{slide.name} mask",
        "multiscale": True,
        "opacity": 0.5,
        "scale": scale,
        "translate": translate,
        **({} if units is None else {"units": units}),
        "colormap": MASK_COLORS,
        "metadata": {
            "patchwise_slide": slide,
            "patchwise_mask": True,
            ALIGNED_KEY: slide.name,
            MASK_OF_KEY: slide_key(slide),
        },
    }
    return _labels_layer_data(levels, kwargs)


def mask_file_layer(path: Path, loaded: LoadedImage, *, images=()) -> LayerData:
    """A label image file (its raw values) as a multiscale Labels layer.

    The mask is drawn in the world coordinates of the first of ``images`` (image layers,
    newest first) whose size is the mask's times a whole number ``f``: scale = the
    image's scale times ``f`` (:func:`.layer_slide.mask_transform`), whatever pixel
    size the mask file declares (a plain TIFF mask declares none). Without such an
    image, the file's own pixel size is used.
    """
    from ...io.pyramid_cache import pyramid_for
    from ...io.reader import slide_name
    from .layer_slide import (
        ALIGNED_KEY,
        MASK_OF_KEY,
        fitting_factor,
        layer_slide_key,
        layer_units,
        layer_yx,
        mask_transform,
        slide_units,
    )

    levels = loaded.levels
    if len(levels) == 1:
        with NapariProgress(f"Building label pyramid for {path.name}") as progress:
            levels = pyramid_for(path, levels[0], loaded, method="nearest", progress=progress)
    metadata = {"patchwise_path": str(path), "patchwise_mask": True}
    scale = tuple(float(s) for s in (loaded.pixel_size or (1.0, 1.0)))
    translate = (0.0, 0.0)
    units = slide_units(loaded.pixel_size)
    mask_yx = tuple(int(s) for s in loaded.levels[0].shape[-2:])
    image = _slide_for_mask(slide_name(path), mask_yx, images)
    if image is not None:
        factor = fitting_factor(layer_yx(image), mask_yx)
        scale, translate = mask_transform(
            factor, tuple(image.scale[-2:]), tuple(image.translate[-2:])
        )
        units = layer_units(image)
        metadata[ALIGNED_KEY] = image.name
        metadata[MASK_OF_KEY] = layer_slide_key(image)  # the dock picks it for that slide
    kwargs = {
        "name": slide_name(path),
        "multiscale": True,
        "opacity": 0.5,
        "scale": scale,
        "translate": translate,
        **({} if units is None else {"units": units}),
        "metadata": metadata,
    }
    if set(_sample_values(loaded).tolist()) <= {0, 1, 2}:
        kwargs["colormap"] = MASK_COLORS
    return _labels_layer_data(levels, kwargs)


def _slide_for_mask(mask_name: str, mask_yx: tuple[int, int], images) -> Any:
    """The image layer a mask file belongs to: one it fits (same size or ``1/f``).

    Among those, the slide the mask is named after (``A_mask.tif`` for slide ``A``; the
    longest name wins, so ``test31`` beats ``test3``), else the newest (``images`` come
    newest first). None when the mask fits no image.
    """
    from .layer_slide import fitting_factor, layer_yx

    fitting = [im for im in images if fitting_factor(layer_yx(im), mask_yx) is not None]
    named = [im for im in fitting if _named_after(mask_name, _shown_slide_name(im))]
    if named:
        return max(named, key=lambda im: len(_shown_slide_name(im)))
    return fitting[0] if fitting else None


def _shown_slide_name(image) -> str:
    slide = (image.metadata or {}).get("patchwise_slide")
    return slide.name if isinstance(slide, Slide) else image.name


def _labels_layer_data(levels: list, kwargs: dict) -> LayerData:
    """Labels layer data from ``(1, Y, X)`` levels.

    napari (0.9) rejects a one-level multiscale Labels layer (its scale vector gets the
    wrong length), so a mask too small to need a pyramid is handed over as one array.
    """
    planes = [lvl[0] for lvl in levels]
    if len(planes) == 1:
        return planes[0], {**kwargs, "multiscale": False}, "labels"
    return planes, kwargs, "labels"


def looks_like_mask(path: Path, loaded: LoadedImage) -> bool:
    """A single-channel integer image named like a mask, or with only a few values.

    Only a small sample is read: the smallest stored level, or a central crop of a
    single-level image.
    """
    level0 = loaded.levels[0]
    if level0.shape[0] != 1 or not (
        np.issubdtype(level0.dtype, np.integer) or level0.dtype == np.bool_
    ):
        return False
    if _MASK_NAME.search(path.name):
        return True
    return 2 <= len(_sample_values(loaded)) <= _MASK_MAX_VALUES


def _sample_values(loaded: LoadedImage) -> np.ndarray:
    level = loaded.levels[-1]
    if len(loaded.levels) == 1:
        _, h, w = level.shape
        y0, x0 = max(0, h // 2 - _SAMPLE_SIDE // 2), max(0, w // 2 - _SAMPLE_SIDE // 2)
        level = level[:, y0 : y0 + _SAMPLE_SIDE, x0 : x0 + _SAMPLE_SIDE]
    return np.unique(np.asarray(level.compute()))
