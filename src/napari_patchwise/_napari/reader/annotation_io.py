"""QuPath annotations in napari: open a GeoJSON over its slide, save Shapes as a mask.

* Opening a ``.geojson`` (File > Open, ``patchwise view --mask``) shows its annotations
  as a multiscale Labels layer over the newest slide in the viewer (a GeoJSON carries no
  image size): label ``k`` is the ``k``-th class name of the file (``metadata
  ["patchwise_classes"]``), coloured as in QuPath. Picked as the dock's mask, the file is
  read again under the dock's mask map (``Tumor=tumor,Stroma=healthy``).
* Two npe2 writers save Shapes layers (polygons, rectangles, ellipses; paths and lines
  have no area): ``.geojson`` (QuPath annotations) and ``.tif`` (a class-label OME-TIFF
  mask, 0 background, 1 healthy, 2 tumor). A shape's class is its ``class`` feature,
  else its layer's name.

Coordinates: napari centres data pixel ``i`` at ``i``; QuPath puts pixel ``i`` on
``[i, i + 1)``. A shape's world coordinates are taken to the slide's level-0 pixels
(the image layer's scale and translate), then shifted by half a pixel, so a rectangle
drawn along pixel edges in napari covers exactly the same pixels in QuPath.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import PatchwiseError
from ...io.annotations import (
    AnnotationRaster,
    EdgeIndex,
    Feature,
    check_overlap,
    name_labels,
    raster_pyramid,
    read_annotations,
    write_annotations,
    write_label_tiff,
)

#: Feature columns of a Shapes layer that may hold a shape's class name, in order.
CLASS_COLUMNS = ("class", "classification", "class_name", "name", "label")
#: Label colours for class names QuPath did not colour (matplotlib's tab10).
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
_ELLIPSE_VERTICES = 64


# -- opening -----------------------------------------------------------------------------
def geojson_layer(path: Path, images=()) -> tuple:
    """Labels layer data for the annotations in ``path`` over ``images[0]``'s slide."""
    from .layer_slide import ALIGNED_KEY, MASK_OF_KEY, layer_slide_key, layer_units, layer_yx

    if not images:
        raise PatchwiseError(
            "GeoJSON annotations carry no image size; open their slide first",
            path=path,
            hint="open the slide, then the .geojson (or patchwise view SLIDE --mask FILE)",
        )
    image = images[0]
    features = read_annotations(path)
    yx = layer_yx(image)
    check_overlap(features, yx, path)
    labels, names = name_labels(features)
    dtype = np.uint8 if len(names) < 256 else np.uint16
    raster = AnnotationRaster(EdgeIndex(features, labels, yx[0]), yx, dtype=dtype)
    levels = raster_pyramid(raster)
    colors = _name_colors(features, names)
    kwargs = {
        "name": path.name,
        "multiscale": len(levels) > 1,
        "opacity": 0.5,
        "scale": tuple(float(s) for s in image.scale[-2:]),
        "translate": tuple(float(t) for t in image.translate[-2:]),
        "units": layer_units(image),
        "colormap": {0: "transparent", None: "yellow", **colors},
        "features": {"index": list(range(len(names) + 1)), "class": ["", *names]},
        "metadata": {
            "patchwise_path": str(path),
            "patchwise_mask": True,
            "patchwise_classes": names,
            ALIGNED_KEY: image.name,
            MASK_OF_KEY: layer_slide_key(image),
        },
    }
    return (levels if len(levels) > 1 else levels[0]), kwargs, "labels"


def _name_colors(features, names: list[str]) -> dict[int, str]:
    first = {}
    for feature in features:
        first.setdefault(feature.name or "unclassified", feature.color)
    colors = {}
    for k, name in enumerate(names, start=1):
        rgb = first.get(name)
        colors[k] = "#{:02x}{:02x}{:02x}".format(*rgb) if rgb else _PALETTE[(k - 1) % len(_PALETTE)]
    return colors


# -- saving ------------------------------------------------------------------------------
def shapes_features(layer_data, image=None) -> list[Feature]:
    """The polygons of Shapes layer data tuples as annotations in level-0 pixels.

    ``image`` (an image layer) gives the slide's world -> pixel transform; without
    one, world coordinates are taken as pixels.
    """
    scale = np.asarray(image.scale[-2:], float) if image is not None else np.ones(2)
    offset = np.asarray(image.translate[-2:], float) if image is not None else np.zeros(2)
    features = []
    for data, meta, kind in layer_data:
        if kind != "shapes":
            continue
        names = _shape_classes(meta, len(data))
        colors = np.asarray(meta.get("edge_color", np.zeros((len(data), 4))), float)
        types = meta.get("shape_type") or ["polygon"] * len(data)
        layer_scale = np.asarray(meta.get("scale", (1, 1))[-2:], float)
        layer_offset = np.asarray(meta.get("translate", (0, 0))[-2:], float)
        for i, (vertices, shape_type) in enumerate(zip(data, types, strict=True)):
            ring = _ring(np.asarray(vertices, float)[:, -2:], shape_type)
            if ring is None:
                continue
            world = ring * layer_scale + layer_offset
            rc = (world - offset) / scale + 0.5  # napari centre i -> QuPath [i, i + 1)
            rgb = tuple(round(v * 255) for v in colors[i][:3]) if len(colors) > i else None
            features.append(Feature(names[i], rgb, ((rc[:, ::-1].copy(),),)))
    return features


def _shape_classes(meta: dict, n: int) -> list[str]:
    table = meta.get("features")
    for column in CLASS_COLUMNS:
        if table is not None and column in table and len(table[column]) == n:
            values = list(table[column])
            if all(isinstance(v, str) and v.strip() for v in values):
                return [v.strip() for v in values]
    return [str(meta.get("name") or "unclassified")] * n


def _ring(vertices: np.ndarray, shape_type: str) -> np.ndarray | None:
    """Polygon vertices ``(row, col)`` of one shape; ``None`` for paths and lines."""
    if shape_type in ("polygon", "rectangle"):
        return vertices
    if shape_type == "ellipse":  # napari stores the four corners of its bounding box
        centre = vertices.mean(axis=0)
        half_r, half_c = (vertices.max(axis=0) - vertices.min(axis=0)) / 2
        t = np.linspace(0, 2 * np.pi, _ELLIPSE_VERTICES, endpoint=False)
        return np.c_[centre[0] + half_r * np.sin(t), centre[1] + half_c * np.cos(t)]
    return None


def _slide_image():
    """The newest slide image layer of the current viewer, or ``None``."""
    import napari
    from napari.layers import Image

    viewer = napari.current_viewer()
    # reader.slide_image_layers' rule (the reader imports this module, not the reverse)
    images = [] if viewer is None else [
        layer for layer in reversed(list(viewer.layers))
        if isinstance(layer, Image) and "patchwise_overlay" not in layer.metadata
    ]  # fmt: skip
    return images[0] if images else None


def write_geojson_annotations(path: str, layer_data: list) -> list[str]:
    """npe2 writer: Shapes layers -> QuPath GeoJSON annotations (level-0 pixels)."""
    from ..dock import notify

    try:
        written = write_annotations(path, shapes_features(layer_data, _slide_image()))
    except (PatchwiseError, OSError) as err:
        notify.error(notify.one_line(err))
        return []
    return [str(written)]


def write_label_tiff_annotations(path: str, layer_data: list) -> list[str]:
    """npe2 writer: Shapes layers -> a class-label OME-TIFF of the slide's size.

    Class names are read as the default mask map reads them (tumor, healthy/tissue,
    background); other names must be saved as GeoJSON and mapped with a mask map.
    """
    from ...io.mask import MaskMap
    from ..dock import notify
    from .layer_slide import layer_yx

    image = _slide_image()
    try:
        if image is None:
            raise PatchwiseError(
                "a label mask needs its slide's size; open the slide first",
                path=path,
                hint="or save the shapes as .geojson",
            )
        features = shapes_features(layer_data, image)
        names = MaskMap.default().name_classes()
        pixel = tuple(float(s) for s in image.scale[-2:])
        written = write_label_tiff(
            path, features, layer_yx(image), names, spec="tumor, healthy, background",
            pixel_size=None if pixel == (1.0, 1.0) else pixel,
        )  # fmt: skip
    except (PatchwiseError, OSError) as err:
        notify.error(notify.one_line(err))
        return []
    return [str(written)]
