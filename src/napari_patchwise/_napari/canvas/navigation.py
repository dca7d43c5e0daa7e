"""Finding patches in the viewer: go to one, mark a set, describe the one under the cursor.

Positions are rows of the slide's patch table; the image layer that shows the slide
gives the world coordinates (its scale and translate), so a patch is found where it is
drawn whatever the slide's pixel size.
"""

from __future__ import annotations

import math

import numpy as np

from ...analysis.metrics import CORRECTNESS_NAMES, correctness
from ...groups import group_ids, group_names
from ..dock.state import SlideState
from ..dock.words import fmt, um_text


def viewer_camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, else ``viewer.camera``)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def go_to_patch(viewer, state: SlideState, position: int, image_layer=None) -> None:
    """Centre and zoom the view on the patch at table position ``position``.

    ``image_layer`` is the layer showing the slide (None: world = level-0 pixels).
    """
    go_to_row(viewer, state.data.table, position, image_layer)


def go_to_row(viewer, table, position: int, image_layer=None) -> None:
    """Centre and zoom the view on the patch in row ``position`` of a patch ``table``."""
    y, x = (int(table[c].iat[position]) for c in ("y", "x"))
    h, w = (int(table[c].iat[position]) for c in ("height", "width"))
    layer = image_layer
    p = np.asarray(layer.scale[-2:] if layer is not None else (1.0, 1.0), dtype=float)
    t = np.asarray(layer.translate[-2:] if layer is not None else (0.0, 0.0), dtype=float)
    centre = t + p * np.array([y + (h - 1) / 2.0, x + (w - 1) / 2.0])
    camera = viewer_camera(viewer)
    camera.center = tuple(float(v) for v in centre)
    canvas = min(viewer.canvas.size) if hasattr(viewer, "canvas") else 600
    camera.zoom = float(canvas) / (4.0 * max(h * p[0], w * p[1]))


def highlight(state: SlideState, members: np.ndarray | None) -> None:
    """Mark the patches at table positions ``members`` in the highlight layer (None clears)."""
    raster = state.data.raster
    if members is None:
        state.overlays.set_highlight(None, raster.shape)
        return
    mask = np.zeros(raster.shape, dtype=bool)
    mask[raster.rows[members], raster.cols[members]] = True
    state.overlays.set_highlight(mask, raster.shape)


def highlight_bin(state: SlideState | None, histograms, panel: int, b: int) -> None:
    """Mark the patches of histogram ``panel``'s bin ``b`` (-1 clears) and select the bar."""
    if state is None or state.data is None or state.overlays is None:
        return
    if panel < 0:
        panel = b = -1
    highlight(state, None if panel < 0 else state.panels[panel].members(b))
    histograms.select(panel, b)


def patch_status(state: SlideState | None, world_position) -> str | None:
    """Status-bar text for the patch under ``world_position`` (None: no patch there).

    O(1): the overlay's transform gives the grid cell, the raster index the table row.
    """
    if state is None or state.data is None or state.overlays is None:
        return None
    row, col = state.overlays.world_to_cell(world_position)
    pos = state.data.raster.lookup(row, col)
    if pos < 0:
        return None
    d, s = state.data, state.settings
    table = d.table
    label = int(d.label[pos])
    ratio = float(table["tissue_ratio"].iat[pos])
    value = d.attribute_values[pos]
    group = group_names(d.attribute)[int(group_ids([label], [value], s.tau)[0])]
    tumor = float(table["tumor_ratio"].iat[pos])
    tumor_tissue = float(table["tumor_tissue_ratio"].iat[pos])
    text = (
        f"patch ({row}, {col}) at {_position(state, pos)}: "
        f"{group} · tissue {fmt(ratio)} · tumor {fmt(tumor)} · tumor/tissue {fmt(tumor_tissue)}"
    )
    if d.prob is not None and not math.isnan(d.prob[pos]):
        code = correctness([label], [d.prob[pos] >= s.threshold])[0]
        outcome = CORRECTNESS_NAMES[int(code)]
        text += f" · prob {fmt(d.prob[pos])} ({outcome})"
    return text


def _position(state, pos: int) -> str:
    """``y=120 x=64 px (60.0, 32.0 µm)``: a patch's corner in level-0 px and µm."""
    table = state.data.table
    y, x = int(table["y"].iat[pos]), int(table["x"].iat[pos])
    size = state.slide.pixel_size
    um = "" if size is None else f" ({um_text(y, size[0])[:-3]}, {um_text(x, size[1])})"
    return f"y={y} x={x} px{um}"
