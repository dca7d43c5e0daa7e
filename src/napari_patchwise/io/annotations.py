"""QuPath annotations (GeoJSON) as a class mask, rasterised lazily chunk by chunk.

A QuPath GeoJSON export (``File > Export objects as GeoJSON``: a ``FeatureCollection``,
or the bare list of features older versions write) holds polygons in level-0 pixel
coordinates: origin at the top-left corner of the full-resolution image, x to the right,
y down, pixel ``(r, c)`` covering ``[c, c + 1) x [r, r + 1)``. Each feature's class is
its ``properties.classification`` name; a :class:`~.mask.MaskMap` maps names to classes.

Rules (the same as QuPath's own labelled-image export, which fills shapes with Java2D):

* a pixel belongs to a polygon when its centre ``(c + 0.5, r + 0.5)`` is inside it;
  a centre exactly on an edge is inside when the polygon lies to its right (or, on a
  horizontal edge, below it): ``java.awt.Shape``'s insideness, W. R. Franklin's
  crossing test ``x < x_edge(y)`` with half-open edges ``y0 <= y < y1``;
* holes subtract (even-odd within one polygon); the polygons of a ``MultiPolygon`` and
  all features are united;
* overlapping classes: tumor > healthy > background (order-independent, so any chunk
  is computed on its own); ``background`` features paint nothing.

:class:`AnnotationRaster` is a ``(Y, X)`` array-like whose ``__getitem__`` fills only
the region asked for, visiting only the edges whose rows it covers (a bucket index over
y) of the polygons whose x-range it touches; dask reads it chunk by chunk.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np

from .._atomic import atomic_path
from ..errors import PatchwiseError
from ..slide import HEALTHY
from ._layout import tile_chunk_side
from .write import write_ome_tiff

GEOJSON_SUFFIXES = (".geojson", ".json")
#: The mask-map name of annotations without a classification.
UNCLASSIFIED = "unclassified"
#: Rows of level 0 per bucket of the edge index.
BUCKET_ROWS = 256
#: Rows filled at once inside a region (bounds the per-region scratch memory).
FILL_ROWS = 512
_HINT = "export the annotations from QuPath with File > Export objects as GeoJSON"
#: Largest |coordinate| (pixels) read: 2**31 px is beyond any slide, and keeps the
#: rasteriser's float64 edge arithmetic exact to far below a pixel (and its int64 casts).
MAX_COORDINATE = float(2**31)
_MAP_HINT = (
    "name every class in the mask map, e.g. --mask-map 'Tumor=tumor,Stroma=healthy,"
    "Other=healthy' (unclassified=CLASS for annotations without a class)"
)


def is_geojson(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like a GeoJSON file (``.geojson`` or ``.json``)."""
    return Path(path).suffix.lower() in GEOJSON_SUFFIXES


@dataclass(frozen=True)
class Feature:
    """One annotation: its class name (``None``: unclassified), colour and polygons.

    ``polygons`` is a list of polygons, each a list of rings ``(N, 2)`` of ``(x, y)``
    (the first ring the shell, the others holes).
    """

    name: str | None
    color: tuple[int, int, int] | None
    polygons: tuple[tuple[np.ndarray, ...], ...]


def read_annotations(path: str | os.PathLike) -> list[Feature]:
    """The polygon features of a GeoJSON file (points and lines cover no pixel: skipped).

    Raises
    ------
    PatchwiseError
        Not a readable JSON file, not a FeatureCollection / list of features, or a
        feature whose coordinates are not rings of ``[x, y]`` numbers.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return _read_features(data, path)
    except RecursionError:
        # json (and the geometry walk) recurse once per nesting level: a file nested
        # thousands deep is not GeoJSON (which nests under ten levels), refuse it.
        raise PatchwiseError(
            "not a GeoJSON file: nested deeper than the JSON reader allows (about a thousand levels)",
            path=path,
            hint=_HINT,
        ) from None
    except FileNotFoundError:
        raise PatchwiseError("no such file", path=path, hint="check the path") from None
    except UnicodeDecodeError:
        raise PatchwiseError("not a GeoJSON file (not UTF-8 text)", path=path, hint=_HINT) from None
    except json.JSONDecodeError as exc:
        raise PatchwiseError(
            f"not a GeoJSON file: {exc.msg} at line {exc.lineno} column {exc.colno}",
            path=path,
            hint=_HINT,
        ) from None


def _read_features(data, path: Path) -> list[Feature]:
    features = []
    for i, item in enumerate(_feature_list(data, path)):
        name, color = classification(item.get("properties"))
        where = f"feature {i}" + (f" ({name})" if name else "")
        polygons = _polygons(item.get("geometry"), where, path)
        if polygons:
            features.append(Feature(name, color, tuple(polygons)))
    return features


def _feature_list(data, path: Path) -> list[dict]:
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        data = data.get("features")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        data = [data]
    if not isinstance(data, list) or not all(
        isinstance(f, dict) and f.get("type", "Feature") == "Feature" for f in data
    ):
        raise PatchwiseError(
            "not a GeoJSON FeatureCollection or list of features", path=path, hint=_HINT
        )
    return data


def classification(properties) -> tuple[str | None, tuple[int, int, int] | None]:
    """Class name and RGB colour of a QuPath feature's ``properties``.

    QuPath 0.3+ writes ``{"classification": {"name": ..., "color": [r, g, b]}}`` (0.4+
    also ``"names"`` for a derived class such as ``Tumor: Positive``); 0.2 wrote
    ``"colorRGB"`` (a packed ARGB integer); some scripts write the name as a string.
    """
    cls = properties.get("classification") if isinstance(properties, dict) else None
    if isinstance(cls, str):
        return (cls.strip() or None), None
    if not isinstance(cls, dict):
        return None, None
    name = cls.get("name")
    if not name and isinstance(cls.get("names"), list):
        name = ": ".join(str(n) for n in cls["names"])
    color, packed = cls.get("color"), cls.get("colorRGB")
    rgb = None  # a colour is only for display: one that cannot be read is left out
    if isinstance(color, list) and len(color) >= 3 and all(isinstance(v, int) for v in color[:3]):
        rgb = tuple(v & 255 for v in color[:3])
    elif isinstance(packed, int):
        rgb = ((packed >> 16) & 255, (packed >> 8) & 255, packed & 255)
    return (str(name).strip() or None) if name else None, rgb  # type: ignore[return-value]


def _polygons(geometry, where: str, path: Path) -> list[tuple[np.ndarray, ...]]:
    if not isinstance(geometry, dict):
        return []
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    try:
        if kind == "Polygon":
            return [_in_range(_rings(coords), where, path)]
        if kind == "MultiPolygon":
            return [_in_range(_rings(p), where, path) for p in coords]
    except (TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, PatchwiseError):
            raise
        raise PatchwiseError(
            f"{where}: {kind} coordinates are not rings of [x, y] numbers",
            path=path,
            hint=_HINT,
        ) from None
    if kind == "GeometryCollection":
        parts = geometry.get("geometries") or []
        return [p for g in parts for p in _polygons(g, where, path)]
    return []  # Point, MultiPoint, LineString, MultiLineString: no area


def _rings(coords) -> tuple[np.ndarray, ...]:
    rings = []
    for ring in coords:
        xy = np.asarray(ring, dtype=np.float64) if len(ring) else np.zeros((0, 2))
        if xy.ndim != 2 or xy.shape[1] < 2:  # [x, y] or [x, y, z] points only
            raise ValueError("not a ring of points")
        xy = np.ascontiguousarray(xy[:, :2])
        if not np.isfinite(xy).all():
            raise ValueError("not finite")
        rings.append(xy.reshape(-1, 2))
    return tuple(rings)


def _in_range(rings: tuple[np.ndarray, ...], where: str, path: Path) -> tuple[np.ndarray, ...]:
    """``rings``, unless a coordinate lies beyond :data:`MAX_COORDINATE` (refused: such a
    polygon used to vanish from the mask when its edges overflowed)."""
    worst = max((float(np.abs(r).max()) for r in rings if r.size), default=0.0)
    if worst > MAX_COORDINATE:
        raise PatchwiseError(
            f"{where}: coordinate {worst:.3g} is beyond any slide (|x|, |y| <= 2^31 pixels)",
            path=path,
            hint="export the annotations in pixel coordinates of this slide",
        )
    return rings


# -- classes -----------------------------------------------------------------------------
def feature_classes(
    features: Sequence[Feature],
    name_classes: Mapping[str, int],
    spec: str,
    path: str | os.PathLike | None = None,
) -> np.ndarray:
    """The class of each feature under ``name_classes`` (lower-case name -> class).

    Raises
    ------
    PatchwiseError
        Features whose class name (or ``unclassified``) the map does not name; the
        message lists them with their counts.
    """
    keys = [(f.name or UNCLASSIFIED).lower() for f in features]
    missing = Counter(
        f.name or UNCLASSIFIED for f, k in zip(features, keys, strict=True) if k not in name_classes
    )
    if missing:
        found = ", ".join(f"{n} ({c})" for n, c in sorted(missing.items()))
        raise PatchwiseError(
            f"annotations of classes {found} are not in the mask map {spec}",
            path=path,
            hint=_MAP_HINT,
        )
    return np.array([name_classes[k] for k in keys], dtype=np.uint8)


def name_labels(features: Sequence[Feature]) -> tuple[np.ndarray, list[str]]:
    """Each feature's class-name number (1, 2, ... by first appearance) and the names.

    The raw view of a GeoJSON (as a label file's values are): ``names[k - 1]`` is the
    class name of label ``k`` (``unclassified`` for features without one).
    """
    names: dict[str, int] = {}
    labels = [names.setdefault(f.name or UNCLASSIFIED, len(names) + 1) for f in features]
    return np.array(labels, dtype=np.uint16), list(names)


# -- the edge index ---------------------------------------------------------------------
class EdgeIndex:
    """The polygons' edges, bucketed by level-0 rows, with one value per polygon.

    Parameters
    ----------
    features : sequence of Feature
        The annotations.
    values : array of int
        One value per feature (its class); features with value 0 are left out.
    height : int
        Level-0 rows (edges outside ``[0, height)`` are left out).
    """

    def __init__(self, features: Sequence[Feature], values: np.ndarray, height: int):
        x0, y0, x1, y1, part = [], [], [], [], []
        part_values, part_x = [], []
        for feature, value in zip(features, values, strict=True):
            if not value:
                continue
            for rings in feature.polygons:
                pid = len(part_values)
                for ring in rings:
                    if len(ring) < 2:
                        continue
                    nxt = np.roll(ring, -1, axis=0)
                    x0.append(ring[:, 0]), y0.append(ring[:, 1])
                    x1.append(nxt[:, 0]), y1.append(nxt[:, 1])
                    part.append(np.full(len(ring), pid, np.int64))
                xs = np.concatenate([r[:, 0] for r in rings] + [np.zeros(1)])
                part_values.append(int(value))
                part_x.append((xs[:-1].min(initial=np.inf), xs[:-1].max(initial=-np.inf)))
        self.x0, self.y0 = _joined(x0, np.float64), _joined(y0, np.float64)
        self.x1, self.y1 = _joined(x1, np.float64), _joined(y1, np.float64)
        self.part = _joined(part, np.int64)
        self.part_values = np.array(part_values, dtype=np.uint16)
        self.part_x = np.array(part_x, dtype=np.float64).reshape(-1, 2)
        self.height = int(height)
        self._bucket(height)

    def _bucket(self, height: int) -> None:
        lo, hi = np.minimum(self.y0, self.y1), np.maximum(self.y0, self.y1)
        # an edge counts for rows with lo <= y < hi; none of [0.5, height - 0.5]: dropped
        keep = np.flatnonzero((hi > lo) & (hi > 0.5) & (lo <= height - 0.5))
        n_buckets = max(1, -(-height // BUCKET_ROWS))
        b0 = np.clip(np.floor(lo[keep] / BUCKET_ROWS), 0, n_buckets - 1).astype(np.int64)
        b1 = np.clip(np.floor(hi[keep] / BUCKET_ROWS), 0, n_buckets - 1).astype(np.int64)
        counts = b1 - b0 + 1
        edge = np.repeat(keep, counts)
        bucket = np.repeat(b0, counts) + _ranks(counts)
        order = np.argsort(bucket, kind="stable")
        self.bucket_edges = edge[order]
        self.bucket_start = np.searchsorted(bucket[order], np.arange(n_buckets + 1))

    def edges_between(self, y_first: float, y_last: float, x_first: float, x_last: float):
        """Edge ids that may cross sample rows in ``[y_first, y_last]`` of polygons whose
        x-range meets ``[x_first, x_last]`` (level-0 coordinates)."""
        n_buckets = len(self.bucket_start) - 1
        b0 = min(n_buckets - 1, max(0, math.floor(y_first / BUCKET_ROWS)))
        b1 = min(n_buckets - 1, max(0, math.floor(y_last / BUCKET_ROWS)))
        ids = self.bucket_edges[self.bucket_start[b0] : self.bucket_start[b1 + 1]]
        if b1 > b0:
            ids = np.unique(ids)
        px = self.part_x[self.part[ids]]
        return ids[(px[:, 1] >= x_first) & (px[:, 0] <= x_last)]


def _joined(arrays: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)


def _ranks(counts: np.ndarray) -> np.ndarray:
    """``0 .. n-1`` for each ``n`` of ``counts``, concatenated."""
    total = int(counts.sum())
    return np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)


def _first_at_or_after(a: np.ndarray, origin: float, step: float) -> np.ndarray:
    """Smallest integer ``i`` with ``origin + step * i >= a`` (elementwise, exact)."""
    i = np.ceil((a - origin) / step)
    i -= origin + step * (i - 1) >= a  # one correction either way for rounding
    i += origin + step * i < a
    return i.astype(np.int64)


def fill_region(
    index: EdgeIndex,
    rows: tuple[float, float, int],
    cols: tuple[float, float, int],
    dtype=np.uint16,
) -> np.ndarray:
    """Raster of ``index`` on a grid of sample points (pixel centres), ``dtype``.

    ``rows = (origin, step, n)``: sample ``i`` at ``y = origin + step * i`` (level-0
    coordinates; level 0 itself: ``(r0 + 0.5, 1, n)``); ``cols`` likewise for x. Each
    sample gets the largest value of the polygons containing it (crossing test above),
    cast to ``dtype`` as ``astype`` would.
    """
    (oy, sy, ny), nx = rows, cols[2]
    out = np.zeros((ny, nx), dtype=dtype)
    for start in range(0, ny, FILL_ROWS):
        n = min(FILL_ROWS, ny - start)
        band = (oy + sy * start, sy, n)
        _fill_band(index, band, cols, out[start : start + n])
    return out


def _fill_band(index: EdgeIndex, rows, cols, out: np.ndarray) -> None:
    """Paint the polygons' runs of one band of sample rows into ``out`` (zeros)."""
    (oy, sy, ny), (ox, sx, nx) = rows, cols
    if ny == 0 or nx == 0:
        return
    ids = index.edges_between(oy, oy + sy * (ny - 1), ox, ox + sx * (nx - 1))
    if not len(ids):
        return
    x0, y0, x1, y1 = index.x0[ids], index.y0[ids], index.x1[ids], index.y1[ids]
    lo = _first_at_or_after(np.minimum(y0, y1), oy, sy).clip(0, ny)
    hi = _first_at_or_after(np.maximum(y0, y1), oy, sy).clip(0, ny)
    counts = np.maximum(hi - lo, 0)
    edge = np.repeat(np.arange(len(ids)), counts)
    row = np.repeat(lo, counts) + _ranks(counts)
    y = oy + sy * row
    e0, e1 = (x0[edge], y0[edge]), (x1[edge], y1[edge])
    # Franklin's crossing point, the same expression skimage and pnpoly use
    x = (e1[0] - e0[0]) * (y - e0[1]) / (e1[1] - e0[1]) + e0[0]
    part = index.part[ids][edge]
    order = np.lexsort((x, part * ny + row))  # by polygon and row, then x (2 keys: 30% faster)
    x, row, part = x[order], row[order], part[order]
    # each (polygon, row) has an even number of crossings: inside between pairs
    start = _first_at_or_after(x[0::2], ox, sx).clip(0, nx)
    stop = _first_at_or_after(x[1::2], ox, sx).clip(0, nx)
    row, value = row[0::2], index.part_values[part[0::2]]
    keep = stop > start
    row, start, stop, value = row[keep], start[keep], stop[keep], value[keep]
    # Paint row runs, smaller values first so larger ones win. One slice assignment per
    # run: a difference-array fill (bincount + cumsum per class) cost 4x more per chunk.
    order = np.argsort(value, kind="stable")
    value = value.astype(out.dtype)  # wraps as astype would: the raster's dtype holds them
    runs = (a[order].tolist() for a in (row, start, stop, value))
    for r, a, b, v in zip(*runs, strict=True):
        out[r, a:b] = v


# -- the lazy raster ----------------------------------------------------------------------
class AnnotationRaster:
    """``(Y, X)`` array-like: the raster of ``index`` sampled every ``step`` level-0 pixels.

    ``step=1`` is level 0; ``step=2**k`` is the nearest-neighbour pyramid level ``k``
    (pixel ``i`` is level-0 pixel ``2**k i``, as :func:`.pyramid.downsample` keeps), so
    display levels are filled directly, never from level 0.
    """

    def __init__(self, index: EdgeIndex, shape: tuple[int, int], step: int = 1, dtype=np.uint8):
        self.index, self.step = index, int(step)
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(dtype)
        self.ndim = 2

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (2 - len(key))
        axes, squeeze, fancy = [], [], []
        for k, n in zip(key, self.shape, strict=True):
            if isinstance(k, int | np.integer):
                squeeze.append(len(axes))
                k = slice(int(k) % n, int(k) % n + 1)
            if not isinstance(k, slice):  # an index array: fill its range, then pick
                k = np.asarray(k) % n
                fancy.append((len(axes), k - k.min() if k.size else k))
                k = slice(int(k.min()), int(k.max()) + 1) if k.size else slice(0, 0)
            start, stop, step = k.indices(n)
            if step < 1:
                raise IndexError("annotation rasters support positive steps only")
            count = len(range(start, stop, step))
            axes.append((self.step * start + 0.5, float(self.step * step), count))
        out = fill_region(self.index, axes[0], axes[1], self.dtype)
        for axis, picks in fancy:
            out = np.take(out, picks, axis=axis)
        return out.squeeze(axis=tuple(squeeze)) if squeeze else out


def lazy_raster(raster: AnnotationRaster, chunk: int | None = None) -> da.Array:
    """Dask array over ``raster`` in square chunks (the size a ``uint8`` mask gets)."""

    side = chunk or tile_chunk_side(raster.dtype.itemsize)
    return da.from_array(raster, chunks=(side, side), lock=False, asarray=True, name=False)


def raster_pyramid(raster: AnnotationRaster, *, min_size: int = 256) -> list[da.Array]:
    """Levels ``0, 1, ...`` (each half the last, rounded down) until ``<= min_size``.

    The shapes and pixels of :func:`.pyramid.build_pyramid` with ``method="nearest"``,
    each level filled from the polygons directly.
    """
    shape, step, levels = raster.shape, 1, []
    while True:
        level = AnnotationRaster(raster.index, shape, raster.step * step, raster.dtype)
        levels.append(lazy_raster(level))
        if max(shape) <= min_size or min(shape) < 2:
            return levels
        shape, step = (shape[0] // 2, shape[1] // 2), step * 2


#: Display pyramids of the masks read lately, by the dask name of their level 0.
_PYRAMIDS: OrderedDict[str, list[da.Array]] = OrderedDict()
_PYRAMIDS_KEPT = 16


def remember_pyramid(levels: list[da.Array]) -> None:
    """Keep ``levels`` for :func:`mask_pyramid` (the last few masks read)."""
    _PYRAMIDS[levels[0].name] = levels
    while len(_PYRAMIDS) > _PYRAMIDS_KEPT:
        _PYRAMIDS.popitem(last=False)


def mask_pyramid(mask: da.Array) -> list[da.Array] | None:
    """The display pyramid of an annotation mask read here, else ``None``.

    A viewer shows a GeoJSON mask through levels filled from the polygons; coarsening
    level 0 instead would rasterise the whole slide to show its thumbnail.
    """
    return _PYRAMIDS.get(getattr(mask, "name", None))


def check_overlap(features: Sequence[Feature], level0_yx: tuple[int, int], path) -> None:
    """Refuse annotations that all lie outside the image (another slide, or not pixels)."""
    points = [r for f in features for p in f.polygons for r in p if len(r)]
    if not points:
        return
    xy = np.concatenate(points)
    (x_min, y_min), (x_max, y_max) = xy.min(axis=0), xy.max(axis=0)
    h, w = level0_yx
    if x_max <= 0 or y_max <= 0 or x_min >= w or y_min >= h:
        raise PatchwiseError(
            f"the annotations (x {x_min:g} to {x_max:g}, y {y_min:g} to {y_max:g}) lie "
            f"outside the image ({w} x {h} pixels)",
            path=path,
            hint="use the annotations exported for this slide (QuPath writes full-resolution "
            "pixel coordinates)",
        )


def read_geojson_mask(
    path: str | os.PathLike,
    level0_yx: tuple[int, int],
    name_classes: Mapping[str, int],
    spec: str,
) -> tuple[da.Array, int, str, list[da.Array]]:
    """A GeoJSON file as a lazy class mask of level 0's size (see the module rules).

    Parameters
    ----------
    path : path-like
        QuPath GeoJSON export.
    level0_yx : (int, int)
        ``(Y, X)`` of the image's level 0: the mask's shape.
    name_classes : mapping of str to int
        Lower-case class name -> class (``MaskMap.name_classes()``).
    spec : str
        The mask map as text, for messages.

    Returns
    -------
    mask : dask.array.Array
        ``uint8`` classes, ``(Y, X)``, in square chunks.
    factor : int
        Always 1.
    kind : str
        ``"3class"`` when the map has a healthy class, else ``"binary"``.
    levels : list of dask.array.Array
        Display pyramid (level 0 is ``mask``).
    """
    features = read_annotations(path)
    classes = feature_classes(features, name_classes, spec, path)
    check_overlap(features, level0_yx, path)
    raster = AnnotationRaster(EdgeIndex(features, classes, level0_yx[0]), level0_yx)
    levels = raster_pyramid(raster)
    remember_pyramid(levels)
    kind = "3class" if HEALTHY in set(name_classes.values()) else "binary"
    return levels[0], 1, kind, levels


# -- writing -----------------------------------------------------------------------------
def geojson_feature(feature: Feature) -> dict:
    """A QuPath annotation feature (closed rings; ``MultiPolygon`` for several parts)."""
    polygons = [[_closed(ring).tolist() for ring in rings] for rings in feature.polygons]
    geometry = (
        {"type": "Polygon", "coordinates": polygons[0]}
        if len(polygons) == 1
        else {"type": "MultiPolygon", "coordinates": polygons}
    )
    properties: dict = {"objectType": "annotation"}
    if feature.name is not None:
        properties["classification"] = {"name": feature.name}
        if feature.color is not None:
            properties["classification"]["color"] = [int(v) for v in feature.color]
    return {
        "type": "Feature",
        "id": str(uuid.uuid4()),
        "geometry": geometry,
        "properties": properties,
    }


def _closed(ring: np.ndarray) -> np.ndarray:
    ring = np.asarray(ring, dtype=np.float64)
    if len(ring) and not np.array_equal(ring[0], ring[-1]):
        ring = np.vstack([ring, ring[:1]])
    return ring


def write_annotations(path: str | os.PathLike, features: Sequence[Feature]) -> Path:
    """Write ``features`` as a QuPath-compatible GeoJSON ``FeatureCollection`` (atomic)."""

    path = Path(path)
    collection = {"type": "FeatureCollection", "features": [geojson_feature(f) for f in features]}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(collection), encoding="utf-8")
    return path


def write_label_tiff(
    path: str | os.PathLike,
    features: Sequence[Feature],
    level0_yx: tuple[int, int],
    name_classes: Mapping[str, int],
    *,
    spec: str = "",
    pixel_size: tuple[float, float] | None = None,
    progress=None,
) -> Path:
    """Rasterise ``features`` to classes (0/1/2) and write a pyramidal label OME-TIFF.

    The mask is written tile row by tile row from the lazy raster (never whole in
    memory); it reads back under the default mask map ``0=background,1=healthy,2=tumor``.
    """

    classes = feature_classes(features, name_classes, spec, path)
    raster = AnnotationRaster(EdgeIndex(features, classes, level0_yx[0]), level0_yx)
    return write_ome_tiff(path, raster_pyramid(raster), pixel_size=pixel_size, progress=progress)
