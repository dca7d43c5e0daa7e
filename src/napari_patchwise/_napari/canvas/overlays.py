"""Patch overlays: one pixel per patch, aligned with the slide, recoloured without new data.

Every overlay is a ``(n_rows, n_cols)`` raster of the patch grid shown with
``scale = stride`` (times the image layer's pixel size) — never one shape per patch.

tau and the decision threshold are **not** baked into the data. The groups layer stores
``3 * label + tissue_ratio`` and the correctness layer ``3 * label + prob``; a fixed
four-colour step colormap plus the layer's contrast limits decide the colour. Moving a
slider only shifts the contrast limits (one shader uniform): no data upload, no new
colormap texture, no shader recompile (a colormap swap recompiles the shader and costs
about as much as replacing the data; see docs/benchmarks.md).

How the contrast limits encode a threshold exactly
--------------------------------------------------
vispy samples the colormap from a lookup texture of ``LUT_LEN`` (1024) texels with
nearest-neighbour lookup. A value ``v`` lands in texel ``floor((v - c0) * S)`` with
``S = LUT_LEN / (c1 - c0)`` texels per data unit. With ``S = 256`` and
``c0 = t - (M + delta) / S`` the threshold ``t`` lands exactly ``delta`` texels past the
texel boundary ``M = 128``, and ``3 + t`` past ``M + 3 S = 896``; the colour changes at
those boundaries (and at ``M + 1.5 S = 512``, between the classes, where no value falls
for any ``t`` in [0, 1]). Values further below than ``delta / S`` (4e-5) are coloured as
below the threshold, so the display matches ``value >= t`` except within 4e-5 below
``t`` (kept for GPUs whose texture lookup has only ~1/256 texel precision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from napari.utils.colormaps import Colormap, DirectLabelColormap
from napari.utils.colormaps.standardize_color import transform_color
from vispy.color.colormap import LUT_len as LUT_LEN

from ...analysis.metrics import CORRECTNESS_NAMES
from ...groups import GROUP_NAMES, group_index
from ...palette import CORRECTNESS_COLORS, GROUP_COLORS, LABEL_COLORS
from ..dock.words import fmt

__all__ = ["CORRECTNESS_COLORS", "GROUP_COLORS", "LABEL_COLORS"]  # re-exported

# The one palette (napari_patchwise.palette, Okabe-Ito): blue hues = non-tumor, orange
# hues = tumor; light = small tissue, dark = large tissue. TN, FP, FN, TP: errors in the
# loud colours (yellow, purple); true negatives (most of a slide) only tinted.
CORRECTNESS_ALPHA: tuple[float, ...] = (0.3, 1.0, 1.0, 1.0)
HIGHLIGHT_COLOR = "#FFFFFF"

# Encoding: value = CLASS_OFFSET * label + x, with x in [0, 1].
CLASS_OFFSET = 3.0
_TEXELS_PER_UNIT = 256.0  # S
_FIRST_STEP = 128  # M: texel where "x >= t" begins for label 0
_DELTA = 0.01  # texels past the boundary where x == t lands (GPU lookup precision)
_STEP_TEXELS = (
    _FIRST_STEP,
    _FIRST_STEP + int(1.5 * _TEXELS_PER_UNIT),
    _FIRST_STEP + int(CLASS_OFFSET * _TEXELS_PER_UNIT),
)
DISPLAY_TOLERANCE = _DELTA / _TEXELS_PER_UNIT

LAYER_NAMES = {
    "labels": "patch labels",
    "groups": "tissue groups",
    "correctness": "correctness",
    "probability": "tumor probability",
    "highlight": "histogram selection",
}


# -- geometry ----------------------------------------------------------------------------
def overlay_transform(
    origin: tuple[int, int],
    stride: int | tuple[int, int],
    *,
    image_scale: tuple[float, float] = (1.0, 1.0),
    image_translate: tuple[float, float] = (0.0, 0.0),
) -> tuple[tuple[float, float], tuple[float, float]]:
    """``(scale, translate)`` of a one-pixel-per-patch layer over an image layer.

    napari centres data pixel ``i`` of a layer at ``translate + i * scale``, so it covers
    ``[translate + (i - 1/2) scale, translate + (i + 1/2) scale)``. Level-0 pixel ``y`` of
    the image covers ``[T + (y - 1/2) p, T + (y + 1/2) p)`` (``p``, ``T``: the image
    layer's scale and translate). Patch ``r`` starts at pixel ``origin + r * stride``, so
    its cell ``[y, y + stride)`` lines up when ``scale = p * stride`` and
    ``translate = T + p * (origin + (stride - 1) / 2)``.

    Parameters
    ----------
    origin : (int, int)
        Level-0 pixel of patch (0, 0)'s top-left corner.
    stride : int or (int, int)
        Step between patches in level-0 pixels (the patch size for a tiling grid).
    image_scale, image_translate : (float, float)
        The image layer's ``scale`` and ``translate`` (its last two axes).

    Returns
    -------
    scale, translate : tuple of float
    """
    stride_yx = np.broadcast_to(np.asarray(stride, dtype=float), (2,))
    p = np.asarray(image_scale, dtype=float)
    t = np.asarray(image_translate, dtype=float)
    scale = p * stride_yx
    translate = t + p * (np.asarray(origin, dtype=float) + (stride_yx - 1.0) / 2.0)
    return tuple(float(v) for v in scale), tuple(float(v) for v in translate)


@dataclass(frozen=True)
class PatchRaster:
    """Where each table row sits in the patch grid, and the inverse lookup.

    Attributes
    ----------
    shape : (int, int)
        ``(n_rows, n_cols)`` of the grid.
    rows, cols : ndarray of intp, shape (N,)
        Grid position of each table row.
    index : ndarray of int32, shape ``shape``
        Table row position at each grid cell, ``-1`` where the table has no patch.
    """

    shape: tuple[int, int]
    rows: np.ndarray
    cols: np.ndarray
    index: np.ndarray

    @classmethod
    def from_table(cls, table: pd.DataFrame, shape: tuple[int, int] | None = None) -> PatchRaster:
        """Build from the ``row`` and ``col`` columns of a patch table."""
        rows = table["row"].to_numpy(dtype=np.intp)
        cols = table["col"].to_numpy(dtype=np.intp)
        if shape is None:
            shape = (
                int(rows.max()) + 1 if rows.size else 0,
                int(cols.max()) + 1 if cols.size else 0,
            )
        index = np.full(shape, -1, dtype=np.int32)
        index[rows, cols] = np.arange(rows.size, dtype=np.int32)
        return cls(shape=(int(shape[0]), int(shape[1])), rows=rows, cols=cols, index=index)

    def paint(self, values: np.ndarray, *, fill: float = np.nan, dtype=np.float32) -> np.ndarray:
        """Scatter one value per table row into a grid raster (``fill`` where absent)."""
        out = np.full(self.shape, fill, dtype=dtype)
        out[self.rows, self.cols] = values
        return out

    def lookup(self, row: int, col: int) -> int:
        """Table row position at grid cell ``(row, col)``, or ``-1``."""
        if 0 <= row < self.shape[0] and 0 <= col < self.shape[1]:
            return int(self.index[row, col])
        return -1


# -- encodings ---------------------------------------------------------------------------
def encode_by_class(label: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``3 * label + x`` as float32 (NaN ``x`` stays NaN): one value holds class and score."""
    return (CLASS_OFFSET * np.asarray(label, dtype=np.float32)) + np.asarray(x, dtype=np.float32)


def step_contrast_limits(threshold: float) -> tuple[float, float]:
    """Contrast limits that put the colour step of :func:`step_colormap` at ``threshold``.

    See the module notes: ``x >= threshold`` gets the "high" colour of its class.
    """
    c0 = float(threshold) - (_FIRST_STEP + _DELTA) / _TEXELS_PER_UNIT
    return c0, c0 + LUT_LEN / _TEXELS_PER_UNIT


def step_colormap(
    colors: tuple[str, ...], name: str, alpha: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
) -> Colormap:
    """Four-colour step colormap whose steps sit on the texel boundaries of the module notes.

    ``colors`` are (class 0 below, class 0 at/above, class 1 below, class 1 at/above);
    ``alpha`` their opacities.
    """
    rgba = transform_color(list(colors))
    rgba[:, 3] = alpha
    # vispy fills texel j with the colour of the bin holding j / (LUT_LEN - 1); a control
    # half a texel before a boundary makes that texel the first of the new colour.
    inner = [(b - 0.5) / (LUT_LEN - 1) for b in _STEP_TEXELS]
    return Colormap(
        colors=rgba,
        controls=[0.0, *inner, 1.0],
        interpolation="zero",
        name=name,
        display_name=name,
    )


def expected_step_class(value: np.ndarray, threshold: float) -> np.ndarray:
    """Which of the four colours :func:`step_colormap` shows for encoded ``value``.

    ``value >= threshold`` up to the display tolerance (which also absorbs the float32
    rounding of the stored values).
    """
    value = np.asarray(value, dtype=np.float64)
    label = (value >= CLASS_OFFSET - 0.5).astype(np.int8)
    x = value - CLASS_OFFSET * label
    return group_index(label, x >= threshold - DISPLAY_TOLERANCE)  # groups and outcomes alike


def label_colormap() -> DirectLabelColormap:
    colors = {0: "transparent", None: "transparent"}
    colors.update(LABEL_COLORS)
    return DirectLabelColormap(color_dict=colors)


def highlight_colormap() -> DirectLabelColormap:
    return DirectLabelColormap(
        color_dict={0: "transparent", None: "transparent", 1: HIGHLIGHT_COLOR}
    )


def status_words(kind: str, value, *, tau: float, threshold: float) -> str:
    """What an overlay's value under the cursor means, in words (not the encoded float).

    ``tau`` and ``threshold`` are the overlay thresholds (the groups layer's on its
    [0, 1] scale). ``"TP · prob 0.879"`` for the correctness layer, a group name for the
    groups layer, the class for the labels layer.
    """
    if value is None:
        return "no patch"
    v = float(value)
    if math.isnan(v):
        return "no patch or no tissue"
    if kind == "labels":
        return {1: "non-tumor", 2: "tumor"}.get(int(v), "no patch")
    if kind == "highlight":
        return "in the histogram selection" if v else "not selected"
    if kind == "probability":
        return f"prob {fmt(v)}"
    label = int(v >= CLASS_OFFSET - 0.5)
    x = v - CLASS_OFFSET * label
    if kind == "groups":
        return GROUP_NAMES[int(group_index(label, x >= tau - DISPLAY_TOLERANCE))]
    outcome = CORRECTNESS_NAMES[int(group_index(label, x >= threshold - DISPLAY_TOLERANCE))]
    return f"{outcome} · prob {fmt(x)}"


def speak_status(layer, words) -> None:
    """Make ``layer``'s status-bar text ``words(value)`` instead of its raw value.

    napari (0.9) builds the status from ``layer.get_status``; this instance keeps
    napari's coordinates and replaces the value part.
    """
    original = layer.get_status

    def get_status(position=None, **kwargs):
        status = original(position, **kwargs)
        if position is None:
            return status
        value = layer.get_value(
            position,
            view_direction=kwargs.get("view_direction"),
            dims_displayed=kwargs.get("dims_displayed"),
            world=kwargs.get("world", False),
        )
        status["value"] = words(value)
        status["coordinates"] = f"{status.get('coords', '')}: {status['value']}"
        return status

    layer.get_status = get_status


LEGENDS: dict[str, tuple[tuple[str, str], ...]] = {
    "labels": (("non-tumor", LABEL_COLORS[1]), ("tumor", LABEL_COLORS[2])),
    "groups": tuple(zip(GROUP_NAMES, GROUP_COLORS, strict=True)),
    "correctness": tuple(zip(CORRECTNESS_NAMES, CORRECTNESS_COLORS, strict=True)),
}


# -- layers ------------------------------------------------------------------------------
@dataclass(frozen=True)
class OverlayRasters:
    """The overlay layers' data, one pixel per patch (made off the main thread)."""

    labels: np.ndarray  # uint8: 0 no patch, 1 non-tumor, 2 tumor
    groups: np.ndarray  # float32: 3 * label + tissue_ratio, NaN where no patch
    correctness: np.ndarray | None  # float32: 3 * label + prob
    prob: np.ndarray | None  # float32: prob


def overlay_rasters(
    raster: PatchRaster,
    label: np.ndarray,
    tissue_ratio: np.ndarray,
    prob: np.ndarray | None,
    empty: np.ndarray | None = None,
) -> OverlayRasters:
    """Paint every overlay's grid from per-patch arrays in table order (O(N)).

    ``empty`` (per patch, optional) marks empty glass (no tissue): those cells are left
    transparent on every overlay (NaN, which napari draws transparent; label 0).
    """
    label = np.asarray(label)
    glass = np.zeros(label.shape, bool) if empty is None else np.asarray(empty, bool)

    def cells(values) -> np.ndarray:
        return raster.paint(np.where(glass, np.nan, np.asarray(values, dtype=np.float32)))

    return OverlayRasters(
        labels=raster.paint(np.where(glass, 0, label + 1).astype(np.uint8), fill=0, dtype=np.uint8),
        groups=cells(encode_by_class(label, tissue_ratio)),
        correctness=None if prob is None else cells(encode_by_class(label, prob)),
        prob=None if prob is None else cells(prob),
    )


class SlideOverlays:
    """The overlay layers of one slide's patch table in one viewer.

    Layers are created on the first :meth:`set_table` and their data replaced only when the
    table changes (compute, loading predictions). :meth:`set_tau` and
    :meth:`set_threshold` only move contrast limits. A layer the user deleted is created
    again on the next :meth:`set_table`.

    Parameters
    ----------
    viewer : napari.Viewer
    prefix : str
        Put before every layer name (the slide name), so several slides can be open.
    scale, translate : (float, float)
        From :func:`overlay_transform`.
    units : (str, str), optional
        The slide's layer units (µm when it has a pixel size), so the scale bar keeps
        reading them while an overlay is shown; None leaves napari's pixels.
    """

    def __init__(
        self,
        viewer,
        prefix: str,
        scale: tuple[float, float],
        translate: tuple[float, float],
        units: tuple[str, str] | None = None,
    ) -> None:
        self.viewer = viewer
        self.prefix = prefix
        self.scale = scale
        self.translate = translate
        self.units = units
        self.layers: dict[str, object] = {}
        self.tau = 0.0  # the overlay thresholds, for the layers' status text
        self.threshold = 0.5

    # geometry ---------------------------------------------------------------------------
    def world_to_cell(self, world_yx) -> tuple[int, int]:
        """Grid cell ``(row, col)`` under a world position (last two axes)."""
        y, x = (float(v) for v in np.asarray(world_yx)[-2:])
        row = int(np.floor((y - self.translate[0]) / self.scale[0] + 0.5))
        col = int(np.floor((x - self.translate[1]) / self.scale[1] + 0.5))
        return row, col

    def cell_to_world(self, row: float, col: float) -> tuple[float, float]:
        """World position of the centre of grid cell ``(row, col)``."""
        return (
            self.translate[0] + row * self.scale[0],
            self.translate[1] + col * self.scale[1],
        )

    # data -------------------------------------------------------------------------------
    def set_table(self, rasters: OverlayRasters, *, tau: float, threshold: float) -> None:
        """(Re)build every overlay from rasters made by :func:`overlay_rasters`."""
        for step in self.set_table_steps(rasters, tau=tau, threshold=threshold):
            step()

    def set_table_steps(self, rasters: OverlayRasters, *, tau: float, threshold: float):
        """:meth:`set_table` as separate steps (callables), one layer each.

        A caller on the Qt main thread runs them in separate event-loop turns.
        """
        self.tau, self.threshold = float(tau), float(threshold)
        for layer in self.layers.values():  # the grid may have changed (new patch size)
            layer.scale = self.scale
            layer.translate = self.translate
        yield lambda: self._put_labels(
            "labels", rasters.labels, label_colormap(), opacity=0.5, visible=False
        )
        groups_cmap = step_colormap(GROUP_COLORS, "patchwise groups")
        yield lambda: self._put_image("groups", rasters.groups, groups_cmap, tau, opacity=0.6)
        if rasters.prob is None:
            yield lambda: [self._remove(kind) for kind in ("correctness", "probability")]
        else:
            correctness_cmap = step_colormap(
                CORRECTNESS_COLORS, "patchwise correctness", CORRECTNESS_ALPHA
            )
            yield lambda: self._put_image(
                "correctness", rasters.correctness, correctness_cmap, threshold, opacity=0.6
            )
            yield lambda: self._put_image(
                "probability", rasters.prob, "inferno", None, opacity=0.6, visible=False
            )
            yield lambda: self._show_colorbar("probability")
            yield lambda: setattr(self.layers["groups"], "visible", False)
        yield lambda: self.set_highlight(None, rasters.labels.shape)

    def set_tau(self, tau: float) -> None:
        self.tau = float(tau)
        layer = self._alive("groups")
        if layer is not None:
            layer.contrast_limits = step_contrast_limits(tau)

    def set_threshold(self, threshold: float) -> None:
        self.threshold = float(threshold)
        layer = self._alive("correctness")
        if layer is not None:
            layer.contrast_limits = step_contrast_limits(threshold)

    def set_highlight(self, mask: np.ndarray | None, shape: tuple[int, int]) -> None:
        """Outline a set of patches (a boolean grid raster) or clear the selection."""
        if mask is None:
            layer = self._alive("highlight")
            if layer is not None:
                layer.data = np.zeros(shape, dtype=np.uint8)
                layer.visible = False
            return
        self._put_labels("highlight", mask.astype(np.uint8), highlight_colormap(), opacity=0.9)
        self.layers["highlight"].visible = True

    def remove(self) -> None:
        for kind in list(self.layers):
            self._remove(kind)

    # helpers ----------------------------------------------------------------------------
    def name(self, kind: str) -> str:
        return f"{self.prefix} {LAYER_NAMES[kind]}"

    def _alive(self, kind: str):
        layer = self.layers.get(kind)
        if layer is None or layer not in self.viewer.layers:
            self.layers.pop(kind, None)
            return None
        return layer

    def _remove(self, kind: str) -> None:
        layer = self._alive(kind)
        if layer is not None:
            self.viewer.layers.remove(layer)
        self.layers.pop(kind, None)

    def _show_colorbar(self, kind: str) -> None:
        colorbar = getattr(self.layers.get(kind), "colorbar", None)  # napari >= 0.5.5
        if colorbar is not None:
            colorbar.visible = True

    def _speak(self, layer, kind: str) -> None:
        speak_status(layer, lambda v: status_words(kind, v, tau=self.tau, threshold=self.threshold))

    def _metadata(self, kind: str) -> dict:
        return {"patchwise_overlay": kind, "patchwise_prefix": self.prefix}

    def _put_image(self, kind, data, colormap, threshold, *, opacity, visible=True) -> None:
        limits = (0.0, 1.0) if threshold is None else step_contrast_limits(threshold)
        layer = self._alive(kind)
        if layer is None:
            layer = self.viewer.add_image(
                data,
                name=self.name(kind),
                colormap=colormap,
                contrast_limits=limits,
                scale=self.scale,
                translate=self.translate,
                units=self.units,
                opacity=opacity,
                visible=visible,
                blending="translucent",
                interpolation2d="nearest",
                metadata=self._metadata(kind),
            )
            self._speak(layer, kind)
            self.layers[kind] = layer
        else:
            layer.data = data
            layer.contrast_limits = limits
        if threshold is not None:
            # Wide fixed range so that moving the limits never re-validates the range.
            layer.contrast_limits_range = (-2.0, 6.0)

    def _put_labels(self, kind, data, colormap, *, opacity, visible=True) -> None:
        layer = self._alive(kind)
        if layer is None:
            layer = self.viewer.add_labels(
                data,
                name=self.name(kind),
                colormap=colormap,
                scale=self.scale,
                translate=self.translate,
                units=self.units,
                opacity=opacity,
                visible=visible,
                metadata=self._metadata(kind),
            )
            layer.editable = False
            self._speak(layer, kind)
            self.layers[kind] = layer
        else:
            layer.data = data


class AttributeScale:
    """Any attribute's values on the groups overlay's [0, 1] scale, order kept exactly.

    The groups layer stores ``3 * label + value`` with ``value`` in [0, 1] and moves the
    colour step with the contrast limits (module notes). ``tissue_ratio`` is such a value
    already; any other attribute (a mean intensity of 0-255, a slide index) is replaced by
    its rank among the distinct values: ``u = (rank + 1) / (K + 1)``, NaN -> 0 (below every
    threshold, as in :func:`napari_patchwise.groups.group_ids`). The step for
    ``attribute >= t`` sits half a rank below the first value ``>= t``, so the float32
    raster (and the GPU's lookup margin while K < ~10^4) cannot move a patch across it.
    """

    def __init__(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        self.distinct = np.unique(values[np.isfinite(values)])
        self.k = int(self.distinct.size)

    def unit(self, values: np.ndarray) -> np.ndarray:
        """Per-patch values in (0, 1] (NaN: 0)."""
        values = np.asarray(values, dtype=np.float64)
        rank = np.searchsorted(self.distinct, values, side="left").astype(np.float64)
        out = (rank + 1.0) / (self.k + 1.0)  # +inf: rank k, 1.0, above every threshold
        out[np.isnan(values) | (values == -np.inf)] = 0.0  # below every threshold
        return out

    def unit_threshold(self, threshold: float) -> float:
        """The step for ``attribute >= threshold`` on the :meth:`unit` scale."""
        m = int(np.searchsorted(self.distinct, float(threshold), side="left"))
        return (m + 0.5) / (self.k + 1.0)
